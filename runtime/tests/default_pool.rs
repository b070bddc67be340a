//! The default pool: `spawn`, `default_pool`, and its cap from `OFFTHREAD_MAX_THREADS`.
//! A test binary of its own, since the default pool is process-wide and the variable is
//! read when it is first used.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use support::{eventually, Gate};

#[test]
fn the_default_pool_takes_its_cap_from_the_environment() {
    // Before any use of the default pool in this process (this binary has one test).
    std::env::set_var(offthread_runtime::MAX_THREADS_ENV, "3");
    let gate = Gate::default();
    let inside = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let (gate, inside) = (gate.clone(), Arc::clone(&inside));
            offthread_runtime::spawn(move || {
                inside.fetch_add(1, SeqCst);
                gate.wait();
                std::thread::current().name().unwrap().to_owned()
            })
        })
        .collect();
    let driver =
        std::thread::spawn(move || futures::executor::block_on(futures::future::join_all(calls)));
    eventually("three bodies run", || inside.load(SeqCst) == 3);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pool = offthread_runtime::default_pool();
    assert_eq!(
        pool.metrics().threads,
        3,
        "capped by OFFTHREAD_MAX_THREADS=3"
    );
    assert_eq!(inside.load(SeqCst), 3);
    gate.open();
    let names = driver.join().unwrap();
    assert!(
        names.iter().all(|n| n.starts_with("offthread-")),
        "{names:?}"
    );
    // Too late to configure it now.
    let err = offthread_runtime::configure_default(offthread_runtime::Pool::builder()).unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
}
