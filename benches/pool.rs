//! offthread's pool side by side with the pools it is measured against,
//! `tokio::task::spawn_blocking` and smol's `blocking::unblock`: criterion's groups, timed
//! loops of one operation per contender, with the thread counts (and, for `throughput`, the
//! CPU time per job) printed to stderr.
//!
//! Run with `cargo bench --bench pool`, or pick groups with criterion's filter (a regex):
//! `cargo bench --bench pool -- round_trip`. Groups: `round_trip` (current-thread runtime),
//! `round_trip_mt2` (multi-thread runtime, 2 workers), `macro_overhead`, `throughput` (1 to
//! 10 000 concurrent callers) and `sleep_1ms_x1000`. Under criterion's test mode (`cargo
//! test --benches`, or `-- --test`) each runs once.
//!
//! The figures criterion does not give (percentiles, CPU per call, pools that stall, grow
//! and shrink) are the plain scenarios of `benches/scenarios.rs`, which write the results
//! file; this target writes nothing but criterion's own reports.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{cpu_time, runtime, Contender, Gauge, CONTENDERS};

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = round_trip, round_trip_mt2, macro_overhead, throughput, sleepers
}
criterion_main!(benches);
