//! `#[local]` parameters: a per-worker resource registered with
//! `Builder::worker_local`, which callers never pass. Each behaviour is observed through a
//! `Counter` that knows which value it is (`id`) and how often it was used (`calls`), under
//! tokio and under `futures::executor::block_on`.

#![deny(warnings)]
#![allow(missing_docs)]

use offthread::{offload, Pool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The per-worker resource: stands for a database connection.
pub struct Counter {
    id: usize,
    calls: u32,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl Counter {
    fn open() -> Counter {
        Counter {
            id: NEXT_ID.fetch_add(1, Ordering::SeqCst),
            calls: 0,
        }
    }
}

/// A pool of `threads` workers, each with its own `Counter`, that keep it for the whole test.
fn pool_with_counter(name: &str, threads: usize) -> Pool {
    Pool::builder()
        .name(name)
        .max_threads(threads)
        .keep_alive(Duration::from_secs(600))
        .worker_local(Counter::open)
        .build()
}

// ---- a worker reuses its resource ----

static ONE: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("one", 1));

/// The worker's counter, after this call: `(id, calls)`.
#[offload(pool = ONE)]
fn bump(#[local] counter: &mut Counter) -> (usize, u32) {
    counter.calls += 1;
    (counter.id, counter.calls)
}

#[tokio::test]
async fn a_worker_reuses_its_resource_across_calls() {
    let (id, first) = bump().await;
    for expected in first + 1..first + 4 {
        assert_eq!(bump().await, (id, expected));
    }
    // And under another executor, the same worker still has the same value.
    let (again, calls) = futures::executor::block_on(bump());
    assert_eq!((again, calls), (id, first + 4));
}

// ---- two workers have two ----

static TWO: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("two", 2));
static ARRIVED: AtomicUsize = AtomicUsize::new(0);

/// Waits (at most 5 s) until two bodies are running at once, so they run on two workers.
#[offload(pool = TWO)]
fn id_while_both_run(#[local] counter: &mut Counter) -> usize {
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ARRIVED.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    counter.id
}

#[test]
fn two_workers_have_two_resources() {
    let (a, b) = futures::executor::block_on(futures::future::join(
        id_while_both_run(),
        id_while_both_run(),
    ));
    assert_eq!(ARRIVED.load(Ordering::SeqCst), 2);
    assert_ne!(
        a, b,
        "two calls running at once shared one worker-local value"
    );
}

// ---- `&T` ----

static SHARED: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("shared", 1));

#[offload(pool = SHARED)]
fn add(#[local] counter: &mut Counter, n: u32) {
    counter.calls += n;
}

/// `&T` gives the body a shared borrow of the same value.
#[offload(pool = SHARED)]
fn calls(#[local] counter: &Counter) -> u32 {
    counter.calls
}

#[tokio::test]
async fn a_shared_local_sees_the_value_the_mutable_one_changed() {
    let before = calls().await;
    add(5).await;
    add(2).await;
    assert_eq!(calls().await, before + 7);
}

// ---- with the options, anywhere in the parameter list, on a method ----

#[derive(Debug)]
pub enum AppError {
    Offload(offthread::Error),
}

impl From<offthread::Error> for AppError {
    fn from(err: offthread::Error) -> Self {
        AppError::Offload(err)
    }
}

static OPTIONS: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("options", 2));
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Every option at once, with the local between two ordinary parameters. (Only the calls of
/// the limit test count as running: the sync twin's test runs the same body meanwhile.)
#[offload(pool = OPTIONS, limit = 1, timeout = "10s", sync = add_blocking, crate = ::offthread)]
fn add_limited(
    by: u32,
    #[local] mut counter: &mut Counter,
    label: &str,
) -> Result<String, AppError> {
    let counted = label == "n=";
    if counted {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
    }
    counter.calls += by;
    counter = &mut *counter; // `mut` on the pattern is kept
    if counted {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
    Ok(format!("{label}{}", counter.calls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_works_with_limit_timeout_and_crate() {
    let label = String::from("n=");
    let calls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(add_limited(1, &label)))
        .collect();
    drop(label); // the calls copied it
    for call in calls {
        assert!(call.await.unwrap().unwrap().starts_with("n="));
    }
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 1);
}

#[test]
fn the_sync_twin_takes_the_local_as_an_ordinary_parameter() {
    let mut mine = Counter { id: 99, calls: 1 };
    let out = add_blocking(2, &mut mine, "calls: ").unwrap();
    assert_eq!(out, "calls: 3");
    assert_eq!(mine.calls, 3);
}

static SLOW: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("slow", 1));

#[offload(pool = SLOW, timeout = "50ms")]
fn slow(#[local] counter: &mut Counter) -> Result<usize, AppError> {
    std::thread::sleep(Duration::from_millis(300));
    Ok(counter.id)
}

#[tokio::test]
async fn a_local_call_times_out_like_any_other() {
    match slow().await {
        Err(AppError::Offload(err)) => assert!(err.is_timeout(), "{err}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[derive(Clone)]
struct Repo {
    table: String,
}

static METHODS: LazyLock<Pool> = LazyLock::new(|| pool_with_counter("methods", 1));

impl Repo {
    /// `&self` is copied as usual; the local comes from the worker.
    #[offload(pool = METHODS)]
    fn describe(&self, #[local] counter: &Counter, key: &str) -> String {
        format!("{}[{key}] on counter {}", self.table, counter.id)
    }
}

#[test]
fn a_method_with_self_and_a_local() {
    let repo = Repo {
        table: "users".to_owned(),
    };
    let first = futures::executor::block_on(repo.describe("7"));
    assert!(first.starts_with("users[7] on counter "), "{first}");
    // One worker: the second call gets the same counter.
    assert_eq!(futures::executor::block_on(repo.describe("7")), first);
}

// ---- a pool without the resource ----

static BARE: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("bare").build());

#[offload(pool = BARE)]
fn on_bare(#[local] counter: &mut Counter) -> usize {
    counter.id
}

fn names_the_type_and_the_pool(message: &str) {
    assert!(message.contains("Counter"), "{message}");
    assert!(message.contains("`bare`"), "{message}");
    assert!(message.contains("worker_local"), "{message}");
}

#[tokio::test]
async fn a_pool_without_the_resource_fails_the_call_with_an_error_naming_both() {
    let err = on_bare().checked().await.unwrap_err();
    assert!(
        !err.is_panic() && !err.is_timeout() && !err.is_shutdown(),
        "{err:?}"
    );
    names_the_type_and_the_pool(&err.to_string());
    // The pool is still fine for calls that need no resource.
    assert_eq!(BARE.spawn(|| 3).await, 3);
}

#[test]
fn a_pool_without_the_resource_panics_a_plain_await_with_that_message() {
    let payload = std::panic::catch_unwind(|| futures::executor::block_on(on_bare())).unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("a panic message");
    names_the_type_and_the_pool(&message);
}

// ---- init that panics ----

static FAIL_NEXT_INIT: AtomicBool = AtomicBool::new(true);

static FLAKY: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name("flaky")
        .max_threads(1)
        .worker_local(|| {
            if FAIL_NEXT_INIT.swap(false, Ordering::SeqCst) {
                panic!("cannot connect");
            }
            Counter::open()
        })
        .build()
});

#[offload(pool = FLAKY)]
fn on_flaky(#[local] counter: &mut Counter) -> u32 {
    counter.calls += 1;
    counter.calls
}

#[tokio::test]
async fn init_panicking_fails_only_that_call() {
    let err = on_flaky().checked().await.unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert_eq!(on_flaky().await, 1);
    assert_eq!(on_flaky().await, 2);
}

// ---- init that returns an error ----

static DOWN: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name("down")
        .max_threads(1)
        .try_worker_local(|| {
            Err::<Counter, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))
        })
        .build()
});

/// Its error type takes `offthread::Error`: a failed connect is its `Err`.
#[offload(pool = DOWN)]
fn on_down(#[local] counter: &mut Counter) -> Result<usize, AppError> {
    Ok(counter.id)
}

/// `std::io::Result` takes it too.
#[offload(pool = DOWN)]
fn on_down_io(#[local] counter: &Counter) -> std::io::Result<usize> {
    Ok(counter.id)
}

/// A plain value cannot hold it: the call panics in the awaiting task, with the error.
#[offload(pool = DOWN)]
fn on_down_plain(#[local] counter: &mut Counter) -> usize {
    counter.id
}

/// Generic over its error: offthread cannot tell whether `E` takes its error, so it panics.
#[offload(pool = DOWN)]
fn on_down_generic<E: Send + 'static>(#[local] counter: &mut Counter) -> Result<usize, E> {
    Ok(counter.id)
}

#[tokio::test]
async fn a_failed_connect_is_the_functions_own_error_where_its_type_takes_one() {
    use std::error::Error as _;
    match on_down().await {
        Err(AppError::Offload(err)) => {
            assert!(err.is_local_init(), "{err}");
            assert_eq!(err.source().unwrap().to_string(), "connection refused");
        }
        other => panic!("expected the connect's error, got {other:?}"),
    }
    let io = on_down_io().await.unwrap_err();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert!(io.to_string().contains("connection refused"), "{io}");
    let err = on_down_plain().checked().await.unwrap_err();
    assert!(err.is_local_init(), "{err}");
    let plain = tokio::spawn(on_down_plain()).await.unwrap_err();
    assert!(plain.is_panic());
    let generic = tokio::spawn(on_down_generic::<String>()).await.unwrap_err();
    assert!(generic.is_panic());
}
