//! The options of `#[offload(..)]`, each observed by its effect: `limit` bounds the bodies
//! running at once, `timeout` fires on a slow body only (`timeout_error` shapes its error), `pool`
//! picks the threads, `sync` keeps a blocking twin callable without any executor.

#![deny(warnings)]
#![allow(missing_docs)]

use offthread::{offload, Pool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

// ---- limit ----

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[offload(limit = 2)]
fn limited(i: usize) -> usize {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_2_with_8_concurrent_calls_never_runs_more_than_2_bodies() {
    let calls: Vec<_> = (0..8).map(|i| tokio::spawn(limited(i))).collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    assert_eq!(results, (0..8).collect::<Vec<_>>());
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 2);
}

static SHARED_RUNNING: AtomicUsize = AtomicUsize::new(0);
static SHARED_MOST: AtomicUsize = AtomicUsize::new(0);
const ONE: usize = 1;

struct Worker;

impl Worker {
    /// `limit` takes a constant expression, and the limit is shared by every caller and every
    /// instance: it belongs to the function.
    #[offload(limit = ONE)]
    fn step(&self) {
        let now = SHARED_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        SHARED_MOST.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(10));
        SHARED_RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clone for Worker {
    fn clone(&self) -> Self {
        Worker
    }
}

#[test]
fn limit_is_shared_across_instances_and_accepts_a_const() {
    let calls: Vec<_> = (0..4).map(|_| Worker.step()).collect();
    futures::executor::block_on(futures::future::join_all(calls));
    assert_eq!(SHARED_MOST.load(Ordering::SeqCst), 1);
}

// ---- timeout ----

#[derive(Debug)]
pub enum AppError {
    Offload(offthread::Error),
}

impl From<offthread::Error> for AppError {
    fn from(err: offthread::Error) -> Self {
        AppError::Offload(err)
    }
}

#[offload(timeout = "100ms")]
fn sleepy(ms: u64) -> Result<u64, AppError> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

#[tokio::test(flavor = "current_thread")]
async fn timeout_fires_on_a_slow_body() {
    let started = Instant::now();
    let AppError::Offload(err) = sleepy(2_000).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_does_not_fire_on_a_fast_body() {
    assert_eq!(sleepy(1).await.unwrap(), 1);
}

static SAW_CANCEL: AtomicUsize = AtomicUsize::new(0);

#[offload(timeout = "50ms")]
fn watches_cancellation() -> Result<(), AppError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if offthread::is_cancelled() {
            SAW_CANCEL.fetch_add(1, Ordering::SeqCst);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[test]
fn a_running_body_sees_is_cancelled_after_its_timeout() {
    let result = futures::executor::block_on(watches_cancellation());
    assert!(matches!(result, Err(AppError::Offload(ref e)) if e.is_timeout()));
    let deadline = Instant::now() + Duration::from_secs(2);
    while SAW_CANCEL.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(SAW_CANCEL.load(Ordering::SeqCst), 1);
}

mod app {
    /// A `Result` alias: `timeout` accepts any return type spelled `..::Result<..>`.
    pub type Result<T> = std::result::Result<T, super::AppError>;
}

#[offload(timeout = "1s")]
fn alias_result(fail: bool) -> app::Result<u8> {
    if fail {
        return Err(AppError::Offload(
            futures::executor::block_on(offthread::spawn(|| panic!("boom")).checked()).unwrap_err(),
        ));
    }
    Ok(1)
}

#[test]
fn timeout_works_with_a_result_alias_whose_error_converts() {
    assert_eq!(futures::executor::block_on(alias_result(false)).unwrap(), 1);
    let Err(AppError::Offload(err)) = futures::executor::block_on(alias_result(true)) else {
        panic!("expected the body's error");
    };
    assert!(err.is_panic());
}

#[offload(timeout = "20ms")]
fn slow_io(ms: u64) -> std::io::Result<u64> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

#[test]
fn timeout_works_on_io_result_and_gives_timed_out() {
    assert_eq!(futures::executor::block_on(slow_io(0)).unwrap(), 0);
    let err = futures::executor::block_on(slow_io(500)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

// ---- timeout_error: a foreign error type with no `From<offthread::Error>` ----

/// Diesel's error cannot implement `From<offthread::Error>` (both are foreign here): a
/// timeout becomes one of its variants through a function named in the attribute.
fn to_diesel(err: offthread::Error) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(Box::new(err))
}

#[offload(timeout = "30ms", timeout_error = to_diesel)]
fn slow_query(ms: u64) -> diesel::QueryResult<u64> {
    std::thread::sleep(Duration::from_millis(ms));
    if ms == 1 {
        return Err(diesel::result::Error::NotFound);
    }
    Ok(ms)
}

fn timed_out(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::QueryBuilderError(inner)
        if inner.downcast_ref::<offthread::Error>().is_some_and(offthread::Error::is_timeout))
}

#[test]
fn timeout_error_converts_a_timeout_into_a_foreign_error_type() {
    assert_eq!(futures::executor::block_on(slow_query(0)).unwrap(), 0);
    let err = futures::executor::block_on(slow_query(1)).unwrap_err();
    assert!(
        matches!(err, diesel::result::Error::NotFound),
        "the body's own error: {err}"
    );
    let err = futures::executor::block_on(slow_query(1_000)).unwrap_err();
    assert!(timed_out(&err), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_error_works_under_tokio_and_with_a_closure() {
    #[offload(timeout = "30ms", timeout_error = |e: offthread::Error| e.to_string())]
    fn slow(ms: u64) -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    }
    assert_eq!(slow(0).await, Ok(0));
    let err = slow(1_000).await.unwrap_err();
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    assert!(timed_out(&slow_query(1_000).await.unwrap_err()));
}

// ---- pool ----

static DB: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("macro-db").build());

#[offload(pool = DB)]
fn on_db() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

fn other_pool() -> &'static Pool {
    static OTHER: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("macro-other").build());
    &OTHER
}

#[offload(pool = other_pool())]
fn on_other() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

struct Service {
    pool: Pool,
}

impl Clone for Service {
    fn clone(&self) -> Self {
        Service {
            pool: self.pool.clone(),
        }
    }
}

#[offload(pool = &PER_CALL)]
fn on_ref_expression() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

static PER_CALL: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("macro-ref").build());

impl Service {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    #[offload]
    fn default_pool_thread(&self) -> Option<String> {
        let _ = self.pool();
        std::thread::current().name().map(str::to_owned)
    }
}

fn name_starts(name: Option<String>, prefix: &str) -> bool {
    name.is_some_and(|n| n.starts_with(&format!("{prefix}-")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_db_runs_on_db_named_threads() {
    assert!(name_starts(on_db().await, "macro-db"));
    assert!(name_starts(on_other().await, "macro-other"));
    assert!(name_starts(on_ref_expression().await, "macro-ref"));
    let service = Service {
        pool: Pool::builder().name("unused").build(),
    };
    let default = service.default_pool_thread().await;
    assert!(!name_starts(default.clone(), "macro-db"), "{default:?}");
    assert!(!name_starts(default, "unused"));
}

// ---- sync ----

/// The blocking twin is the original function, under another name.
#[offload(sync = word_count_blocking)]
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

struct Doc(String);

impl Clone for Doc {
    fn clone(&self) -> Self {
        Doc(self.0.clone())
    }
}

impl Doc {
    #[offload(sync = len_blocking, limit = 3)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[test]
fn sync_is_callable_without_any_executor() {
    assert_eq!(word_count_blocking("a b c"), 3);
    let doc = Doc("four".into());
    assert_eq!(doc.len_blocking(), 4);
    // The offloaded one still exists next to it.
    assert_eq!(futures::executor::block_on(word_count("a b")), 2);
    assert_eq!(futures::executor::block_on(doc.len()), 4);
}

// ---- all together ----

#[offload(pool = DB, limit = 2, timeout = "2s", sync = together_blocking)]
pub fn together(name: &str, n: u32) -> Result<String, AppError> {
    Ok(format!(
        "{name}{n}@{}",
        std::thread::current().name().unwrap_or("?")
    ))
}

#[test]
fn options_combine() {
    let out = futures::executor::block_on(together("x", 1)).unwrap();
    assert!(out.starts_with("x1@macro-db-"), "{out}");
    assert!(together_blocking("y", 2).unwrap().starts_with("y2@"));
}

// ---- limit: the permit outlives a dropped caller ----

static HELD_RUNNING: AtomicUsize = AtomicUsize::new(0);
static HELD_OVERLAP: AtomicUsize = AtomicUsize::new(0);
static HELD_STARTED: AtomicUsize = AtomicUsize::new(0);

#[offload(limit = 1)]
fn holds_permit(ms: u64) {
    if HELD_RUNNING.fetch_add(1, Ordering::SeqCst) > 0 {
        HELD_OVERLAP.fetch_add(1, Ordering::SeqCst);
    }
    HELD_STARTED.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(ms));
    HELD_RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permit_is_held_until_the_body_returns_even_if_the_caller_is_gone() {
    let first = tokio::spawn(holds_permit(200));
    while HELD_STARTED.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.abort(); // the caller goes away while its body runs
    let started = Instant::now();
    holds_permit(1).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(HELD_OVERLAP.load(Ordering::SeqCst), 0);
    assert_eq!(HELD_STARTED.load(Ordering::SeqCst), 2);
}
