//! Per-worker resources (`Builder::worker_local`, the runtime side of `#[local]`).

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
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

/// An init's error, as a driver returns one.
#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

/// A "server" that refuses connections until `up` is set, counting the attempts.
struct Server {
    up: AtomicBool,
    attempts: AtomicUsize,
}

fn server_pool(name: &str, max: usize, up: bool) -> (Pool, Arc<Server>) {
    let server = Arc::new(Server {
        up: AtomicBool::new(up),
        attempts: AtomicUsize::new(0),
    });
    let pool = {
        let server = Arc::clone(&server);
        Pool::builder()
            .name(name)
            .max_threads(max)
            .try_worker_local(move || {
                let n = server.attempts.fetch_add(1, SeqCst);
                if server.up.load(SeqCst) {
                    Ok(n)
                } else {
                    Err(Refused("connection refused"))
                }
            })
            .build()
    };
    (pool, server)
}

#[test]
fn a_failed_try_init_is_an_error_with_its_source_and_no_panic() {
    use std::error::Error as _;
    // Count panics on this test's workers: a failed init must not reach the panic hook.
    let hooked = Arc::new(AtomicUsize::new(0));
    let previous = std::panic::take_hook();
    let counted = Arc::clone(&hooked);
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("refusing-"))
        {
            counted.fetch_add(1, SeqCst);
        }
        previous(info);
    }));
    let (pool, server) = server_pool("refusing", 1, false);
    let err = block_on(pool.spawn_local(|n: &mut usize| *n).checked()).unwrap_err();
    assert!(err.is_local_init(), "{err:?}");
    assert!(!err.is_panic() && !err.is_shutdown() && !err.is_timeout());
    let source = err.source().expect("the init's error is the source");
    assert_eq!(source.to_string(), "connection refused");
    assert!(source.downcast_ref::<Refused>().is_some());
    let msg = err.to_string();
    assert!(msg.contains("`refusing`") && msg.contains("usize"), "{msg}");
    // A plain await panics with the error, naming the pool.
    let plain = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(pool.spawn_local(|n: &mut usize| *n))
    }))
    .unwrap_err();
    let text = plain.downcast_ref::<String>().unwrap();
    assert!(text.contains("connection refused"), "{text}");
    assert_eq!(hooked.load(SeqCst), 0, "no panic on the pool's threads");
    let m = pool.metrics();
    assert_eq!(m.panicked, 0, "{m:?}");
    assert!(m.local_init_failures >= 1 && m.locals_made == 0, "{m:?}");
    assert_eq!(server.attempts.load(SeqCst), m.local_init_failures as usize);
    // The worker survives and runs other work.
    assert_eq!(block_on(pool.spawn(|| 1)), 1);
}

#[test]
fn a_down_server_is_not_hammered_and_is_used_again_once_up() {
    let (pool, server) = server_pool("backoff", 4, false);
    // Many callers for 300 ms against a server that is down: one attempt at a time, spaced
    // 25, 50, 100, 200 ms apart at least, whatever the callers do (a slower machine only
    // makes fewer attempts).
    let end = std::time::Instant::now() + Duration::from_millis(300);
    let mut calls = 0;
    let mut held_back = 0;
    while std::time::Instant::now() < end {
        let batch: Vec<_> = (0..8)
            .map(|_| pool.spawn_local(|n: &mut usize| *n).checked())
            .collect();
        for r in block_on(futures::future::join_all(batch)) {
            let err = r.unwrap_err();
            assert!(err.is_local_init(), "{err}");
            if err.to_string().contains("the last attempt failed") {
                held_back += 1;
            }
            calls += 1;
        }
    }
    let attempts = server.attempts.load(SeqCst);
    assert!(
        attempts <= 6,
        "{attempts} connection attempts in 300 ms ({calls} calls)"
    );
    assert!(held_back > 0 && calls > attempts, "{held_back} of {calls}");
    assert_eq!(pool.metrics().locals_made, 0);

    server.up.store(true, SeqCst);
    eventually("a call succeeds once the server is up", || {
        block_on(pool.spawn_local(|n: &mut usize| *n).checked()).is_ok()
    });
    // After the first success every worker connects at once: concurrent calls all succeed.
    let gate = Gate::default();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let gate = gate.clone();
            pool.spawn_local(move |n: &mut usize| {
                gate.wait();
                *n
            })
            .checked()
        })
        .collect();
    let driver = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    eventually("four bodies hold connections", || {
        pool.metrics().running == 4
    });
    gate.open();
    let conns: HashSet<usize> = driver
        .join()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("the server is up"))
        .collect();
    assert_eq!(conns.len(), 4, "one connection per worker");
    assert_eq!(pool.metrics().locals_made, 4);
}

#[test]
fn a_value_that_fails_its_check_is_dropped_and_remade() {
    let made = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = {
        let (made, dropped) = (Arc::clone(&made), Arc::clone(&dropped));
        Pool::builder()
            .max_threads(1)
            .worker_local(move || Conn {
                id: made.fetch_add(1, SeqCst),
                uses: 0,
                _dropped: DropCount(Arc::clone(&dropped)),
            })
            // A connection that served three queries is "broken".
            .check_local(|c: &mut Conn| c.uses < 3)
            .build()
    };
    let served: Vec<(usize, usize)> = (0..7)
        .map(|_| {
            block_on(pool.spawn_local(|c: &mut Conn| {
                c.uses += 1;
                (c.id, c.uses)
            }))
        })
        .collect();
    assert_eq!(
        served,
        vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1)],
        "the call that found it broken is the last on it"
    );
    assert_eq!(dropped.load(SeqCst), 2);
    let m = pool.metrics();
    assert_eq!((m.locals_made, m.locals_discarded), (3, 2), "{m:?}");
}

#[test]
fn a_check_that_panics_turns_the_value_down_and_keeps_the_result() {
    let pool = Pool::builder()
        .max_threads(1)
        .worker_local(|| 0_u32)
        .check_local(|n: &mut u32| {
            assert!(*n < 1, "checked value {n}");
            true
        })
        .build();
    assert_eq!(block_on(pool.spawn_local(|n: &mut u32| *n)), 0);
    assert_eq!(
        block_on(pool.spawn_local(|n: &mut u32| {
            *n += 1;
            "the body's result"
        })),
        "the body's result"
    );
    assert_eq!(block_on(pool.spawn_local(|n: &mut u32| *n)), 0, "a new one");
    assert_eq!(pool.metrics().locals_discarded, 1);
}

#[test]
fn a_check_for_an_unregistered_type_is_a_config_error() {
    let err = Pool::builder()
        .name("unchecked")
        .check_local(|_: &mut String| true)
        .try_build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("String") && msg.contains("worker_local"),
        "{msg}"
    );
}

#[test]
fn while_one_worker_retries_a_hanging_connect_the_others_fail_at_once() {
    // The first attempt is refused; the retry hangs (a server that accepts the TCP
    // connection and says nothing) until the test opens `answer`.
    let attempts = Arc::new(AtomicUsize::new(0));
    let answer = Gate::default();
    let pool = {
        let (attempts, answer) = (Arc::clone(&attempts), answer.clone());
        Pool::builder()
            .max_threads(2)
            .try_worker_local(move || match attempts.fetch_add(1, SeqCst) {
                0 => Err(Refused("connection refused")),
                _ => {
                    answer.wait();
                    Ok(7_u32)
                }
            })
            .build()
    };
    let first = block_on(pool.spawn_local(|n: &mut u32| *n).checked()).unwrap_err();
    assert!(first.is_local_init());
    // Past the first retry's wait (25 ms), with room to spare.
    std::thread::sleep(Duration::from_millis(100));
    let hanging = pool.spawn_local(|n: &mut u32| *n).checked();
    let retry = std::thread::spawn(move || block_on(hanging));
    eventually("the retry is under way", || attempts.load(SeqCst) == 2);
    let meanwhile = block_on(pool.spawn_local(|n: &mut u32| *n).checked()).unwrap_err();
    assert!(
        meanwhile.to_string().contains("another is under way"),
        "{meanwhile}"
    );
    assert_eq!(
        attempts.load(SeqCst),
        2,
        "no second attempt while one hangs"
    );
    answer.open();
    assert_eq!(retry.join().unwrap().unwrap(), 7);
    assert_eq!(block_on(pool.spawn_local(|n: &mut u32| *n)), 7);
}
