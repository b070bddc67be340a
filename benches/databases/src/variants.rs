//! The ways of serving a request, each with `CONNECTIONS` connections to the server.

use std::sync::{Arc, Barrier, LazyLock, OnceLock};
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::ConnectionManager;
use diesel::{Connection, QueryResult};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncPgConnection;
use offthread::{offload, Pool};

use crate::db::{Answer, Order, Placed, Request, TopCustomer, User};
use crate::queries;

/// Connections each variant has (pool size, or offthread's threads).
pub const CONNECTIONS: usize = 8;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Diesel called in the async task, on a connection checked out of r2d2 in the task.
    Inline,
    /// `tokio::task::spawn_blocking`, checking a connection out of r2d2 in the closure.
    SpawnBlocking { check: bool },
    /// deadpool-diesel: `pool.get().await`, then `conn.interact(..)`.
    Deadpool { check: bool },
    /// diesel-async's `AsyncPgConnection` from its deadpool pool.
    DieselAsync { check: bool },
    /// offthread: `#[offload]` functions on a pool whose workers hold a connection each.
    Offthread,
}

pub const ALL: [Variant; 8] = [
    Variant::Offthread,
    Variant::Inline,
    Variant::SpawnBlocking { check: true },
    Variant::SpawnBlocking { check: false },
    Variant::Deadpool { check: true },
    Variant::Deadpool { check: false },
    Variant::DieselAsync { check: true },
    Variant::DieselAsync { check: false },
];

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Offthread => "offthread #[offload]",
            Variant::Inline => "inline + r2d2",
            Variant::SpawnBlocking { check: true } => "spawn_blocking + r2d2, check",
            Variant::SpawnBlocking { check: false } => "spawn_blocking + r2d2, no check",
            Variant::Deadpool { check: true } => "deadpool-diesel, Verified",
            Variant::Deadpool { check: false } => "deadpool-diesel, Fast",
            Variant::DieselAsync { check: true } => "diesel-async, Verified",
            Variant::DieselAsync { check: false } => "diesel-async, Fast",
        }
    }
}

// ---------------------------------------------------------------------------------------
// offthread: the pool and the offloaded queries

/// The server the offthread pool's workers connect to; set once by [`use_database`].
static DATABASE_URL: OnceLock<String> = OnceLock::new();

pub fn use_database(url: &str) {
    DATABASE_URL
        .set(url.to_owned())
        .expect("use_database is called once");
}

/// The prefix of the offthread pool's thread names (other variants' thread counts leave
/// these idle threads out).
pub const OFFTHREAD_NAME: &str = "offthread-pg";

/// Eight workers, each holding its own `PgConnection` (opened the first time a query runs
/// there): no checkout, no test query, no connection shared between threads. The pool
/// lives for the whole process, as it would in a service.
pub static PG: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name(OFFTHREAD_NAME)
        .min_threads(CONNECTIONS)
        .max_threads(CONNECTIONS)
        .worker_local(|| {
            let url = DATABASE_URL
                .get()
                .expect("call variants::use_database first");
            PgConnection::establish(url).unwrap_or_else(|e| panic!("connect: {e}"))
        })
        .build()
});

#[offload(pool = PG)]
fn read_user(
    #[local] conn: &mut PgConnection,
    user_id: i64,
) -> QueryResult<(Option<User>, Vec<Order>)> {
    queries::read_user(conn, user_id)
}

#[offload(pool = PG)]
fn place_order(
    #[local] conn: &mut PgConnection,
    user_id: i64,
    amount_cents: i32,
    placed_at: i64,
) -> QueryResult<Placed> {
    queries::place_order(conn, user_id, amount_cents, placed_at)
}

#[offload(pool = PG)]
fn top_customers(
    #[local] conn: &mut PgConnection,
    from: i64,
    to: i64,
    sleep: bool,
) -> QueryResult<Vec<TopCustomer>> {
    queries::top_customers(conn, from, to, sleep)
}

/// Holds a worker until `CONNECTIONS` of them do: every worker then has its connection.
#[offload(pool = PG)]
fn warm(#[local] _conn: &mut PgConnection, all: Arc<Barrier>) {
    all.wait();
}

async fn serve_offloaded(request: Request) -> QueryResult<Answer> {
    Ok(match request {
        Request::Read { user_id } => crate::db::digest(read_user(user_id).await?),
        Request::Write {
            user_id,
            amount_cents,
            placed_at,
        } => Answer::Write(place_order(user_id, amount_cents, placed_at).await?),
        Request::Report { from, to, sleep } => {
            crate::db::digest(top_customers(from, to, sleep).await?)
        }
    })
}

// ---------------------------------------------------------------------------------------
// A variant, set up for one round

type R2d2 = diesel::r2d2::Pool<ConnectionManager<PgConnection>>;

/// A variant's pool, opened (all `CONNECTIONS` connected) on the round's runtime.
pub enum Backend {
    Inline(R2d2),
    SpawnBlocking(R2d2),
    Deadpool(deadpool_diesel::postgres::Pool),
    DieselAsync(diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>),
    Offthread,
}

fn r2d2(url: &str, check: bool) -> Result<R2d2, Error> {
    // `build` returns once `min_idle` connections are open.
    Ok(diesel::r2d2::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .min_idle(Some(CONNECTIONS as u32))
        .test_on_check_out(check)
        .connection_timeout(Duration::from_secs(60))
        // No reaper: it is a job that reschedules itself on the pool's own three threads,
        // which then outlive the pool and would pile up from round to round.
        .idle_timeout(None)
        .max_lifetime(None)
        .build(ConnectionManager::new(url))?)
}

impl Backend {
    /// Opens `variant`'s pool with all its connections (called inside the round's runtime).
    pub async fn open(variant: Variant, url: &str) -> Result<Backend, Error> {
        Ok(match variant {
            // r2d2's default: `test_on_check_out(true)`, a `SELECT 1` per checkout.
            Variant::Inline => Backend::Inline(r2d2(url, true)?),
            Variant::SpawnBlocking { check } => Backend::SpawnBlocking(r2d2(url, check)?),
            Variant::Deadpool { check } => {
                use deadpool_diesel::{ManagerConfig, RecyclingMethod, Runtime};
                // deadpool-diesel's default is `Fast` (no query, only a check that no
                // transaction was left open); `Verified` runs `SELECT 1` per checkout.
                let config = ManagerConfig {
                    recycling_method: if check {
                        RecyclingMethod::Verified
                    } else {
                        RecyclingMethod::Fast
                    },
                };
                let manager =
                    deadpool_diesel::postgres::Manager::from_config(url, Runtime::Tokio1, config);
                let pool = deadpool_diesel::postgres::Pool::builder(manager)
                    .max_size(CONNECTIONS)
                    .build()?;
                let conns =
                    futures_util::future::try_join_all((0..CONNECTIONS).map(|_| pool.get()))
                        .await?;
                drop(conns);
                Backend::Deadpool(pool)
            }
            Variant::DieselAsync { check } => {
                use diesel_async::pooled_connection::{ManagerConfig, RecyclingMethod};
                // diesel-async's default is `Verified` (a `SELECT 1` per checkout).
                let mut config = ManagerConfig::default();
                config.recycling_method = if check {
                    RecyclingMethod::Verified
                } else {
                    RecyclingMethod::Fast
                };
                let manager =
                    AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                let pool = diesel_async::pooled_connection::deadpool::Pool::builder(manager)
                    .max_size(CONNECTIONS)
                    .build()?;
                let conns =
                    futures_util::future::try_join_all((0..CONNECTIONS).map(|_| pool.get()))
                        .await?;
                drop(conns);
                Backend::DieselAsync(pool)
            }
            Variant::Offthread => {
                let all = Arc::new(Barrier::new(CONNECTIONS));
                futures_util::future::join_all((0..CONNECTIONS).map(|_| warm(Arc::clone(&all))))
                    .await;
                Backend::Offthread
            }
        })
    }

    pub async fn serve(&self, request: Request) -> Result<Answer, Error> {
        Ok(match self {
            Backend::Inline(pool) => {
                // At most two tasks run at once (one per executor thread), so this never
                // waits for a connection; the queries stall the executor thread.
                let mut conn = pool.get()?;
                queries::serve(&mut conn, request)?
            }
            Backend::SpawnBlocking(pool) => {
                let pool = pool.clone();
                tokio::task::spawn_blocking(move || -> Result<Answer, Error> {
                    let mut conn = pool.get()?;
                    Ok(queries::serve(&mut conn, request)?)
                })
                .await??
            }
            Backend::Deadpool(pool) => {
                let conn = pool.get().await.map_err(|e| e.to_string())?;
                conn.interact(move |conn| queries::serve(conn, request))
                    .await
                    .map_err(|e| e.to_string())??
            }
            Backend::DieselAsync(pool) => {
                let mut conn = pool.get().await?;
                queries::nonblocking::serve(&mut conn, request).await?
            }
            Backend::Offthread => serve_offloaded(request).await?,
        })
    }
}
