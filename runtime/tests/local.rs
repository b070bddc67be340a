//! Per-worker resources (`Builder::worker_local`, the runtime side of `#[local]`).

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
use offthread_runtime::Pool;
use support::{eventually, Gate};

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A stand-in for a connection: which one it is, how often it was used.
struct Conn {
    id: usize,
    uses: usize,
    _dropped: DropCount,
}

/// A pool whose workers each make a `Conn`, counting how many were made and dropped.
fn conn_pool(max: usize) -> (Pool, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let made = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = {
        let (made, dropped) = (Arc::clone(&made), Arc::clone(&dropped));
        Pool::builder()
            .name("conns")
            .max_threads(max)
            .worker_local(move || Conn {
                id: made.fetch_add(1, SeqCst),
                uses: 0,
                _dropped: DropCount(Arc::clone(&dropped)),
            })
            .build()
    };
    (pool, made, dropped)
}

#[test]
fn a_worker_reuses_its_resource() {
    let (pool, made, _) = conn_pool(1);
    let uses: Vec<_> = (0..5)
        .map(|_| {
            block_on(pool.spawn_local(|c: &mut Conn| {
                c.uses += 1;
                (c.id, c.uses)
            }))
        })
        .collect();
    assert_eq!(uses, vec![(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);
    assert_eq!(made.load(SeqCst), 1);
}

#[test]
fn two_workers_have_two_resources_dropped_when_the_workers_exit() {
    let (pool, made, dropped) = conn_pool(2);
    let gate = Gate::default();
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (gate, ids) = (gate.clone(), Arc::clone(&ids));
            pool.spawn_local(move |c: &mut Conn| {
                ids.lock().unwrap().insert(c.id);
                gate.wait();
            })
        })
        .collect();
    let driver = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    eventually("both bodies hold a connection", || {
        ids.lock().unwrap().len() == 2
    });
    gate.open();
    driver.join().unwrap();
    assert_eq!(made.load(SeqCst), 2);
    assert_eq!(dropped.load(SeqCst), 0, "kept while the workers live");
    pool.shutdown(Duration::from_secs(5));
    eventually("each worker drops its connection as it exits", || {
        dropped.load(SeqCst) == 2
    });
}

#[test]
fn a_panicking_init_fails_only_that_call_and_the_next_retries() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let pool = {
        let attempts = Arc::clone(&attempts);
        Pool::builder()
            .max_threads(1)
            .worker_local(move || {
                if attempts.fetch_add(1, SeqCst) == 0 {
                    panic!("database is starting up");
                }
                7_u32
            })
            .build()
    };
    let first = block_on(pool.spawn_local(|n: &mut u32| *n).checked()).unwrap_err();
    assert!(first.is_panic());
    assert!(first.to_string().contains("starting up"), "{first}");
    assert_eq!(block_on(pool.spawn_local(|n: &mut u32| *n)), 7);
    assert_eq!(block_on(pool.spawn_local(|n: &mut u32| *n)), 7);
    assert_eq!(
        attempts.load(SeqCst),
        2,
        "made once after the failure, then reused"
    );
}

#[test]
fn a_pool_without_the_resource_fails_the_call_naming_type_and_pool() {
    let pool = Pool::builder().name("plain").build();
    let err = block_on(pool.spawn_local(|c: &mut Conn| c.id).checked()).unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_panic() && !err.is_shutdown() && !err.is_timeout());
    assert!(
        msg.contains("local::Conn") && msg.contains("`plain`"),
        "{msg}"
    );
    assert!(msg.contains("worker_local"), "{msg}");
    let plain = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(pool.spawn_local(|c: &mut Conn| c.id))
    }))
    .unwrap_err();
    let text = plain.downcast_ref::<String>().unwrap();
    assert!(text.contains("local::Conn"), "{text}");
    // The worker survives.
    assert_eq!(block_on(pool.spawn(|| 1)), 1);
}

#[test]
fn a_panicking_body_drops_the_resource_it_held() {
    let (pool, made, dropped) = conn_pool(1);
    let r = block_on(
        pool.spawn_local(|_: &mut Conn| panic!("mid-transaction"))
            .checked(),
    );
    assert!(r.unwrap_err().is_panic());
    assert_eq!(dropped.load(SeqCst), 1);
    assert_eq!(block_on(pool.spawn_local(|c: &mut Conn| c.id)), 1);
    assert_eq!(made.load(SeqCst), 2);
}

#[test]
fn several_types_may_be_registered_each_made_once_per_worker() {
    let pool = Pool::builder()
        .max_threads(1)
        .worker_local(|| String::from("conn"))
        .worker_local(|| 0_u64)
        .build();
    for i in 1..=3 {
        let n = block_on(pool.spawn_local(|n: &mut u64| {
            *n += 1;
            *n
        }));
        assert_eq!(n, i);
        let s = block_on(pool.spawn_local(|s: &mut String| s.clone()));
        assert_eq!(s, "conn");
    }
}
