//! An async service whose data layer is Diesel on SQLite or PostgreSQL, served three ways.
//!
//! ```text
//! cargo run --release --example orm [-- --users N --orders N --requests N --concurrency N --rounds N]
//! DATABASE_URL=postgres://user@host/db cargo run --release --example orm
//! ```
//!
//! It creates a database, seeds it, then serves the same stream of
//! requests (profile lookups, a join, a report, orders placed) from a tokio runtime with two
//! worker threads, while a heartbeat task that wakes every millisecond records how late it
//! is. The three ways:
//!
//! - **offthread**: the data layer's `#[offload]` functions (`db.rs`), awaited.
//! - **inline**: the same Diesel calls made directly inside the async tasks, the mistake
//!   offthread exists to prevent: each query stalls its executor thread.
//! - **spawn_blocking**: the same calls in hand-written `tokio::task::spawn_blocking`
//!   closures, each checking a connection out of a mutex-guarded pool.
//!
//! The stream is served in rounds, each way serving a round's slice of it in turn, in a
//! rotating order, on the seeded database restored: a shared machine's speed drifts, so
//! ways compared within a round were measured under the same conditions, and no way always
//! runs first. It prints one table (the median round's requests per second; latencies over
//! all rounds), offthread's speed relative to inline Diesel round by round, and checks that
//! in every round the three ways gave the same answers and left the same database; if not,
//! it exits with status 1.
//!
//! By default the databases are SQLite files in a temporary directory. With `DATABASE_URL`
//! set, they are schemas of that PostgreSQL database (`offthread_orm` for the seeded one,
//! `offthread_orm_<way>` for each way's), dropped and recreated by the run and dropped at
//! its end; nothing else in that database is touched.

mod db;
mod workload;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::QueryResult;

use db::{Database, Db};
use workload::{Answer, Request, Tally};

const TOKIO_WORKERS: usize = 2;
const HEARTBEAT: Duration = Duration::from_millis(1);

struct Args {
    users: usize,
    orders: usize,
    requests: usize,
    concurrency: usize,
    rounds: usize,
}

const USAGE: &str =
    "usage: orm [--users N] [--orders N] [--requests N] [--concurrency N] [--rounds N]
  --users N        users to seed (default 10000, at least 32)
  --orders N       orders to seed (default 100000)
  --requests N     requests served by each of the three ways (default 20000)
  --concurrency N  requests in flight at once (default 64)
  --rounds N       rounds the requests are split into, the ways taking turns (default 10)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        users: 10_000,
        orders: 100_000,
        requests: 20_000,
        concurrency: 64,
        rounds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--users" => &mut args.users,
            "--orders" => &mut args.orders,
            "--requests" => &mut args.requests,
            "--concurrency" => &mut args.concurrency,
            "--rounds" => &mut args.rounds,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument `{flag}`")),
        };
        let value = it.next().ok_or(format!("`{flag}` needs a number"))?;
        *slot = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("`{flag} {value}`: not a number"))?;
    }
    if args.users < 2 * workload::WRITE_EVERY as usize {
        return Err("--users must be at least 32".to_owned());
    }
    if args.concurrency == 0 || args.rounds == 0 || args.requests < args.rounds {
        return Err(
            "--concurrency and --rounds must be at least 1, --requests at least --rounds"
                .to_owned(),
        );
    }
    Ok(args)
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("offthread-orm-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The baselines' connections: a mutex-guarded stack, the simplest honest pool. A caller
/// takes one (or opens one when none is idle) and puts it back when done. Writers take
/// `writer` first, as `limit = 1` does for offthread: SQLite has one writer, and the others
/// would otherwise sleep in its busy handler.
struct Connections {
    database: Database,
    idle: Mutex<Vec<Db>>,
    writer: tokio::sync::Semaphore,
}

impl Connections {
    fn with<T>(&self, f: impl FnOnce(&mut Db) -> T) -> T {
        let idle = self.idle.lock().unwrap().pop();
        let mut conn = idle.unwrap_or_else(|| db::connect(&self.database));
        let result = f(&mut conn);
        self.idle.lock().unwrap().push(conn);
        result
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Offthread,
    Inline,
    SpawnBlocking,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Offthread => "offthread #[offload]",
            Way::Inline => "inline in async tasks",
            Way::SpawnBlocking => "tokio spawn_blocking",
        }
    }

    /// The name of the way's database, beside the seeded one.
    fn name(self) -> &'static str {
        match self {
            Way::Offthread => "offthread",
            Way::Inline => "inline",
            Way::SpawnBlocking => "spawn_blocking",
        }
    }

    async fn serve(self, conns: &Arc<Connections>, request: Request) -> QueryResult<Answer> {
        let _writer = match (self, request) {
            (Way::Inline | Way::SpawnBlocking, Request::PlaceOrder { .. }) => {
                Some(conns.writer.acquire().await.expect("never closed"))
            }
            _ => None,
        };
        match self {
            Way::Offthread => workload::serve_offloaded(request).await,
            Way::Inline => conns.with(|conn| workload::serve_blocking(conn, request)),
            Way::SpawnBlocking => {
                let conns = Arc::clone(conns);
                tokio::task::spawn_blocking(move || {
                    conns.with(|conn| workload::serve_blocking(conn, request))
                })
                .await
                .expect("spawn_blocking task")
            }
        }
    }
}

/// What one way measured in one round.
struct Report {
    elapsed: Duration,
    latencies: Vec<Duration>,
    lateness: Vec<Duration>,
    threads: usize,
    connections: usize,
    tally: Tally,
}

/// Records how late a task that wants to wake every millisecond actually wakes, until `stop`.
async fn heartbeat(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lateness = Vec::new();
    let mut due = Instant::now() + HEARTBEAT;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        lateness.push(now - due);
        due = now + HEARTBEAT;
    }
    lateness
}

/// A multi-thread runtime with two workers that counts the threads it starts (workers and
/// `spawn_blocking` threads alike).
fn runtime(started: &Arc<AtomicUsize>) -> tokio::runtime::Runtime {
    let started = Arc::clone(started);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKERS)
        .enable_time()
        .on_thread_start(move || {
            started.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("tokio runtime")
}

/// Serves `requests` one way, on `database` restored to the seeded one.
fn run(
    way: Way,
    seeded: &Database,
    database: &Database,
    requests: &Arc<Vec<Request>>,
    args: &Args,
) -> Report {
    db::reset_database(database, seeded).expect("restore the seeded database");
    let conns = Arc::new(Connections {
        database: database.clone(),
        idle: Mutex::new(Vec::new()),
        writer: tokio::sync::Semaphore::new(1),
    });
    let threads = Arc::new(AtomicUsize::new(0));
    let connections_before = db::CONNECTIONS_OPENED.load(Ordering::Relaxed);
    let rt = runtime(&threads);

    let (elapsed, mut answers, lateness) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let beat = tokio::spawn(heartbeat(Arc::clone(&stop)));
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let clients: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (next, requests, conns) =
                    (Arc::clone(&next), Arc::clone(requests), Arc::clone(&conns));
                tokio::spawn(async move {
                    let mut served = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&request) = requests.get(i) else {
                            return served;
                        };
                        // The request arrives; a real service would await it off a socket.
                        let t = Instant::now();
                        tokio::task::yield_now().await;
                        let answer = way.serve(&conns, request).await;
                        let answer = answer.unwrap_or_else(|e| panic!("request {i}: {e}"));
                        served.push((i, t.elapsed(), answer));
                    }
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for client in clients {
            answers.extend(client.await.expect("client task"));
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        (elapsed, answers, beat.await.expect("heartbeat task"))
    });
    let mut threads = threads.load(Ordering::Relaxed);
    if way == Way::Offthread {
        threads += db::DATA.metrics().threads;
    }
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(conns);
    let connections = db::CONNECTIONS_OPENED.load(Ordering::Relaxed) - connections_before;

    answers.sort_by_key(|&(i, ..)| i);
    let latencies = answers.iter().map(|&(_, d, _)| d).collect();
    let answers: Vec<Answer> = answers.into_iter().map(|(.., a)| a).collect();
    let fingerprint = db::fingerprint(&mut db::connect(database)).expect("fingerprint");
    Report {
        elapsed,
        latencies,
        lateness,
        threads,
        connections,
        tally: Tally::new(&answers, fingerprint),
    }
}

/// The `q` quantile of `v`, in milliseconds.
fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("orm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = TempDir::new().expect("create a temporary directory");
    let seeded = Database::from_env(dir.0.join("seeded.db"));

    let t = Instant::now();
    let tty = std::io::stderr().is_terminal();
    db::create_and_seed(&seeded, args.users, args.orders, |done, total| {
        if tty {
            eprint!("\rseeding {done}/{total} rows");
            let _ = std::io::stderr().flush();
        }
    })
    .expect("create and seed the database");
    if tty {
        eprintln!();
    }
    let seeding = t.elapsed();

    // How late the heartbeat is with nothing else running: the floor for the table.
    let idle = {
        let rt = runtime(&Arc::new(AtomicUsize::new(0)));
        rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let beat = tokio::spawn(heartbeat(Arc::clone(&stop)));
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.store(true, Ordering::Relaxed);
            beat.await.expect("heartbeat task")
        })
    };

    let requests = workload::requests(args.users, args.requests, 42);
    let slices: Vec<Arc<Vec<Request>>> = requests
        .chunks(args.requests.div_ceil(args.rounds))
        .map(|slice| Arc::new(slice.to_vec()))
        .collect();
    const WAYS: [Way; 3] = [Way::Offthread, Way::Inline, Way::SpawnBlocking];
    // Each way has a database of its own, restored to the seeded one before each round.
    let databases = WAYS.map(|way| {
        let copy = seeded.sibling(way.name());
        db::copy_database(&seeded, &copy).expect("copy the seeded database");
        copy
    });
    for (way, database) in WAYS.iter().zip(&databases) {
        if *way == Way::Offthread {
            db::use_database(database);
        }
    }
    let mut rounds: [Vec<Report>; 3] = Default::default();
    for (round, slice) in slices.iter().enumerate() {
        for turn in 0..WAYS.len() {
            let i = (round + turn) % WAYS.len();
            if tty {
                eprint!(
                    "\rround {}/{}: {:<22}",
                    round + 1,
                    slices.len(),
                    WAYS[i].label()
                );
                let _ = std::io::stderr().flush();
            }
            rounds[i].push(run(WAYS[i], &seeded, &databases[i], slice, &args));
        }
    }
    if tty {
        eprintln!();
    }

    // On PostgreSQL the schemas go too: the run leaves nothing behind in the database.
    for database in databases.iter().chain([&seeded]) {
        db::drop_database(database).expect("drop a database");
    }

    let mut idle = idle;
    println!("backend: {}", seeded.backend());
    println!(
        "{} users, {} orders seeded in {:.1} s; {} requests in {} rounds, {} in flight; \
         tokio: {} workers; offthread data pool: {} threads",
        args.users,
        args.orders,
        seeding.as_secs_f64(),
        args.requests,
        slices.len(),
        args.concurrency,
        TOKIO_WORKERS,
        db::data_threads(),
    );
    println!(
        "heartbeat every 1 ms; idle lateness p99 {:.2} ms, max {:.2} ms\n",
        quantile_ms(&mut idle, 0.99),
        quantile_ms(&mut idle, 1.0)
    );
    println!(
        "{:<22} {:>10} {:>8} {:>8} {:>14} {:>10} {:>8} {:>6}",
        "", "requests/s", "p50 ms", "p99 ms", "heartbeat p99", "late max", "threads", "conns"
    );
    let rate = |r: &Report| r.latencies.len() as f64 / r.elapsed.as_secs_f64();
    for (way, reports) in WAYS.iter().zip(&rounds) {
        let mut rates: Vec<f64> = reports.iter().map(rate).collect();
        rates.sort_by(f64::total_cmp);
        let mut latencies: Vec<Duration> = reports
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        let mut lateness: Vec<Duration> = reports
            .iter()
            .flat_map(|r| r.lateness.iter().copied())
            .collect();
        println!(
            "{:<22} {:>10.0} {:>8.2} {:>8.2} {:>11.2} ms {:>7.2} ms {:>8} {:>6}",
            way.label(),
            rates[rates.len() / 2],
            quantile_ms(&mut latencies, 0.5),
            quantile_ms(&mut latencies, 0.99),
            quantile_ms(&mut lateness, 0.99),
            quantile_ms(&mut lateness, 1.0),
            reports.iter().map(|r| r.threads).max().unwrap_or(0),
            reports.iter().map(|r| r.connections).max().unwrap_or(0),
        );
    }
    println!(
        "(requests/s: the median round's; latency: from a request's arrival to its answer, over \
         all rounds; threads: tokio's workers and blocking threads, plus the data pool's; \
         conns: database connections opened in a round)"
    );
    let mut ratios: Vec<f64> = rounds[0]
        .iter()
        .zip(&rounds[1])
        .map(|(o, i)| rate(o) / rate(i))
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "offthread / inline requests per second, compared within each round: median {:.2}x \
         (from {:.2}x to {:.2}x over {} rounds)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
    let m = db::DATA.metrics();
    println!(
        "offthread data pool: {} jobs submitted, {} completed, {} panicked; \
         mean queue wait {:.3} ms, mean run {:.3} ms",
        m.submitted,
        m.completed,
        m.panicked,
        m.queue_wait.as_secs_f64() * 1e3 / m.submitted.max(1) as f64,
        m.run_time.as_secs_f64() * 1e3 / m.submitted.max(1) as f64,
    );

    let mut ok = true;
    let (mut reads, mut writes) = (0, 0);
    for (round, reference) in rounds[0].iter().enumerate() {
        reads += reference.tally.reads.len() - reference.tally.writes;
        writes += reference.tally.writes;
        for (way, reports) in WAYS.iter().zip(&rounds).skip(1) {
            for difference in reference.tally.differences(&reports[round].tally) {
                eprintln!(
                    "MISMATCH in round {}: {} vs {}: {difference}",
                    round + 1,
                    WAYS[0].label(),
                    way.label(),
                );
                ok = false;
            }
        }
    }
    if ok {
        println!(
            "check: in every round the three ways agree on the answers and the final \
             database ({reads} reads, {writes} writes in all)"
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
