//! Per-function figures of `#[offload]` functions (`offthread::function_metrics`), and the
//! names `Pool::shutdown` gives the bodies still running.

#![deny(warnings)]
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::LazyLock;
use std::task::Context;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use offthread::{offload, FunctionMetrics, Pool};

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("metrics").build());

fn figures_of(suffix: &str) -> FunctionMetrics {
    offthread::function_metrics()
        .into_iter()
        .find(|m| m.name.ends_with(suffix))
        .unwrap_or_else(|| panic!("no figures for {suffix}"))
}

/// Waits (bounded) until `cond` holds; not a timing assertion.
fn eventually(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "gave up waiting");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// Generous: with RUST_BACKTRACE set, the panic hook of a call that panics takes tens of
// milliseconds on its worker, and only the slow call below may time out.
#[offload(pool = POOL, timeout = "500ms")]
fn measured(millis: u64, fail: bool) -> std::io::Result<u64> {
    assert!(!fail, "asked to fail");
    std::thread::sleep(Duration::from_millis(millis));
    Ok(millis)
}

#[test]
fn every_call_of_an_offloaded_function_is_counted_in_its_own_figures() {
    assert_eq!(block_on(measured(2, false)).unwrap(), 2);
    assert_eq!(block_on(measured(1, false)).unwrap(), 1);
    // A panic.
    let panicked = std::panic::catch_unwind(|| block_on(measured(0, true)));
    assert!(panicked.is_err(), "{panicked:?}");
    // A timeout: the body runs on past it.
    let err = block_on(measured(600, false)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // Dropped after one poll, while queued or running.
    let mut dropped = measured(5, false);
    let waker = futures::task::noop_waker();
    assert!(Pin::new(&mut dropped)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(dropped);
    // Dropped before its first poll: not a call.
    drop(measured(1, false));

    // The dropped call's body ran if a worker took it before the drop; either way, every
    // body that ran has ended once the pool has nothing running.
    eventually(|| POOL.metrics().running == 0 && POOL.metrics().queued == 0);
    let m = figures_of("macro_metrics::measured");
    assert_eq!(m.name, "macro_metrics::measured");
    assert_eq!(
        (m.calls, m.panicked, m.timeouts, m.cancelled),
        (5, 1, 1, 1),
        "{m:?}"
    );
    assert!((3..=4).contains(&m.completed), "{m:?}");
    assert!(m.run_time >= Duration::from_millis(600 + 2 + 1), "{m:?}");
    let line = m.to_string();
    assert!(
        line.starts_with("macro_metrics::measured: 5 calls"),
        "{line}"
    );
}

static RELEASE: AtomicBool = AtomicBool::new(false);

#[offload(pool = STUCK)]
fn stuck_in_a_slow_query() {
    let end = Instant::now() + Duration::from_secs(20);
    while !RELEASE.load(SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
}

static STUCK: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("stuck").build());

#[test]
fn shutdown_names_the_functions_still_running() {
    let mut call = stuck_in_a_slow_query();
    let waker = futures::task::noop_waker();
    assert!(Pin::new(&mut call)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    eventually(|| STUCK.metrics().running == 1);
    let report = STUCK.shutdown(Duration::from_millis(20));
    RELEASE.store(true, SeqCst);
    assert_eq!(report.still_running, 1);
    assert_eq!(
        report.still_running_in,
        ["macro_metrics::stuck_in_a_slow_query"]
    );
    block_on(call);
}

#[derive(Clone)]
struct Inventory {
    items: u64,
}

#[offload(pool = POOL)]
impl Inventory {
    fn count(&self) -> u64 {
        self.items
    }
}

#[offload]
trait Ledger: Send + Sync {
    fn balance(&self) -> i64;
}

#[derive(Clone)]
struct Books;

#[offload(pool = POOL)]
impl Ledger for Books {
    fn balance(&self) -> i64 {
        -7
    }
}

#[offload(pool = POOL)]
fn count() -> u64 {
    0
}

#[test]
fn methods_of_an_impl_block_are_named_after_their_type() {
    assert_eq!(block_on(Inventory { items: 3 }.count()), 3);
    let books: &dyn Ledger = &Books;
    assert_eq!(block_on(books.balance()), -7);
    assert_eq!(block_on(count()), 0);
    // A free function and a method of the same name keep figures of their own.
    assert_eq!(
        figures_of("::Inventory::count").name,
        "macro_metrics::Inventory::count"
    );
    assert_eq!(
        figures_of("::Books::balance").name,
        "macro_metrics::Books::balance"
    );
    assert_eq!(figures_of("macro_metrics::count").calls, 1);
    assert_eq!(figures_of("::Inventory::count").calls, 1);
}
