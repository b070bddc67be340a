//! Scheduling under workloads that are not uniform: a call queued behind bodies that do not
//! end soon must still start while the pool has room, bodies that wait for each other must
//! all get threads, `limit = N` must let N run, and busy loops must not multiply threads.
//!
//! These are liveness tests, not timings: each bound is hundreds of milliseconds or more,
//! far above what the pool needs (a few milliseconds), so a loaded machine cannot fail them;
//! a pool that leaves a call waiting for the slow bodies to end fails them every time.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use offthread_runtime::Pool;
use support::{eventually, Gate};

/// Far above the few milliseconds the pool needs; far below how long the slow bodies last.
const GENEROUS: Duration = Duration::from_millis(800);

#[test]
fn a_fast_call_behind_blocked_bodies_starts_while_the_pool_has_room() {
    for slow in [2, 24, 80] {
        let pool = Pool::builder().max_threads(128).build();
        let gate = Gate::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let slow_calls: Vec<_> = (0..slow)
            .map(|_| {
                let (gate, inside) = (gate.clone(), Arc::clone(&inside));
                pool.spawn(move || {
                    inside.fetch_add(1, SeqCst);
                    gate.wait();
                })
            })
            .collect();
        let slow_done = std::thread::spawn(move || block_on(futures::future::join_all(slow_calls)));
        eventually("the slow bodies run", || inside.load(SeqCst) == slow);
        // The slow bodies hold their threads until the gate opens, after this loop.
        for i in 0..5 {
            let start = Instant::now();
            block_on(pool.spawn(|| std::thread::sleep(Duration::from_millis(1))));
            let took = start.elapsed();
            assert!(
                took < GENEROUS,
                "call {i} behind {slow} blocked bodies waited {took:?}: {:?}",
                pool.metrics()
            );
        }
        gate.open();
        slow_done.join().unwrap();
    }
}

/// A meeting point for `n` bodies that gives up after a deadline instead of hanging.
struct Meeting {
    arrived: Mutex<usize>,
    all_here: Condvar,
    n: usize,
}

impl Meeting {
    /// True if all `n` arrived before the deadline.
    fn arrive(&self, deadline: Instant) -> bool {
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.all_here.notify_all();
        while *arrived < self.n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            arrived = self.all_here.wait_timeout(arrived, left).unwrap().0;
        }
        true
    }
}

/// Calls `n` bodies on `pool` that each wait for all `n`; true for each that saw them all
/// running together before a generous deadline.
fn meet_on(pool: &Pool, n: usize) -> Vec<bool> {
    let meeting = Arc::new(Meeting {
        arrived: Mutex::new(0),
        all_here: Condvar::new(),
        n,
    });
    let deadline = Instant::now() + GENEROUS * 2;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let meeting = Arc::clone(&meeting);
            pool.spawn(move || meeting.arrive(deadline))
        })
        .collect();
    block_on(futures::future::join_all(calls))
}

#[test]
fn bodies_that_wait_for_each_other_all_run() {
    for n in [3, 16, 64] {
        let pool = Pool::builder().max_threads(128).build();
        let met = meet_on(&pool, n);
        assert!(
            met.iter().all(|&m| m),
            "{n} bodies waiting for each other were not all running together: {:?}",
            pool.metrics()
        );
    }
}

#[test]
fn a_burst_reaches_every_parked_worker_round_after_round() {
    // A pool that cannot grow beyond its parked workers: a burst is served only if the
    // wake-ups fan out from one worker to the next, and a wake-up counted but never
    // consumed would leave the next burst waiting on a worker that is not coming.
    let n = 24;
    let pool = Pool::builder().min_threads(n).max_threads(n).build();
    for round in 0..6 {
        let met = meet_on(&pool, n);
        assert!(
            met.iter().all(|&m| m),
            "round {round}: {n} bodies on {n} threads were not all running together: {:?}",
            pool.metrics()
        );
        eventually("every worker parks again", || {
            pool.metrics().idle_threads == n
        });
    }
}

#[test]
fn wake_ups_racing_the_keep_alive_are_never_lost() {
    // Workers whose keep-alive runs out about when the next call comes: a submitter takes
    // a parked worker off the idle list just as that worker times out. A wake-up half
    // given there (counted as on its way, but to a worker that left) would make every
    // later submitter wait for a worker that is not coming.
    let pool = Pool::builder()
        .max_threads(4)
        .keep_alive(Duration::from_micros(200))
        .build();
    let (tx, rx) = mpsc::channel();
    let caller = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            for i in 0..4000u64 {
                // Gaps around the keep-alive: 0 to 400 µs.
                std::thread::sleep(Duration::from_micros(i * 7919 % 400));
                tx.send(block_on(pool.spawn(move || i))).unwrap();
            }
        })
    };
    for i in 0..4000u64 {
        let got = rx.recv_timeout(GENEROUS * 4);
        assert_eq!(got, Ok(i), "call {i} never ran: {:?}", pool.metrics());
    }
    caller.join().unwrap();
}

#[test]
fn a_body_waiting_for_a_later_call_gets_it() {
    // Two bodies (as many as this machine may have cores, so every eager thread is taken)
    // wait for values that later calls send: a deadlock if the later calls stay queued.
    let pool = Pool::builder().build();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel::<u32>()).unzip();
    let waiting: Vec<_> = rxs
        .into_iter()
        .map(|rx| pool.spawn(move || rx.recv_timeout(GENEROUS * 2).ok()))
        .collect();
    let waiting = std::thread::spawn(move || block_on(futures::future::join_all(waiting)));
    eventually("both waiting bodies run", || pool.metrics().running == 2);
    for (i, tx) in (0..).zip(txs) {
        block_on(pool.spawn(move || tx.send(i).unwrap()));
    }
    assert_eq!(waiting.join().unwrap(), [Some(0), Some(1)]);
}

#[test]
fn limit_n_lets_n_bodies_run_when_the_pool_has_room() {
    use offthread_runtime::__private::{with_limit, Limit};
    static EIGHT: Limit = Limit::new(8);
    let pool = Pool::builder().max_threads(8).build();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let calls: Vec<_> = (0..80)
        .map(|_| {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            with_limit(
                pool.spawn(move || {
                    peak.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    now.fetch_sub(1, SeqCst);
                }),
                &EIGHT,
            )
        })
        .collect();
    block_on(futures::future::join_all(calls));
    assert_eq!(peak.load(SeqCst), 8, "{:?}", pool.metrics());
}

#[test]
fn shutdown_returns_after_exited_workers_ran_their_stop_hooks_and_dropped_their_locals() {
    struct Conn(Arc<AtomicUsize>);
    impl Drop for Conn {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let (made, dropped, stopped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let pool = {
        let (made, dropped, stopped) = (made.clone(), dropped.clone(), stopped.clone());
        Pool::builder()
            .max_threads(4)
            .on_thread_stop(move || {
                // A slow hook: shutdown must wait for it, not just for the count.
                std::thread::sleep(Duration::from_millis(20));
                stopped.fetch_add(1, SeqCst);
            })
            .worker_local(move || {
                made.fetch_add(1, SeqCst);
                Conn(Arc::clone(&dropped))
            })
            .build()
    };
    let calls: Vec<_> = (0..16)
        .map(|_| pool.spawn_local(|_: &mut Conn| std::thread::sleep(Duration::from_millis(2))))
        .collect();
    block_on(futures::future::join_all(calls));
    let threads = pool.metrics().threads;
    let report = pool.shutdown(Duration::from_secs(10));
    assert_eq!((report.still_running, report.failed), (0, 0));
    assert_eq!(
        stopped.load(SeqCst),
        threads,
        "every worker's on_thread_stop ran"
    );
    assert!(made.load(SeqCst) >= 1);
    assert_eq!(
        dropped.load(SeqCst),
        made.load(SeqCst),
        "every connection was dropped"
    );
    assert_eq!(pool.metrics().threads, 0);
}
