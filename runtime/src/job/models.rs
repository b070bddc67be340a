//! Loom explores every interleaving of the job's state machine between the worker that
//! runs it, the future that polls or drops it, and the timer. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.

use super::*;
use crate::error::Error;
use crate::limit::{Limit, LimitRef, Permit};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

struct NoHook;
impl RunHooks for NoHook {
    fn started(&self) {}
    fn finished(&self, _: Outcome) {}
    fn release_slot(&self) {}
}

/// A waker that counts its wake-ups.
struct Flag(AtomicUsize);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn flag() -> (Arc<Flag>, Waker) {
    let f = Arc::new(Flag(AtomicUsize::new(0)));
    (Arc::clone(&f), Waker::from(f))
}

/// A model of three threads, with preemptions bounded as tokio's CI bounds its own: every
/// interleaving with up to three preemptions, in seconds rather than minutes.
fn three_threads(f: impl Fn() + Sync + Send + 'static) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(f);
}

/// Submit, start, complete: a pending poll is always woken, and the result arrives.
#[test]
fn loom_complete_wakes_the_poller() {
    loom::model(|| {
        let mut job = new_job(|| 7_u32);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || assert_eq!(job.run(&NoHook), Outcome::Completed))
        };
        let (count, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let first = job.poll_result(&mut cx);
        if first.is_pending() && job.is_done() {
            // DONE is published after the result: a poll that follows finds it.
            assert!(job.poll_result(&mut cx).is_ready());
            worker.join().unwrap();
            return;
        }
        worker.join().unwrap();
        match first {
            Poll::Ready(r) => {
                assert_eq!(r.unwrap(), 7);
                assert!(!job.is_done(), "a taken result no longer reads as done");
            }
            Poll::Pending => {
                assert!(job.is_done(), "a stored result reads as done");
                assert_eq!(count.0.load(SeqCst), 1, "a pending poll must be woken");
                assert_eq!(job.poll_result(&mut cx).map(Result::unwrap), Poll::Ready(7));
            }
        }
    });
}

/// Drop racing start: the body runs at most once, never after an abandon that found it
/// pending; abandoned while running, the body's result is dropped, not stored, and the
/// job reads as cancelled.
#[test]
fn loom_drop_races_start() {
    loom::model(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut job = {
            let ran = Arc::clone(&ran);
            new_job(move || {
                ran.fetch_add(1, SeqCst);
                7_u8
            })
        };
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        let found = job.abandon(None);
        let outcome = worker.join().unwrap();
        assert!(
            job.erase().is_cancelled(),
            "the abandoned job reads as cancelled"
        );
        match found {
            Abandoned::BeforeStart => {
                assert_eq!(outcome, Outcome::NotRun);
                assert_eq!(ran.load(SeqCst), 0);
            }
            Abandoned::WhileRunning | Abandoned::AfterEnd => {
                assert_eq!(outcome, Outcome::Completed);
                assert_eq!(ran.load(SeqCst), 1);
            }
        }
        assert!(!job.is_done());
    });
}

/// A waker replaced between polls: the result wakes the latest one.
#[test]
fn loom_waker_replaced_between_polls() {
    loom::model(|| {
        let mut job = new_job(|| 1_u8);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        let (count_a, waker_a) = flag();
        let (count_b, waker_b) = flag();
        let a = job.poll_result(&mut Context::from_waker(&waker_a));
        let b = if a.is_pending() {
            job.poll_result(&mut Context::from_waker(&waker_b))
        } else {
            Poll::Pending
        };
        worker.join().unwrap();
        if a.is_pending() && b.is_pending() {
            assert_eq!(count_b.0.load(SeqCst), 1, "the newest waker is woken");
            let _ = count_a;
            assert!(job
                .poll_result(&mut Context::from_waker(&waker_b))
                .is_ready());
        }
    });
}

/// Timer racing the worker: a pending poll is always woken, by one or the other.
#[test]
fn loom_expire_races_completion() {
    // Unbounded, this model took four minutes.
    three_threads(|| {
        let mut job = new_job(|| 3_u8);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        let timer = {
            let job = job.erase();
            loom::thread::spawn(move || job.expire())
        };
        let (count, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let polled = job.poll_result(&mut cx);
        let timed_out_seen = job.timed_out();
        worker.join().unwrap();
        timer.join().unwrap();
        if polled.is_pending() && !timed_out_seen {
            assert!(count.0.load(SeqCst) >= 1, "someone must wake the poller");
        }
    });
}

/// Shutdown failing a pending job racing the worker: exactly one of them wins.
#[test]
fn loom_fail_races_start() {
    loom::model(|| {
        let mut job = new_job(|| 5_u8);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        let failed = job.fail(Error::timeout(std::time::Duration::ZERO), None);
        let outcome = worker.join().unwrap();
        assert_eq!(failed, outcome == Outcome::NotRun);
        let waker = futures::task::noop_waker();
        match job.poll_result(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok(v)) => assert!(!failed && v == 5),
            Poll::Ready(Err(_)) => assert!(failed),
            Poll::Pending => panic!("the job must have an outcome"),
        }
    });
}

/// Counts live values of a type the job owns (a body, a result).
struct Tracked(Arc<AtomicUsize>);
impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Tracked {
        live.fetch_add(1, SeqCst);
        Tracked(Arc::clone(live))
    }
}
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The worker and a polled, then dropped, future race over the last handles: the body,
/// the result and the job are each dropped exactly once, whoever lets go last.
#[test]
fn loom_every_value_is_dropped_once_whoever_lets_go_last() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let mut job = {
            let in_body = Tracked::new(&live);
            let live = Arc::clone(&live);
            new_job(move || {
                drop(in_body);
                Tracked::new(&live)
            })
        };
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || {
                job.run(&NoHook);
            })
        };
        let (_count, waker) = flag();
        if job
            .poll_result(&mut Context::from_waker(&waker))
            .is_pending()
        {
            job.abandon(None);
        }
        drop(job);
        worker.join().unwrap();
        assert_eq!(live.load(SeqCst), 0, "a body or a result outlived the job");
    });
}

/// Polls once for a permit of `limit`.
fn try_acquire<L: LimitRef>(limit: L) -> Poll<Permit<L>> {
    let waker = futures::task::noop_waker();
    let mut acquire = limit.acquire();
    Pin::new(&mut acquire).poll(&mut Context::from_waker(&waker))
}

/// Checks that exactly one permit of `limit` (of one) is free: the job gave it back once.
fn one_permit_free<L: LimitRef>(limit: &L) {
    let Poll::Ready(again) = try_acquire(limit.clone()) else {
        panic!("the permit was not given back")
    };
    assert!(
        try_acquire(limit.clone()).is_pending(),
        "the permit was given back twice"
    );
    drop(again);
}

/// A `limit` permit is given back exactly once, by the worker when the body returns or
/// by the future that abandons the job before it starts.
#[test]
fn loom_limit_permit_is_given_back_once() {
    loom::model(|| {
        let limit: &'static Limit = Box::leak(Box::new(Limit::new(1)));
        let mut job = new_job(|| 1_u8);
        let Poll::Ready(permit) = try_acquire(limit) else {
            panic!("the only permit is free")
        };
        job.hold_limit(permit);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        job.abandon(None);
        drop(job);
        worker.join().unwrap();
        one_permit_free(&limit);
    });
}

/// A `limit` permit handed to a job that a worker may be starting meanwhile (the types
/// allow it, though `Offload` queues the job only later): the job records which limit
/// the permit is of before it says it holds one, so the worker that finds it held gives
/// it back to that limit after the body; a job found already started gives it back at
/// once. Never both, never neither.
#[test]
fn loom_limit_permit_handed_over_during_the_start_is_given_back_once() {
    loom::model(|| {
        let limit: &'static Limit = Box::leak(Box::new(Limit::new(1)));
        let mut job = new_job(|| 1_u8);
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || job.run(&NoHook))
        };
        let Poll::Ready(permit) = try_acquire(limit) else {
            panic!("the only permit is free")
        };
        job.hold_limit(permit);
        assert_eq!(worker.join().unwrap(), Outcome::Completed);
        let waker = futures::task::noop_waker();
        match job.poll_result(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok(1)) => {}
            _ => panic!("the body ran and its result waits"),
        }
        drop(job);
        one_permit_free(&limit);
    });
}

/// A worker's hooks that give the queue slot back to the pool's `slots`, as `Accounting`
/// does.
struct SlotHook(Arc<Limit>);
impl RunHooks for SlotHook {
    fn started(&self) {}
    fn finished(&self, _: Outcome) {}
    fn release_slot(&self) {
        self.0.release();
    }
}

/// The queue slot (`HOLDS_SLOT`) is given back exactly once, whoever takes the job out of
/// PENDING: the worker claiming it to run it, shutdown failing it, or the future abandoning
/// it. The losers give nothing back; afterwards one permit of the bounded queue is free,
/// not two (and not none).
#[test]
fn loom_queue_slot_is_given_back_once_whoever_wins() {
    three_threads(|| {
        let slots = Arc::new(Limit::new(1));
        let mut job = new_job(|| 2_u8);
        let Poll::Ready(permit) = try_acquire(Arc::clone(&slots)) else {
            panic!("the only slot is free")
        };
        job.hold_slot(permit);
        let worker = {
            let (job, hook) = (job.erase(), SlotHook(Arc::clone(&slots)));
            loom::thread::spawn(move || job.run(&hook))
        };
        let shutdown = {
            let (job, slots) = (job.erase(), Arc::clone(&slots));
            loom::thread::spawn(move || {
                job.fail(Error::timeout(std::time::Duration::ZERO), Some(&slots))
            })
        };
        let found = job.abandon(Some(&slots));
        let outcome = worker.join().unwrap();
        let failed = shutdown.join().unwrap();
        let winners = usize::from(found == Abandoned::BeforeStart)
            + usize::from(outcome != Outcome::NotRun)
            + usize::from(failed);
        assert_eq!(winners, 1, "exactly one party takes the job out of PENDING");
        drop(job);
        one_permit_free(&slots);
    });
}

/// The future abandoning its job (dropped, or timed out) while the timer expires it and a
/// worker runs it. No lost wake-up: a future that registered its waker and saw no event
/// is woken by the event that came before its abandon (which then leaves the waker in the
/// job, for the notifier to read), and by nobody if the abandon came first (taking the
/// waker back). The waker's clone in the job is dropped exactly once, the job is freed
/// once, and the body and the result are each dropped exactly once.
#[test]
fn loom_abandon_races_expire_and_the_worker() {
    three_threads(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let mut job = {
            let in_body = Tracked::new(&live);
            let live = Arc::clone(&live);
            new_job(move || {
                drop(in_body);
                Tracked::new(&live)
            })
        };
        let worker = {
            let job = job.erase();
            loom::thread::spawn(move || {
                job.run(&NoHook);
            })
        };
        let timer = {
            let job = job.erase();
            loom::thread::spawn(move || job.expire())
        };
        let (count, waker) = flag();
        let polled = job.poll_result(&mut Context::from_waker(&waker));
        // As `Offload` does: a pending poll looks for the deadline, and waits if it has
        // not passed. (A poll that met an event while registering returns with the waker
        // left in the cell, unpublished: it goes with the job.)
        let waiting = polled.is_pending() && !job.timed_out();
        drop(polled);
        job.abandon(None);
        // The waker's clones: `count`, `waker`, and the job's if it still has one.
        let kept_by_job = Arc::strong_count(&count) - 2;
        worker.join().unwrap();
        timer.join().unwrap();
        let wakes = count.0.load(SeqCst);
        if waiting {
            match kept_by_job {
                1 => assert!(wakes >= 1, "an event found the waker and did not wake it"),
                0 => assert_eq!(wakes, 0, "a waker taken back was woken"),
                n => panic!("{n} clones of the waker in the job"),
            }
        }
        drop(job);
        drop(waker);
        assert_eq!(
            Arc::strong_count(&count),
            1,
            "the job's waker was not dropped exactly once"
        );
        assert_eq!(live.load(SeqCst), 0, "a body or a result outlived the job");
    });
}
