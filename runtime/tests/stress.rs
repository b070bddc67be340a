//! A seeded stress run: many callers on several pools (and the default pool), under tokio's
//! multi-thread and current-thread runtimes and `futures::executor`, mixing plain calls,
//! panics, slow bodies, drops at every stage, `limit`, `timeout`, nested calls, injected
//! faults (a waker that panics, a result whose `Drop` panics) and a pool shut down in the
//! middle. After each run it checks that every awaited call got its own result or the error
//! its case predicts, that no body ran twice, that no body dropped before its first poll ran,
//! and that every pool's metrics balance.
//!
//! The seed is printed; `OFFTHREAD_STRESS_SEED=<seed>` replays the same mix of cases (the
//! interleaving is the machine's). CI runs a few seconds of it; `OFFTHREAD_STRESS_CALLS=1000000`
//! runs a million calls. A hang fails the test with the seed in its message.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use offthread_runtime::__private::{with_limit, with_timeout, Limit};
use offthread_runtime::{Error, Pool};
use support::eventually;

/// A small deterministic generator (xorshift64*): the same seed gives the same cases.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one call does, and so what its caller may see.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// Returns its id.
    Plain,
    /// Panics with its id in the message.
    Panic,
    /// Sleeps up to 2 ms, then returns its id.
    Slow,
    /// Dropped before its first poll: never runs.
    DropUnpolled,
    /// Polled once, then dropped (queued, waiting, or running): runs at most once.
    DropAfterPoll,
    /// Under `limit = 3`: at most three such bodies at once.
    Limited,
    /// A 1 ms timeout on a body of up to 3 ms: its id, or a timeout error.
    Timeout,
    /// Makes a nested call on its own pool and returns twice its id.
    Nested,
    /// First polled with a waker that panics when woken, then awaited normally.
    PanickyWaker,
    /// Returns a value whose `Drop` panics, and is dropped while running.
    GrenadeResult,
    /// On the pool that is shut down mid-run: its id, or a shutdown error.
    Doomed,
}

const CASES: [Case; 11] = [
    Case::Plain,
    Case::Panic,
    Case::Slow,
    Case::DropUnpolled,
    Case::DropAfterPoll,
    Case::Limited,
    Case::Timeout,
    Case::Nested,
    Case::PanickyWaker,
    Case::GrenadeResult,
    Case::Doomed,
];

/// Shared by every call of one run.
struct World {
    pools: Vec<Pool>,
    doomed: Pool,
    /// How many times each call's body ran.
    runs: Vec<AtomicU8>,
    limited_now: AtomicUsize,
    limited_peak: AtomicUsize,
}

static LIMIT: Limit = Limit::new(3);

struct Grenade;
impl Drop for Grenade {
    fn drop(&mut self) {
        panic!("a result's drop panics");
    }
}

struct PanickyWaker;
impl Wake for PanickyWaker {
    fn wake(self: Arc<Self>) {
        panic!("a waker panics");
    }
}

/// Polls `fut` once with `waker`.
fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

/// Runs call `id` of case `case`; panics if what it sees is not what the case predicts.
async fn call(world: Arc<World>, id: usize, case: Case, pick: u64) {
    let pool = world.pools[pick as usize % world.pools.len()].clone();
    let body = {
        let world = Arc::clone(&world);
        move || {
            world.runs[id].fetch_add(1, SeqCst);
        }
    };
    let noop = futures::task::noop_waker();
    match case {
        Case::Plain => {
            let v = pool.spawn(move || (body(), id).1).await;
            assert_eq!(v, id);
        }
        Case::Panic => {
            let err = pool
                .spawn(move || -> usize {
                    body();
                    panic!("call {id} panics")
                })
                .checked()
                .await
                .unwrap_err();
            assert!(err.is_panic() && err.to_string().contains(&format!("call {id} ")));
        }
        Case::Slow => {
            let v = pool
                .spawn(move || {
                    body();
                    std::thread::sleep(Duration::from_micros(pick % 2_000));
                    id
                })
                .await;
            assert_eq!(v, id);
        }
        Case::DropUnpolled => drop(pool.spawn(body)),
        Case::DropAfterPoll => {
            let mut f = pool.spawn(move || {
                body();
                std::thread::sleep(Duration::from_micros(pick % 500));
            });
            let _ = poll_once(&mut f, &noop);
        }
        Case::Limited => {
            let w = Arc::clone(&world);
            let v = with_limit(
                pool.spawn(move || {
                    body();
                    let now = w.limited_now.fetch_add(1, SeqCst) + 1;
                    w.limited_peak.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_micros(pick % 300));
                    w.limited_now.fetch_sub(1, SeqCst);
                    id
                }),
                &LIMIT,
            )
            .await;
            assert_eq!(v, id);
        }
        Case::Timeout => {
            let r = with_timeout(
                pool.spawn(move || {
                    body();
                    std::thread::sleep(Duration::from_micros(pick % 3_000));
                    Ok::<_, Error>(id)
                }),
                Duration::from_millis(1),
            )
            .await;
            match r {
                Ok(v) => assert_eq!(v, id),
                Err(e) => assert!(e.is_timeout(), "{e}"),
            }
        }
        Case::Nested => {
            let inner = pool.clone();
            let v = pool
                .spawn(move || {
                    body();
                    futures::executor::block_on(inner.spawn(move || id * 2))
                })
                .await;
            assert_eq!(v, id * 2);
        }
        Case::PanickyWaker => {
            let mut f = pool.spawn(move || {
                body();
                std::thread::sleep(Duration::from_micros(pick % 200));
                id
            });
            let waker = Waker::from(Arc::new(PanickyWaker));
            let v = match poll_once(&mut f, &waker) {
                Poll::Ready(v) => v,
                Poll::Pending => f.await,
            };
            assert_eq!(v, id);
        }
        Case::GrenadeResult => {
            let mut f = pool.spawn(move || {
                body();
                std::thread::sleep(Duration::from_micros(pick % 300));
                Grenade
            });
            if let Poll::Ready(g) = poll_once(&mut f, &noop) {
                std::mem::forget(g);
            }
        }
        Case::Doomed => match world.doomed.spawn(move || (body(), id).1).checked().await {
            Ok(v) => assert_eq!(v, id),
            Err(e) => assert!(e.is_shutdown(), "{e}"),
        },
    }
}

/// One run: `callers` tasks making `per_caller` calls each, under `executor`.
fn run(seed: u64, executor: &str, callers: usize, per_caller: usize) {
    let world = Arc::new(World {
        pools: vec![
            Pool::builder()
                .name("small")
                .max_threads(2)
                .queue_capacity(16)
                .build(),
            Pool::builder().name("wide").max_threads(32).build(),
            offthread_runtime::default_pool().clone(),
        ],
        doomed: Pool::builder().name("doomed").max_threads(4).build(),
        runs: (0..callers * per_caller)
            .map(|_| AtomicU8::new(0))
            .collect(),
        limited_now: AtomicUsize::new(0),
        limited_peak: AtomicUsize::new(0),
    });
    let cases: Vec<Vec<(Case, u64)>> = (0..callers)
        .map(|c| {
            let mut rng = Rng::new(seed ^ (c as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            (0..per_caller)
                .map(|_| (CASES[rng.below(CASES.len() as u64) as usize], rng.next()))
                .collect()
        })
        .collect();
    let tasks = {
        let world = Arc::clone(&world);
        let cases = cases.clone();
        move || {
            (0..callers).map(move |c| {
                let (world, cases) = (Arc::clone(&world), cases[c].clone());
                async move {
                    for (i, (case, pick)) in cases.into_iter().enumerate() {
                        call(Arc::clone(&world), c * per_caller + i, case, pick).await;
                    }
                }
            })
        }
    };
    // The doomed pool shuts down while calls are in flight.
    let doomed = world.doomed.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        doomed.shutdown(Duration::from_millis(5))
    });
    let (done_tx, done_rx) = mpsc::channel();
    let executor_name = executor.to_owned();
    let runner = std::thread::spawn(move || {
        match executor_name.as_str() {
            "tokio multi_thread" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let handles: Vec<_> = tasks().map(tokio::spawn).collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                }),
            "tokio current_thread" => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(futures::future::join_all(tasks()))
                .into_iter()
                .collect(),
            _ => futures::executor::block_on(futures::future::join_all(tasks()))
                .into_iter()
                .collect(),
        }
        let _ = done_tx.send(());
    });
    let limit = Duration::from_secs(120);
    let start = Instant::now();
    match done_rx.recv_timeout(limit) {
        Ok(()) => runner.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The runner panicked: a call saw something its case does not allow.
            if let Err(e) = runner.join() {
                let why = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                eprintln!("stress: seed {seed} under {executor}: a call failed its check: {why}");
                std::panic::resume_unwind(e);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("stress: seed {seed} under {executor}: calls still waiting after {limit:?}")
        }
    }
    killer.join().unwrap();
    let took = start.elapsed();

    // Every body ran at most once; bodies of calls dropped unpolled never ran.
    for (c, calls) in cases.iter().enumerate() {
        for (i, (case, _)) in calls.iter().enumerate() {
            let id = c * per_caller + i;
            let runs = world.runs[id].load(SeqCst);
            let ok = match case {
                Case::DropUnpolled => runs == 0,
                Case::Plain
                | Case::Panic
                | Case::Slow
                | Case::Limited
                | Case::Nested
                | Case::PanickyWaker => runs == 1,
                _ => runs <= 1,
            };
            assert!(ok, "seed {seed}: call {id} ({case:?}) ran {runs} times");
        }
    }
    assert!(
        world.limited_peak.load(SeqCst) <= 3,
        "seed {seed}: limit = 3 exceeded"
    );
    // Every pool's books balance once the last dropped bodies end.
    for pool in world.pools.iter().take(2).chain([&world.doomed]) {
        eventually("every body ended", || {
            let m = pool.metrics();
            m.running == 0 && m.queued == 0
        });
        let m = pool.metrics();
        assert_eq!(
            m.submitted,
            m.completed + m.panicked + m.cancelled,
            "seed {seed}: books do not balance on {pool:?}"
        );
    }
    let calls = callers * per_caller;
    eprintln!("stress: seed {seed}, {executor}: {calls} calls in {took:.2?}");
}

#[test]
fn stress_every_case_under_every_executor() {
    let seed = std::env::var("OFFTHREAD_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let calls: usize = std::env::var("OFFTHREAD_STRESS_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    eprintln!("stress: seed {seed} (replay with OFFTHREAD_STRESS_SEED={seed})");
    // The panics the cases inject are expected: keep them out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.to_string();
        let injected = ["a waker panics", "a result's drop panics"]
            .iter()
            .any(|m| msg.contains(m))
            || (msg.contains("call ") && msg.contains(" panics"));
        if !injected {
            report(info);
        }
    }));
    let callers = 64;
    let per_caller = (calls / 3 / callers).max(1);
    for executor in [
        "tokio multi_thread",
        "tokio current_thread",
        "futures block_on",
    ] {
        run(seed, executor, callers, per_caller);
    }
}
