//! The data layer: a Diesel schema on SQLite, and the handful of queries the service makes.
//!
//! Each query is a plain Diesel function. `#[offload(pool = DATA)]` makes it awaitable: the
//! body runs on a thread of the `DATA` pool, and `#[local] conn: &mut SqliteConnection` hands
//! it that thread's own connection (registered with `Builder::worker_local`), so callers
//! write `find_user(7).await` and never see a connection or a checkout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::dsl::{count, sum};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use offthread::{offload, Pool};

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        email -> Text,
        order_count -> BigInt,
        total_cents -> BigInt,
    }
}

diesel::table! {
    orders (id) {
        id -> BigInt,
        user_id -> BigInt,
        amount_cents -> Integer,
        placed_at -> BigInt,
    }
}

diesel::joinable!(orders -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, orders);

/// The schema, as SQL (what a migration would hold).
const SCHEMA: &str = "
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL,
        email       TEXT    NOT NULL UNIQUE,
        order_count INTEGER NOT NULL,
        total_cents INTEGER NOT NULL
    );
    CREATE TABLE orders (
        id           INTEGER PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users (id),
        amount_cents INTEGER NOT NULL,
        placed_at    INTEGER NOT NULL
    );
    CREATE INDEX orders_by_user ON orders (user_id, placed_at);
    CREATE INDEX orders_by_time ON orders (placed_at);
";

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub order_count: i64,
    pub total_cents: i64,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub order_count: i64,
    pub total_cents: i64,
}

#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[diesel(table_name = orders, check_for_backend(diesel::sqlite::Sqlite))]
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
#[derive(Queryable, Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TopCustomer {
    pub user_id: i64,
    pub name: String,
    pub spent_cents: Option<i64>,
    pub orders: i64,
}

/// What `place_order` did: the new order's id and the user's order count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Placed {
    pub order_id: i64,
    pub order_count: i64,
}

// ---------------------------------------------------------------------------------------
// Connections

/// The database the `DATA` pool's workers connect to; set once by [`use_database`].
static DATABASE: OnceLock<PathBuf> = OnceLock::new();

/// Connections opened so far, by anyone (the example reports it per run).
pub static CONNECTIONS_OPENED: AtomicUsize = AtomicUsize::new(0);

/// Points the `DATA` pool at `path`. Call it once, before the first offloaded query.
pub fn use_database(path: &Path) {
    DATABASE
        .set(path.to_owned())
        .expect("use_database is called once");
}

/// Opens a connection set up the way a service would: a busy timeout instead of instant
/// `SQLITE_BUSY`, foreign keys on, and (with WAL, set once per database by
/// [`create_and_seed`] and [`copy_database`]) commits that do not wait for the disk.
pub fn connect(path: &Path) -> SqliteConnection {
    let url = path.to_str().expect("database path is UTF-8");
    let mut conn = SqliteConnection::establish(url)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    conn.batch_execute(
        "PRAGMA busy_timeout = 10000;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )
    .expect("connection pragmas");
    CONNECTIONS_OPENED.fetch_add(1, Ordering::Relaxed);
    conn
}

/// Threads of the `DATA` pool, and so connections: SQLite in WAL mode runs readers in
/// parallel, one per core, and one writer at a time (`limit = 1` on writes).
///
/// The queries are CPU work (the database is in the page cache), on the same cores as the
/// executor: `idle_priority` lets an executor thread that wakes (a request, a timer) take
/// a core from a query at once instead of waiting out its time slice, so the service
/// stays responsive while the data layer is saturated. The data layer still gets every
/// cycle the executor leaves, which on a machine that runs this service is nearly all.
pub fn data_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// The pool the data layer runs on. Each worker opens its own connection the first time a
/// query runs there and keeps it: no checkout per call, no connection shared by threads.
pub static DATA: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name("data")
        .max_threads(data_threads())
        .idle_priority(true)
        .worker_local(|| {
            let path = DATABASE.get().expect("call db::use_database first");
            connect(path)
        })
        .build()
});

// ---------------------------------------------------------------------------------------
// The data layer: plain Diesel, offloaded

/// A user by primary key.
#[offload(pool = DATA, sync = find_user_blocking)]
pub fn find_user(#[local] conn: &mut SqliteConnection, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// A user's `n` most recent orders, each with the user's name (a join).
#[offload(pool = DATA, sync = recent_orders_blocking)]
pub fn recent_orders(
    #[local] conn: &mut SqliteConnection,
    user_id: i64,
    n: i64,
) -> QueryResult<Vec<(Order, String)>> {
    orders::table
        .inner_join(users::table)
        .filter(users::id.eq(user_id))
        .order((orders::placed_at.desc(), orders::id.desc()))
        .limit(n)
        .select((Order::as_select(), users::name))
        .load(conn)
}

/// The `n` customers who spent most on orders placed in `[from, to)` (an aggregate).
#[offload(pool = DATA, sync = top_customers_blocking)]
pub fn top_customers(
    #[local] conn: &mut SqliteConnection,
    from: i64,
    to: i64,
    n: i64,
) -> QueryResult<Vec<TopCustomer>> {
    orders::table
        .inner_join(users::table)
        .filter(orders::placed_at.ge(from).and(orders::placed_at.lt(to)))
        .group_by((users::id, users::name))
        .select((
            users::id,
            users::name,
            sum(orders::amount_cents),
            count(orders::id),
        ))
        .order((sum(orders::amount_cents).desc(), users::id))
        .limit(n)
        .load(conn)
}

/// Places an order and updates the user's running totals, in one transaction. SQLite has
/// one writer, so at most one of these runs at a time (`limit = 1`) and the others wait
/// asynchronously instead of holding threads in SQLite's busy handler.
#[offload(pool = DATA, limit = 1, sync = place_order_blocking)]
pub fn place_order(
    #[local] conn: &mut SqliteConnection,
    user_id: i64,
    amount_cents: i32,
    placed_at: i64,
) -> QueryResult<Placed> {
    conn.immediate_transaction(|conn| {
        let order_id = diesel::insert_into(orders::table)
            .values(NewOrder {
                user_id,
                amount_cents,
                placed_at,
            })
            .returning(orders::id)
            .get_result(conn)?;
        let order_count = diesel::update(users::table.find(user_id))
            .set((
                users::order_count.eq(users::order_count + 1),
                users::total_cents.eq(users::total_cents + i64::from(amount_cents)),
            ))
            .returning(users::order_count)
            .get_result(conn)?;
        Ok(Placed {
            order_id,
            order_count,
        })
    })
}

// ---------------------------------------------------------------------------------------
// Creating and seeding the database

/// Seconds since the epoch at which the seeded order history starts (2024-01-01).
pub const HISTORY_START: i64 = 1_704_067_200;
/// The seeded history is one year long; writes are placed after it.
pub const HISTORY_DAYS: i64 = 365;
pub const DAY: i64 = 86_400;

/// A small deterministic generator (SplitMix64): the same seed gives the same data set and
/// the same requests on every run and machine.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// In `0..n`, skewed towards small values: a few customers place most orders.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * n as f64) as u64).min(n - 1)
    }
}

const FIRST: [&str; 16] = [
    "Ada", "Alan", "Barbara", "Brian", "Claude", "Donald", "Edsger", "Frances", "Grace", "Ken",
    "Leslie", "Margaret", "Niklaus", "Radia", "Robin", "Tony",
];
const LAST: [&str; 16] = [
    "Allen",
    "Backus",
    "Dijkstra",
    "Hamilton",
    "Hopper",
    "Hoare",
    "Kernighan",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Milner",
    "Perlman",
    "Ritchie",
    "Turing",
    "Wirth",
];

/// Creates the schema in a new database at `path` and fills it with `users` users and
/// `orders` orders, in batched transactions. `progress(done, total)` is called as it goes.
pub fn create_and_seed(
    path: &Path,
    users: usize,
    orders: usize,
    mut progress: impl FnMut(usize, usize),
) -> QueryResult<()> {
    const ROWS_PER_INSERT: usize = 1_000;
    const ROWS_PER_TRANSACTION: usize = 20_000;

    let mut conn = connect(path);
    // WAL: readers never wait for the writer, nor it for them. It is a property of the
    // database file, so later connections need not (and, concurrently, should not) set it.
    conn.batch_execute("PRAGMA journal_mode = WAL")?;
    conn.batch_execute(SCHEMA)?;
    let users_n = users.max(1) as u64;

    // Orders first, in memory, so that each user's totals are known when it is inserted.
    let mut rng = Rng::new(0x5eed);
    let mut totals = vec![(0i64, 0i64); users.max(1)];
    let new_orders: Vec<NewOrder> = (0..orders)
        .map(|_| {
            let user = rng.skewed(users_n) as usize;
            let amount_cents = 100 + rng.below(20_000) as i32;
            totals[user].0 += 1;
            totals[user].1 += i64::from(amount_cents);
            NewOrder {
                user_id: user as i64 + 1,
                amount_cents,
                placed_at: HISTORY_START + rng.below((HISTORY_DAYS * DAY) as u64) as i64,
            }
        })
        .collect();
    let new_users: Vec<NewUser> = (0..users)
        .map(|i| {
            let (first, last) = (FIRST[rng.below(16) as usize], LAST[rng.below(16) as usize]);
            NewUser {
                id: i as i64 + 1,
                name: format!("{first} {last}"),
                email: format!("{}.{}.{}@example.com", first, last, i + 1).to_lowercase(),
                order_count: totals[i].0,
                total_cents: totals[i].1,
            }
        })
        .collect();

    let total = users + orders;
    let mut done = 0;
    for chunk in new_users.chunks(ROWS_PER_TRANSACTION) {
        conn.transaction(|conn| {
            for rows in chunk.chunks(ROWS_PER_INSERT) {
                diesel::insert_into(users::table)
                    .values(rows)
                    .execute(conn)?;
            }
            QueryResult::Ok(())
        })?;
        done += chunk.len();
        progress(done, total);
    }
    for chunk in new_orders.chunks(ROWS_PER_TRANSACTION) {
        conn.transaction(|conn| {
            for rows in chunk.chunks(ROWS_PER_INSERT) {
                diesel::insert_into(orders::table)
                    .values(rows)
                    .execute(conn)?;
            }
            QueryResult::Ok(())
        })?;
        done += chunk.len();
        progress(done, total);
    }
    conn.batch_execute("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// `path` as an SQL string literal.
fn sql_string(path: &Path) -> String {
    let path = path.to_str().expect("database path is UTF-8");
    format!("'{}'", path.replace('\'', "''"))
}

/// Copies the database at `from` to a new file `to` (so each run starts from the same data).
pub fn copy_database(from: &Path, to: &Path) -> QueryResult<()> {
    let mut conn = connect(from);
    conn.batch_execute(&format!("VACUUM INTO {}", sql_string(to)))?;
    connect(to).batch_execute("PRAGMA journal_mode = WAL")
}

/// Puts the database at `path` back to the contents of the database at `seeded`, in one
/// transaction, while connections to `path` stay open (the `DATA` pool keeps its own).
pub fn reset_database(path: &Path, seeded: &Path) -> QueryResult<()> {
    let mut conn = connect(path);
    conn.batch_execute(&format!("ATTACH DATABASE {} AS seeded", sql_string(seeded)))?;
    conn.immediate_transaction(|conn| {
        conn.batch_execute(
            "DELETE FROM orders;
             DELETE FROM users;
             INSERT INTO users SELECT * FROM seeded.users;
             INSERT INTO orders SELECT * FROM seeded.orders;",
        )
    })?;
    conn.batch_execute("DETACH DATABASE seeded; PRAGMA wal_checkpoint(TRUNCATE);")
}

/// A fingerprint of the whole database: every user row, and the orders' count and sums.
/// Two runs that made the same writes, in any order, have the same fingerprint.
pub fn fingerprint(conn: &mut SqliteConnection) -> QueryResult<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    users::table
        .order(users::id)
        .select(User::as_select())
        .load(conn)?
        .hash(&mut h);
    let (n, amount): (i64, Option<i64>) = orders::table
        .select((count(orders::id), sum(orders::amount_cents)))
        .first(conn)?;
    (n, amount).hash(&mut h);
    // Which user got which orders, ignoring the ids (assigned in commit order).
    orders::table
        .order((orders::user_id, orders::placed_at, orders::amount_cents))
        .select((orders::user_id, orders::amount_cents, orders::placed_at))
        .load::<(i64, i32, i64)>(conn)?
        .hash(&mut h);
    Ok(h.finish())
}
