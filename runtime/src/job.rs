//! One job's shared state: the body, its result, the waiting task's waker, and the
//! permits it holds, in the single allocation a call costs.
//!
//! # Layout
//!
//! A job is one allocation: a state word, the waker of the task awaiting the result, the
//! `limit = N` semaphore of an `#[offload(limit = N)]` call, and one slot that holds the body
//! until it runs and its result afterwards. With a body that captures four words, that is
//! 64 bytes on a 64-bit target. The state word packs the stage, five flags and the count of
//! handles ([`JobRef`], [`TaskRef`]); the handles are fat pointers, so the allocation holds
//! no vtable pointer either. A safe `Arc<Mutex<..>>` layout cost 104 bytes here.
//!
//! # States
//!
//! ```text
//!            worker takes the body                body returns
//!  PENDING ─────────────────────────▶ RUNNING ─────────────────────▶ DONE ──▶ TAKEN
//!     │                                  │                            (future took it)
//!     │ future dropped / timed out       │ future dropped or timed out:
//!     │                                  │ CANCELLED set, the body runs on,
//!     ▼                                  ▼ its result is dropped on return
//!   TAKEN (body dropped unrun)        TAKEN
//! ```
//!
//! Shutdown fails a pending job as a worker runs one: it takes it to RUNNING, stores an
//! error and publishes DONE.
//!
//! # Who owns what
//!
//! - **The slot.** In PENDING it holds the body, and exactly one party takes the job out of
//!   PENDING with a compare-and-swap: the worker that starts it (or shutdown failing it),
//!   which then owns the slot until it publishes DONE, or the future abandoning it, which
//!   drops the body. In DONE the slot holds the result and belongs to the future, the only
//!   party that leaves DONE. In RUNNING and TAKEN it holds nothing.
//! - **The permits.** `HOLDS_SLOT` and `HOLDS_LIMIT` say which permits the job holds. The
//!   party that takes the job out of PENDING gives back the queue slot; the limit permit is
//!   given back when the body returns, or by the party that drops the body unrun. Each
//!   clears the flag in the same compare-and-swap as its transition, so nothing is released
//!   twice. The limit's address is written once, while the future holds the only handle.
//! - **The waker.** While `WAKER_SET` is clear, the cell belongs to the future, which writes
//!   its waker there and then sets the flag. While it is set, the cell is only read. The
//!   future clears it again (to replace a waker, or to drop it when it gives up) only while
//!   no *event* has happened: a result published (DONE), the deadline passed (`TIMED_OUT`),
//!   or the job over (TAKEN, whose waker a notifier may still be waking). Whoever makes an
//!   event while `WAKER_SET` is set may therefore read the cell and wake the waker: from
//!   that moment on it is never written again until the job is freed.
//! - **The allocation** is freed by whoever drops the last handle.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::limit::{Limit, Permit};
use crate::sync::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed},
    UnsafeCell,
};

/// The stage bits of the state word.
const STAGE: usize = 0b11;
/// The body waits in the slot.
const PENDING: usize = 0;
/// A worker (or shutdown) took the body; the slot is empty.
const RUNNING: usize = 1;
/// The result waits in the slot.
const DONE: usize = 2;
/// The job is over: the body was dropped unrun, or the result taken or dropped.
const TAKEN: usize = 3;
/// The future was dropped or timed out: `offthread::is_cancelled()`.
const CANCELLED: usize = 1 << 2;
/// The timer fired; the future must resolve with a timeout error.
const TIMED_OUT: usize = 1 << 3;
/// The waker cell holds the future's waker, published for whoever makes an event.
const WAKER_SET: usize = 1 << 4;
/// The job holds a slot of its pool's bounded queue.
const HOLDS_SLOT: usize = 1 << 5;
/// The job holds a permit of its `limit` semaphore.
const HOLDS_LIMIT: usize = 1 << 6;
/// One handle, in the count that takes the rest of the word.
const REF_ONE: usize = 1 << 7;

fn stage(state: usize) -> usize {
    state & STAGE
}

/// True once something happened that the waiting task must see (a result, or the deadline),
/// or the job is over (TAKEN, which only follows one of those or the future's giving up).
fn has_event(state: usize) -> bool {
    stage(state) >= DONE || state & TIMED_OUT != 0
}

/// `state` moved to stage `to`, its flags and count unchanged.
fn to_stage(state: usize, to: usize) -> usize {
    (state & !STAGE) | to
}

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
    /// Gives back the queue slot the job held: it has left the queue.
    fn release_slot(&self);
}

/// The type-erased side of a job, seen by the queue, the workers and the timer.
pub(crate) trait Run: Send + Sync {
    /// Runs the body on this thread if it is still pending.
    fn run(&self, hook: &dyn RunHooks) -> Outcome;
    /// Fails a still-pending job with `err` (shutdown), giving its queue slot back to
    /// `slots`. True if it was pending.
    fn fail(&self, err: Error, slots: Option<&Limit>) -> bool;
    /// Marks the job timed out and wakes its future, which then abandons it.
    fn expire(&self);
    /// True once the future was dropped or timed out: `offthread::is_cancelled()`.
    fn is_cancelled(&self) -> bool;
    /// Counts one more handle.
    fn retain(&self);
    /// Counts one handle fewer; true if it was the last (the caller frees the job).
    fn release(&self) -> bool;
}

/// The typed side of a job, seen by its [`Offload`](crate::Offload).
pub(crate) trait Task<T>: Run {
    /// The result if there is one, else registers the waker.
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>;
    /// The future gives up on the job (dropped or timed out), giving a queue slot it held
    /// back to `slots`.
    fn abandon(&self, slots: Option<&Limit>) -> Abandoned;
    /// True once the timer fired for this job.
    fn timed_out(&self) -> bool;
    /// True once a result is stored (the next `poll_result` is ready), read without a lock.
    fn is_done(&self) -> bool;
    /// Hands the job a permit of its `limit` (see [`TaskRef::set_limit`]), held until the
    /// body returns.
    fn hold_limit(&self, permit: Permit<&'static Limit>);
    /// Hands the job a queue slot, held until it leaves the queue.
    fn hold_slot(&self, permit: Permit<Arc<Limit>>);
    /// Records the `limit` whose permits the job will hold. Only with the only handle.
    fn set_limit(&self, limit: &'static Limit);
    /// The handle count, for [`TaskRef::set_limit`].
    fn handles(&self) -> usize;
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

/// The body before it runs, the result after: which one the slot holds is the stage's.
union Slot<F, T> {
    body: ManuallyDrop<F>,
    result: ManuallyDrop<Result<T, Error>>,
}

/// A job: the body `F` producing `T`, and everything shared about it.
struct RawJob<F, T> {
    /// Stage, flags and handle count (see the constants above).
    state: AtomicUsize,
    /// The waker of the task awaiting the result (see "Who owns what").
    waker: UnsafeCell<Option<Waker>>,
    /// The `limit = N` semaphore, written once while the future holds the only handle.
    limit: UnsafeCell<Option<&'static Limit>>,
    slot: UnsafeCell<Slot<F, T>>,
}

// SAFETY: the cells are shared between threads only as "Who owns what" allows: each is
// written by one party at a time, which the state word's compare-and-swaps (acquire and
// release) hand from one to the next, and read concurrently only while nobody writes. The
// body and the result move between threads, hence `F: Send` and `T: Send`; neither is ever
// shared, so neither needs `Sync`. The waker and the `&'static Limit` are `Send + Sync`.
#[allow(unsafe_code)]
unsafe impl<F: Send, T: Send> Sync for RawJob<F, T> {}

/// Makes a job for `body`; the returned handle is its only one.
pub(crate) fn new_job<F, T>(body: F) -> TaskRef<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let job: Box<dyn Task<T>> = Box::new(RawJob {
        state: AtomicUsize::new(REF_ONE | PENDING),
        waker: UnsafeCell::new(None),
        limit: UnsafeCell::new(None),
        slot: UnsafeCell::new(Slot {
            body: ManuallyDrop::new(body),
        }),
    });
    TaskRef {
        job: NonNull::from(Box::leak(job)),
        _result: PhantomData,
    }
}

#[allow(unsafe_code)]
impl<F, T> RawJob<F, T> {
    /// Takes the body out of the slot. Only by the party that took the job out of PENDING,
    /// or by the drop of a job freed while PENDING.
    fn take_body(&self) -> F {
        // SAFETY: the caller's compare-and-swap moved the job out of PENDING (to RUNNING to
        // run or fail it, to TAKEN to abandon it), or the last handle is gone: either way
        // the caller alone owns the slot, and a PENDING slot always holds the body (only
        // that move takes it out).
        self.slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).body) })
    }

    /// Takes the result out of the slot. Only by the future moving the job from DONE to
    /// TAKEN, by the runner that stored it and then saw the future gone, or by the drop of
    /// a job freed in DONE.
    fn take_result(&self) -> Result<T, Error> {
        // SAFETY: in each of those cases the caller alone owns the slot: DONE slots belong
        // to the future (the only party that leaves DONE), a result stored by a runner that
        // then ended the job (TAKEN) is read by nobody else, and a freed job has no other
        // handle. Each of them finds the result there (published with release, read after
        // an acquire of the state).
        self.slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).result) })
    }

    /// Sets `flag` (a held permit) if the job is still pending; false if it is not.
    fn flag_if_pending(&self, flag: usize) -> bool {
        let mut s = self.state.load(Acquire);
        while stage(s) == PENDING {
            match self
                .state
                .compare_exchange_weak(s, s | flag, AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }
}

#[allow(unsafe_code)]
impl<F, T> RawJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    /// Takes the job out of PENDING to run or fail it, giving back the queue slot it held.
    /// False if it was not pending.
    fn claim(&self, give_back_slot: impl FnOnce()) -> bool {
        let mut s = self.state.load(Acquire);
        loop {
            if stage(s) != PENDING {
                return false;
            }
            let next = to_stage(s, RUNNING) & !HOLDS_SLOT;
            match self.state.compare_exchange_weak(s, next, Acquire, Acquire) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if s & HOLDS_SLOT != 0 {
            contain(give_back_slot);
        }
        true
    }

    /// Stores `result` and publishes it (DONE), or, if the future gave up meanwhile, ends
    /// the job (TAKEN) and hands the result back to be dropped. Wakes the future, then
    /// gives back the limit permit. Only by the party that claimed the job.
    fn publish(&self, result: Result<T, Error>) -> Option<Result<T, Error>> {
        // SAFETY: the caller holds the job in RUNNING, so it alone owns the (empty) slot.
        self.slot
            .with_mut(|slot| unsafe { (*slot).result = ManuallyDrop::new(result) });
        let mut s = self.state.load(Relaxed);
        loop {
            let to = if s & CANCELLED != 0 { TAKEN } else { DONE };
            let next = to_stage(s, to) & !HOLDS_LIMIT;
            // Release: the result is written before DONE can be seen.
            match self.state.compare_exchange_weak(s, next, AcqRel, Relaxed) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let unwanted = if s & CANCELLED != 0 {
            // The future gave up and will not take it: the result is still ours.
            Some(self.take_result())
        } else {
            if s & WAKER_SET != 0 {
                self.wake_waiter();
            }
            None
        };
        if s & HOLDS_LIMIT != 0 {
            self.give_back_limit();
        }
        unwanted
    }

    /// Wakes the future's waker. Only by a party whose event (DONE or `TIMED_OUT`) found
    /// `WAKER_SET` set, while it holds a handle.
    fn wake_waiter(&self) {
        // SAFETY: once an event happened with `WAKER_SET` set, the cell is never written
        // again ("Who owns what"), and the caller's handle keeps it allocated.
        self.waker.with(|waker| {
            if let Some(waker) = unsafe { &*waker } {
                contain(|| waker.wake_by_ref());
            }
        });
    }

    /// Gives back the permit of the job's `limit`. Only by whoever cleared `HOLDS_LIMIT`.
    fn give_back_limit(&self) {
        // SAFETY: the cell is written only while the future holds the only handle, before
        // the job is shared; afterwards it is only read.
        if let Some(limit) = self.limit.with(|limit| unsafe { *limit }) {
            contain(|| limit.release());
        }
    }
}

#[allow(unsafe_code)]
impl<F, T> Run for RawJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(&self, hook: &dyn RunHooks) -> Outcome {
        if !self.claim(|| hook.release_slot()) {
            return Outcome::NotRun;
        }
        let body = self.take_body();
        hook.started();
        let result = catch_unwind(AssertUnwindSafe(body)).map_err(Error::panic);
        // A call that failed before the body's own code ran (its `#[local]` value could not
        // be had) unwinds too, but did not panic.
        let outcome = match &result {
            Err(e) if e.is_panic() => Outcome::Panicked,
            _ => Outcome::Completed,
        };
        hook.finished(outcome);
        // The waiting task is woken before the permit goes to another caller, and neither
        // a waker's nor an unwanted result's panic takes the worker down.
        let unwanted = self.publish(result);
        contain(|| drop(unwanted));
        outcome
    }

    fn fail(&self, err: Error, slots: Option<&Limit>) -> bool {
        if !self.claim(|| slots.map_or((), Limit::release)) {
            return false;
        }
        let body = self.take_body();
        let unwanted = self.publish(Err(err));
        contain(|| drop((body, unwanted)));
        true
    }

    fn expire(&self) {
        let s = self.state.fetch_or(TIMED_OUT, AcqRel);
        if s & WAKER_SET != 0 {
            self.wake_waiter();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) & CANCELLED != 0
    }

    fn retain(&self) {
        // Relaxed, as `Arc::clone`: a new handle is made from one that keeps the job alive.
        let old = self.state.fetch_add(REF_ONE, Relaxed);
        assert!(old <= usize::MAX - REF_ONE, "job handle count overflow");
    }

    fn release(&self) -> bool {
        // AcqRel, as `Arc`'s drop: every use through other handles happens before the free.
        let old = self.state.fetch_sub(REF_ONE, AcqRel);
        old & !(REF_ONE - 1) == REF_ONE
    }
}

#[allow(unsafe_code)]
impl<F, T> Task<T> for RawJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        let mut s = self.state.load(Acquire);
        loop {
            match stage(s) {
                DONE => {
                    match self
                        .state
                        .compare_exchange_weak(s, to_stage(s, TAKEN), Acquire, Acquire)
                    {
                        // The future has just moved the job from DONE on to TAKEN.
                        Ok(_) => return Poll::Ready(self.take_result()),
                        Err(actual) => {
                            s = actual;
                            continue;
                        }
                    }
                }
                TAKEN => panic!("`Offload` polled after it completed"),
                _ => {}
            }
            if s & TIMED_OUT != 0 {
                // The future sees the deadline and abandons the job.
                return Poll::Pending;
            }
            if s & WAKER_SET != 0 {
                // SAFETY: while `WAKER_SET` is set the cell is only read.
                let same = self.waker.with(|waker| {
                    unsafe { &*waker }
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                });
                if same {
                    return Poll::Pending;
                }
                // Take the cell back to replace the waker; this fails if an event came.
                match self
                    .state
                    .compare_exchange_weak(s, s & !WAKER_SET, Acquire, Acquire)
                {
                    Ok(_) => s &= !WAKER_SET,
                    Err(actual) => {
                        s = actual;
                        continue;
                    }
                }
            }
            // `WAKER_SET` is clear: the cell is the future's alone.
            let waker = cx.waker().clone();
            // SAFETY: nobody reads or writes the cell while `WAKER_SET` is clear.
            let old = self
                .waker
                .with_mut(|cell| unsafe { (*cell).replace(waker) });
            drop(old);
            loop {
                if has_event(s) {
                    break;
                }
                // Release: the waker is written before `WAKER_SET` can be seen.
                match self
                    .state
                    .compare_exchange_weak(s, s | WAKER_SET, AcqRel, Acquire)
                {
                    Ok(_) => return Poll::Pending,
                    Err(actual) => s = actual,
                }
            }
        }
    }

    fn abandon(&self, slots: Option<&Limit>) -> Abandoned {
        let mut s = self.state.load(Acquire);
        let next = loop {
            let mut next = s | CANCELLED;
            if matches!(stage(s), PENDING | DONE) {
                next = to_stage(next, TAKEN);
            }
            if stage(s) == PENDING {
                next &= !(HOLDS_SLOT | HOLDS_LIMIT);
            }
            if !has_event(s) {
                // Take the cell back, to drop the waker now rather than with the job.
                next &= !WAKER_SET;
            }
            match self.state.compare_exchange_weak(s, next, AcqRel, Acquire) {
                Ok(_) => break next,
                Err(actual) => s = actual,
            }
        };
        let waker = if s & WAKER_SET != 0 && next & WAKER_SET == 0 {
            // SAFETY: this thread cleared `WAKER_SET` with no event: the cell is ours.
            self.waker.with_mut(|cell| unsafe { (*cell).take() })
        } else {
            None
        };
        let found = match stage(s) {
            PENDING => {
                let body = self.take_body();
                // Outside any state change: the body, a permit's waiter or the waker may
                // run user code; like a panic in the body, a panic there does not unwind
                // into whoever gave up the call.
                contain(|| drop(body));
                if s & HOLDS_SLOT != 0 {
                    if let Some(slots) = slots {
                        contain(|| slots.release());
                    }
                }
                if s & HOLDS_LIMIT != 0 {
                    self.give_back_limit();
                }
                Abandoned::BeforeStart
            }
            RUNNING => Abandoned::WhileRunning,
            DONE => {
                // The future has just moved the job from DONE on to TAKEN.
                let result = self.take_result();
                contain(|| drop(result));
                Abandoned::AfterEnd
            }
            _ => Abandoned::AfterEnd,
        };
        contain(|| drop(waker));
        found
    }

    fn timed_out(&self) -> bool {
        self.state.load(Acquire) & TIMED_OUT != 0
    }

    fn is_done(&self) -> bool {
        stage(self.state.load(Acquire)) == DONE
    }

    fn hold_limit(&self, permit: Permit<&'static Limit>) {
        // Abandoned already: the permit goes straight back (dropping it releases it).
        if self.flag_if_pending(HOLDS_LIMIT) {
            permit.keep();
        }
    }

    fn hold_slot(&self, permit: Permit<Arc<Limit>>) {
        if self.flag_if_pending(HOLDS_SLOT) {
            permit.keep();
        }
    }

    fn set_limit(&self, limit: &'static Limit) {
        assert_eq!(
            self.handles(),
            1,
            "a job's limit is set before it is shared"
        );
        // SAFETY: the caller's handle is the only one (checked just above, and `TaskRef`
        // is not `Clone`), so no other thread can reach the cell.
        self.limit.with_mut(|cell| unsafe { *cell = Some(limit) });
    }

    fn handles(&self) -> usize {
        self.state.load(Acquire) / REF_ONE
    }
}

#[allow(unsafe_code)]
impl<F, T> Drop for RawJob<F, T> {
    fn drop(&mut self) {
        let s = self.state.load(Acquire);
        // The last handle is gone: a PENDING slot still holds the body and a DONE slot the
        // result, which nobody took.
        match stage(s) {
            PENDING => {
                let body = self.take_body();
                contain(|| drop(body));
            }
            DONE => {
                let result = self.take_result();
                contain(|| drop(result));
            }
            _ => {}
        }
        // A pending job is freed unrun only if its future was never polled, so it holds
        // no permit.
        debug_assert_eq!(
            s & (HOLDS_SLOT | HOLDS_LIMIT),
            0,
            "a freed job holds a permit"
        );
        // SAFETY: as above, nobody else can reach the cell.
        let waker = self.waker.with_mut(|cell| unsafe { (*cell).take() });
        contain(|| drop(waker));
    }
}

/// A counted, type-erased handle to a job: what the queue, the workers and the timer hold.
pub(crate) struct JobRef {
    job: NonNull<dyn Run>,
}

// SAFETY: a `JobRef` only gives out `&dyn Run`, which is `Send + Sync`, and the count it
// keeps is atomic.
#[allow(unsafe_code)]
unsafe impl Send for JobRef {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl Sync for JobRef {}

#[allow(unsafe_code)]
impl Deref for JobRef {
    type Target = dyn Run;

    fn deref(&self) -> &(dyn Run + 'static) {
        // SAFETY: the job stays allocated while this handle counts in it.
        unsafe { self.job.as_ref() }
    }
}

impl JobRef {
    /// The job's address: the same for every handle of one job while any exists.
    pub(crate) fn id(&self) -> usize {
        self.job.as_ptr().cast::<()>().addr()
    }
}

impl Clone for JobRef {
    fn clone(&self) -> JobRef {
        self.retain();
        JobRef { job: self.job }
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        if self.release() {
            free(self.job);
        }
    }
}

/// Frees a job whose last handle is gone.
#[allow(unsafe_code)]
fn free(job: NonNull<dyn Run>) {
    // SAFETY: `job` came from `Box::leak` in `new_job` (through an unsizing coercion that
    // keeps the pointer), and the caller dropped the last handle, so nobody else uses it.
    drop(unsafe { Box::from_raw(job.as_ptr()) });
}

/// The counted, typed handle of a job's [`Offload`](crate::Offload): the only handle that
/// can take the result. Not `Clone`: a job has one future.
pub(crate) struct TaskRef<T> {
    job: NonNull<dyn Task<T>>,
    /// The future takes a `T` out; `fn() -> T` keeps the handle `Unpin` whatever `T` is.
    _result: PhantomData<fn() -> T>,
}

// SAFETY: a `TaskRef` gives out `&dyn Task<T>` (`Send + Sync`) and moves `T` out of it, so
// it can go to another thread when `T: Send`; shared, it only reads through `&dyn Task<T>`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for TaskRef<T> {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for TaskRef<T> {}

impl<T> TaskRef<T> {
    /// A type-erased handle to the same job, for the queue, a worker or the timer.
    pub(crate) fn erase(&self) -> JobRef {
        self.retain();
        let job: NonNull<dyn Run> = self.job;
        JobRef { job }
    }

    /// The job's address, as [`JobRef::id`].
    pub(crate) fn id(&self) -> usize {
        self.job.as_ptr().cast::<()>().addr()
    }

    /// Records the `limit` whose permits the job will hold.
    ///
    /// # Panics
    ///
    /// If the job was shared already (it is set right after the job is made).
    pub(crate) fn set_limit(&mut self, limit: &'static Limit) {
        (**self).set_limit(limit);
    }
}

#[allow(unsafe_code)]
impl<T> Deref for TaskRef<T> {
    type Target = dyn Task<T>;

    fn deref(&self) -> &(dyn Task<T> + 'static) {
        // SAFETY: the job stays allocated while this handle counts in it.
        unsafe { self.job.as_ref() }
    }
}

impl<T> Drop for TaskRef<T> {
    fn drop(&mut self) {
        if self.release() {
            free(self.job);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Loom explores every interleaving of the job's state machine between the worker that
    //! runs it, the future that polls or drops it, and the timer. Run with
    //! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.

    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::future::Future;
    use std::sync::Arc;
    use std::task::Wake;

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

    /// Submit, start, complete: a pending poll is always woken, and the result arrives.
    #[test]
    fn loom_complete_wakes_the_poller() {
        loom::model(|| {
            let job = new_job(|| 7_u32);
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
            let job = {
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
            assert!(!job.is_done());
        });
    }

    /// A waker replaced between polls: the result wakes the latest one.
    #[test]
    fn loom_waker_replaced_between_polls() {
        loom::model(|| {
            let job = new_job(|| 1_u8);
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
        // Three threads: bounded preemptions (tokio's CI bounds its models too) keep this
        // to a second instead of four minutes.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let job = new_job(|| 3_u8);
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
            let job = new_job(|| 5_u8);
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
            let job = {
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

    /// A `limit` permit is given back exactly once, by the worker when the body returns or
    /// by the future that abandons the job before it starts.
    #[test]
    fn loom_limit_permit_is_given_back_once() {
        loom::model(|| {
            let limit: &'static Limit = Box::leak(Box::new(Limit::new(1)));
            let noop = futures::task::noop_waker();
            let mut cx = Context::from_waker(&noop);
            let mut acquire = |limit: &'static Limit| {
                let mut fut = crate::limit::LimitRef::acquire(limit);
                std::pin::Pin::new(&mut fut).poll(&mut cx)
            };
            let mut job = new_job(|| 1_u8);
            job.set_limit(limit);
            let Poll::Ready(permit) = acquire(limit) else {
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
            let Poll::Ready(again) = acquire(limit) else {
                panic!("the permit was not given back")
            };
            assert!(
                acquire(limit).is_pending(),
                "the permit was given back twice"
            );
            drop(again);
        });
    }
}
