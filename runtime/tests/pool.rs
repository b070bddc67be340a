//! Behaviour of the pool and of `Offload<T>`: one test per promise they make.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::executor::block_on;
use offthread_runtime::{Error, Offload, Pool};
use support::{eventually, on_every_executor, Gate};

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Polls `fut` once with `waker`.
fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}
fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (Arc::clone(&c), Waker::from(c))
}

#[test]
fn offload_is_send_unpin_static() {
    fn assert_traits<T: Future<Output = u8> + Send + Unpin + 'static>(_: &T) {}
    let pool = Pool::builder().build();
    let call: Offload<u8> = pool.spawn(|| 1);
    assert_traits(&call);
    fn assert_pool<T: Clone + Send + Sync + 'static>() {}
    assert_pool::<Pool>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
}

#[test]
fn awaiting_gives_the_body_value_under_every_executor() {
    let pool = Pool::builder().name("exec").build();
    on_every_executor(|| {
        let pool = pool.clone();
        async move {
            let (value, name) = pool.spawn(|| (6 * 7, thread_name())).await;
            assert_eq!(value, 42);
            assert!(name.starts_with("exec-"), "ran on {name}");
            let many: Vec<_> = (0..64u64).map(|i| pool.spawn(move || i * i)).collect();
            let mut total = 0;
            for call in many {
                total += call.await;
            }
            assert_eq!(total, (0..64u64).map(|i| i * i).sum::<u64>());
        }
    });
}

#[test]
fn calling_runs_nothing_until_the_first_poll() {
    let pool = Pool::builder().build();
    let ran = Arc::new(AtomicBool::new(false));
    let call = {
        let ran = Arc::clone(&ran);
        pool.spawn(move || ran.store(true, SeqCst))
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(!ran.load(SeqCst));
    assert_eq!(
        pool.metrics().submitted,
        0,
        "not submitted before the first poll"
    );
    block_on(call);
    assert!(ran.load(SeqCst));
    assert_eq!(pool.metrics().submitted, 1);
}

#[test]
fn a_future_dropped_unpolled_is_never_counted() {
    let pool = Pool::builder().build();
    drop(pool.spawn(|| 1));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.cancelled), (0, 0));
}

#[test]
fn a_panic_resumes_in_the_awaiting_task_with_its_payload_and_the_worker_survives() {
    let pool = Pool::builder().name("solo").max_threads(1).build();
    let first = block_on(pool.spawn(thread_name));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(pool.spawn(|| std::panic::panic_any(String::from("db gone"))))
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "db gone");
    // Same single worker, still alive.
    assert_eq!(block_on(pool.spawn(thread_name)), first);
    assert_eq!(pool.metrics().threads, 1);
    assert_eq!(pool.metrics().panicked, 1);
}

#[test]
fn checked_turns_a_panic_into_an_error() {
    let pool = Pool::builder().build();
    on_every_executor(|| {
        let pool = pool.clone();
        async move {
            let err = pool
                .spawn(|| -> u8 { panic!("boom") })
                .checked()
                .await
                .unwrap_err();
            assert!(err.is_panic());
            assert!(!err.is_shutdown() && !err.is_timeout());
            assert!(err.to_string().contains("boom"));
            assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "boom");
            assert_eq!(pool.spawn(|| 5).checked().await.unwrap(), 5);
        }
    });
}

#[test]
#[should_panic(expected = "not a panic")]
fn into_panic_on_another_error_panics() {
    let pool = Pool::builder().build();
    pool.shutdown(Duration::ZERO);
    let err = block_on(pool.spawn(|| ()).checked()).unwrap_err();
    let _ = err.into_panic();
}

#[test]
fn bad_settings_are_errors_from_try_build_and_panics_from_build() {
    let cases = [
        (Pool::builder().max_threads(0), "max_threads(0)"),
        (
            Pool::builder().min_threads(3).max_threads(2),
            "min_threads (3)",
        ),
        (Pool::builder().queue_capacity(0), "queue_capacity(0)"),
    ];
    for (builder, needle) in cases {
        let err = builder.try_build().unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let panic = std::panic::catch_unwind(|| Pool::builder().max_threads(0).build()).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.contains("max_threads(0)"), "{msg}");
    assert!(Pool::builder()
        .min_threads(2)
        .max_threads(2)
        .try_build()
        .is_ok());
}

#[test]
fn threads_are_named_and_capped_and_start_on_demand() {
    let pool = Pool::builder().name("capped").max_threads(2).build();
    assert_eq!(pool.metrics().threads, 0, "no thread before the first job");
    let gate = Gate::default();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(HashSet::new()));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (gate, inside, max_inside, names) = (
                gate.clone(),
                Arc::clone(&inside),
                Arc::clone(&max_inside),
                Arc::clone(&names),
            );
            pool.spawn(move || {
                let now = inside.fetch_add(1, SeqCst) + 1;
                max_inside.fetch_max(now, SeqCst);
                names.lock().unwrap().insert(thread_name());
                gate.wait();
                inside.fetch_sub(1, SeqCst);
            })
        })
        .collect();
    let handle = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    eventually("two bodies running", || inside.load(SeqCst) == 2);
    assert_eq!(pool.metrics().queued, 4);
    gate.open();
    handle.join().unwrap();
    assert_eq!(max_inside.load(SeqCst), 2);
    assert!(pool.metrics().threads <= 2);
    let names = names.lock().unwrap();
    assert!(names.len() <= 2);
    for n in names.iter() {
        let suffix = n
            .strip_prefix("capped-")
            .expect("thread named {prefix}-{n}");
        suffix.parse::<usize>().expect("numbered thread");
    }
}

#[test]
fn idle_threads_above_min_exit_after_keep_alive() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let pool = {
        let stopped = Arc::clone(&stopped);
        Pool::builder()
            .min_threads(1)
            .max_threads(4)
            .keep_alive(Duration::from_millis(30))
            .on_thread_stop(move || {
                stopped.fetch_add(1, SeqCst);
            })
            .build()
    };
    let gate = Gate::default();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let gate = gate.clone();
            pool.spawn(move || gate.wait())
        })
        .collect();
    let handle = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    eventually("at least two threads", || pool.metrics().threads >= 2);
    gate.open();
    handle.join().unwrap();
    eventually("idle threads above min_threads exit", || {
        pool.metrics().threads == 1
    });
    assert!(stopped.load(SeqCst) >= 1);
    // min_threads stay, even after several keep-alive periods.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.metrics().threads, 1);
}

#[test]
fn hooks_run_on_each_worker() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let pool = {
        let started = Arc::clone(&started);
        Pool::builder()
            .name("hooked")
            .stack_size(1 << 20)
            .on_thread_start(move || started.lock().unwrap().push(thread_name()))
            .build()
    };
    block_on(pool.spawn(|| ()));
    let started = started.lock().unwrap();
    assert!(!started.is_empty());
    assert!(started.iter().all(|n| n.starts_with("hooked-")));
}

#[test]
fn a_full_queue_makes_submitters_wait_asynchronously_in_fifo_order() {
    let pool = Pool::builder().max_threads(1).queue_capacity(2).build();
    let gate = Gate::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let blocker = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let order = Arc::clone(&order);
            pool.spawn(move || order.lock().unwrap().push(i))
        })
        .collect();
    // One thread drives everything: if waiting for a slot blocked the thread, this would hang.
    let driver = std::thread::spawn(move || {
        let mut all = vec![blocker];
        all.extend(calls);
        block_on(futures::future::join_all(all));
    });
    eventually("the queue fills", || pool.metrics().queued == 2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        pool.metrics().queued,
        2,
        "never more than the capacity queued"
    );
    gate.open();
    driver.join().unwrap();
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn dropped_before_start_the_body_never_runs() {
    let pool = Pool::builder().max_threads(1).build();
    let gate = Gate::default();
    let blocker = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    let ran = Arc::new(AtomicBool::new(false));
    let mut victim = {
        let ran = Arc::clone(&ran);
        pool.spawn(move || ran.store(true, SeqCst))
    };
    let (_, waker) = counting_waker();
    let mut blocker = blocker;
    assert!(poll_once(&mut blocker, &waker).is_pending());
    eventually("blocker running", || pool.metrics().running == 1);
    assert!(poll_once(&mut victim, &waker).is_pending());
    assert_eq!(pool.metrics().queued, 1);
    drop(victim);
    assert_eq!(pool.metrics().queued, 0);
    gate.open();
    block_on(blocker);
    block_on(pool.spawn(|| ())); // the worker has passed the abandoned job by now
    assert!(!ran.load(SeqCst));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed, m.cancelled), (3, 2, 1));
}

#[test]
fn dropped_while_running_the_body_finishes_and_sees_is_cancelled() {
    let pool = Pool::builder().build();
    let gate = Gate::default();
    let seen = Arc::new(Mutex::new(None));
    let finished = Arc::new(AtomicBool::new(false));
    let mut call = {
        let (gate, seen, finished) = (gate.clone(), Arc::clone(&seen), Arc::clone(&finished));
        pool.spawn(move || {
            let before = offthread_runtime::is_cancelled();
            gate.wait();
            *seen.lock().unwrap() = Some((before, offthread_runtime::is_cancelled()));
            finished.store(true, SeqCst);
            vec![1u8; 16]
        })
    };
    let (_, waker) = counting_waker();
    assert!(poll_once(&mut call, &waker).is_pending());
    eventually("body running", || pool.metrics().running == 1);
    drop(call);
    gate.open();
    eventually("body finished", || finished.load(SeqCst));
    assert_eq!(*seen.lock().unwrap(), Some((false, true)));
    eventually("counted as completed", || pool.metrics().completed == 1);
    assert_eq!(pool.metrics().cancelled, 0);
}

#[test]
fn is_cancelled_is_false_outside_workers_and_in_live_calls() {
    assert!(!offthread_runtime::is_cancelled());
    let pool = Pool::builder().build();
    assert!(!block_on(pool.spawn(offthread_runtime::is_cancelled)));
}

#[test]
fn the_newest_waker_is_woken_when_it_changes_between_polls() {
    let pool = Pool::builder().build();
    let gate = Gate::default();
    let mut call = {
        let gate = gate.clone();
        pool.spawn(move || {
            gate.wait();
            9
        })
    };
    let (a, waker_a) = counting_waker();
    let (b, waker_b) = counting_waker();
    assert!(poll_once(&mut call, &waker_a).is_pending());
    assert!(poll_once(&mut call, &waker_b).is_pending());
    gate.open();
    eventually("woken", || b.0.load(SeqCst) == 1);
    assert_eq!(a.0.load(SeqCst), 0);
    assert_eq!(poll_once(&mut call, &waker_b), Poll::Ready(9));
}

#[test]
fn a_nested_call_on_the_same_pool_runs_inline_even_with_one_thread() {
    let pool = Pool::builder().name("nest").max_threads(1).build();
    let inner_pool = pool.clone();
    let (outer, inner) = block_on(pool.spawn(move || {
        let outer = thread_name();
        let inner = block_on(inner_pool.spawn(thread_name));
        (outer, inner)
    }));
    assert_eq!(outer, inner);
    assert!(outer.starts_with("nest-"));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed), (2, 2));
}

#[test]
fn shutdown_fails_queued_jobs_reports_running_ones_and_refuses_new_ones() {
    let pool = Pool::builder().name("closing").max_threads(1).build();
    let gate = Gate::default();
    let mut running = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    let mut queued = pool.spawn(|| 1);
    let (_, waker) = counting_waker();
    assert!(poll_once(&mut running, &waker).is_pending());
    eventually("running", || pool.metrics().running == 1);
    assert!(poll_once(&mut queued, &waker).is_pending());

    let report = pool.shutdown(Duration::from_millis(20));
    assert_eq!(report.still_running, 1);
    assert_eq!(report.failed, 1);

    let err = block_on(queued.checked()).unwrap_err();
    assert!(err.is_shutdown());
    assert!(err.to_string().contains("closing"), "{err}");

    let late = block_on(pool.spawn(|| 2).checked()).unwrap_err();
    assert!(late.is_shutdown());
    let plain =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(pool.spawn(|| 3))))
            .unwrap_err();
    let msg = plain.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("`closing`") && msg.contains("shut down"),
        "{msg}"
    );

    gate.open();
    block_on(running);
    eventually("threads exit after shutdown", || {
        pool.metrics().threads == 0
    });
}

#[test]
fn shutdown_lets_queued_work_finish_within_the_deadline() {
    let pool = Pool::builder().max_threads(2).build();
    let done = Arc::new(AtomicUsize::new(0));
    let mut calls: Vec<_> = (0..20)
        .map(|_| {
            let done = Arc::clone(&done);
            pool.spawn(move || {
                std::thread::sleep(Duration::from_millis(1));
                done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let (_, waker) = counting_waker();
    for c in &mut calls {
        let _ = poll_once(c, &waker);
    }
    let report = pool.shutdown(Duration::from_secs(30));
    assert_eq!(report, offthread_runtime::ShutdownReport::default());
    assert_eq!(done.load(SeqCst), 20);
    for c in calls {
        block_on(c);
    }
}

#[test]
fn dropping_every_handle_lets_queued_work_finish_then_stops_the_threads() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let pool = {
        let stopped = Arc::clone(&stopped);
        Pool::builder()
            .on_thread_stop(move || {
                stopped.fetch_add(1, SeqCst);
            })
            .build()
    };
    let call = pool.spawn(|| {
        std::thread::sleep(Duration::from_millis(5));
        7
    });
    drop(pool);
    // The future keeps its pool alive until it completes.
    assert_eq!(block_on(call), 7);
    eventually("workers stop once the pool is gone", || {
        stopped.load(SeqCst) >= 1
    });
}

#[test]
fn metrics_count_every_job_once() {
    let pool = Pool::builder().build();
    block_on(pool.spawn(|| std::thread::sleep(Duration::from_millis(10))));
    let _ = block_on(pool.spawn(|| panic!("counted")).checked());
    let m = pool.metrics();
    assert_eq!(m.submitted, 2);
    assert_eq!(m.completed, 1);
    assert_eq!(m.panicked, 1);
    assert_eq!(m.cancelled, 0);
    assert_eq!((m.queued, m.running), (0, 0));
    assert!(m.run_time >= Duration::from_millis(10), "{m:?}");
    assert!(m.threads >= 1 && m.idle_threads == m.threads);
}

#[test]
fn many_concurrent_callers_get_their_own_results() {
    let pool = Pool::builder().name("stress").build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..2_000u64)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut acc = 0;
                    for j in 0..5 {
                        acc += pool.spawn(move || i * 10 + j).await;
                    }
                    assert_eq!(acc, i * 50 + 10);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let m = pool.metrics();
    assert_eq!(m.submitted, 10_000);
    assert_eq!(m.completed, 10_000);
    assert!(
        m.threads <= 8,
        "trivial jobs must not grow the pool past 8 threads: {m:?}"
    );
}

#[test]
fn blocked_workers_make_the_pool_grow_past_the_cpu_count() {
    let pool = Pool::builder().max_threads(64).build();
    let gate = Gate::default();
    let inside = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let (gate, inside) = (gate.clone(), Arc::clone(&inside));
            pool.spawn(move || {
                inside.fetch_add(1, SeqCst);
                gate.wait();
            })
        })
        .collect();
    let handle = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    eventually("all 32 blocked bodies run at once", || {
        inside.load(SeqCst) == 32
    });
    assert!(pool.metrics().threads >= 32);
    gate.open();
    handle.join().unwrap();
}

#[test]
fn stress_drops_panics_and_completions_keep_the_books_balanced() {
    // Bounded: 4 000 calls, each body at most ~50 µs; some futures are dropped unpolled,
    // some after one poll (queued or running), some bodies panic.
    let pool = Pool::builder()
        .name("books")
        .max_threads(4)
        .queue_capacity(64)
        .build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..4_000u64)
            .map(|i| {
                let pool = pool.clone();
                let ran = Arc::clone(&ran);
                tokio::spawn(async move {
                    let call = pool.spawn(move || {
                        ran.fetch_add(1, SeqCst);
                        if i % 13 == 0 {
                            panic!("planned");
                        }
                        if i % 7 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        i
                    });
                    match i % 5 {
                        0 => drop(call),
                        1 => {
                            let mut call = call;
                            futures::future::poll_fn(|cx| {
                                let _ = Pin::new(&mut call).poll(cx);
                                Poll::Ready(())
                            })
                            .await;
                            tokio::task::yield_now().await;
                            drop(call);
                        }
                        _ => {
                            let r = call.checked().await;
                            match r {
                                Ok(v) => assert_eq!(v, i),
                                Err(e) => assert!(e.is_panic() && i % 13 == 0),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    eventually("every submitted job accounted for", || {
        let m = pool.metrics();
        m.queued == 0 && m.running == 0 && m.submitted == m.completed + m.panicked + m.cancelled
    });
    let m = pool.metrics();
    assert_eq!(
        m.submitted, 3_200,
        "dropped-unpolled calls are never submitted"
    );
    assert_eq!(
        ran.load(SeqCst) as u64,
        m.completed + m.panicked,
        "a body runs iff it is counted as completed or panicked: {m:?}"
    );
    assert!(m.threads <= 4);
}

#[test]
fn a_job_holding_a_limit_permit_runs_before_queued_plain_jobs() {
    use offthread_runtime::__private::{with_limit, Limit};
    static ONE: Limit = Limit::new(1);
    let pool = Pool::builder().max_threads(1).build();
    let gate = Gate::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (_, waker) = counting_waker();
    let mut blocker = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    assert!(poll_once(&mut blocker, &waker).is_pending());
    eventually("blocker running", || pool.metrics().running == 1);
    let mut plain: Vec<_> = (0..3)
        .map(|i| {
            let order = Arc::clone(&order);
            pool.spawn(move || order.lock().unwrap().push(format!("plain {i}")))
        })
        .collect();
    for call in &mut plain {
        assert!(poll_once(call, &waker).is_pending());
    }
    let mut limited = {
        let order = Arc::clone(&order);
        with_limit(
            pool.spawn(move || order.lock().unwrap().push("limited".to_owned())),
            &ONE,
        )
    };
    assert!(poll_once(&mut limited, &waker).is_pending());
    gate.open();
    block_on(async {
        blocker.await;
        limited.await;
        for call in plain {
            call.await;
        }
    });
    assert_eq!(order.lock().unwrap()[0], "limited");
}

#[test]
fn a_call_dropped_while_waiting_for_its_limit_never_runs_and_counts_as_cancelled() {
    use offthread_runtime::__private::{with_limit, Limit};
    static ONE: Limit = Limit::new(1);
    let pool = Pool::builder().build();
    let gate = Gate::default();
    let (_, waker) = counting_waker();
    let mut holder = {
        let gate = gate.clone();
        with_limit(pool.spawn(move || gate.wait()), &ONE)
    };
    assert!(poll_once(&mut holder, &waker).is_pending());
    eventually("holder running", || pool.metrics().running == 1);
    let ran = Arc::new(AtomicBool::new(false));
    let mut waiting = {
        let ran = Arc::clone(&ran);
        with_limit(pool.spawn(move || ran.store(true, SeqCst)), &ONE)
    };
    assert!(poll_once(&mut waiting, &waker).is_pending());
    assert_eq!(
        pool.metrics().queued,
        0,
        "waiting for a permit holds no queue slot"
    );
    drop(waiting);
    gate.open();
    block_on(holder);
    // The permit is free again: a new call gets it.
    block_on(with_limit(pool.spawn(|| ()), &ONE));
    assert!(!ran.load(SeqCst));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed, m.cancelled), (3, 2, 1));
}

#[test]
fn a_timeout_before_the_body_starts_means_it_never_starts() {
    use offthread_runtime::__private::{with_limit, with_timeout, Limit};
    static ONE: Limit = Limit::new(1);
    let pool = Pool::builder().max_threads(1).build();
    let gate = Gate::default();
    let (_, waker) = counting_waker();
    let mut blocker = {
        let gate = gate.clone();
        with_limit(pool.spawn(move || gate.wait()), &ONE)
    };
    assert!(poll_once(&mut blocker, &waker).is_pending());
    eventually("blocker running", || pool.metrics().running == 1);
    let ran = Arc::new(AtomicUsize::new(0));
    let call = |limited: bool| {
        let ran = Arc::clone(&ran);
        let call = pool.spawn(move || {
            ran.fetch_add(1, SeqCst);
            Ok::<_, Error>(())
        });
        let call = if limited {
            with_limit(call, &ONE)
        } else {
            call
        };
        with_timeout(call, Duration::from_millis(20))
    };
    // Queued behind the busy worker, and waiting for the limit's only permit.
    let queued = block_on(call(false)).unwrap_err();
    let waiting = block_on(call(true)).unwrap_err();
    assert!(queued.is_timeout() && waiting.is_timeout());
    gate.open();
    block_on(blocker);
    block_on(pool.spawn(|| ())); // the worker has passed the abandoned job by now
    assert_eq!(ran.load(SeqCst), 0);
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.queued), (2, 0));
}

#[test]
fn queue_wait_counts_the_time_jobs_spent_queued() {
    let pool = Pool::builder().max_threads(1).build();
    let (_, waker) = counting_waker();
    let mut first = pool.spawn(|| std::thread::sleep(Duration::from_millis(20)));
    assert!(poll_once(&mut first, &waker).is_pending());
    eventually("first running", || pool.metrics().running == 1);
    let mut second = pool.spawn(|| ());
    assert!(poll_once(&mut second, &waker).is_pending());
    block_on(async {
        first.await;
        second.await;
    });
    let m = pool.metrics();
    assert!(
        m.queue_wait >= Duration::from_millis(5),
        "the second job waited behind the first: {m:?}"
    );
}

/// The scheduling policy of the calling thread (Linux: field 41 of its `stat` file; 0 is
/// the ordinary class, 5 `SCHED_IDLE`).
#[cfg(target_os = "linux")]
fn scheduling_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    after_name
        .split_whitespace()
        .nth(41 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn idle_priority_puts_every_worker_and_only_workers_in_the_idle_class() {
    let pool = Pool::builder().max_threads(4).idle_priority(true).build();
    // Four bodies held at a gate: four workers, each asked for its class.
    let gate = Gate::default();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (pool, gate) = (pool.clone(), gate.clone());
            std::thread::spawn(move || {
                block_on(pool.spawn(move || {
                    gate.wait();
                    (thread_name(), scheduling_policy())
                }))
            })
        })
        .collect();
    eventually("four bodies running", || pool.metrics().running == 4);
    gate.open();
    let seen: Vec<_> = calls.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        seen.iter()
            .map(|(name, _)| name)
            .collect::<HashSet<_>>()
            .len(),
        4
    );
    assert!(seen.iter().all(|&(_, policy)| policy == 5), "{seen:?}");
    // The caller's thread, and a default pool's workers, keep the ordinary class.
    assert_eq!(scheduling_policy(), 0);
    let ordinary = Pool::builder().build();
    assert_eq!(block_on(ordinary.spawn(scheduling_policy)), 0);
    // A thread inherits its creator's class and cannot leave the idle class unprivileged:
    // a body that calls into an ordinary pool still gets that pool an ordinary worker.
    let from_a_body = block_on(pool.spawn(|| {
        let ordinary = Pool::builder().name("ordinary").build();
        let inner = block_on(ordinary.spawn(|| (thread_name(), scheduling_policy())));
        (scheduling_policy(), inner)
    }));
    assert_eq!(from_a_body.0, 5);
    assert!(from_a_body.1 .0.starts_with("ordinary-"), "{from_a_body:?}");
    assert_eq!(from_a_body.1 .1, 0, "{from_a_body:?}");
}
