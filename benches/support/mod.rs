//! What the two bench targets share: the contenders and how each is called, the runtimes,
//! the results file, thread counts and CPU time from `/proc`, percentiles, and the [`Gate`]
//! that holds slow bodies.
//!
//! Included by `benches/pool.rs` (criterion's groups) and `benches/scenarios.rs` (the plain
//! scenarios) as `mod support;`. A directory module: Cargo takes `benches/*.rs` and
//! `benches/*/main.rs` for bench targets, not `benches/support/mod.rs`.

// Each target uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use offthread::Pool;

// ---------------------------------------------------------------------------------------
// Contenders

/// offthread and the two pools it is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// `offthread::spawn` (the default pool), or a `Pool` of the part's own.
    Offthread,
    /// `tokio::task::spawn_blocking` on the part's runtime.
    SpawnBlocking,
    /// smol's `blocking::unblock` (one global pool).
    Unblock,
}

/// Every contender, in the order the tables show them.
pub const CONTENDERS: [Contender; 3] = [
    Contender::Offthread,
    Contender::SpawnBlocking,
    Contender::Unblock,
];

impl Contender {
    /// The name in the tables and the results file.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Offthread => "offthread",
            Contender::SpawnBlocking => "spawn_blocking",
            Contender::Unblock => "unblock",
        }
    }

    /// Runs `f` off the executor the contender's way and awaits its value.
    pub async fn call<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self {
            Contender::Offthread => offthread::spawn(f).await,
            Contender::SpawnBlocking => tokio::task::spawn_blocking(f).await.unwrap(),
            Contender::Unblock => blocking::unblock(f).await,
        }
    }

    /// [`call`](Self::call), with offthread's calls going to `pool` when it is `Some` (the
    /// anchors have no pools of their own and ignore it). The future owns what it needs.
    pub fn call_on<T: Send + 'static>(
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

// ---------------------------------------------------------------------------------------
// Runtimes

/// The worker threads of the runtimes made by [`runtime`]`(true)`.
pub const RUNTIME_WORKERS: usize = 2;

/// A tokio multi-thread runtime with [`RUNTIME_WORKERS`] workers (`multi`), as a service
/// runs, or a current-thread runtime.
pub fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
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
// Results file

/// Where the results go: `target/offthread-bench/results.tsv` (under `$CARGO_TARGET_DIR` if
/// set; `$OFFTHREAD_BENCH_TSV` overrides the whole path). Tab-separated, one header line
/// ([`TSV_HEADER`]), then `scenario, contender, metric, value, unit`. `benches/chart` reads
/// it by the same rule.
pub fn results_path() -> PathBuf {
    if let Some(p) = std::env::var_os("OFFTHREAD_BENCH_TSV") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("offthread-bench").join("results.tsv")
}

pub const TSV_HEADER: &str = "scenario\tcontender\tmetric\tvalue\tunit";

/// One scenario's figures, saved to the results file when the scenario ends.
///
/// Each scenario replaces only its own rows, so a filtered run updates that scenario and
/// keeps the others: the file holds the latest figures of every scenario, not necessarily
/// all from one run.
pub struct Results {
    scenario: &'static str,
    rows: Vec<String>,
    /// Whether [`save`](Self::save) writes the file (not in a quick test run).
    write: bool,
}

impl Results {
    pub fn new(scenario: &'static str, write: bool) -> Results {
        Results {
            scenario,
            rows: Vec::new(),
            write,
        }
    }

    pub fn add(&mut self, contender: &str, metric: &str, value: f64, unit: &str) {
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

    pub fn ms(&mut self, contender: &str, metric: &str, d: Duration) {
        self.add(contender, metric, d.as_secs_f64() * 1e3, "ms");
    }

    pub fn us(&mut self, contender: &str, metric: &str, d: Duration) {
        self.add(contender, metric, d.as_secs_f64() * 1e6, "µs");
    }

    pub fn count(&mut self, contender: &str, metric: &str, n: usize, unit: &str) {
        self.add(contender, metric, n as f64, unit);
    }

    /// Replaces this scenario's rows in the results file (nothing if made with `write`
    /// false).
    pub fn save(self) {
        if !self.write {
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
// Threads, CPU time, percentiles, Gate

/// Threads of this process whose name starts with `prefix` (Linux; names are cut at 15
/// bytes). Reads one small file per thread: a few milliseconds with hundreds of threads.
pub fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .count()
}

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
pub struct Gauge {
    who: Contender,
    pool: Pool,
}

impl Gauge {
    pub fn new(who: Contender, pool: Option<&Pool>) -> Gauge {
        Gauge {
            who,
            pool: pool.unwrap_or(offthread::default_pool()).clone(),
        }
    }

    pub fn now(&self) -> usize {
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
    pub fn interval(&self) -> Duration {
        match self.who {
            Contender::Offthread => Duration::from_millis(5),
            _ => Duration::from_millis(50),
        }
    }
}

/// Samples a [`Gauge`] on a thread of its own, keeping the peak; stops when dropped.
pub struct Watch {
    gauge: Arc<Gauge>,
    /// The count when the watch started: threads a pool had from earlier parts.
    pub before: usize,
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    pub fn start(who: Contender, pool: Option<&Pool>) -> Watch {
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
    pub fn now(&self) -> usize {
        let n = self.gauge.now();
        self.peak.fetch_max(n, Ordering::Relaxed);
        n
    }

    /// The most threads seen so far, now included.
    pub fn peak(&self) -> usize {
        self.now();
        self.peak.load(Ordering::Relaxed)
    }

    /// `peak` for a table: with the count the pool had at the start, if it had threads.
    pub fn cell(&self, peak: usize) -> String {
        match self.before {
            0 => peak.to_string(),
            had => format!("{peak} (had {had})"),
        }
    }

    /// Records the peak and the count at the start.
    pub fn record(&self, res: &mut Results, contender: &str, prefix: &str, peak: usize) {
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
pub fn retire(pool: Option<Pool>) {
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
pub fn cpu_time() -> Duration {
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

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

/// The longest a body held by a [`Gate`] waits, should nobody open it.
pub const SLOW_CAP: Duration = Duration::from_secs(30);

/// Holds slow bodies until opened.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// Blocks until the gate opens, or `cap` has passed.
    pub fn wait(&self, cap: Duration) {
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

    pub fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Opens its gate when dropped, on unwinding too.
pub struct OpenOnDrop(pub Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}
