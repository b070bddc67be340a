//! offthread's pool side by side with the pools it is measured against:
//! `tokio::task::spawn_blocking` and smol's `blocking::unblock`, in one run.
//!
//! Run with `cargo bench --bench pool`, or pick parts with a filter argument:
//! `cargo bench --bench pool -- mixed`. Ratios between rows of one run are what counts;
//! absolute times move from run to run on shared machines.
//!
//! Two kinds of parts:
//!
//! - criterion groups `round_trip` (current-thread runtime), `round_trip_mt2` (multi-thread
//!   runtime, 2 workers), `throughput` and `sleep_1ms_x1000`: criterion's timings, with the
//!   thread counts printed to stderr;
//! - plain scenarios, each run once per contender, the contenders one after another in the
//!   same process, each printing one table to stderr and writing its figures to the results
//!   file: `summary`, `scenario/fast_behind_slow`, `scenario/mixed_stream`,
//!   `scenario/cpu_bound`, `scenario/idle_burst_idle`, `scenario/light_load`,
//!   `scenario/limit`, `scenario/barrier`.
//!
//! criterion reads the filter as a regex; the plain scenarios, which cannot ask criterion
//! for it, match it as a substring of their names (alternatives separated by `|`, or the
//! whole name with `--exact`). For plain words such as `mixed`, `scenario` or `summary` the
//! two agree.
//!
//! Results file: `target/offthread-bench/results.tsv` (under `$CARGO_TARGET_DIR` if set;
//! `$OFFTHREAD_BENCH_TSV` overrides the whole path). Tab-separated, one header line, then
//! `scenario, contender, metric, value, unit`. Each scenario replaces only its own rows when
//! it finishes, so a filtered run updates that scenario and keeps the others: the file holds
//! the latest figures of every scenario, not necessarily all from one run (compare rows of one
//! scenario with each other, as the tables do). `cargo run --example bench_chart` draws it as
//! `BENCHMARKS.svg`.
//!
//! Under criterion's test mode (`cargo test --benches`, or `-- --test`) the scenarios run at
//! about a tenth of their size, to check that they work, and write nothing.
//!
//! "threads" is the size of the contender's pool (see [`Gauge`]). offthread's default pool and
//! blocking's global pool keep idle threads from earlier parts: "(had N)" and the `threads
//! before` rows say how many it had when the turn began. A whole run takes about 4 minutes on
//! a 2-core machine.
//!
//! Every scenario is bounded in time: bodies that block wait on a [`Gate`] that is opened
//! when the measurement ends (and on unwinding), and that they leave by themselves after
//! [`SLOW_CAP`] in any case; every loop has a count bound.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use offthread::Pool;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Offthread,
    SpawnBlocking,
    Unblock,
}

const CONTENDERS: [Contender; 3] = [
    Contender::Offthread,
    Contender::SpawnBlocking,
    Contender::Unblock,
];

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Offthread => "offthread",
            Contender::SpawnBlocking => "spawn_blocking",
            Contender::Unblock => "unblock",
        }
    }

    /// Runs `f` off the executor the contender's way and awaits its value.
    async fn call<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self {
            Contender::Offthread => offthread::spawn(f).await,
            Contender::SpawnBlocking => tokio::task::spawn_blocking(f).await.unwrap(),
            Contender::Unblock => blocking::unblock(f).await,
        }
    }

    /// [`call`](Self::call), with offthread's calls going to `pool` when it is `Some` (the
    /// anchors have no pools of their own and ignore it). The future owns what it needs.
    fn call_on<T: Send + 'static>(
        self,
        pool: &Option<Pool>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let pool = pool.clone();
        async move {
            match (self, pool) {
                (Contender::Offthread, Some(pool)) => pool.spawn(f).await,
                _ => self.call(f).await,
            }
        }
    }
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Command line, results file

/// The command line as far as the plain scenarios need it. criterion parses it too, for its
/// own groups, but does not tell what it found.
struct Args {
    filter: Option<String>,
    exact: bool,
    /// `--list`: name the scenarios, run nothing.
    list: bool,
    /// `--ignored`: criterion runs nothing then; neither do the scenarios.
    ignored: bool,
    /// criterion's test mode: without `--bench` (`cargo test --benches`), or with `--test`.
    test: bool,
}

fn args() -> &'static Args {
    static ARGS: OnceLock<Args> = OnceLock::new();
    ARGS.get_or_init(|| {
        // criterion's options that take a value: that value is not the filter.
        const VALUED: &[&str] = &[
            "-s",
            "--save-baseline",
            "-b",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--profile-time",
            "--plotting-backend",
            "--output-format",
            "--format",
            "-c",
            "--color",
        ];
        let mut a = Args {
            filter: None,
            exact: false,
            list: false,
            ignored: false,
            test: false,
        };
        let mut bench = false;
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--bench" => bench = true,
                "--test" => a.test = true,
                "--list" => a.list = true,
                "--exact" => a.exact = true,
                "--ignored" => a.ignored = true,
                s if VALUED.contains(&s) => {
                    it.next();
                }
                s if s.starts_with('-') => {}
                s => {
                    if a.filter.is_none() {
                        a.filter = Some(s.to_owned());
                    }
                }
            }
        }
        a.test |= !bench;
        a
    })
}

/// Whether the plain scenario `name` is to run (see the filter rules at the top).
fn selected(name: &str) -> bool {
    let a = args();
    if a.list {
        println!("{name}: benchmark");
        return false;
    }
    if a.ignored {
        return false;
    }
    match &a.filter {
        None => true,
        Some(f) if a.exact => name == f,
        Some(f) => f.split('|').any(|alt| name.contains(alt)),
    }
}

/// `n` for a benchmark run, about a tenth of it in test mode.
fn scaled(n: usize) -> usize {
    if args().test {
        (n / 10).max(1)
    } else {
        n
    }
}

/// See the top of the file.
fn results_path() -> PathBuf {
    if let Some(p) = std::env::var_os("OFFTHREAD_BENCH_TSV") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("offthread-bench").join("results.tsv")
}

const TSV_HEADER: &str = "scenario\tcontender\tmetric\tvalue\tunit";

/// One scenario's figures, saved to the results file when the scenario ends.
struct Results {
    scenario: &'static str,
    rows: Vec<String>,
}

impl Results {
    fn new(scenario: &'static str) -> Results {
        Results {
            scenario,
            rows: Vec::new(),
        }
    }

    fn add(&mut self, contender: &str, metric: &str, value: f64, unit: &str) {
        if !value.is_finite() {
            return;
        }
        let value = if value.fract() == 0.0 {
            format!("{value}")
        } else {
            format!("{value:.3}")
        };
        self.rows.push(format!(
            "{}\t{contender}\t{metric}\t{value}\t{unit}",
            self.scenario
        ));
    }

    fn ms(&mut self, contender: &str, metric: &str, d: Duration) {
        self.add(contender, metric, d.as_secs_f64() * 1e3, "ms");
    }

    fn us(&mut self, contender: &str, metric: &str, d: Duration) {
        self.add(contender, metric, d.as_secs_f64() * 1e6, "µs");
    }

    fn count(&mut self, contender: &str, metric: &str, n: usize, unit: &str) {
        self.add(contender, metric, n as f64, unit);
    }

    /// Replaces this scenario's rows in the results file (nothing in test mode).
    fn save(self) {
        if args().test {
            return;
        }
        let path = results_path();
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            let mut out = format!("{TSV_HEADER}\n");
            for line in old.lines() {
                let scenario = line.split('\t').next().unwrap_or("");
                if !line.is_empty() && line != TSV_HEADER && scenario != self.scenario {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            for row in &self.rows {
                out.push_str(row);
                out.push('\n');
            }
            let tmp = path.with_extension("tsv.tmp");
            std::fs::write(&tmp, out)?;
            std::fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => eprintln!("({} rows -> {})", self.rows.len(), path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Threads, CPU time

/// Threads of this process whose name starts with `prefix` (Linux; names are cut at 15
/// bytes). Reads one small file per thread: a few milliseconds with hundreds of threads.
fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .count()
}

/// A pool of the `limit` scenario, a `static` as `#[offload(pool = ..)]` wants it.
static LIMIT_POOL: LazyLock<Pool> =
    LazyLock::new(|| Pool::builder().name("ot-limit").max_threads(8).build());

/// The worker threads of the runtimes made by [`runtime`]`(true)`.
const RUNTIME_WORKERS: usize = 2;

/// Counts the threads of a contender's pool: offthread's from its pool's metrics; the
/// anchors' by their default thread names, `blocking-N` for unblock's pool (global: threads
/// earlier parts left in it count, as offthread's default pool's do) and
/// `tokio-rt-worker` for spawn_blocking's, less the runtime's worker threads, which bear
/// the same name (so only one tokio runtime may be alive while it counts: each part drops a
/// contender's runtime before making the next one's).
///
/// Names, not the process's thread count against a baseline: a baseline taken while another
/// pool's threads come or go (offthread's keep-alive ending, say) would be off for the whole
/// turn. Reading names costs more, so watches sample the anchors less often; neither anchor
/// ends threads within a turn (tokio keeps idle ones 10 s, and blocking 1.7 keeps them while
/// its pool is below its limit of 500), so their count at the end of a turn is its peak.
struct Gauge {
    who: Contender,
    pool: Pool,
}

impl Gauge {
    fn new(who: Contender, pool: Option<&Pool>) -> Gauge {
        Gauge {
            who,
            pool: pool.unwrap_or(offthread::default_pool()).clone(),
        }
    }

    fn now(&self) -> usize {
        match self.who {
            Contender::Offthread => self.pool.metrics().threads,
            // "tokio-rt-worker" since tokio 1.50-ish, "tokio-runtime-worker" (cut to 15
            // bytes) before.
            Contender::SpawnBlocking => (threads_named("tokio-rt-worker")
                + threads_named("tokio-runtime-w"))
            .saturating_sub(RUNTIME_WORKERS),
            Contender::Unblock => threads_named("blocking-"),
        }
    }

    /// How often a [`Watch`] samples it.
    fn interval(&self) -> Duration {
        match self.who {
            Contender::Offthread => Duration::from_millis(5),
            _ => Duration::from_millis(50),
        }
    }
}

/// Samples a [`Gauge`] on a thread of its own, keeping the peak; stops when dropped.
struct Watch {
    gauge: Arc<Gauge>,
    /// The count when the watch started: threads a pool had from earlier parts.
    before: usize,
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(who: Contender, pool: Option<&Pool>) -> Watch {
        let gauge = Arc::new(Gauge::new(who, pool));
        let before = gauge.now();
        let peak = Arc::new(AtomicUsize::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (gauge, peak, stop) = (gauge.clone(), peak.clone(), stop.clone());
            move || {
                // At most 10 minutes.
                let rounds = Duration::from_secs(600).as_millis() / gauge.interval().as_millis();
                for _ in 0..rounds {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    peak.fetch_max(gauge.now(), Ordering::Relaxed);
                    std::thread::sleep(gauge.interval());
                }
            }
        });
        Watch {
            gauge,
            before,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The contender's threads now.
    fn now(&self) -> usize {
        let n = self.gauge.now();
        self.peak.fetch_max(n, Ordering::Relaxed);
        n
    }

    /// The most threads seen so far, now included.
    fn peak(&self) -> usize {
        self.now();
        self.peak.load(Ordering::Relaxed)
    }

    /// `peak` for a table: with the count the pool had at the start, if it had threads.
    fn cell(&self, peak: usize) -> String {
        match self.before {
            0 => peak.to_string(),
            had => format!("{peak} (had {had})"),
        }
    }

    /// Records the peak and the count at the start.
    fn record(&self, res: &mut Results, contender: &str, prefix: &str, peak: usize) {
        res.count(contender, &format!("{prefix}peak threads"), peak, "threads");
        res.count(
            contender,
            &format!("{prefix}threads before"),
            self.before,
            "threads",
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Shuts a scenario's own offthread pool down and waits (at most 3 s) for its threads to end,
/// so that they are gone before the next contender's turn.
fn retire(pool: Option<Pool>) {
    let Some(pool) = pool else { return };
    pool.shutdown(Duration::from_secs(2));
    for _ in 0..300 {
        if pool.metrics().threads == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(20));
}

/// CPU time of this process so far (user + system, all threads, those that ended included),
/// from `/proc/self/stat`. Its resolution is a clock tick, 10 ms: the scenarios that divide it
/// by a number of calls make enough calls for that to matter little, and say how much.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name; 100 Hz.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

/// The longest a body held by a [`Gate`] waits, should nobody open it.
const SLOW_CAP: Duration = Duration::from_secs(30);

/// Holds slow bodies until opened.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// Blocks until the gate opens, or `cap` has passed.
    fn wait(&self, cap: Duration) {
        let (open, cv) = &*self.0;
        let deadline = Instant::now() + cap;
        let mut open = open.lock().unwrap();
        for _ in 0..100_000 {
            let now = Instant::now();
            if *open || now >= deadline {
                return;
            }
            open = cv.wait_timeout(open, deadline - now).unwrap().0;
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Opens its gate when dropped, on unwinding too.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

// ---------------------------------------------------------------------------------------
// summary

/// The figures criterion does not give: round-trip percentiles
/// and CPU per call on a multi-thread runtime with 2 workers (one task awaiting each call in
/// turn), the same on a current-thread runtime beside them, and an executor heartbeat's
/// lateness while offloaded calls run. Printed as one table to stderr.
fn summary(_: &mut Criterion) {
    if !selected("summary") {
        return;
    }
    // /proc/self/stat counts 10 ms ticks: 50 000 calls make that 0.2 µs per call.
    let calls = scaled(50_000);
    let mut res = Results::new("summary");
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
// criterion groups

/// Sequential round trip of a trivial job from one task, current-thread runtime.
fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    for who in CONTENDERS {
        let rt = runtime(false);
        group.bench_function(who.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(who.call(move || black_box(i)).await);
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

/// Sequential round trip of a trivial job from one task on a multi-thread runtime with 2
/// workers: how a service's tasks meet it.
fn round_trip_mt2(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip_mt2");
    group.throughput(Throughput::Elements(1));
    for who in CONTENDERS {
        let rt = runtime(true);
        group.bench_function(who.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(rt.spawn(async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(who.call(move || black_box(i)).await);
                    }
                    start.elapsed()
                }))
                .unwrap()
            });
        });
    }
    group.finish();
}

/// A trivial function called through `#[offload]`.
#[offthread::offload]
fn trivial(i: u64) -> u64 {
    i
}

/// What `#[offload]` adds to a call made with `offthread::spawn`: the function's figures
/// (`offthread::function_metrics`), a few relaxed atomic additions and two clock reads per
/// call. Back-to-back calls from 1 and from 16 tasks (the latter sharing the function's
/// counters) on the 2-worker runtime.
fn macro_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("macro_overhead");
    for callers in [1_u64, 16] {
        let per_caller = 4_096 / callers;
        group.throughput(Throughput::Elements(callers * per_caller));
        for via_macro in [false, true] {
            let rt = runtime(true);
            let name = if via_macro { "offload" } else { "spawn" };
            group.bench_with_input(BenchmarkId::new(name, callers), &callers, |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let tasks: Vec<_> = (0..n)
                                .map(|t| {
                                    tokio::spawn(async move {
                                        let mut acc = 0u64;
                                        for i in 0..per_caller {
                                            acc += if via_macro {
                                                trivial(black_box(t + i)).await
                                            } else {
                                                offthread::spawn(move || black_box(t + i)).await
                                            };
                                        }
                                        acc
                                    })
                                })
                                .collect();
                            for t in tasks {
                                black_box(t.await.unwrap());
                            }
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

/// Many concurrent callers each making back-to-back trivial calls.
fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    for callers in [1_u64, 16, 256, 4096, 10_000] {
        let per_caller = (16_384 / callers).max(4);
        group.throughput(Throughput::Elements(callers * per_caller));
        for who in CONTENDERS {
            let rt = runtime(true);
            let peak = AtomicUsize::new(0);
            let gauge = Gauge::new(who, None);
            let had = gauge.now();
            // Process CPU per job over every timed batch (the runtime's and the pool's
            // threads alike), for the CPU-per-job figure criterion does not give.
            let jobs = AtomicUsize::new(0);
            let cpu = std::sync::Mutex::new(Duration::ZERO);
            group.bench_with_input(BenchmarkId::new(who.name(), callers), &callers, |b, &n| {
                b.iter_custom(|iters| {
                    let cpu0 = cpu_time();
                    jobs.fetch_add((iters * n * per_caller) as usize, Ordering::Relaxed);
                    let took = rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let tasks: Vec<_> = (0..n)
                                .map(|t| {
                                    tokio::spawn(async move {
                                        let mut acc = 0u64;
                                        for i in 0..per_caller {
                                            acc += who.call(move || black_box(t + i)).await;
                                        }
                                        acc
                                    })
                                })
                                .collect();
                            for t in tasks {
                                black_box(t.await.unwrap());
                            }
                        }
                        let took = start.elapsed();
                        peak.fetch_max(gauge.now(), Ordering::Relaxed);
                        took
                    });
                    *cpu.lock().unwrap() += cpu_time().saturating_sub(cpu0);
                    took
                });
            });
            // Nothing to say when the filter left this benchmark out.
            let peak = peak.load(Ordering::Relaxed);
            if peak > 0 {
                let jobs = jobs.load(Ordering::Relaxed).max(1);
                let per_job = *cpu.lock().unwrap() / u32::try_from(jobs).unwrap_or(u32::MAX);
                eprintln!(
                    "threads: {} with {callers} callers peaked at {peak} threads (had {had}); \
                     CPU {per_job:.2?} per job over {jobs} jobs",
                    who.name()
                );
            }
        }
    }
    group.finish();
}

/// 1000 concurrent calls that each sleep 1 ms: how fast, and with how many threads.
fn sleepers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sleep_1ms_x1000");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1000));
    for who in CONTENDERS {
        let rt = runtime(true);
        let peak = AtomicUsize::new(0);
        let gauge = Gauge::new(who, None);
        let had = gauge.now();
        group.bench_function(who.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..1000)
                            .map(|_| {
                                tokio::spawn(who.call(|| {
                                    std::thread::sleep(Duration::from_millis(1));
                                }))
                            })
                            .collect();
                        // offthread's count is cheap to read and could fall within an
                        // iteration: watch it. The anchors' is read after the timing (their
                        // threads stay; see `Gauge`).
                        let watch = async {
                            loop {
                                if who == Contender::Offthread {
                                    peak.fetch_max(gauge.now(), Ordering::Relaxed);
                                }
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                        };
                        let all = async {
                            for t in tasks {
                                t.await.unwrap();
                            }
                        };
                        tokio::select! {
                            () = all => {}
                            () = watch => {}
                        }
                    }
                    let took = start.elapsed();
                    peak.fetch_max(gauge.now(), Ordering::Relaxed);
                    took
                })
            });
        });
        // Nothing to say when the filter left this benchmark out.
        let peak = peak.load(Ordering::Relaxed);
        if peak > 0 {
            eprintln!(
                "threads: {} sleepers peaked at {peak} threads (had {had})",
                who.name()
            );
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// Target 7: S slow calls that hold their threads until released, then 20 calls of 1 ms made
/// one after another from one task; the worst and median latency of those (from the call to
/// its result). offthread runs on a fresh pool per S with room for 512 threads, and on its
/// default pool.
fn fast_behind_slow(_: &mut Criterion) {
    if !selected("scenario/fast_behind_slow") {
        return;
    }
    const FAST: usize = 20;
    let mut res = Results::new("fast_behind_slow");
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
fn mixed_stream(_: &mut Criterion) {
    if !selected("scenario/mixed_stream") {
        return;
    }
    const PERIOD: Duration = Duration::from_micros(200);
    let calls = scaled(10_000);
    let mut res = Results::new("mixed_stream");
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
fn cpu_bound(_: &mut Criterion) {
    if !selected("scenario/cpu_bound") {
        return;
    }
    const CALLERS: usize = 64;
    let per_caller = scaled(40).div_ceil(10);
    let rounds = if args().test { 1 } else { 3 };
    let iters = calibrate_5ms();
    let jobs = CALLERS * per_caller;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut res = Results::new("cpu_bound");
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
fn idle_burst_idle(_: &mut Criterion) {
    if !selected("scenario/idle_burst_idle") {
        return;
    }
    const KEEP_ALIVE: Duration = Duration::from_millis(200);
    let burst = scaled(500);
    let mut res = Results::new("idle_burst_idle");
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
fn light_load(_: &mut Criterion) {
    if !selected("scenario/light_load") {
        return;
    }
    let mut res = Results::new("light_load");
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
fn limit(_: &mut Criterion) {
    if !selected("scenario/limit") {
        return;
    }
    const CALLS: usize = 80;
    let rounds = if args().test { 1 } else { 5 };
    let mut res = Results::new("limit");
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
fn barrier(_: &mut Criterion) {
    if !selected("scenario/barrier") {
        return;
    }
    let mut res = Results::new("barrier");
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = summary, round_trip, round_trip_mt2, macro_overhead, throughput, sleepers,
        fast_behind_slow, mixed_stream, cpu_bound, idle_burst_idle, light_load, limit, barrier
}
criterion_main!(benches);
