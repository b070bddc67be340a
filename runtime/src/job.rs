//! One job's shared state: the body, its result, the waiting task's waker, and the
//! permits it holds, in the single allocation a call costs.
//!
//! # States
//!
//! ```text
//!            worker takes the body                body returns
//!  Pending ─────────────────────────▶ Running ─────────────────────▶ Done ──▶ Taken
//!     │                                  │                            (future took it)
//!     │ future dropped / timed out /     │ future dropped or timed out:
//!     │ pool shut down                   │ `cancelled` set, the body runs on,
//!     ▼                                  ▼ its result is dropped on return
//!   Taken (body dropped unrun)        Taken
//! ```
//!
//! Exactly one party moves a job out of `Pending`: the worker that starts it, or the
//! future/shutdown that abandons it. That party also releases the queue-slot and `limit`
//! permits (a started body keeps its `limit` permit until it returns) and does the
//! pool's bookkeeping for the transition, so nothing is counted twice.
//!
//! # Who wakes whom
//!
//! The future stores its waker under the job's lock on every `Pending` poll (replacing it
//! only when `will_wake` says it changed). Whoever stores a result (the worker, or shutdown
//! failing the job) takes the waker under the same lock and wakes it after unlocking, so a
//! result is never missed and no waker runs under our lock. A timeout sets `timed_out` and
//! wakes the same way; the future then abandons the job itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::limit::{Limit, Permit};
use crate::sync::{lock, AtomicBool, Mutex, Ordering};
use std::sync::Arc;

/// How a job ended on the thread that ran it, for the pool's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The body was not run: the job had already been abandoned.
    NotRun,
    /// The body returned.
    Completed,
    /// The body panicked.
    Panicked,
}

/// What [`Task::abandon`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// The body had not started and never will: it was dropped.
    BeforeStart,
    /// The body is running; it will see `is_cancelled()` and its result will be dropped.
    WhileRunning,
    /// The body had already finished (or the job was already abandoned).
    AfterEnd,
}

/// Lets the runner tell the pool when the body really starts and ends, so the pool counts
/// only jobs that run, and has counted a job before its future can see the result.
pub(crate) trait RunHooks {
    fn started(&self);
    fn finished(&self, outcome: Outcome);
}

/// The type-erased side of a job, seen by the queue, the workers and the timer.
pub(crate) trait Run: Send + Sync {
    /// Runs the body on this thread if it is still pending.
    fn run(&self, hook: &dyn RunHooks) -> Outcome;
    /// Fails a still-pending job with `err` (shutdown). True if it was pending.
    fn fail(&self, err: Error) -> bool;
    /// Marks the job timed out and wakes its future, which then abandons it.
    fn expire(&self);
    /// True once the future was dropped or timed out: `offthread::is_cancelled()`.
    fn is_cancelled(&self) -> bool;
}

/// The typed side of a job, seen by its [`Offload`](crate::Offload).
pub(crate) trait Task<T>: Run {
    /// The result if there is one, else registers the waker.
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>;
    /// The future gives up on the job (dropped or timed out).
    fn abandon(&self) -> Abandoned;
    /// True once the timer fired for this job.
    fn timed_out(&self) -> bool;
    /// True once a result is stored (the next `poll_result` is ready), read without a lock.
    fn is_done(&self) -> bool;
    /// Hands the job a `limit` permit, held until the body returns.
    fn hold_limit(&self, permit: Permit<&'static Limit>);
    /// Hands the job a queue slot, held until it leaves the queue.
    fn hold_slot(&self, permit: Permit<Arc<Limit>>);
}

/// Runs user code (a waker, a `Drop`) that must not unwind into the pool's threads: a
/// panic is caught and its payload dropped, or leaked if dropping it panics too.
pub(crate) fn contain(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
    }
}

enum Stage<F, T> {
    Pending(F),
    Running,
    Done(Result<T, Error>),
    Taken,
}

struct Inner<F, T> {
    stage: Stage<F, T>,
    /// The waker of the task awaiting the result.
    waker: Option<Waker>,
    /// The `limit = N` permit: released when the body returns or the job is abandoned.
    limit: Option<Permit<&'static Limit>>,
    /// The bounded-queue slot: released when the job leaves `Pending`.
    slot: Option<Permit<Arc<Limit>>>,
}

/// A job: the body `F` producing `T`, and everything shared about it.
pub(crate) struct Job<F, T> {
    inner: Mutex<Inner<F, T>>,
    /// The future is gone or timed out; read lock-free by `is_cancelled()`.
    cancelled: AtomicBool,
    /// The timer fired; the future must resolve with a timeout error.
    timed_out: AtomicBool,
    /// A result is stored (set under the lock, read without it by a caller spinning for
    /// a quick result).
    done: AtomicBool,
}

impl<F, T> Job<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    pub(crate) fn new(body: F) -> Job<F, T> {
        Job {
            inner: Mutex::new(Inner {
                stage: Stage::Pending(body),
                waker: None,
                limit: None,
                slot: None,
            }),
            cancelled: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            done: AtomicBool::new(false),
        }
    }
}

impl<F, T> Run for Job<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(&self, hook: &dyn RunHooks) -> Outcome {
        let (body, slot) = {
            let mut inner = lock(&self.inner);
            match std::mem::replace(&mut inner.stage, Stage::Running) {
                Stage::Pending(body) => (body, inner.slot.take()),
                other => {
                    inner.stage = other;
                    return Outcome::NotRun;
                }
            }
        };
        contain(|| drop(slot));
        hook.started();
        let result = catch_unwind(AssertUnwindSafe(body)).map_err(Error::panic);
        let outcome = if result.is_ok() {
            Outcome::Completed
        } else {
            Outcome::Panicked
        };
        hook.finished(outcome);
        let (limit, waker, unwanted) = {
            let mut inner = lock(&self.inner);
            let limit = inner.limit.take();
            if self.cancelled.load(Ordering::Acquire) {
                inner.stage = Stage::Taken;
                (limit, None, Some(result))
            } else {
                inner.stage = Stage::Done(result);
                self.done.store(true, Ordering::Release);
                (limit, inner.waker.take(), None)
            }
        };
        // Outside the lock: these run user code (the executor's waker, a waiting caller's
        // waker through the permit, Drop impls of an unwanted result or panic payload).
        // The waiting task is woken first, and no panic of theirs takes the worker down.
        if let Some(w) = waker {
            contain(|| w.wake());
        }
        contain(|| drop(limit));
        contain(|| drop(unwanted));
        outcome
    }

    fn fail(&self, err: Error) -> bool {
        let (body, limit, slot, waker) = {
            let mut inner = lock(&self.inner);
            if !matches!(inner.stage, Stage::Pending(_)) {
                return false;
            }
            let Stage::Pending(body) = std::mem::replace(&mut inner.stage, Stage::Done(Err(err)))
            else {
                unreachable!()
            };
            self.done.store(true, Ordering::Release);
            (
                body,
                inner.limit.take(),
                inner.slot.take(),
                inner.waker.take(),
            )
        };
        if let Some(w) = waker {
            contain(|| w.wake());
        }
        contain(|| drop((body, limit, slot)));
        true
    }

    fn expire(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        let waker = lock(&self.inner).waker.take();
        if let Some(w) = waker {
            contain(|| w.wake());
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

impl<F, T> Task<T> for Job<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        let mut inner = lock(&self.inner);
        match inner.stage {
            Stage::Done(_) => {
                let Stage::Done(result) = std::mem::replace(&mut inner.stage, Stage::Taken) else {
                    unreachable!()
                };
                Poll::Ready(result)
            }
            Stage::Pending(_) | Stage::Running => {
                match &inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Stage::Taken => panic!("`Offload` polled after it completed"),
        }
    }

    fn abandon(&self) -> Abandoned {
        self.cancelled.store(true, Ordering::Release);
        let (found, dropped) = {
            let mut inner = lock(&self.inner);
            let waker = inner.waker.take();
            match std::mem::replace(&mut inner.stage, Stage::Taken) {
                Stage::Pending(body) => (
                    Abandoned::BeforeStart,
                    (
                        Some(body),
                        None,
                        inner.limit.take(),
                        inner.slot.take(),
                        waker,
                    ),
                ),
                Stage::Running => {
                    inner.stage = Stage::Running;
                    (Abandoned::WhileRunning, (None, None, None, None, waker))
                }
                Stage::Done(result) => {
                    (Abandoned::AfterEnd, (None, Some(result), None, None, waker))
                }
                Stage::Taken => (Abandoned::AfterEnd, (None, None, None, None, waker)),
            }
        };
        // Outside the lock: the body, a result or a permit may run user code on drop; like
        // a panic in the body, a panic there does not unwind into whoever gave up the call.
        contain(|| drop(dropped));
        found
    }

    fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::SeqCst)
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn hold_limit(&self, permit: Permit<&'static Limit>) {
        lock(&self.inner).limit = Some(permit);
    }

    fn hold_slot(&self, permit: Permit<Arc<Limit>>) {
        lock(&self.inner).slot = Some(permit);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Loom explores every interleaving of the job's state machine between the worker that
    //! runs it, the future that polls or drops it, and the timer. Run with
    //! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.

    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::Wake;

    struct NoHook;
    impl RunHooks for NoHook {
        fn started(&self) {}
        fn finished(&self, _: Outcome) {}
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

    /// Submit, start, complete: a pending poll is always woken, and the result arrives.
    #[test]
    fn loom_complete_wakes_the_poller() {
        loom::model(|| {
            let job = Arc::new(Job::new(|| 7_u32));
            let worker = {
                let job = Arc::clone(&job);
                loom::thread::spawn(move || assert_eq!(job.run(&NoHook), Outcome::Completed))
            };
            let (count, waker) = flag();
            let mut cx = Context::from_waker(&waker);
            let first = job.poll_result(&mut cx);
            if first.is_pending() && job.is_done() {
                // `done` is published after the result: a poll that follows finds it.
                assert!(job.poll_result(&mut cx).is_ready());
                worker.join().unwrap();
                return;
            }
            worker.join().unwrap();
            assert!(job.is_done(), "a stored result reads as done");
            match first {
                Poll::Ready(r) => assert_eq!(r.unwrap(), 7),
                Poll::Pending => {
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
            let job = {
                let ran = Arc::clone(&ran);
                Arc::new(Job::new(move || {
                    ran.fetch_add(1, SeqCst);
                    7_u8
                }))
            };
            let worker = {
                let job = Arc::clone(&job);
                loom::thread::spawn(move || job.run(&NoHook))
            };
            let found = job.abandon();
            let outcome = worker.join().unwrap();
            assert!(job.is_cancelled());
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
            assert!(matches!(lock(&job.inner).stage, Stage::Taken));
        });
    }

    /// A waker replaced between polls: the result wakes the latest one.
    #[test]
    fn loom_waker_replaced_between_polls() {
        loom::model(|| {
            let job = Arc::new(Job::new(|| 1_u8));
            let worker = {
                let job = Arc::clone(&job);
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
        loom::model(|| {
            let job = Arc::new(Job::new(|| 3_u8));
            let worker = {
                let job = Arc::clone(&job);
                loom::thread::spawn(move || job.run(&NoHook))
            };
            let timer = {
                let job = Arc::clone(&job);
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
            let job = Arc::new(Job::new(|| 5_u8));
            let worker = {
                let job = Arc::clone(&job);
                loom::thread::spawn(move || job.run(&NoHook))
            };
            let failed = job.fail(Error::timeout(std::time::Duration::ZERO));
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
}
