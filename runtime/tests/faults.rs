//! Faults that must not hang a caller or take a worker down: user code that panics where a
//! pool runs it besides the body (a waker, a result's or payload's `Drop`, hooks), a pool
//! that cannot start threads, extreme settings, shutdown with bodies still running, and
//! nested calls.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::executor::block_on;
use offthread_runtime::Pool;
use support::{eventually, Gate};

/// Checks that `pool` still runs calls, on as many threads as it counts.
fn still_serves(pool: &Pool) {
    for i in 0..50 {
        assert_eq!(block_on(pool.spawn(move || i * 2)), i * 2);
    }
    let m = pool.metrics();
    assert_eq!(m.running, 0, "{m:?}");
    assert!(m.threads >= 1, "{m:?}");
}

/// Polls `call` once with a waker that does nothing: it must not be ready yet.
fn poll_pending<F: Future + Unpin>(call: &mut F) {
    let noop = futures::task::noop_waker();
    assert!(Pin::new(call)
        .poll(&mut Context::from_waker(&noop))
        .is_pending());
}

/// A body that holds one of `pool`'s threads until the gate opens, already running.
fn hold_the_thread(pool: &Pool) -> (Gate, offthread_runtime::Offload<()>) {
    let gate = Gate::default();
    let mut call = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    poll_pending(&mut call);
    eventually("the holding body runs", || pool.metrics().running >= 1);
    (gate, call)
}

/// A waker whose `wake` panics: the executor's code, run on a worker.
struct PanickyWaker(AtomicUsize);
impl Wake for PanickyWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
        panic!("waker panics");
    }
}

#[test]
fn a_waker_that_panics_does_not_take_the_worker_down() {
    let pool = Pool::builder().max_threads(1).build();
    let waker_state = Arc::new(PanickyWaker(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&waker_state));
    let gate = Gate::default();
    let mut call = {
        let gate = gate.clone();
        pool.spawn(move || {
            gate.wait();
            7
        })
    };
    assert!(Pin::new(&mut call)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    gate.open();
    eventually("the waker was called", || waker_state.0.load(SeqCst) == 1);
    // The result is there for the next poll.
    let noop = futures::task::noop_waker();
    assert_eq!(
        Pin::new(&mut call).poll(&mut Context::from_waker(&noop)),
        Poll::Ready(7)
    );
    still_serves(&pool);
    assert_eq!(pool.metrics().threads, 1);
}

/// A value whose `Drop` panics.
struct Grenade(Arc<AtomicBool>);
impl Drop for Grenade {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
        panic!("drop panics");
    }
}

#[test]
fn an_unwanted_result_whose_drop_panics_does_not_take_the_worker_down() {
    let pool = Pool::builder().max_threads(1).build();
    let dropped = Arc::new(AtomicBool::new(false));
    let gate = Gate::default();
    let mut call = {
        let (gate, dropped) = (gate.clone(), Arc::clone(&dropped));
        pool.spawn(move || {
            gate.wait();
            Grenade(dropped)
        })
    };
    poll_pending(&mut call);
    eventually("the body runs", || pool.metrics().running == 1);
    drop(call); // nobody wants the result: the worker drops it
    gate.open();
    eventually("the result was dropped", || dropped.load(SeqCst));
    still_serves(&pool);
    assert_eq!(pool.metrics().threads, 1);
}

#[test]
fn a_panic_payload_whose_drop_panics_does_not_take_the_worker_down() {
    let pool = Pool::builder().max_threads(1).build();
    let dropped = Arc::new(AtomicBool::new(false));
    let gate = Gate::default();
    let mut call = {
        let (gate, dropped) = (gate.clone(), Arc::clone(&dropped));
        pool.spawn(move || {
            gate.wait();
            std::panic::panic_any(Grenade(dropped))
        })
    };
    poll_pending(&mut call);
    eventually("the body runs", || pool.metrics().running == 1);
    drop(call);
    gate.open();
    eventually("the payload was dropped", || dropped.load(SeqCst));
    still_serves(&pool);
    assert_eq!(pool.metrics().panicked, 1);
}

#[test]
fn hooks_that_panic_do_not_stop_the_pool() {
    let pool = Pool::builder()
        .max_threads(2)
        .keep_alive(Duration::from_millis(1))
        .on_thread_start(|| panic!("start hook"))
        .on_thread_stop(|| panic!("stop hook"))
        .build();
    still_serves(&pool);
    // Idle threads exit (running the stop hook) and new ones start (running the start hook).
    eventually("idle threads exit", || pool.metrics().threads == 0);
    still_serves(&pool);
}

#[test]
fn with_no_thread_at_all_a_call_fails_promptly() {
    // A stack no OS can give: the pool cannot start a thread.
    let pool = Pool::builder().stack_size(usize::MAX / 2).build();
    for _ in 0..3 {
        let err = block_on(pool.spawn(|| 1).checked()).unwrap_err();
        assert!(err.is_no_threads(), "{err}");
        assert!(err.to_string().contains("refused to start"), "{err}");
    }
    let m = pool.metrics();
    assert_eq!(
        (m.threads, m.submitted, m.cancelled, m.queued),
        (0, 3, 3, 0)
    );
}

#[test]
fn extreme_settings_that_build_also_work() {
    use offthread_runtime::__private::with_timeout;
    let pool = Pool::builder()
        .min_threads(0)
        .max_threads(usize::MAX)
        .keep_alive(Duration::MAX)
        .queue_capacity(usize::MAX)
        .build();
    still_serves(&pool);
    let call = with_timeout(
        pool.spawn(|| Ok::<_, offthread_runtime::Error>(5)),
        Duration::MAX,
    );
    assert_eq!(block_on(call).unwrap(), 5);
    let report = pool.shutdown(Duration::MAX);
    assert_eq!((report.still_running, report.failed), (0, 0));
    assert_eq!(pool.metrics().threads, 0);
}

#[test]
fn shutdown_cancels_running_bodies_and_no_body_starts_after_it_returns() {
    let pool = Pool::builder().max_threads(1).build();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let later_ran = Arc::new(AtomicBool::new(false));
    let mut running = {
        let saw_cancel = Arc::clone(&saw_cancel);
        pool.spawn(move || {
            // A cooperative body: stops once its pool shuts down (bounded for safety).
            for _ in 0..10_000 {
                if offthread_runtime::is_cancelled() {
                    saw_cancel.store(true, SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .checked()
    };
    poll_pending(&mut running);
    eventually("the body runs", || pool.metrics().running == 1);
    let mut queued = {
        let later_ran = Arc::clone(&later_ran);
        pool.spawn(move || later_ran.store(true, SeqCst)).checked()
    };
    poll_pending(&mut queued);
    let report = pool.shutdown(Duration::from_secs(10));
    assert!(
        saw_cancel.load(SeqCst),
        "the running body saw is_cancelled()"
    );
    assert!(block_on(running).is_ok());
    // The queued call either ran within the deadline, or failed and never runs.
    match block_on(queued) {
        Ok(()) => assert!(later_ran.load(SeqCst)),
        Err(e) => {
            assert!(e.is_shutdown());
            std::thread::sleep(Duration::from_millis(50));
            assert!(!later_ran.load(SeqCst));
            assert_eq!(report.failed, 1);
        }
    }
}

#[test]
fn shutdown_with_a_stuck_body_reports_it_and_fails_the_queue() {
    let pool = Pool::builder().max_threads(1).build();
    let (gate, stuck) = hold_the_thread(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let mut queued = {
        let ran = Arc::clone(&ran);
        pool.spawn(move || ran.store(true, SeqCst)).checked()
    };
    poll_pending(&mut queued);
    let report = pool.shutdown(Duration::from_millis(50));
    assert_eq!((report.still_running, report.failed), (1, 1));
    assert!(block_on(queued).unwrap_err().is_shutdown());
    gate.open();
    block_on(stuck);
    std::thread::sleep(Duration::from_millis(20));
    assert!(!ran.load(SeqCst), "a failed job never runs");
}

#[test]
fn a_shutdown_right_after_a_submit_reports_the_job_as_running_or_failed() {
    // The call is queued while its worker is still starting (or just woken), and shutdown
    // gives up on the queue at once: a worker may take the job in between. Whoever ends it,
    // the report must count it, once, and agree with what the caller gets.
    for round in 0..300 {
        let pool = Pool::builder().min_threads(0).max_threads(2).build();
        if round % 2 == 1 {
            // A warm pool: its worker is parked or spinning, not starting.
            block_on(pool.spawn(|| ()));
        }
        let gate = Gate::default();
        let mut call = {
            let gate = gate.clone();
            pool.spawn(move || gate.wait()).checked()
        };
        poll_pending(&mut call);
        let report = pool.shutdown(Duration::ZERO);
        assert_eq!(
            report.still_running + report.failed,
            1,
            "round {round}: {report:?}"
        );
        gate.open();
        match block_on(call) {
            Ok(()) => assert_eq!(report.still_running, 1, "round {round}: it ran"),
            Err(e) => {
                assert!(e.is_shutdown(), "{e}");
                assert_eq!(report.failed, 1, "round {round}: it was failed");
            }
        }
    }
}

#[test]
fn a_nested_call_sees_the_outer_cancellation_and_may_block_on_futures() {
    let pool = Pool::builder().max_threads(4).build();
    // With room, the nested call is queued: its body may use an executor of its own.
    let inner = pool.clone();
    let v = block_on(pool.spawn(move || block_on(inner.spawn(|| block_on(async { 6 * 7 })))));
    assert_eq!(v, 42);

    // At the cap it runs inline, and sees the outer call's cancellation.
    let one = Pool::builder().max_threads(1).build();
    let inner = one.clone();
    let gate = Gate::default();
    let seen = Arc::new(AtomicBool::new(false));
    let mut outer = {
        let (gate, seen) = (gate.clone(), Arc::clone(&seen));
        one.spawn(move || {
            gate.wait();
            let seen = Arc::clone(&seen);
            block_on(inner.spawn(move || seen.store(offthread_runtime::is_cancelled(), SeqCst)));
        })
    };
    poll_pending(&mut outer);
    eventually("the outer body runs", || one.metrics().running == 1);
    drop(outer); // cancels the outer call
    gate.open();
    eventually("the nested body ran", || one.metrics().completed == 2);
    assert!(
        seen.load(SeqCst),
        "the inline nested body saw the outer cancellation"
    );
}

#[test]
fn a_bad_setting_panics_at_the_callers_line() {
    use std::sync::Mutex;
    static WHERE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if info.to_string().contains("max_threads(0)") {
            let at = info
                .location()
                .map(|l| l.file().to_owned())
                .unwrap_or_default();
            WHERE.lock().unwrap().push(at);
        }
    }));
    let built = std::panic::catch_unwind(|| Pool::builder().max_threads(0).build());
    std::panic::set_hook(previous);
    assert!(built.is_err());
    let at = WHERE.lock().unwrap().clone();
    assert_eq!(at.len(), 1, "{at:?}");
    assert!(
        at[0].ends_with("faults.rs"),
        "the panic points at {}",
        at[0]
    );
}

#[test]
fn a_waker_that_panics_while_waiting_for_a_queue_slot_does_not_take_the_worker_down() {
    // Found by the stress test: the worker that frees a queue slot wakes the next waiter.
    let pool = Pool::builder().max_threads(1).queue_capacity(1).build();
    let (gate, holder) = hold_the_thread(&pool);
    let mut queued = pool.spawn(|| 1);
    poll_pending(&mut queued);
    let mut waiting = pool.spawn(|| 2);
    let panicky = Waker::from(Arc::new(PanickyWaker(AtomicUsize::new(0))));
    assert!(Pin::new(&mut waiting)
        .poll(&mut Context::from_waker(&panicky))
        .is_pending());
    gate.open();
    assert_eq!(block_on(queued), 1);
    assert_eq!(block_on(waiting), 2);
    block_on(holder);
    still_serves(&pool);
    assert_eq!(pool.metrics().threads, 1);
}

#[test]
fn dropping_a_finished_call_whose_result_drop_panics_does_not_panic_the_caller() {
    // Found by the stress test: the caller drops the result it never took.
    let pool = Pool::builder().build();
    let dropped = Arc::new(AtomicBool::new(false));
    let noop = futures::task::noop_waker();
    let mut call = {
        let dropped = Arc::clone(&dropped);
        let gate = Gate::default();
        gate.open();
        pool.spawn(move || {
            gate.wait();
            Grenade(dropped)
        })
    };
    if let Poll::Ready(g) = Pin::new(&mut call).poll(&mut Context::from_waker(&noop)) {
        std::mem::forget(g);
        return;
    }
    eventually("the body ends", || pool.metrics().completed == 1);
    drop(call);
    assert!(dropped.load(SeqCst));
}
