//! offthread's pool side by side with the anchors of `shared/TARGETS.md`:
//! `tokio::task::spawn_blocking` and smol's `blocking::unblock`, in one run.
//!
//! Run with `cargo bench --bench pool`. Ratios between rows of one run are what counts;
//! absolute times move from run to run on shared machines. Besides criterion's timings,
//! the thread count each contender reached is printed to stderr.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[derive(Clone, Copy, Debug)]
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

/// Threads of this process now (Linux).
fn process_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The threads a contender has started, as far as they can be told apart: offthread's from
/// its metrics; for the others, the process's threads beyond `baseline` (taken before the
/// contender's first call, with offthread's own threads subtracted since its default pool
/// outlives a bench and may grow or shrink meanwhile).
fn threads(who: Contender, baseline: usize) -> usize {
    let ours = offthread::default_pool().metrics().threads;
    match who {
        Contender::Offthread => ours,
        _ => process_threads()
            .saturating_sub(ours)
            .saturating_sub(baseline),
    }
}

/// The process's threads that are not offthread's, before a contender runs.
fn baseline() -> usize {
    process_threads().saturating_sub(offthread::default_pool().metrics().threads)
}

/// CPU time of this process so far (user + system, all threads), from `/proc/self/stat`.
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
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The figures of `shared/TARGETS.md` that criterion does not give: round-trip percentiles,
/// CPU per call, and an executor heartbeat's lateness while offloaded calls run. Printed as
/// one table to stderr, once, before the criterion groups.
fn summary(_: &mut Criterion) {
    eprintln!(
        "\n{:<15} {:>10} {:>10} {:>12} {:>14} {:>14}",
        "contender", "rt p50", "rt p99", "cpu/call", "beat p99 idle", "beat p99 load"
    );
    for who in CONTENDERS {
        let rt = runtime(false);
        // Sequential round trips.
        const CALLS: usize = 50_000;
        let mut lat = Vec::with_capacity(CALLS);
        let cpu0 = cpu_time();
        rt.block_on(async {
            for i in 0..CALLS {
                let t = Instant::now();
                black_box(who.call(move || black_box(i)).await);
                lat.push(t.elapsed());
            }
        });
        let cpu = (cpu_time() - cpu0) / CALLS as u32;
        lat.sort();
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
            "{:<15} {:>10.1?} {:>10.1?} {:>12.1?} {:>14.1?} {:>14.1?}",
            who.name(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            cpu,
            idle,
            loaded
        );
    }
}

/// Sequential round trip of a trivial job from one task.
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

/// Many concurrent callers each making back-to-back trivial calls.
fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    for callers in [1_u64, 16, 256, 4096, 10_000] {
        let per_caller = (16_384 / callers).max(4);
        group.throughput(Throughput::Elements(callers * per_caller));
        for who in CONTENDERS {
            let rt = runtime(true);
            let peak = AtomicUsize::new(0);
            let base = baseline();
            group.bench_with_input(BenchmarkId::new(who.name(), callers), &callers, |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
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
                        peak.fetch_max(threads(who, base), Ordering::Relaxed);
                        start.elapsed()
                    })
                });
            });
            eprintln!(
                "threads: {} with {callers} callers peaked at {} threads",
                who.name(),
                peak.load(Ordering::Relaxed)
            );
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
        let base = baseline();
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
                        let watch = async {
                            loop {
                                peak.fetch_max(threads(who, base), Ordering::Relaxed);
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
                    start.elapsed()
                })
            });
        });
        eprintln!(
            "threads: {} sleepers peaked at {} threads",
            who.name(),
            peak.load(Ordering::Relaxed)
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = summary, round_trip, throughput, sleepers
}
criterion_main!(benches);
