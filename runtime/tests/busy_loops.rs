//! Busy loops do not multiply threads: bodies that compute get a thread per 5 ms the queue
//! stands still, not one per call. In a file of its own, so that no other test's threads
//! compete for the cores while it runs (starved of CPU, any pool's queue stands still).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use offthread_runtime::Pool;

#[test]
fn busy_loops_do_not_multiply_threads() {
    // 64 callers of 5 ms busy loops: the cores are the limit, not the threads.
    let pool = Pool::builder().max_threads(512).build();
    let peak = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let (pool, peak) = (pool.clone(), Arc::clone(&peak));
            async move {
                for _ in 0..4 {
                    pool.spawn(|| {
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_millis(5) {
                            std::hint::spin_loop();
                        }
                    })
                    .await;
                    peak.fetch_max(pool.metrics().threads, SeqCst);
                }
            }
        })
        .collect();
    block_on(futures::future::join_all(calls));
    let peak = peak.load(SeqCst);
    eprintln!("64 callers of 5 ms busy loops peaked at {peak} threads");
    assert!(
        peak <= 32,
        "{peak} threads for 64 busy loops: {:?}",
        pool.metrics()
    );
}
