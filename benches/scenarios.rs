//! The plain scenarios: offthread's pool beside `tokio::task::spawn_blocking` and smol's
//! `blocking::unblock`, in one process and one run, each scenario printing one table per part
//! to stderr and writing its figures to the results file. What criterion measures (timed
//! loops of one operation) is in `benches/pool.rs`; what it cannot (percentiles, thread
//! counts, CPU time, pools that stall or grow) is here.
//!
//! ```text
//! cargo bench --bench scenarios [-- [FILTER...] [--exact] [--test] [--list]]
//! ```
//!
//! - FILTER: the scenarios whose name contains it run (several filters, or alternatives
//!   separated by `|`, run each scenario any of them matches); `--exact`: whose name is it.
//!   Names: see [`SCENARIOS`] or `--list`.
//! - `--list`: names the scenarios the filter picks (`name: benchmark`, as libtest and
//!   criterion do), runs nothing. `--ignored` runs nothing (there are no ignored
//!   scenarios), as criterion does.
//! - Test mode: each scenario runs at about a tenth of its size, to check that it works, and
//!   writes nothing. It is on with `--test` (`cargo bench -- --test`), and whenever `--bench`
//!   is absent: `cargo bench` passes `--bench` to a `harness = false` target, `cargo test
//!   --benches` passes nothing, so a test run is quick and leaves the results alone. Running
//!   the binary by hand without `--bench` is a test run too.
//! - Other options (criterion's, libtest's) are ignored with a note: an option with a value,
//!   such as criterion's `--save-baseline NAME`, is for `--bench pool`, and its value would
//!   be taken here for a filter.
//!
//! Ratios between rows of one run are what counts; absolute times move from run to run on
//! shared machines. A whole run takes a few minutes on a 2-core machine (`no_slow_mode` and
//! `throughput` are sized for well under a minute each); a test run, seconds.
//!
//! Results file: see [`support::results_path`] (`target/offthread-bench/results.tsv` by
//! default). `cargo run --manifest-path benches/chart/Cargo.toml` draws it as
//! `BENCHMARKS.svg`.
//!
//! "threads" is the size of the contender's pool (see [`support::Gauge`]). offthread's
//! default pool and blocking's global pool keep idle threads from earlier scenarios: "(had
//! N)" and the `threads before` rows say how many it had when the turn began.
//!
//! Every scenario is bounded in time: bodies that block wait on a [`Gate`] that is opened
//! when the measurement ends (and on unwinding), and that they leave by themselves after
//! [`SLOW_CAP`] in any case; every loop has a count bound, and the callers of `no_slow_mode`
//! and `throughput` run as tasks that are given up after [`TURN_CAP`].

mod support;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use offthread::Pool;
use support::{
    cpu_time, median, percentile, retire, runtime, Contender, Gate, Gauge, OpenOnDrop, Results,
    Watch, CONTENDERS, SLOW_CAP,
};

/// Every scenario, in the order a run makes them: its name (for the filter) and body.
///
/// The ones that grow pools come after the ones that time trivial calls. The names are also
/// the scenarios' names in the results file.
const SCENARIOS: &[(&str, fn())] = &[
    ("summary", summary),
    ("no_slow_mode", no_slow_mode),
    ("throughput", throughput),
    ("fast_behind_slow", fast_behind_slow),
    ("mixed_stream", mixed_stream),
    ("cpu_bound", cpu_bound),
    ("idle_burst_idle", idle_burst_idle),
    ("light_load", light_load),
    ("limit", limit),
    ("barrier", barrier),
];

fn main() {
    let a = args();
    if a.help {
        eprintln!("{USAGE}");
        return;
    }
    if a.list {
        for (name, _) in SCENARIOS.iter().filter(|(name, _)| selected(name)) {
            println!("{name}: benchmark");
        }
        return;
    }
    if a.ignored {
        return;
    }
    let chosen: Vec<_> = SCENARIOS
        .iter()
        .filter(|(name, _)| selected(name))
        .collect();
    if chosen.is_empty() {
        eprintln!("scenarios: no scenario matches {:?}", a.filters);
        return;
    }
    if a.test {
        eprintln!(
            "scenarios: test mode (about a tenth of each scenario, nothing written; \
             `cargo bench --bench scenarios` for the figures)"
        );
    }
    let start = Instant::now();
    for (_, scenario) in chosen {
        scenario();
    }
    eprintln!("\nscenarios: done in {:.1?}", start.elapsed());
}

// ---------------------------------------------------------------------------------------
// Command line

const USAGE: &str = "usage: scenarios [FILTER...] [--exact] [--test] [--list]
  FILTER   run the scenarios whose name contains it (alternatives with |)
  --exact  ... whose name is FILTER
  --test   test mode: about a tenth of each scenario, nothing written (also the mode
           whenever --bench, which cargo bench passes, is absent)
  --list   name the scenarios";

/// The command line (see the top of the file).
struct Args {
    filters: Vec<String>,
    exact: bool,
    list: bool,
    ignored: bool,
    help: bool,
    test: bool,
}

fn args() -> &'static Args {
    static ARGS: OnceLock<Args> = OnceLock::new();
    ARGS.get_or_init(|| {
        let mut a = Args {
            filters: Vec::new(),
            exact: false,
            list: false,
            ignored: false,
            help: false,
            test: false,
        };
        let mut bench = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--bench" => bench = true,
                "--test" => a.test = true,
                "--exact" => a.exact = true,
                "--list" => a.list = true,
                "--ignored" => a.ignored = true,
                "-h" | "--help" => a.help = true,
                s if s.starts_with('-') => {
                    eprintln!("scenarios: ignoring {s} (options: --exact, --test, --list)");
                }
                s => a.filters.push(s.to_owned()),
            }
        }
        a.test |= !bench;
        a
    })
}

/// Whether the scenario `name` is to run.
fn selected(name: &str) -> bool {
    let a = args();
    a.filters.is_empty()
        || a.filters.iter().any(|f| {
            if a.exact {
                name == f
            } else {
                f.split('|').any(|alt| name.contains(alt))
            }
        })
}

/// `n` for a benchmark run, about a tenth of it in test mode.
fn scaled(n: usize) -> usize {
    if args().test {
        (n / 10).max(1)
    } else {
        n
    }
}

/// A scenario's results, written when it ends unless this is a test run.
fn results(scenario: &'static str) -> Results {
    Results::new(scenario, !args().test)
}

/// Runs `fut` as a task of `rt` (a spawned task, as users meet it: on a multi-thread
/// runtime `block_on`'s own future runs on the calling thread, not on a worker) and waits
/// for it at most `cap`; `None` (the task aborted) if it took longer.
fn capped<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    cap: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let task = rt.spawn(fut);
    let abort = task.abort_handle();
    let out = rt.block_on(async { tokio::time::timeout(cap, task).await });
    match out {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        _ => {
            abort.abort();
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// summary

/// The figures criterion does not give: round-trip percentiles
/// and CPU per call on a multi-thread runtime with 2 workers (one task awaiting each call in
/// turn), the same on a current-thread runtime beside them, and an executor heartbeat's
/// lateness while offloaded calls run. Printed as one table to stderr.
fn summary() {
    // /proc/self/stat counts 10 ms ticks: 50 000 calls make that 0.2 µs per call.
    let calls = scaled(50_000);
    let mut res = results("summary");
    eprintln!(
        "\nsummary: {calls} sequential trivial calls from one task; mt2 = multi-thread \
         runtime, 2 workers; ct = current-thread runtime"
    );
    eprintln!(
        "{:<15} {:>10} {:>10} {:>12} {:>10} {:>12} {:>14} {:>14}",
        "contender",
        "rt p50",
        "rt p99",
        "cpu/call",
        "ct p50",
        "ct cpu/call",
        "beat p99 idle",
        "beat p99 load"
    );
    /// Sequential round trips from one task: sorted latencies, CPU per call.
    fn round_trips(who: Contender, multi: bool, calls: usize) -> (Vec<Duration>, Duration) {
        let rt = runtime(multi);
        let cpu0 = cpu_time();
        let mut lat = rt.block_on(async move {
            // A spawned task, as users meet it: on a multi-thread runtime `block_on`'s own
            // future runs on the calling thread, not on a worker.
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(calls);
                for i in 0..calls {
                    let t = Instant::now();
                    black_box(who.call(move || black_box(i)).await);
                    lat.push(t.elapsed());
                }
                lat
            })
            .await
            .unwrap()
        });
        let cpu = (cpu_time() - cpu0) / calls as u32;
        lat.sort();
        (lat, cpu)
    }
    for who in CONTENDERS {
        let (lat, cpu) = round_trips(who, true, calls);
        let (ct_lat, ct_cpu) = round_trips(who, false, calls);
        // Heartbeat lateness, idle and while 200 x 5 ms calls run.
        let multi = runtime(true);
        let beat = |load: bool| {
            multi.block_on(async {
                let beats = tokio::spawn(async {
                    let mut late = Vec::new();
                    for _ in 0..150 {
                        let t = Instant::now();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
                    }
                    late.sort();
                    percentile(&late, 0.99)
                });
                if load {
                    let calls: Vec<_> = (0..200)
                        .map(|_| {
                            tokio::spawn(who.call(|| std::thread::sleep(Duration::from_millis(5))))
                        })
                        .collect();
                    for c in calls {
                        c.await.unwrap();
                    }
                }
                beats.await.unwrap()
            })
        };
        let idle = beat(false);
        let loaded = beat(true);
        eprintln!(
            "{:<15} {:>10.1?} {:>10.1?} {:>12.1?} {:>10.1?} {:>12.1?} {:>14.1?} {:>14.1?}",
            who.name(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            cpu,
            percentile(&ct_lat, 0.5),
            ct_cpu,
            idle,
            loaded
        );
        let n = who.name();
        res.us(n, "round trip p50 (mt2)", percentile(&lat, 0.5));
        res.us(n, "round trip p99 (mt2)", percentile(&lat, 0.99));
        res.us(n, "cpu/call (mt2)", cpu);
        res.us(
            n,
            "round trip p50 (current-thread)",
            percentile(&ct_lat, 0.5),
        );
        res.us(n, "cpu/call (current-thread)", ct_cpu);
        res.us(n, "heartbeat p99 lateness, idle", idle);
        res.us(n, "heartbeat p99 lateness, 200 x 5 ms calls", loaded);
    }
    res.save();
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// Target 7: S slow calls that hold their threads until released, then 20 calls of 1 ms made
/// one after another from one task; the worst and median latency of those (from the call to
/// its result). offthread runs on a fresh pool per S with room for 512 threads, and on its
/// default pool.
fn fast_behind_slow() {
    const FAST: usize = 20;
    let mut res = results("fast_behind_slow");
    eprintln!(
        "\nfast behind slow: S slow calls held until released, then {FAST} x 1 ms calls one \
         after another from one task (multi-thread runtime, 2 workers)"
    );
    eprintln!(
        "{:>3} {:<25} {:>10} {:>10} {:>22} {:>16}",
        "S", "contender", "fast p50", "fast worst", "slow bodies running", "threads"
    );
    let sizes: &[usize] = if args().test { &[4] } else { &[4, 32, 96] };
    for &s in sizes {
        let mut sb_worst = None;
        let lanes = [
            (Contender::Offthread, "offthread", true),
            (Contender::Offthread, "offthread (default pool)", false),
            (Contender::SpawnBlocking, "spawn_blocking", false),
            (Contender::Unblock, "unblock", false),
        ];
        for (who, name, own_pool) in lanes {
            let pool = own_pool.then(|| Pool::builder().name("ot-slow").max_threads(512).build());
            let rt = runtime(true);
            let watch = Watch::start(who, pool.as_ref());
            let gate = Gate::default();
            let release = OpenOnDrop(gate.clone());
            let started = Arc::new(AtomicUsize::new(0));
            let t0 = Instant::now();
            let (mut lat, timeouts, up, running, threads) = rt.block_on(async {
                let slow: Vec<_> = (0..s)
                    .map(|_| {
                        let (gate, started) = (gate.clone(), started.clone());
                        tokio::spawn(who.call_on(&pool, move || {
                            started.fetch_add(1, Ordering::SeqCst);
                            gate.wait(SLOW_CAP);
                        }))
                    })
                    .collect();
                // The fast calls are to come behind slow calls that hold threads, not race
                // them to the queue: wait (at most ~2 s) until every slow body runs.
                let mut up = None;
                for _ in 0..2_000 {
                    if started.load(Ordering::SeqCst) >= s {
                        up = Some(t0.elapsed());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let running = started.load(Ordering::SeqCst);
                let fast = tokio::spawn({
                    let pool = pool.clone();
                    async move {
                        let mut lat = Vec::with_capacity(FAST);
                        let mut timeouts = 0;
                        let end = Instant::now() + Duration::from_secs(20);
                        for _ in 0..FAST {
                            if Instant::now() >= end {
                                break;
                            }
                            let t = Instant::now();
                            let call = who.call_on(&pool, || {
                                std::thread::sleep(Duration::from_millis(1));
                            });
                            if tokio::time::timeout(Duration::from_secs(5), call)
                                .await
                                .is_err()
                            {
                                timeouts += 1;
                            }
                            lat.push(t.elapsed());
                        }
                        (lat, timeouts)
                    }
                })
                .await
                .unwrap();
                let threads = watch.peak();
                gate.open();
                for h in slow {
                    let _ = tokio::time::timeout(SLOW_CAP, h).await;
                }
                (fast.0, fast.1, up, running, threads)
            });
            drop(release);
            drop(rt);
            retire(pool);
            lat.sort();
            let (p50, worst) = (
                percentile(&lat, 0.5),
                lat.last().copied().unwrap_or_default(),
            );
            if who == Contender::SpawnBlocking {
                sb_worst = Some(worst);
            }
            let slow_state = match up {
                Some(d) => format!("{running}/{s} after {d:.1?}"),
                None => format!("{running}/{s} after 2 s"),
            };
            let note = if timeouts > 0 {
                format!("  ({timeouts} fast calls timed out at 5 s)")
            } else {
                String::new()
            };
            eprintln!(
                "{s:>3} {name:<25} {p50:>10.1?} {worst:>10.1?} {slow_state:>22} {:>16}{note}",
                watch.cell(threads)
            );
            res.ms(name, &format!("S={s}: fast worst"), worst);
            res.ms(name, &format!("S={s}: fast p50"), p50);
            watch.record(&mut res, name, &format!("S={s}: "), threads);
            if let Some(d) = up {
                res.ms(name, &format!("S={s}: all slow bodies running after"), d);
            } else {
                res.count(
                    name,
                    &format!("S={s}: slow bodies running at 2 s"),
                    running,
                    "calls",
                );
            }
            if timeouts > 0 {
                res.count(
                    name,
                    &format!("S={s}: fast calls timed out"),
                    timeouts,
                    "calls",
                );
            }
        }
        if let Some(w) = sb_worst {
            eprintln!(
                "    target 7 bound for S={s}: 5 ms + 2 x spawn_blocking's worst = {:.1?}",
                Duration::from_millis(5) + 2 * w
            );
        }
    }
    res.save();
}

/// A steady stream of calls, one every 200 µs for 2 s, each its own tokio task: 90 % sleep
/// 100 µs, 10 % sleep 50 ms. Latency per class (from the call to its result), peak threads.
fn mixed_stream() {
    const PERIOD: Duration = Duration::from_micros(200);
    let calls = scaled(10_000);
    let mut res = results("mixed_stream");
    eprintln!(
        "\nmixed stream: {calls} calls, one every {PERIOD:?}, each its own task; every 10th \
         sleeps 50 ms, the others 100 µs (multi-thread runtime, 2 workers)"
    );
    eprintln!(
        "{:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>16} {:>9}",
        "contender",
        "fast p50",
        "fast p99",
        "fast max",
        "slow p50",
        "slow p99",
        "slow max",
        "threads",
        "issued in"
    );
    for who in CONTENDERS {
        let rt = runtime(true);
        // offthread on a pool of its own, so its threads are the ones this stream grew.
        let pool = matches!(who, Contender::Offthread).then(|| Pool::builder().build());
        let watch = Watch::start(who, pool.as_ref());
        let handle = rt.handle().clone();
        let mut tasks = Vec::with_capacity(calls);
        // Paced from this (non-runtime) thread: tokio's timer has 1 ms resolution, a thread
        // sleeping to each deadline keeps 200 µs on average and does not drift.
        let start = Instant::now();
        for i in 0..calls {
            let due = start + PERIOD * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let slow = i % 10 == 9;
            let call = who.call_on(&pool, move || {
                std::thread::sleep(if slow {
                    Duration::from_millis(50)
                } else {
                    Duration::from_micros(100)
                });
            });
            tasks.push(handle.spawn(async move {
                let t = Instant::now();
                call.await;
                (slow, t.elapsed())
            }));
        }
        let issued = start.elapsed();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        rt.block_on(async {
            let all = async {
                for t in tasks {
                    if let Ok((is_slow, d)) = t.await {
                        if is_slow {
                            slow.push(d)
                        } else {
                            fast.push(d)
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), all).await;
        });
        let threads = watch.peak();
        drop(rt);
        fast.sort();
        slow.sort();
        let q = |v: &[Duration], p: f64| percentile(v, p);
        eprintln!(
            "{:<15} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>16} {:>9.1?}",
            who.name(),
            q(&fast, 0.5),
            q(&fast, 0.99),
            q(&fast, 1.0),
            q(&slow, 0.5),
            q(&slow, 0.99),
            q(&slow, 1.0),
            watch.cell(threads),
            issued
        );
        let n = who.name();
        res.ms(n, "100 µs calls: p50", q(&fast, 0.5));
        res.ms(n, "100 µs calls: p99", q(&fast, 0.99));
        res.ms(n, "100 µs calls: max", q(&fast, 1.0));
        res.ms(n, "50 ms calls: p50", q(&slow, 0.5));
        res.ms(n, "50 ms calls: p99", q(&slow, 0.99));
        res.ms(n, "50 ms calls: max", q(&slow, 1.0));
        watch.record(&mut res, n, "", threads);
        if fast.len() + slow.len() < calls {
            res.count(
                n,
                "calls unfinished at 60 s",
                calls - fast.len() - slow.len(),
                "calls",
            );
        }
        retire(pool);
    }
    res.save();
}

/// A fixed amount of CPU work: `iters` rounds of a dependent multiply-xorshift chain.
fn spin_work(iters: u64) -> u64 {
    let mut x: u64 = 0x243F_6A88_85A3_08D3;
    for i in 0..iters {
        x = x.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(i);
        x ^= x >> 29;
    }
    black_box(x)
}

/// Rounds of [`spin_work`] that take 5 ms on this machine on an otherwise idle thread (the
/// best of 5 probes).
fn calibrate_5ms() -> u64 {
    const PROBE: u64 = 500_000;
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            spin_work(black_box(PROBE));
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1))
        .max(Duration::from_micros(1));
    (PROBE as f64 * 5e-3 / best.as_secs_f64()) as u64
}

/// 64 concurrent callers, 4 calls each of 5 ms of CPU work: wall time, jobs/s, CPU per job
/// and peak threads (median wall of 3 rounds).
///
/// The body is a fixed amount of work (calibrated to 5 ms alone), not a spin until 5 ms of
/// wall time have passed: with such a spin, a body's "work" shrinks when it shares a CPU, and
/// a contender running 64 threads on 2 CPUs would look 30 times faster than one running 2.
fn cpu_bound() {
    const CALLERS: usize = 64;
    let per_caller = scaled(40).div_ceil(10);
    let rounds = if args().test { 1 } else { 3 };
    let iters = calibrate_5ms();
    let jobs = CALLERS * per_caller;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut res = results("cpu_bound");
    eprintln!(
        "\ncpu bound: {CALLERS} callers x {per_caller} calls of {iters} work rounds (5 ms alone); \
         {jobs} jobs on {cpus} CPUs take at best {:.0?}; median of {rounds} rounds",
        Duration::from_millis(5 * jobs as u64) / cpus as u32
    );
    eprintln!(
        "{:<15} {:>10} {:>10} {:>12} {:>16}",
        "contender", "wall", "jobs/s", "cpu/job", "threads"
    );
    for who in CONTENDERS {
        let rt = runtime(true);
        // offthread on a pool of its own, so its threads are the ones these bodies grew.
        let pool = matches!(who, Contender::Offthread).then(|| Pool::builder().build());
        let watch = Watch::start(who, pool.as_ref());
        let cpu0 = cpu_time();
        let walls: Vec<Duration> = (0..rounds)
            .map(|_| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|_| {
                            let pool = pool.clone();
                            tokio::spawn(async move {
                                for _ in 0..per_caller {
                                    let work = move || spin_work(black_box(iters));
                                    black_box(who.call_on(&pool, work).await);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
            .collect();
        let cpu = (cpu_time() - cpu0) / (rounds * jobs) as u32;
        let threads = watch.peak();
        drop(rt);
        let wall = median(walls);
        let rate = jobs as f64 / wall.as_secs_f64();
        eprintln!(
            "{:<15} {:>10.1?} {:>10.0} {:>12.2?} {:>16}",
            who.name(),
            wall,
            rate,
            cpu,
            watch.cell(threads)
        );
        let n = who.name();
        res.ms(n, "wall", wall);
        res.add(n, "throughput", rate, "jobs/s");
        res.ms(n, "cpu/job (5 ms of work)", cpu);
        watch.record(&mut res, n, "", threads);
        retire(pool);
    }
    res.save();
}

/// A burst of 500 concurrent 1 ms sleeps, then nothing: threads at the peak and after a
/// while. offthread runs on a pool with `keep_alive(200 ms)`; the anchors' keep-alives are
/// fixed: tokio's blocking threads stay 10 s, so at 1 s tokio still has them by design;
/// `blocking`'s idle threads look every 500 ms whether to end, but in blocking 1.7 end only
/// while the pool is above its thread limit (500), so they stay too.
fn idle_burst_idle() {
    const KEEP_ALIVE: Duration = Duration::from_millis(200);
    let burst = scaled(500);
    let mut res = results("idle_burst_idle");
    eprintln!(
        "\nidle, burst, idle: {burst} concurrent 1 ms sleeps, then idle; keep-alive offthread \
         {KEEP_ALIVE:?} (set here), spawn_blocking 10 s (fixed), unblock: idle threads stay"
    );
    eprintln!(
        "{:<15} {:>8} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "contender", "before", "burst", "peak", "at end", "0.5 s after", "1 s after"
    );
    for who in CONTENDERS {
        let pool = (who == Contender::Offthread).then(|| {
            Pool::builder()
                .name("ot-burst")
                .keep_alive(KEEP_ALIVE)
                .build()
        });
        let rt = runtime(true);
        let watch = Watch::start(who, pool.as_ref());
        let before = watch.before;
        let start = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..burst)
                .map(|_| {
                    tokio::spawn(who.call_on(&pool, || {
                        std::thread::sleep(Duration::from_millis(1));
                    }))
                })
                .collect();
            let all = async {
                for t in tasks {
                    let _ = t.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
        });
        let end = Instant::now();
        let took = end - start;
        let peak = watch.peak();
        let at_end = watch.now();
        // Idle: the runtime stays up (dropping it would end tokio's threads), nothing runs.
        let after = |d: Duration| {
            std::thread::sleep((end + d).saturating_duration_since(Instant::now()));
            watch.now()
        };
        let half = after(Duration::from_millis(500));
        let one = after(Duration::from_secs(1));
        drop(watch);
        drop(rt);
        retire(pool);
        eprintln!(
            "{:<15} {:>8} {:>10.1?} {:>8} {:>8} {:>12} {:>12}",
            who.name(),
            before,
            took,
            peak,
            at_end,
            half,
            one
        );
        let n = who.name();
        res.ms(n, "burst wall", took);
        res.count(n, "threads before", before, "threads");
        res.count(n, "peak threads", peak, "threads");
        res.count(n, "threads at burst end", at_end, "threads");
        res.count(n, "threads 0.5 s after", half, "threads");
        res.count(n, "threads 1 s after", one, "threads");
    }
    res.save();
}

/// Light load, target 9: one task makes calls of 100 µs (`std::thread::sleep`) started 1 ms
/// apart, then 0.2 ms apart; the process's CPU time per call.
///
/// CPU time comes from `/proc/self/stat`, which counts every thread of the process, those that
/// ended during the run too (summing `/proc/self/task/*/schedstat` would be finer but loses
/// threads that exit, and a pool that retires threads would look cheaper than it is). Its
/// resolution is 10 ms, so each spacing makes enough calls for that to be a few µs per call at
/// most (printed). The pace comes from a ticker thread sending one message per call (tokio's
/// timer cannot wait 0.2 ms); its cost and the task's wake-ups are the same for everyone and
/// are measured alone by the "inline (harness)" row, whose body sleeps on the worker itself.
/// "beyond harness" subtracts that row. A sleeping body uses almost no CPU of its own.
fn light_load() {
    let mut res = results("light_load");
    eprintln!(
        "\nlight load: one task, calls of 100 µs (sleep) started at a fixed spacing; process \
         CPU per call (multi-thread runtime, 2 workers)"
    );
    eprintln!(
        "{:<18} {:>8} {:>7} {:>12} {:>12} {:>16} {:>9}",
        "contender", "spacing", "calls", "resolution", "cpu/call", "beyond harness", "calls/s"
    );
    for (spacing, calls, label) in [
        (Duration::from_millis(1), scaled(3_000), "1 ms apart"),
        (Duration::from_micros(200), scaled(10_000), "0.2 ms apart"),
    ] {
        let mut harness = None;
        let lanes = [
            None,
            Some(Contender::Offthread),
            Some(Contender::SpawnBlocking),
            Some(Contender::Unblock),
        ];
        for lane in lanes {
            let name = lane.map_or("inline (harness)", Contender::name);
            let rt = runtime(true);
            // A fresh pool with the defaults, as spawn_blocking gets a fresh runtime: the
            // default pool still holds (and is retiring) threads of earlier scenarios.
            let pool = Some(Pool::builder().build());
            let body = || std::thread::sleep(Duration::from_micros(100));
            // Warm up: the contender's first threads start before the measurement.
            let warm = pool.clone();
            rt.block_on(rt.spawn(async move {
                for _ in 0..20 {
                    match lane {
                        Some(who) => who.call_on(&warm, body).await,
                        None => body(),
                    }
                }
            }))
            .unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let cpu0 = cpu_time();
            let start = Instant::now();
            let ticker = std::thread::spawn(move || {
                let start = Instant::now();
                for i in 0..calls {
                    let due = start + spacing * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
            let done = rt
                .block_on(rt.spawn(async move {
                    let mut done = 0usize;
                    while let Some(()) = rx.recv().await {
                        match lane {
                            Some(who) => who.call_on(&pool, body).await,
                            None => body(),
                        }
                        done += 1;
                    }
                    done
                }))
                .unwrap();
            let _ = ticker.join();
            let wall = start.elapsed();
            let cpu = cpu_time() - cpu0;
            drop(rt);
            let per_call = cpu.as_secs_f64() * 1e6 / done.max(1) as f64;
            let resolution = 10_000.0 / done.max(1) as f64;
            let beyond = match (lane, harness) {
                (None, _) => {
                    harness = Some(per_call);
                    String::new()
                }
                (Some(_), Some(h)) => {
                    res.add(
                        name,
                        &format!("cpu/call beyond harness, {label}"),
                        per_call - h,
                        "µs",
                    );
                    format!("{:.1} µs", per_call - h)
                }
                (Some(_), None) => String::new(),
            };
            eprintln!(
                "{:<18} {:>8.1?} {:>7} {:>9.1} µs {:>9.1} µs {:>16} {:>9.0}",
                name,
                spacing,
                done,
                resolution,
                per_call,
                beyond,
                done as f64 / wall.as_secs_f64()
            );
            res.add(name, &format!("cpu/call, {label}"), per_call, "µs");
        }
    }
    res.save();
}

/// A pool of the `limit` scenario, a `static` as `#[offload(pool = ..)]` wants it.
static LIMIT_POOL: LazyLock<Pool> =
    LazyLock::new(|| Pool::builder().name("ot-limit").max_threads(8).build());

/// Bodies of the `limit` functions running now, and the most at once.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The body of every `limit` scenario call: counted, then a 10 ms sleep.
fn counted_sleep() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK_RUNNING.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(10));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

/// [`counted_sleep`] on [`LIMIT_POOL`], at most 8 at once.
#[offthread::offload(pool = LIMIT_POOL, limit = 8)]
fn limited_sleep() {
    counted_sleep()
}

/// [`counted_sleep`] on [`LIMIT_POOL`], without a limit.
#[offthread::offload(pool = LIMIT_POOL)]
fn pool8_sleep() {
    counted_sleep()
}

/// `limit = 8`: 80 concurrent 10 ms sleeps through a function with `limit = 8` on a pool of 8
/// threads, and the same without the limit. The anchors have no `limit`: they run the 80
/// calls behind a tokio `Semaphore` of 8, and without it. Wall time (median of 5 rounds) and
/// the most bodies running at once. At best 80 x 10 ms / 8 = 100 ms.
fn limit() {
    const CALLS: usize = 80;
    let rounds = if args().test { 1 } else { 5 };
    let mut res = results("limit");
    eprintln!(
        "\nlimit: {CALLS} concurrent 10 ms sleeps; offthread: `limit = 8` on a pool of \
         max_threads(8), and no limit on that pool; anchors: a tokio Semaphore(8), and none. \
         Median wall of {rounds} rounds, at best 100 ms with 8 at once"
    );
    eprintln!(
        "{:<15} {:>12} {:>14} {:>12} {:>14} {:>16}",
        "contender", "limited wall", "limited peak", "free wall", "free peak", "threads"
    );
    for who in CONTENDERS {
        let rt = runtime(true);
        let pool = (who == Contender::Offthread).then(|| (*LIMIT_POOL).clone());
        let watch = Watch::start(who, pool.as_ref());
        let run = |limited: bool| {
            PEAK_RUNNING.store(0, Ordering::SeqCst);
            let sem = Arc::new(tokio::sync::Semaphore::new(8));
            let walls: Vec<Duration> = (0..rounds)
                .map(|_| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..CALLS)
                            .map(|_| {
                                let sem = sem.clone();
                                tokio::spawn(async move {
                                    match (who, limited) {
                                        (Contender::Offthread, true) => limited_sleep().await,
                                        (Contender::Offthread, false) => pool8_sleep().await,
                                        (_, true) => {
                                            let _permit = sem.acquire().await;
                                            who.call(counted_sleep).await;
                                        }
                                        (_, false) => who.call(counted_sleep).await,
                                    }
                                })
                            })
                            .collect();
                        let all = async {
                            for t in tasks {
                                let _ = t.await;
                            }
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
                        start.elapsed()
                    })
                })
                .collect();
            (median(walls), PEAK_RUNNING.load(Ordering::SeqCst))
        };
        let (lim_wall, lim_peak) = run(true);
        let (free_wall, free_peak) = run(false);
        let threads = watch.peak();
        drop(rt);
        eprintln!(
            "{:<15} {:>12.1?} {:>14} {:>12.1?} {:>14} {:>16}",
            who.name(),
            lim_wall,
            lim_peak,
            free_wall,
            free_peak,
            watch.cell(threads)
        );
        let n = who.name();
        res.ms(n, "limited to 8: wall", lim_wall);
        res.count(n, "limited to 8: most bodies at once", lim_peak, "bodies");
        res.ms(n, "no limit: wall", free_wall);
        res.count(n, "no limit: most bodies at once", free_peak, "bodies");
        watch.record(&mut res, n, "", threads);
    }
    res.save();
}

/// The longest a [`Rendezvous`] waits for everyone.
const BARRIER_CAP: Duration = Duration::from_secs(10);

/// A barrier for `n` bodies that gives up after [`BARRIER_CAP`] (std's `Barrier` has no
/// timeout: a pool that never ran `n` bodies at once would hang the bench), and notes when the
/// last one arrived.
struct Rendezvous {
    n: usize,
    state: Mutex<(usize, Option<Instant>)>,
    cv: Condvar,
}

impl Rendezvous {
    fn new(n: usize) -> Rendezvous {
        Rendezvous {
            n,
            state: Mutex::new((0, None)),
            cv: Condvar::new(),
        }
    }

    /// Arrives and waits for the others: whether all came in time.
    fn arrive(&self) -> bool {
        let deadline = Instant::now() + BARRIER_CAP;
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        if st.0 == self.n {
            st.1 = Some(Instant::now());
            self.cv.notify_all();
        }
        for _ in 0..100_000 {
            let now = Instant::now();
            if st.1.is_some() || now >= deadline {
                break;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
        st.1.is_some()
    }

    /// When all `n` were running, if they were.
    fn all_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().1
    }
}

/// N bodies that each wait for all N (N = 16, 64; every contender can run that many threads):
/// the time from the first call until all N run. "cold" first (offthread: a new pool with
/// the default settings; spawn_blocking: a fresh runtime; unblock: its global pool as earlier
/// parts left it, since its idle threads stay), then "warm", right after on the same one.
fn barrier() {
    let mut res = results("barrier");
    eprintln!(
        "\nbarrier: N bodies each waiting for all N; time from the first call until all N run \
         (gives up at {BARRIER_CAP:?})"
    );
    eprintln!(
        "{:>3} {:<15} {:>12} {:>12}",
        "N", "contender", "cold", "warm"
    );
    let sizes: &[usize] = if args().test { &[16] } else { &[16, 64] };
    for &n in sizes {
        for who in CONTENDERS {
            let pool =
                (who == Contender::Offthread).then(|| Pool::builder().name("ot-barrier").build());
            let rt = runtime(true);
            let once = || {
                let r = Arc::new(Rendezvous::new(n));
                let start = Instant::now();
                rt.block_on(async {
                    let calls: Vec<_> = (0..n)
                        .map(|_| {
                            let r = r.clone();
                            tokio::spawn(who.call_on(&pool, move || r.arrive()))
                        })
                        .collect();
                    for c in calls {
                        let _ = c.await;
                    }
                });
                r.all_at().map(|t| t - start)
            };
            let cold = once();
            let warm = once();
            drop(rt);
            retire(pool);
            let show = |d: Option<Duration>| {
                d.map_or_else(|| "gave up".to_owned(), |d| format!("{d:.2?}"))
            };
            eprintln!(
                "{n:>3} {:<15} {:>12} {:>12}",
                who.name(),
                show(cold),
                show(warm)
            );
            for (what, d) in [("cold", cold), ("warm", warm)] {
                match d {
                    Some(d) => res.ms(who.name(), &format!("N={n}: all running, {what}"), d),
                    None => res.count(who.name(), &format!("N={n}: gave up, {what}"), 1, "runs"),
                }
            }
        }
    }
    res.save();
}

// ---------------------------------------------------------------------------------------
// no slow mode

/// The longest one contender's turn in a part of `no_slow_mode`, or one batch of
/// `throughput`, may take: its task is aborted then, and the table says so.
const TURN_CAP: Duration = Duration::from_secs(60);

/// `n` sequential trivial calls from one task, each awaited: each call's latency, in order.
async fn sequential(who: Contender, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        black_box(who.call(move || black_box(i)).await);
        lat.push(t.elapsed());
    }
    lat
}

/// p50 and p99 of latencies in any order.
fn p50_p99(lat: &[Duration]) -> (Duration, Duration) {
    let mut sorted = lat.to_vec();
    sorted.sort();
    (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
}

/// The median of `v` (the upper one of an even count), `NaN` if empty.
fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The smallest and largest of `v`.
fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Target "no slow mode": a sequential caller is back in the fast mode within a few calls
/// after any disturbance. One task makes sequential trivial calls, awaiting each, on one
/// multi-thread runtime with 2 workers kept for the whole scenario (offthread on its default
/// pool, as `offthread::spawn` and `#[offload]` use it). Three parts, each per contender, with
/// the p50 and p99 of the calls' latencies:
///
/// - `bursts`: bursts of 50 calls, a 2 ms `tokio::time::sleep` before each: all calls, each
///   burst's first call, and its other 49;
/// - `after`: 2 000 calls right after a disturbance: 5 000 `spawn_blocking` calls made one
///   after another on the same runtime; a 50 ms pause; 64 concurrent calls of a 5 ms sleep
///   on the same contender; 16 tasks making trivial calls to another offthread `Pool` for
///   100 ms;
/// - `turns`: 7 rounds in which each contender makes 20 000 calls in turn, in an order that
///   rotates from round to round: each round's p50 and p99 (median over rounds, and the
///   p50's range), the process's CPU time per call over the turn (`/proc/self/stat`, 10 ms
///   ticks: 0.5 µs per call), and offthread's p50 over spawn_blocking's in each round.
fn no_slow_mode() {
    let mut res = results("no_slow_mode");
    let rt = runtime(true);
    eprintln!(
        "\nno slow mode: one task making sequential trivial calls, awaiting each, on one \
         multi-thread runtime (2 workers) for the whole scenario; offthread on its default pool"
    );
    // The contenders' first threads start before anything is measured.
    for who in CONTENDERS {
        let _ = capped(&rt, TURN_CAP, sequential(who, 100));
    }
    no_slow_bursts(&rt, &mut res);
    no_slow_after(&rt, &mut res);
    no_slow_turns(&rt, &mut res);
    drop(rt);
    res.save();
}

/// `no_slow_mode`'s `bursts` part.
fn no_slow_bursts(rt: &tokio::runtime::Runtime, res: &mut Results) {
    const LEN: usize = 50;
    const GAP: Duration = Duration::from_millis(2);
    let bursts = scaled(200);
    eprintln!(
        "\n  bursts: {bursts} bursts of {LEN} sequential calls, a {GAP:?} sleep before each; \
         latency of every call, of each burst's first call and of calls 2-{LEN}"
    );
    eprintln!(
        "{:<15} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "contender", "all p50", "all p99", "first p50", "first p99", "rest p50", "rest p99"
    );
    for who in CONTENDERS {
        let n = who.name();
        let run = capped(rt, TURN_CAP, async move {
            let mut first = Vec::with_capacity(bursts);
            let mut rest = Vec::with_capacity(bursts * (LEN - 1));
            for _ in 0..bursts {
                tokio::time::sleep(GAP).await;
                let lat = sequential(who, LEN).await;
                first.push(lat[0]);
                rest.extend_from_slice(&lat[1..]);
            }
            (first, rest)
        });
        let Some((first, rest)) = run else {
            eprintln!("{n:<15} stopped after {TURN_CAP:?}");
            res.count(n, "bursts: stopped at the cap", 1, "runs");
            continue;
        };
        let all: Vec<Duration> = first.iter().chain(&rest).copied().collect();
        let (all50, all99) = p50_p99(&all);
        let (first50, first99) = p50_p99(&first);
        let (rest50, rest99) = p50_p99(&rest);
        eprintln!(
            "{n:<15} {all50:>10.1?} {all99:>10.1?} {first50:>10.1?} {first99:>10.1?} \
             {rest50:>10.1?} {rest99:>10.1?}"
        );
        res.us(n, "bursts p50", all50);
        res.us(n, "bursts p99", all99);
        res.us(n, "bursts first p50", first50);
        res.us(n, "bursts first p99", first99);
        res.us(n, "bursts rest p50", rest50);
        res.us(n, "bursts rest p99", rest99);
    }
}

/// What comes right before the measured calls in `no_slow_mode`'s `after` part.
#[derive(Clone, Copy)]
enum Disturbance {
    /// `calls` trivial `spawn_blocking` calls, one after another, on the same runtime.
    SpawnBlocking { calls: usize },
    /// The caller sleeps 50 ms.
    Pause,
    /// 64 concurrent calls of a 5 ms sleep on the same contender.
    Burst,
    /// 16 tasks making trivial calls to another offthread pool for 100 ms.
    OtherPool,
}

impl Disturbance {
    /// The name in the table and in the results file's metrics (`after NAME p50`).
    fn name(self) -> &'static str {
        match self {
            Disturbance::SpawnBlocking { .. } => "spawn_blocking",
            Disturbance::Pause => "pause",
            Disturbance::Burst => "burst",
            Disturbance::OtherPool => "other pool",
        }
    }

    /// Makes the disturbance; `who` is the contender measured next, `other` the other pool.
    async fn run(self, who: Contender, other: Pool) {
        match self {
            Disturbance::SpawnBlocking { calls } => {
                for i in 0..calls {
                    black_box(tokio::task::spawn_blocking(move || black_box(i)).await.ok());
                }
            }
            Disturbance::Pause => tokio::time::sleep(Duration::from_millis(50)).await,
            Disturbance::Burst => {
                let calls: Vec<_> = (0..64)
                    .map(|_| {
                        tokio::spawn(who.call(|| std::thread::sleep(Duration::from_millis(5))))
                    })
                    .collect();
                for c in calls {
                    let _ = c.await;
                }
            }
            Disturbance::OtherPool => {
                let end = Instant::now() + Duration::from_millis(100);
                let callers: Vec<_> = (0..16)
                    .map(|_| {
                        let other = other.clone();
                        tokio::spawn(async move {
                            // Bounded by count too: a million calls take seconds.
                            for i in 0..1_000_000usize {
                                if Instant::now() >= end {
                                    break;
                                }
                                black_box(other.spawn(move || black_box(i)).await);
                            }
                        })
                    })
                    .collect();
                for c in callers {
                    let _ = c.await;
                }
            }
        }
    }
}

/// `no_slow_mode`'s `after` part.
fn no_slow_after(rt: &tokio::runtime::Runtime, res: &mut Results) {
    let calls = scaled(2_000);
    let disturbances = [
        Disturbance::SpawnBlocking {
            calls: scaled(5_000),
        },
        Disturbance::Pause,
        Disturbance::Burst,
        Disturbance::OtherPool,
    ];
    let other = Pool::builder().name("ot-other").build();
    eprintln!(
        "\n  after: {calls} sequential calls right after: {} spawn_blocking calls one after \
         another (spawn_blocking); a 50 ms pause (pause); 64 concurrent 5 ms sleeps on the same \
         contender (burst); 16 tasks calling another offthread pool for 100 ms (other pool)",
        scaled(5_000)
    );
    eprintln!(
        "{:<16} {:<15} {:>10} {:>10}",
        "after", "contender", "p50", "p99"
    );
    for d in disturbances {
        for who in CONTENDERS {
            let n = who.name();
            let other = other.clone();
            let run = capped(rt, TURN_CAP, async move {
                d.run(who, other).await;
                sequential(who, calls).await
            });
            let Some(lat) = run else {
                eprintln!("{:<16} {n:<15} stopped after {TURN_CAP:?}", d.name());
                res.count(
                    n,
                    &format!("after {}: stopped at the cap", d.name()),
                    1,
                    "runs",
                );
                continue;
            };
            let (p50, p99) = p50_p99(&lat);
            eprintln!("{:<16} {n:<15} {p50:>10.1?} {p99:>10.1?}", d.name());
            res.us(n, &format!("after {} p50", d.name()), p50);
            res.us(n, &format!("after {} p99", d.name()), p99);
        }
    }
    retire(Some(other));
}

/// Where `who` is in [`CONTENDERS`].
fn index(who: Contender) -> usize {
    CONTENDERS.iter().position(|&c| c == who).unwrap_or(0)
}

/// `no_slow_mode`'s `turns` part.
fn no_slow_turns(rt: &tokio::runtime::Runtime, res: &mut Results) {
    let rounds = if args().test { 3 } else { 7 };
    let calls = scaled(20_000);
    eprintln!(
        "\n  turns: {rounds} rounds; in each, every contender makes {calls} sequential calls in \
         turn, in an order that rotates from round to round; median over rounds (and range) \
         of each round's figures; cpu/call: the process's CPU over the turn"
    );
    // Per contender: each round's p50 and p99 (µs), CPU per call (µs).
    let mut p50s: [Vec<f64>; 3] = Default::default();
    let mut p99s: [Vec<f64>; 3] = Default::default();
    let mut cpus: [Vec<f64>; 3] = Default::default();
    // offthread's p50 over spawn_blocking's, per round.
    let mut ratios = Vec::new();
    let mut stopped = [0usize; 3];
    for round in 0..rounds {
        let mut p50 = [None; 3];
        for k in 0..CONTENDERS.len() {
            let i = (round + k) % CONTENDERS.len();
            let who = CONTENDERS[i];
            let cpu0 = cpu_time();
            let run = capped(rt, TURN_CAP, sequential(who, calls));
            let cpu = cpu_time().saturating_sub(cpu0);
            let Some(lat) = run else {
                stopped[i] += 1;
                continue;
            };
            let (a, b) = p50_p99(&lat);
            p50[i] = Some(a.as_secs_f64() * 1e6);
            p50s[i].push(a.as_secs_f64() * 1e6);
            p99s[i].push(b.as_secs_f64() * 1e6);
            cpus[i].push(cpu.as_secs_f64() * 1e6 / calls as f64);
        }
        if let (Some(ot), Some(sb)) = (
            p50[index(Contender::Offthread)],
            p50[index(Contender::SpawnBlocking)],
        ) {
            ratios.push(ot / sb);
        }
    }
    eprintln!(
        "{:<15} {:>10} {:>20} {:>10} {:>10}",
        "contender", "p50", "p50 range", "p99", "cpu/call"
    );
    for (i, who) in CONTENDERS.into_iter().enumerate() {
        let n = who.name();
        let (lo, hi) = min_max(&p50s[i]);
        let (p50, p99, cpu) = (
            median_f64(p50s[i].clone()),
            median_f64(p99s[i].clone()),
            median_f64(cpus[i].clone()),
        );
        let note = match stopped[i] {
            0 => String::new(),
            s => format!("  ({s} turns stopped after {TURN_CAP:?})"),
        };
        eprintln!(
            "{n:<15} {p50:>7.2} µs {:>20} {p99:>7.2} µs {cpu:>7.2} µs{note}",
            format!("{lo:.2}-{hi:.2} µs")
        );
        res.add(n, "turns p50", p50, "µs");
        res.add(n, "turns p50 min", lo, "µs");
        res.add(n, "turns p50 max", hi, "µs");
        res.add(n, "turns p99", p99, "µs");
        res.add(n, "turns cpu/call", cpu, "µs");
        if stopped[i] > 0 {
            res.count(n, "turns stopped at the cap", stopped[i], "turns");
        }
    }
    let (lo, hi) = min_max(&ratios);
    let mid = median_f64(ratios.clone());
    eprintln!(
        "offthread's p50 / spawn_blocking's, per round: median {mid:.3}x ({lo:.3}-{hi:.3}x) \
         over {} rounds",
        ratios.len()
    );
    let n = Contender::Offthread.name();
    res.add(n, "turns p50 vs spawn_blocking", mid, "x");
    res.add(n, "turns p50 vs spawn_blocking min", lo, "x");
    res.add(n, "turns p50 vs spawn_blocking max", hi, "x");
}

// ---------------------------------------------------------------------------------------
// throughput

/// A rate for a table: `1.28 M`, `204.0 k`, `368`.
fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Targets 2 and 3 from one run: 16, 256 and 4096 concurrent callers (tokio tasks on one
/// multi-thread runtime with 2 workers, kept for the whole scenario), each making
/// back-to-back trivial calls, 65 536 calls a batch in all. Rounds interleave the contenders
/// (in an order that rotates from round to round); per contender the median over rounds of
/// jobs/s and the process's CPU time per job (`/proc/self/stat`, 10 ms ticks: 0.15 µs per
/// job), the most threads its pool had after a batch, and offthread's jobs/s over each
/// anchor's in the same round (median). criterion's `throughput` group in `benches/pool.rs`
/// times the same loop, one contender after another.
fn throughput() {
    let jobs = scaled(65_536);
    let rounds = if args().test { 2 } else { 5 };
    let mut res = results("throughput");
    let rt = runtime(true);
    eprintln!(
        "\nthroughput: concurrent callers making back-to-back trivial calls, about {jobs} a \
         batch; {rounds} rounds, the contenders in turn (rotating order) on one multi-thread \
         runtime (2 workers); median over rounds"
    );
    eprintln!(
        "{:>7} {:<15} {:>11} {:>22} {:>10} {:>16}",
        "callers", "contender", "jobs/s", "range", "cpu/job", "threads"
    );
    for callers in [16usize, 256, 4096] {
        let per_caller = (jobs / callers).max(4);
        let total = callers * per_caller;
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut cpus: [Vec<f64>; 3] = Default::default();
        let mut threads = [0usize; 3];
        let mut stopped = [0usize; 3];
        // offthread's jobs/s over spawn_blocking's and unblock's, per round.
        let (mut vs_sb, mut vs_unblock) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut this = [None; 3];
            for k in 0..CONTENDERS.len() {
                let i = (round + k) % CONTENDERS.len();
                let who = CONTENDERS[i];
                let cpu0 = cpu_time();
                let run = capped(&rt, TURN_CAP, async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..callers)
                        .map(|t| {
                            tokio::spawn(async move {
                                let mut acc = 0usize;
                                for j in 0..per_caller {
                                    acc += who.call(move || black_box(t + j)).await;
                                }
                                acc
                            })
                        })
                        .collect();
                    for t in tasks {
                        black_box(t.await.ok());
                    }
                    start.elapsed()
                });
                let cpu = cpu_time().saturating_sub(cpu0);
                let Some(took) = run else {
                    stopped[i] += 1;
                    continue;
                };
                // After the clock: reading the anchors' thread names takes milliseconds.
                threads[i] = threads[i].max(Gauge::new(who, None).now());
                let r = total as f64 / took.as_secs_f64();
                this[i] = Some(r);
                rates[i].push(r);
                cpus[i].push(cpu.as_secs_f64() * 1e6 / total as f64);
            }
            let ot = this[index(Contender::Offthread)];
            if let (Some(ot), Some(sb)) = (ot, this[index(Contender::SpawnBlocking)]) {
                vs_sb.push(ot / sb);
            }
            if let (Some(ot), Some(ub)) = (ot, this[index(Contender::Unblock)]) {
                vs_unblock.push(ot / ub);
            }
        }
        for (i, who) in CONTENDERS.into_iter().enumerate() {
            let n = who.name();
            let (lo, hi) = min_max(&rates[i]);
            let mid = median_f64(rates[i].clone());
            let cpu = median_f64(cpus[i].clone());
            let note = match stopped[i] {
                0 => String::new(),
                s => format!("  ({s} batches stopped after {TURN_CAP:?})"),
            };
            eprintln!(
                "{callers:>7} {n:<15} {:>9}/s {:>22} {cpu:>7.2} µs {:>16}{note}",
                rate(mid),
                format!("{}-{}", rate(lo), rate(hi)),
                threads[i]
            );
            res.add(n, &format!("{callers} callers: jobs/s"), mid, "jobs/s");
            res.add(n, &format!("{callers} callers: cpu/job"), cpu, "µs");
            res.count(
                n,
                &format!("{callers} callers: threads"),
                threads[i],
                "threads",
            );
            if stopped[i] > 0 {
                res.count(
                    n,
                    &format!("{callers} callers: batches stopped at the cap"),
                    stopped[i],
                    "batches",
                );
            }
        }
        let n = Contender::Offthread.name();
        for (anchor, v) in [("spawn_blocking", &vs_sb), ("unblock", &vs_unblock)] {
            let (lo, hi) = min_max(v);
            let mid = median_f64(v.clone());
            eprintln!(
                "{callers:>7} offthread / {anchor}, per round: median {mid:.2}x ({lo:.2}-{hi:.2}x)"
            );
            res.add(
                n,
                &format!("{callers} callers: jobs/s vs {anchor}"),
                mid,
                "x",
            );
        }
    }
    drop(rt);
    res.save();
}
