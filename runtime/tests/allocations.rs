//! A call whose closure captures a few words costs at most one heap allocation of at most
//! 64 bytes: the job that holds the body, its result and the waker.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed, counted all the time.
static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's allocations count while `COUNTING`: the test's own thread and the
    /// workers of the pool under test (set by its `on_thread_start`), not the threads of
    /// pools that other tests in this binary left behind.
    static HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted_here() -> bool {
    HERE.try_with(std::cell::Cell::get).unwrap_or(false)
}

// The library forbids `unsafe`; counting allocations needs a `GlobalAlloc`, an unsafe
// trait, so this test (only) allows it. It only forwards to `System`.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), SeqCst);
        if COUNTING.load(SeqCst) && counted_here() {
            ALLOCS.fetch_add(1, SeqCst);
            BYTES.fetch_add(layout.size(), SeqCst);
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), SeqCst);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counters are global: one counting test at a time, each starting from zero.
fn counting_alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ALLOCS.store(0, SeqCst);
    BYTES.store(0, SeqCst);
    guard
}

#[test]
fn one_allocation_per_call() {
    let _alone = counting_alone();
    HERE.set(true);
    let pool = offthread_runtime::Pool::builder()
        .max_threads(2)
        .on_thread_start(|| HERE.set(true))
        .build();
    let (a, b, c) = (1u64, 2u64, 3u64);
    // Warm up: both threads (two bodies that wait for each other), thread-locals and the
    // queue's buffers exist after this. (A thread started while counting would count its
    // own allocations: a submit that finds no worker spinning or parked starts one.)
    let both = std::sync::Arc::new(std::sync::Barrier::new(2));
    let pair = (0..2).map(|_| {
        let both = std::sync::Arc::clone(&both);
        pool.spawn(move || {
            both.wait();
        })
    });
    futures::executor::block_on(futures::future::join_all(pair));
    for _ in 0..2_000 {
        futures::executor::block_on(pool.spawn(move || a + b + c));
    }
    assert_eq!(pool.metrics().threads, 2);
    const CALLS: usize = 10_000;
    ALLOCS.store(0, SeqCst);
    BYTES.store(0, SeqCst);
    COUNTING.store(true, SeqCst);
    for i in 0..CALLS as u64 {
        let v = futures::executor::block_on(pool.spawn(move || a + b + c + i));
        assert_eq!(v, 6 + i);
    }
    COUNTING.store(false, SeqCst);
    let allocs = ALLOCS.load(SeqCst);
    let bytes = BYTES.load(SeqCst);
    eprintln!(
        "{allocs} allocations, {} bytes per call",
        bytes as f64 / CALLS as f64
    );
    assert!(
        allocs <= CALLS,
        "{allocs} allocations for {CALLS} calls: more than one per call"
    );
    // The job: a state word, the waker, the `limit` pointer, and a slot that holds the
    // four-word body, then its result. (With the `tracing` feature, which the workspace's
    // tests turn on, a call made inside a span also carries that span; there is none here.)
    if cfg!(target_pointer_width = "64") {
        assert!(
            bytes <= 64 * CALLS,
            "{} bytes per call, more than 64",
            bytes as f64 / CALLS as f64
        );
    }
}

#[test]
fn a_call_waiting_for_a_queue_slot_holds_little_memory() {
    let _alone = counting_alone();
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;
    // One slot, taken by a body that waits on a channel; every later call waits for it.
    HERE.set(true);
    let pool = offthread_runtime::Pool::builder()
        .on_thread_start(|| HERE.set(true))
        .max_threads(1)
        .queue_capacity(1)
        .build();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut holder = pool.spawn(move || rx.recv().is_ok());
    assert!(Pin::new(&mut holder).poll(&mut cx).is_pending());
    let mut queued = pool.spawn(|| true);
    assert!(Pin::new(&mut queued).poll(&mut cx).is_pending());
    const WAITING: usize = 10_000;
    let mut calls = Vec::with_capacity(WAITING);
    COUNTING.store(true, SeqCst);
    for _ in 0..WAITING {
        let mut call = pool.spawn(|| true);
        assert!(Pin::new(&mut call).poll(&mut cx).is_pending());
        calls.push(call);
    }
    COUNTING.store(false, SeqCst);
    let per_call = BYTES.load(SeqCst) / WAITING + std::mem::size_of_val(&calls[0]);
    eprintln!("{per_call} bytes per call waiting for a queue slot (future included)");
    // The job (64 B), the slot waiter (about 50 B) and its map entry, the future.
    assert!(per_call <= 512, "{per_call} bytes per waiting call");
    assert!(pool.metrics().queued <= 1);
    drop(calls);
    tx.send(()).unwrap();
    assert!(futures::executor::block_on(holder));
    assert!(futures::executor::block_on(queued));
}

#[test]
fn memory_returns_to_where_it_was_after_a_burst() {
    let _alone = counting_alone();
    burst_leaves_nothing(offthread_runtime::Pool::builder().max_threads(2).build());
    // Bounded: most of the burst waits for a queue slot instead of sitting in the queue.
    burst_leaves_nothing(
        offthread_runtime::Pool::builder()
            .max_threads(2)
            .queue_capacity(64)
            .build(),
    );
}

fn burst_leaves_nothing(pool: offthread_runtime::Pool) {
    let burst = |n: u64| {
        let calls: Vec<_> = (0..n).map(|i| pool.spawn(move || i)).collect();
        let sum: u64 = futures::executor::block_on(futures::future::join_all(calls))
            .into_iter()
            .sum();
        assert_eq!(sum, n * (n - 1) / 2);
    };
    // Warm up threads and thread-locals, then measure around a burst big enough to queue
    // a hundred thousand calls at once.
    burst(1_000);
    let before = LIVE.load(SeqCst);
    burst(100_000);
    let after = LIVE.load(SeqCst);
    let kept = after.saturating_sub(before);
    eprintln!("{kept} bytes still held after a burst of 100 000 calls");
    assert!(kept < 256 << 10, "{kept} bytes kept after the burst");
}
