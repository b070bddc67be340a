//! The service's requests, and their answers reduced to something three runs can compare.
//!
//! Requests are generated from a seed, so every run serves the same ones. Writes go to every
//! `WRITE_EVERY`-th user and are dated after the seeded history; reads go to the other users
//! and to windows inside the history. So each read has one right answer however it
//! interleaves with the writes, and the writes, which land in whatever order the run
//! commits them, are checked by their totals and by the database they leave behind.

use std::hash::{DefaultHasher, Hash, Hasher};

use diesel::QueryResult;

use crate::db::{self, Db, Placed, Rng, DAY, HISTORY_DAYS, HISTORY_START};

/// Writes go to users whose id is a multiple of this; reads never look at those users.
pub const WRITE_EVERY: i64 = 16;
/// Rows returned by `recent_orders` and `top_customers`.
pub const PAGE: i64 = 10;
/// The window of the "top customers this week" report.
pub const REPORT_DAYS: i64 = 7;

/// One request to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Show a user's profile: a lookup by key.
    FindUser { id: i64 },
    /// Show a user's recent orders: a join.
    RecentOrders { user_id: i64 },
    /// The "top customers this month" report: an aggregate.
    TopCustomers { from: i64, to: i64 },
    /// Check out: a write in a transaction.
    PlaceOrder {
        user_id: i64,
        amount_cents: i32,
        placed_at: i64,
    },
}

/// `n` requests for a database of `users` users (at least `2 * WRITE_EVERY`): 55% profile
/// lookups, 30% recent orders, 5% reports, 10% orders placed.
pub fn requests(users: usize, n: usize, seed: u64) -> Vec<Request> {
    assert!(
        users as i64 >= 2 * WRITE_EVERY,
        "need at least {} users",
        2 * WRITE_EVERY
    );
    let users = users as u64;
    let mut rng = Rng::new(seed);
    let history_end = HISTORY_START + HISTORY_DAYS * DAY;
    (0..n)
        .map(|i| {
            let reader = |rng: &mut Rng| {
                let id = 1 + rng.skewed(users) as i64;
                if id % WRITE_EVERY == 0 {
                    id - 1
                } else {
                    id
                }
            };
            match rng.below(100) {
                0..55 => Request::FindUser {
                    id: reader(&mut rng),
                },
                55..85 => Request::RecentOrders {
                    user_id: reader(&mut rng),
                },
                85..90 => {
                    let from =
                        HISTORY_START + rng.below((HISTORY_DAYS - REPORT_DAYS) as u64) as i64 * DAY;
                    Request::TopCustomers {
                        from,
                        to: from + REPORT_DAYS * DAY,
                    }
                }
                _ => Request::PlaceOrder {
                    user_id: WRITE_EVERY * (1 + rng.below(users / WRITE_EVERY as u64) as i64),
                    amount_cents: 100 + rng.below(20_000) as i32,
                    placed_at: history_end + i as i64,
                },
            }
        })
        .collect()
}

/// What a request returned: a read's rows, hashed, or what a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Read(u64),
    Write(Placed),
}

fn digest(value: impl Hash) -> Answer {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    Answer::Read(h.finish())
}

/// Serves `request` with the offloaded data layer: the await is all the caller sees.
pub async fn serve_offloaded(request: Request) -> QueryResult<Answer> {
    Ok(match request {
        Request::FindUser { id } => digest(db::find_user(id).await?),
        Request::RecentOrders { user_id } => digest(db::recent_orders(user_id, PAGE).await?),
        Request::TopCustomers { from, to } => digest(db::top_customers(from, to, PAGE).await?),
        Request::PlaceOrder {
            user_id,
            amount_cents,
            placed_at,
        } => Answer::Write(db::place_order(user_id, amount_cents, placed_at).await?),
    })
}

/// Serves `request` with the same Diesel functions, called directly on `conn`.
pub fn serve_blocking(conn: &mut Db, request: Request) -> QueryResult<Answer> {
    Ok(match request {
        Request::FindUser { id } => digest(db::find_user_blocking(conn, id)?),
        Request::RecentOrders { user_id } => {
            digest(db::recent_orders_blocking(conn, user_id, PAGE)?)
        }
        Request::TopCustomers { from, to } => {
            digest(db::top_customers_blocking(conn, from, to, PAGE)?)
        }
        Request::PlaceOrder {
            user_id,
            amount_cents,
            placed_at,
        } => Answer::Write(db::place_order_blocking(
            conn,
            user_id,
            amount_cents,
            placed_at,
        )?),
    })
}

/// A run's answers, reduced: every read's digest by request index, and the writes' totals
/// (the ids and counts each write saw depend on commit order; their sums do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub reads: Vec<Option<u64>>,
    pub writes: usize,
    pub order_id_sum: i64,
    pub order_count_sum: i64,
    /// [`db::fingerprint`] of the database after the run.
    pub fingerprint: u64,
}

impl Tally {
    /// `answers[i]` is the answer to request `i`.
    pub fn new(answers: &[Answer], fingerprint: u64) -> Tally {
        let mut tally = Tally {
            reads: Vec::with_capacity(answers.len()),
            writes: 0,
            order_id_sum: 0,
            order_count_sum: 0,
            fingerprint,
        };
        for answer in answers {
            match *answer {
                Answer::Read(d) => tally.reads.push(Some(d)),
                Answer::Write(placed) => {
                    tally.reads.push(None);
                    tally.writes += 1;
                    tally.order_id_sum += placed.order_id;
                    tally.order_count_sum += placed.order_count;
                }
            }
        }
        tally
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
        if (self.writes, self.order_id_sum, self.order_count_sum)
            != (other.writes, other.order_id_sum, other.order_count_sum)
        {
            out.push(format!(
                "writes differ: {} orders, id sum {}, count sum {} vs {}, {}, {}",
                self.writes,
                self.order_id_sum,
                self.order_count_sum,
                other.writes,
                other.order_id_sum,
                other.order_count_sum
            ));
        }
        if self.fingerprint != other.fingerprint {
            out.push("the databases differ after the run".to_owned());
        }
        out
    }
}
