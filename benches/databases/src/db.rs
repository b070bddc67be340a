//! The shop's schema on PostgreSQL, its seeding and reset, and the request stream.
//!
//! Everything lives in the schema `offthread_bench` (created, and dropped first if it is
//! there), so other users of the same server are not disturbed. Writes go to every
//! `WRITE_EVERY`-th user and are dated after the seeded history; reads go to the other users
//! and report windows lie inside the history. So every read has one right answer however it
//! interleaves with the writes, and the writes are checked by their totals and by a
//! fingerprint of the data they leave. Between rounds, [`reset`] undoes the writes.

use std::hash::{DefaultHasher, Hash, Hasher};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

pub const SCHEMA: &str = "offthread_bench";

diesel::table! {
    offthread_bench.users (id) {
        id -> BigInt,
        name -> Text,
        email -> Text,
        order_count -> BigInt,
        total_cents -> BigInt,
    }
}

diesel::table! {
    offthread_bench.orders (id) {
        id -> BigInt,
        user_id -> BigInt,
        amount_cents -> Integer,
        placed_at -> BigInt,
    }
}

diesel::joinable!(orders -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, orders);

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq, Hash)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub order_count: i64,
    pub total_cents: i64,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq, Hash)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub amount_cents: i32,
    pub placed_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrder {
    pub user_id: i64,
    pub amount_cents: i32,
    pub placed_at: i64,
}

/// One row of the "top customers" report.
#[derive(Queryable, Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopCustomer {
    pub user_id: i64,
    pub name: String,
    pub spent_cents: Option<i64>,
    pub orders: i64,
}

/// What a write did: the new order's id and the user's order count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placed {
    pub order_id: i64,
    pub order_count: i64,
}

/// Writes go to users whose id is a multiple of this; reads never look at those users.
pub const WRITE_EVERY: i64 = 16;
/// Orders returned by a read, customers by a report.
pub const PAGE: i64 = 10;
/// Seconds since the epoch at which the seeded history starts (2024-01-01), and its length.
pub const HISTORY_START: i64 = 1_704_067_200;
pub const DAY: i64 = 86_400;
pub const HISTORY_DAYS: i64 = 365;
/// The window of the "top customers" report.
pub const REPORT_DAYS: i64 = 7;

/// Creates the schema and seeds `users` users and `orders` orders (deterministically:
/// `setseed`), plus a copy of the users' totals that [`reset`] restores.
pub fn create_and_seed(conn: &mut PgConnection, users: usize, orders: usize) -> QueryResult<()> {
    let history = HISTORY_DAYS * DAY;
    conn.batch_execute(&format!(
        "SET client_min_messages = warning;
         DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
         CREATE SCHEMA {SCHEMA};
         SET search_path = {SCHEMA};
         CREATE TABLE users (
             id          BIGINT PRIMARY KEY,
             name        TEXT   NOT NULL,
             email       TEXT   NOT NULL UNIQUE,
             order_count BIGINT NOT NULL,
             total_cents BIGINT NOT NULL
         );
         CREATE TABLE orders (
             id           BIGSERIAL PRIMARY KEY,
             user_id      BIGINT  NOT NULL REFERENCES users (id),
             amount_cents INTEGER NOT NULL,
             placed_at    BIGINT  NOT NULL
         );
         SELECT setseed(0.42);
         INSERT INTO users
             SELECT i, 'Customer ' || i, 'customer.' || i || '@example.com', 0, 0
             FROM generate_series(1, {users}) AS i;
         -- A few customers place most orders: user ids skewed towards small values.
         INSERT INTO orders (user_id, amount_cents, placed_at)
             SELECT 1 + floor(random() * random() * {users})::bigint,
                    100 + floor(random() * 20000)::int,
                    {HISTORY_START} + floor(random() * {history})::bigint
             FROM generate_series(1, {orders});
         UPDATE users u SET order_count = t.n, total_cents = t.total
             FROM (SELECT user_id, count(*) AS n, sum(amount_cents) AS total
                   FROM orders GROUP BY user_id) t
             WHERE u.id = t.user_id;
         CREATE INDEX orders_by_user ON orders (user_id, placed_at);
         CREATE INDEX orders_by_time ON orders (placed_at);
         CREATE TABLE seed_users AS SELECT id, order_count, total_cents FROM users;
         CREATE TABLE seed_state AS SELECT max(id) AS max_order_id FROM orders;
         RESET search_path;"
    ))?;
    // One statement per call: VACUUM refuses to run in a multi-statement string.
    conn.batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.users"))?;
    conn.batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.orders"))
}

/// Undoes every write since the seeding: the new orders, the users' totals and the order
/// id sequence (so the ids a round's writes get are the same in every round), then vacuums.
pub fn reset(conn: &mut PgConnection) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "BEGIN;
         DELETE FROM {SCHEMA}.orders WHERE id > (SELECT max_order_id FROM {SCHEMA}.seed_state);
         UPDATE {SCHEMA}.users u SET order_count = s.order_count, total_cents = s.total_cents
             FROM {SCHEMA}.seed_users s
             WHERE u.id = s.id AND (u.order_count, u.total_cents) <> (s.order_count, s.total_cents);
         SELECT setval('{SCHEMA}.orders_id_seq', (SELECT max_order_id FROM {SCHEMA}.seed_state));
         COMMIT;"
    ))?;
    // One statement per call: VACUUM refuses to run in a transaction block.
    conn.batch_execute(&format!("VACUUM {SCHEMA}.users"))?;
    conn.batch_execute(&format!("VACUUM {SCHEMA}.orders"))
}

#[derive(QueryableByName)]
struct Digest {
    #[diesel(sql_type = Text)]
    digest: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A fingerprint of the data: every user's totals, and which user got which new orders
/// (ignoring their ids, which follow commit order). Two rounds that made the same writes,
/// in any order, leave the same fingerprint.
pub fn fingerprint(conn: &mut PgConnection) -> QueryResult<String> {
    let q = format!(
        "SELECT md5(
             (SELECT string_agg(id || ':' || order_count || ':' || total_cents, ',' ORDER BY id)
              FROM {SCHEMA}.users)
             || '|' ||
             coalesce((SELECT string_agg(user_id || ':' || amount_cents || ':' || placed_at, ','
                                         ORDER BY user_id, placed_at, amount_cents)
                       FROM {SCHEMA}.orders
                       WHERE id > (SELECT max_order_id FROM {SCHEMA}.seed_state)), '')
         ) AS digest"
    );
    Ok(diesel::sql_query(q).get_result::<Digest>(conn)?.digest)
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// The server process serving `conn`.
pub fn backend_pid(conn: &mut PgConnection) -> QueryResult<u32> {
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(conn)?
        .pid as u32)
}

/// Orders in the table now.
pub fn order_count(conn: &mut PgConnection) -> QueryResult<i64> {
    Ok(
        diesel::sql_query(format!("SELECT count(*) AS n FROM {SCHEMA}.orders"))
            .get_result::<Count>(conn)?
            .n,
    )
}

// ---------------------------------------------------------------------------------------
// The request stream

/// One request to the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A user and their `PAGE` latest orders (two queries).
    Read { user_id: i64 },
    /// An order placed: insert it and update the user's totals, in one transaction.
    Write {
        user_id: i64,
        amount_cents: i32,
        placed_at: i64,
    },
    /// Top `PAGE` customers over a `REPORT_DAYS` window (an aggregate over a join); with
    /// `sleep`, it first holds its connection in `pg_sleep(0.05)`.
    Report { from: i64, to: i64, sleep: bool },
}

/// SplitMix64: the same seed gives the same requests on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// In `0..n`, skewed towards small values, like the seeded orders.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * n as f64) as u64).min(n - 1)
    }
}

/// `n` requests of the shop mix for `users` users: 80 % reads, 15 % writes, 5 % reports.
pub fn requests(users: usize, n: usize, seed: u64, sleepy_reports: bool) -> Vec<Request> {
    let users = users as u64;
    let mut rng = Rng(seed);
    let history_end = HISTORY_START + HISTORY_DAYS * DAY;
    (0..n)
        .map(|i| match rng.below(100) {
            0..80 => {
                let id = 1 + rng.skewed(users) as i64;
                Request::Read {
                    user_id: if id % WRITE_EVERY == 0 { id - 1 } else { id },
                }
            }
            80..95 => Request::Write {
                user_id: WRITE_EVERY * (1 + rng.below(users / WRITE_EVERY as u64) as i64),
                amount_cents: 100 + rng.below(20_000) as i32,
                placed_at: history_end + i as i64,
            },
            _ => {
                let from =
                    HISTORY_START + rng.below((HISTORY_DAYS - REPORT_DAYS) as u64) as i64 * DAY;
                Request::Report {
                    from,
                    to: from + REPORT_DAYS * DAY,
                    sleep: sleepy_reports,
                }
            }
        })
        .collect()
}

/// What a request returned: a read's or report's rows, hashed, or what a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Read(u64),
    Write(Placed),
}

pub fn digest(value: impl Hash) -> Answer {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    Answer::Read(h.finish())
}

/// A round's answers, reduced to what must agree between variants: every read's digest by
/// request index, the writes' count and sums (the ids and counts each write saw depend on
/// commit order; their sums do not), and the data's fingerprint after the round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub reads: Vec<Option<u64>>,
    pub writes: usize,
    pub order_id_sum: i64,
    pub order_count_sum: i64,
    pub orders_after: i64,
    pub fingerprint: String,
}

impl Tally {
    /// `answers[i]` is the answer to request `i`.
    pub fn new(answers: &[Answer], orders_after: i64, fingerprint: String) -> Tally {
        let mut t = Tally {
            reads: Vec::with_capacity(answers.len()),
            writes: 0,
            order_id_sum: 0,
            order_count_sum: 0,
            orders_after,
            fingerprint,
        };
        for answer in answers {
            match *answer {
                Answer::Read(d) => t.reads.push(Some(d)),
                Answer::Write(p) => {
                    t.reads.push(None);
                    t.writes += 1;
                    t.order_id_sum += p.order_id;
                    t.order_count_sum += p.order_count;
                }
            }
        }
        t
    }

    /// How `other` differs from `self`, if it does.
    pub fn differences(&self, other: &Tally) -> Vec<String> {
        let mut out = Vec::new();
        let wrong: Vec<usize> = (0..self.reads.len().max(other.reads.len()))
            .filter(|&i| self.reads.get(i) != other.reads.get(i))
            .collect();
        if let Some(first) = wrong.first() {
            out.push(format!(
                "{} answers differ (the first is request {first})",
                wrong.len()
            ));
        }
        let w = |t: &Tally| (t.writes, t.order_id_sum, t.order_count_sum, t.orders_after);
        if w(self) != w(other) {
            out.push(format!(
                "writes differ: (orders written, id sum, count sum, orders after) {:?} vs {:?}",
                w(self),
                w(other)
            ));
        }
        if self.fingerprint != other.fingerprint {
            out.push("the data differ after the round".to_owned());
        }
        out
    }
}
