//! `on_cancel`: a cancel (a dropped future, a timeout, a shutdown) reaches a body that is
//! blocked and cannot poll `is_cancelled`, and never outlives the body.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::executor::block_on;
use offthread_runtime::{on_cancel, Pool};
use support::eventually;

/// How long a blocked body waits for its interrupt before it gives up: long enough that a
/// test whose cancel never came fails on the body's answer, not by hanging.
const GIVE_UP: Duration = Duration::from_secs(20);

/// What a blocked body saw: interrupted by its hook, or it gave up.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Interrupted,
    GaveUp,
}

/// A body that registers an interrupt and blocks until it comes, as a query does until the
/// driver's cancel reaches it. `ran_on` gets the name of the thread the hook ran on; `ended`
/// how the body ended.
fn blocked_body(
    started: Sender<()>,
    ran_on: Arc<Mutex<Option<String>>>,
    ended: Sender<Ended>,
) -> impl FnOnce() + Send + 'static {
    move || {
        let (interrupt, interrupted) = channel::<()>();
        on_cancel(move || {
            *ran_on.lock().unwrap() = std::thread::current().name().map(str::to_owned);
            let _ = interrupt.send(());
        });
        started.send(()).unwrap();
        let how = match interrupted.recv_timeout(GIVE_UP) {
            Ok(()) => Ended::Interrupted,
            Err(_) => Ended::GaveUp,
        };
        ended.send(how).unwrap();
    }
}

struct Probe {
    started: Receiver<()>,
    ran_on: Arc<Mutex<Option<String>>>,
    ended: Receiver<Ended>,
    body: Option<Box<dyn FnOnce() + Send>>,
}

fn probe() -> Probe {
    let (started_tx, started) = channel();
    let (ended_tx, ended) = channel();
    let ran_on = Arc::new(Mutex::new(None));
    Probe {
        started,
        ended,
        body: Some(Box::new(blocked_body(
            started_tx,
            Arc::clone(&ran_on),
            ended_tx,
        ))),
        ran_on,
    }
}

/// Polls `fut` once, so that its job is submitted.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    std::pin::Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

#[test]
fn dropping_the_call_runs_its_hook_on_the_pools_cancel_thread() {
    let pool = Pool::builder().name("dropper").build();
    let mut p = probe();
    let mut call = pool.spawn(p.body.take().unwrap());
    assert!(poll_once(&mut call).is_pending());
    p.started.recv().unwrap();
    drop(call);
    assert_eq!(p.ended.recv().unwrap(), Ended::Interrupted);
    let ran_on = p.ran_on.lock().unwrap().clone();
    assert_eq!(ran_on.as_deref(), Some("dropper-cancel"));
}

#[test]
fn a_timeout_runs_the_hook() {
    let pool = Pool::builder().name("timeouts").build();
    let mut p = probe();
    let body = p.body.take().unwrap();
    let (timeout, result) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let call = pool.spawn(body).checked();
            let r = tokio::time::timeout(Duration::from_millis(50), call).await;
            (r.is_err(), p.ended.recv().unwrap())
        });
    assert!(timeout, "the call outlived its timeout");
    assert_eq!(result, Ended::Interrupted);
}

#[test]
fn shutdown_runs_the_hooks_of_running_bodies() {
    let pool = Pool::builder().name("closing").build();
    let mut p = probe();
    let mut call = pool.spawn(p.body.take().unwrap()).checked();
    assert!(poll_once(&mut call).is_pending());
    p.started.recv().unwrap();
    let report = pool.shutdown(GIVE_UP);
    assert_eq!(p.ended.recv().unwrap(), Ended::Interrupted);
    assert_eq!(report.still_running, 0, "{report:?}");
    assert!(block_on(call).is_ok(), "the interrupted body returned");
}

#[test]
fn a_body_that_returns_first_drops_its_hook_unrun() {
    let pool = Pool::builder().name("returns").build();
    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let (r, d) = (Arc::clone(&ran), CountDrop(Arc::clone(&dropped)));
    let value = block_on(pool.spawn(move || {
        on_cancel(move || {
            let _keep = &d;
            r.store(true, SeqCst);
        });
        7
    }));
    assert_eq!(value, 7);
    assert_eq!(dropped.load(SeqCst), 1, "dropped when the body returned");
    assert!(!ran.load(SeqCst));
    // Dropping a call whose body already returned runs nothing either.
    let ran2 = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&ran2);
    let (done_tx, done) = channel();
    let mut call = pool.spawn(move || {
        on_cancel(move || r2.store(true, SeqCst));
        done_tx.send(()).unwrap();
    });
    let _ = poll_once(&mut call);
    done.recv().unwrap();
    eventually("the body has ended", || pool.metrics().running == 0);
    drop(call);
    assert!(!ran.load(SeqCst) && !ran2.load(SeqCst));
}

#[test]
fn outside_a_body_the_hook_is_dropped() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    on_cancel(move || r.store(true, SeqCst));
    assert_eq!(Arc::strong_count(&ran), 1, "dropped at once");
    assert!(!ran.load(SeqCst));
}

#[test]
fn a_hook_registered_on_a_cancelled_call_runs_at_once() {
    let pool = Pool::builder().name("late").build();
    let (started_tx, started) = channel();
    let (ran_tx, ran) = channel();
    let mut call = pool.spawn(move || {
        started_tx.send(()).unwrap();
        // Wait until the caller has gone, then register.
        let end = std::time::Instant::now() + GIVE_UP;
        while !offthread_runtime::is_cancelled() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (hook_ran, ran_here) = channel::<()>();
        on_cancel(move || {
            hook_ran.send(()).unwrap();
            ran_tx.send(()).unwrap();
        });
        // As a body should: look again before starting the work the hook would stop.
        assert!(offthread_runtime::is_cancelled());
        let _ = ran_here.recv_timeout(GIVE_UP);
    });
    assert!(poll_once(&mut call).is_pending());
    started.recv().unwrap();
    drop(call);
    ran.recv_timeout(GIVE_UP)
        .expect("the hook ran though the call was cancelled before it was registered");
}

#[test]
fn a_running_hook_is_waited_for_before_the_worker_takes_its_next_job() {
    // One worker: the next call runs on the same thread, as the next query on the same
    // connection would. A cancel meant for the first must be over by then.
    let pool = Pool::builder().name("serial").max_threads(1).build();
    let hook_done = Arc::new(AtomicBool::new(false));
    let (hook_started_tx, hook_started) = channel::<()>();
    let (started_tx, started) = channel();
    let done = Arc::clone(&hook_done);
    let mut first = pool.spawn(move || {
        on_cancel(move || {
            hook_started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            done.store(true, SeqCst);
        });
        started_tx.send(()).unwrap();
        // Return as soon as the hook has started, while it still runs.
        let _ = hook_started.recv_timeout(GIVE_UP);
    });
    assert!(poll_once(&mut first).is_pending());
    started.recv().unwrap();
    drop(first);
    let done = Arc::clone(&hook_done);
    let seen = block_on(pool.spawn(move || done.load(SeqCst)));
    assert!(
        seen,
        "the first call's hook was still running when the next call started"
    );
}

#[test]
fn every_hook_of_a_body_runs_and_each_once() {
    let pool = Pool::builder().name("several").build();
    let runs = Arc::new(AtomicUsize::new(0));
    let (started_tx, started) = channel();
    let (all_tx, all) = channel::<()>();
    let counted = Arc::clone(&runs);
    let mut call = pool.spawn(move || {
        let (tx, rx) = channel::<()>();
        for _ in 0..3 {
            let (runs, tx) = (Arc::clone(&counted), tx.clone());
            on_cancel(move || {
                runs.fetch_add(1, SeqCst);
                let _ = tx.send(());
            });
        }
        started_tx.send(()).unwrap();
        for _ in 0..3 {
            let _ = rx.recv_timeout(GIVE_UP);
        }
        all_tx.send(()).unwrap();
    });
    assert!(poll_once(&mut call).is_pending());
    started.recv().unwrap();
    drop(call);
    all.recv().unwrap();
    // Shutting the pool down afterwards fires nothing twice.
    pool.shutdown(GIVE_UP);
    assert_eq!(runs.load(SeqCst), 3);
}
