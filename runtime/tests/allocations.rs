//! A call whose closure captures a few words costs at most one heap allocation: the job
//! that holds the body, its result and the waker (TARGETS.md, target 4).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// The library forbids `unsafe`; counting allocations needs a `GlobalAlloc`, an unsafe
// trait, so this test (only) allows it. It only forwards to `System`.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(SeqCst) {
            ALLOCS.fetch_add(1, SeqCst);
            BYTES.fetch_add(layout.size(), SeqCst);
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn one_allocation_per_call() {
    let pool = offthread_runtime::Pool::builder().max_threads(2).build();
    let (a, b, c) = (1u64, 2u64, 3u64);
    // Warm up: threads, thread-locals and the queue's buffers exist after this.
    for _ in 0..2_000 {
        futures::executor::block_on(pool.spawn(move || a + b + c));
    }
    const CALLS: usize = 10_000;
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
}
