//! offthread beside what Diesel users pick, on PostgreSQL, in one process and one run.
//!
//! ```text
//! DATABASE_URL=postgres://... cargo run --release -- [--rounds N] [--requests N] [--tasks N]
//!     [--users N] [--orders N] [--workload shop|sleep|both]
//! ```
//!
//! It seeds the schema `offthread_bench` (dropping it first if it is there) of the database
//! at `DATABASE_URL`, then for each workload serves the same request stream in rounds: in
//! each round every variant (see `variants.rs`) serves the round's slice of the stream in
//! turn, in an order that rotates from round to round, on the seeded data restored, from
//! its own tokio runtime with two worker threads, with 64 tasks making requests and a
//! heartbeat task that wants to wake every millisecond. Each variant has 8 connections.
//! It prints a table per workload (requests per second of the median round, and each
//! round's ratio to offthread; latencies and heartbeat lateness over all rounds; the
//! process's CPU time per request and its threads) and checks that in every round all
//! variants returned the same answers and left the same data; if not, it exits with 1.

mod db;
mod queries;
mod stats;
mod variants;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection};

use db::{Answer, Request, Tally};
use stats::median;
use variants::{Backend, Error, Variant, ALL, CONNECTIONS};

const TOKIO_WORKERS: usize = 2;

struct Args {
    users: usize,
    orders: usize,
    requests: usize,
    tasks: usize,
    rounds: usize,
    workloads: Vec<Workload>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// The shop mix: 80 % reads, 15 % writes, 5 % reports.
    Shop,
    /// The same, each report first holding its connection in `pg_sleep(0.05)`.
    Sleep,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Shop => "shop mix",
            Workload::Sleep => "shop mix, reports with pg_sleep(0.05)",
        }
    }
}

const USAGE: &str = "usage: offthread-bench-databases [--rounds N] [--requests N] [--tasks N] \
[--users N] [--orders N] [--workload shop|sleep|both]
  DATABASE_URL    the PostgreSQL database to use (its schema offthread_bench is replaced)
  --rounds N      rounds per workload (default 11)
  --requests N    requests each variant serves in each round (default 5000)
  --tasks N       concurrent client tasks (default 64)
  --users N       users to seed (default 10000)
  --orders N      orders to seed (default 100000)
  --workload W    shop, sleep (reports do pg_sleep(0.05)) or both (default)
  BENCH_THREADS=1 print each round's threads by name (and their CPU ticks)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        users: 10_000,
        orders: 100_000,
        requests: 5_000,
        tasks: 64,
        rounds: 11,
        workloads: vec![Workload::Shop, Workload::Sleep],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            _ => it.next().ok_or(format!("`{flag}` needs a value"))?,
        };
        let slot = match flag.as_str() {
            "--users" => &mut args.users,
            "--orders" => &mut args.orders,
            "--requests" => &mut args.requests,
            "--tasks" => &mut args.tasks,
            "--rounds" => &mut args.rounds,
            "--workload" => {
                args.workloads = match value.as_str() {
                    "shop" => vec![Workload::Shop],
                    "sleep" => vec![Workload::Sleep],
                    "both" => vec![Workload::Shop, Workload::Sleep],
                    _ => return Err(format!("unknown workload `{value}`")),
                };
                continue;
            }
            _ => return Err(format!("unknown argument `{flag}`")),
        };
        *slot = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("`{flag} {value}`: not a number"))?;
    }
    if args.users < 2 * db::WRITE_EVERY as usize || args.tasks == 0 || args.rounds == 0 {
        return Err("--users must be at least 32, --tasks and --rounds at least 1".to_owned());
    }
    if args.requests == 0 {
        return Err("--requests must be at least 1".to_owned());
    }
    Ok(args)
}

/// A multi-thread runtime with two workers (a fresh one for each variant's round, so that
/// one variant's blocking threads or connection tasks do not linger into the next).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What one variant measured in one round.
struct Round {
    elapsed: Duration,
    cpu: Duration,
    server_cpu: Duration,
    latencies: Vec<Duration>,
    lateness: Vec<Duration>,
    threads: usize,
    tally: Tally,
}

/// Serves `requests` with `variant`, on the seeded data restored.
fn run_round(
    variant: Variant,
    url: &str,
    admin: &mut PgConnection,
    requests: &Arc<Vec<Request>>,
    tasks: usize,
    postmaster: Option<u32>,
) -> Result<Round, Error> {
    let server_cpu_time = || postmaster.map_or(Duration::ZERO, stats::server_cpu_time);
    db::reset(admin)?;
    let rt = runtime();
    let (elapsed, cpu, server_cpu, mut answers, lateness, threads) = rt.block_on(async {
        let backend = Arc::new(Backend::open(variant, url).await?);
        let stop = Arc::new(AtomicBool::new(false));
        let beat = tokio::spawn(stats::heartbeat(Arc::clone(&stop)));
        let next = Arc::new(AtomicUsize::new(0));
        let cpu_before = stats::cpu_time();
        let server_cpu_before = server_cpu_time();
        let start = Instant::now();
        let clients: Vec<_> = (0..tasks)
            .map(|_| {
                let (next, requests, backend) = (
                    Arc::clone(&next),
                    Arc::clone(requests),
                    Arc::clone(&backend),
                );
                tokio::spawn(async move {
                    let mut served = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&request) = requests.get(i) else {
                            return Ok::<_, String>(served);
                        };
                        // The request arrives; a real service would await it off a socket.
                        let t = Instant::now();
                        tokio::task::yield_now().await;
                        let answer = backend
                            .serve(request)
                            .await
                            .map_err(|e| format!("request {i}: {e}"))?;
                        served.push((i, t.elapsed(), answer));
                    }
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for client in clients {
            answers.extend(client.await??);
        }
        let elapsed = start.elapsed();
        let cpu = stats::cpu_time() - cpu_before;
        let server_cpu = server_cpu_time().saturating_sub(server_cpu_before);
        // offthread's pool lives for the whole run: other variants do not count its threads.
        let threads = stats::threads(match variant {
            Variant::Offthread => None,
            _ => Some(variants::OFFTHREAD_NAME),
        });
        if std::env::var_os("BENCH_THREADS").is_some() {
            eprintln!(
                "\n{}: {threads} threads: {}",
                variant.label(),
                stats::thread_names()
            );
        }
        stop.store(true, Ordering::Relaxed);
        let lateness = beat.await?;
        drop(backend);
        Ok::<_, Error>((elapsed, cpu, server_cpu, answers, lateness, threads))
    })?;
    rt.shutdown_timeout(Duration::from_secs(10));

    answers.sort_by_key(|&(i, ..)| i);
    let latencies = answers.iter().map(|&(_, d, _)| d).collect();
    let answers: Vec<Answer> = answers.into_iter().map(|(.., a)| a).collect();
    let tally = Tally::new(&answers, db::order_count(admin)?, db::fingerprint(admin)?);
    Ok(Round {
        elapsed,
        cpu,
        server_cpu,
        latencies,
        lateness,
        threads,
        tally,
    })
}

fn rate(r: &Round) -> f64 {
    r.latencies.len() as f64 / r.elapsed.as_secs_f64()
}

/// Runs one workload; prints its table; returns whether all variants agreed.
fn run_workload(
    workload: Workload,
    url: &str,
    admin: &mut PgConnection,
    args: &Args,
    postmaster: Option<u32>,
) -> Result<bool, Error> {
    let sleepy = workload == Workload::Sleep;
    let stream = db::requests(args.users, args.requests * args.rounds, 42, sleepy);
    let slices: Vec<Arc<Vec<Request>>> = stream
        .chunks(args.requests)
        .map(|s| Arc::new(s.to_vec()))
        .collect();
    let mut rounds: Vec<Vec<Round>> = ALL.iter().map(|_| Vec::new()).collect();
    let started = Instant::now();
    for (round, slice) in slices.iter().enumerate() {
        for turn in 0..ALL.len() {
            let v = (round + turn) % ALL.len();
            eprint!(
                "\r{}: round {}/{}, {:<34}",
                workload.label(),
                round + 1,
                slices.len(),
                ALL[v].label()
            );
            let _ = std::io::stderr().flush();
            rounds[v].push(run_round(
                ALL[v], url, admin, slice, args.tasks, postmaster,
            )?);
        }
    }
    eprintln!();

    println!(
        "\n### {} ({} rounds of {} requests per variant, {:.0} s)\n",
        workload.label(),
        slices.len(),
        args.requests,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| variant | requests/s | vs offthread: median (min-max) | p50 ms | p99 ms | heartbeat p99 ms | client CPU µs/request | server CPU µs/request | threads |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let offthread = &rounds[0];
    for (variant, reports) in ALL.iter().zip(&rounds) {
        let mut rates: Vec<f64> = reports.iter().map(rate).collect();
        let mut ratios: Vec<f64> = reports
            .iter()
            .zip(offthread)
            .map(|(r, o)| rate(r) / rate(o))
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let mut latencies: Vec<Duration> = reports
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        let mut lateness: Vec<Duration> = reports
            .iter()
            .flat_map(|r| r.lateness.iter().copied())
            .collect();
        let cpu: Duration = reports.iter().map(|r| r.cpu).sum();
        let server_cpu: Duration = reports.iter().map(|r| r.server_cpu).sum();
        let served = latencies.len();
        let server_cpu = match postmaster {
            Some(_) => format!(
                "{:.0}",
                server_cpu.as_secs_f64() * 1e6 / served.max(1) as f64
            ),
            None => "n/a".to_owned(),
        };
        let ratio = if *variant == Variant::Offthread {
            "1".to_owned()
        } else {
            format!("{:.2}x ({:.2}-{:.2})", median(&mut ratios), lo, hi)
        };
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
            variant.label(),
            median(&mut rates),
            ratio,
            stats::quantile_ms(&mut latencies, 0.5),
            stats::quantile_ms(&mut latencies, 0.99),
            stats::quantile_ms(&mut lateness, 0.99),
            cpu.as_secs_f64() * 1e6 / served.max(1) as f64,
            server_cpu,
            reports.iter().map(|r| r.threads).max().unwrap_or(0),
        );
    }

    let mut ok = true;
    let (mut reads, mut writes) = (0, 0);
    for (round, reference) in offthread.iter().enumerate() {
        reads += reference.tally.reads.len() - reference.tally.writes;
        writes += reference.tally.writes;
        for (variant, reports) in ALL.iter().zip(&rounds).skip(1) {
            for difference in reference.tally.differences(&reports[round].tally) {
                eprintln!(
                    "MISMATCH in {}, round {}: {} vs {}: {difference}",
                    workload.label(),
                    round + 1,
                    ALL[0].label(),
                    variant.label()
                );
                ok = false;
            }
        }
    }
    if ok {
        println!(
            "\ncheck: in every round all {} variants agree on every answer and on the data \
             left ({reads} reads and reports, {writes} writes per variant)",
            ALL.len()
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("offthread-bench-databases: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("offthread-bench-databases: set DATABASE_URL to a PostgreSQL database\n{USAGE}");
        return ExitCode::from(2);
    };
    match run(&url, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("offthread-bench-databases: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(url: &str, args: &Args) -> Result<bool, Error> {
    let mut admin = PgConnection::establish(url)?;
    let t = Instant::now();
    db::create_and_seed(&mut admin, args.users, args.orders)?;
    let seeding = t.elapsed();
    variants::use_database(url);
    // The server's processes, if it runs on this machine (its CPU time is then reported).
    let postmaster = stats::postmaster_of(db::backend_pid(&mut admin)?);

    // How late the heartbeat is with nothing else running: the floor for the tables.
    let mut idle = runtime().block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let beat = tokio::spawn(stats::heartbeat(Arc::clone(&stop)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        beat.await.expect("heartbeat task")
    });
    println!(
        "{} users, {} orders seeded in {:.1} s; {} client tasks on a tokio runtime with {} \
         workers; {} connections per variant; {} CPUs; heartbeat every 1 ms, idle lateness \
         p99 {:.2} ms",
        args.users,
        args.orders,
        seeding.as_secs_f64(),
        args.tasks,
        TOKIO_WORKERS,
        CONNECTIONS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        stats::quantile_ms(&mut idle, 0.99),
    );

    let mut ok = true;
    for &workload in &args.workloads {
        ok &= run_workload(workload, url, &mut admin, args, postmaster)?;
    }
    let m = variants::PG.metrics();
    println!(
        "\n(requests/s: the median round's; vs offthread: each round's requests/s over \
         offthread's in the same round; latency: from a request's arrival to its answer, and \
         heartbeat lateness, over all rounds; client CPU: this process's user + system time \
         over the variant's rounds, per request; server CPU: the same for the server's processes \
         (its postmaster and children, in 10 ms ticks; n/a if it is not on this machine); \
         threads: \
         /proc/self/task at the end of the round, the most over rounds; offthread pool: {} \
         jobs, {} panicked)",
        m.submitted, m.panicked
    );
    Ok(ok)
}
