//! The raw job, [`RawJob`]: the one allocation of a call, and every `unsafe` access to its
//! cells.

use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::handle::HandleKey;
use super::state::*;
use super::{contain, Abandoned, Outcome, RunHooks};
use crate::error::Error;
use crate::limit::{Limit, Permit};
use crate::sync::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed},
    UnsafeCell,
};

/// The type-erased side of a job, behind a [`JobRef`](super::JobRef): what the queue,
/// the workers and the timer may do with it, and the handle count.
pub(super) trait Run: Send + Sync {
    /// Runs the body on this thread if it is still pending.
    fn run(&self, hook: &dyn RunHooks) -> Outcome;
    /// Fails a still-pending job with `err` (shutdown), giving its queue slot back to
    /// `slots`. True if it was pending.
    fn fail(&self, err: Error, slots: Option<&Limit>) -> bool;
    /// Marks the job timed out and wakes its future, which then abandons it.
    fn expire(&self);
    /// True once the future was dropped or timed out: `offthread::is_cancelled()`.
    fn is_cancelled(&self) -> bool;
    /// Counts one more handle: for a handle being made.
    fn retain(&self, key: HandleKey);
    /// Counts one handle fewer: for a handle being dropped. True if it was the last, and
    /// the caller then frees the job.
    fn release(&self, key: HandleKey) -> bool;
}

/// The typed side of a job, behind its [`TaskRef`](super::TaskRef): what only the job's
/// future may do.
///
/// The methods marked `unsafe` write the cells that belong to the future ("Who owns what"
/// in the module's docs): their callers must be the future, one call at a time.
pub(super) trait Task<T>: Run {
    /// The result if there is one, else registers the waker.
    ///
    /// # Safety
    ///
    /// Only the job's future calls it (through its one `TaskRef`), and never while another
    /// call of `poll_result` or `abandon` on this job runs.
    #[allow(unsafe_code)]
    unsafe fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>;
    /// The future gives up on the job (dropped or timed out), giving a queue slot it held
    /// back to `slots`.
    ///
    /// # Safety
    ///
    /// As for [`poll_result`](Task::poll_result).
    #[allow(unsafe_code)]
    unsafe fn abandon(&self, slots: Option<&Limit>) -> Abandoned;
    /// True once the timer fired for this job.
    fn timed_out(&self) -> bool;
    /// True once a result is stored (the next `poll_result` is ready), read without a lock.
    fn is_done(&self) -> bool;
    /// Hands the job a permit of a `limit`, held until the body returns, and records which
    /// limit it is of, to give it back to.
    ///
    /// # Safety
    ///
    /// As for [`poll_result`](Task::poll_result), and never while another call of
    /// `hold_limit` on this job runs.
    #[allow(unsafe_code)]
    unsafe fn hold_limit(&self, permit: Permit<&'static Limit>);
    /// Hands the job a queue slot, held until it leaves the queue.
    fn hold_slot(&self, permit: Permit<Arc<Limit>>);
}

/// The body before it runs, the result after: which one the slot holds is the stage's.
union Slot<F, T> {
    body: ManuallyDrop<F>,
    result: ManuallyDrop<Result<T, Error>>,
}

/// A job: the body `F` producing `T`, and everything shared about it.
pub(super) struct RawJob<F, T> {
    /// Stage, flags and handle count (see the constants above).
    state: AtomicUsize,
    /// The waker of the task awaiting the result (see "Who owns what").
    waker: UnsafeCell<Option<Waker>>,
    /// The `limit = N` semaphore whose permit the job holds, recorded with the permit
    /// (see "Who owns what").
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

impl<F, T> RawJob<F, T> {
    /// A pending job for `body`, counting one handle.
    pub(super) fn new(body: F) -> RawJob<F, T> {
        RawJob {
            state: AtomicUsize::new(REF_ONE | PENDING),
            waker: UnsafeCell::new(None),
            limit: UnsafeCell::new(None),
            slot: UnsafeCell::new(Slot {
                body: ManuallyDrop::new(body),
            }),
        }
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
        // SAFETY: the future wrote the cell before it set `HOLDS_LIMIT` (with release), the
        // caller cleared the flag (with acquire) after that, and the cell is never written
        // again once the flag is set.
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

    fn retain(&self, _: HandleKey) {
        // Relaxed, as `Arc::clone`: a new handle is made from one that keeps the job alive.
        let old = self.state.fetch_add(REF_ONE, Relaxed);
        assert!(old <= usize::MAX - REF_ONE, "job handle count overflow");
    }

    fn release(&self, _: HandleKey) -> bool {
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
    #[allow(unsafe_code)]
    unsafe fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
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

    #[allow(unsafe_code)]
    unsafe fn abandon(&self, slots: Option<&Limit>) -> Abandoned {
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

    #[allow(unsafe_code)]
    unsafe fn hold_limit(&self, permit: Permit<&'static Limit>) {
        let s = self.state.load(Acquire);
        if stage(s) != PENDING || s & HOLDS_LIMIT != 0 {
            // Abandoned already (or holding a permit already): this one goes straight
            // back (dropping it releases it).
            return;
        }
        // From here on the job gives the permit back itself.
        let limit = permit.keep();
        // SAFETY: only whoever clears `HOLDS_LIMIT` reads the cell, and only the future
        // (the caller, one call at a time) sets the flag, after writing the cell. The flag
        // is clear and was never set: clearing it takes the job out of PENDING for good,
        // and the job was pending. So nobody reads the cell before the flag is set below.
        self.limit.with_mut(|cell| unsafe { *cell = Some(limit) });
        // Release: the limit is written before `HOLDS_LIMIT` can be seen.
        if !self.flag_if_pending(HOLDS_LIMIT) {
            contain(|| limit.release());
        }
    }

    fn hold_slot(&self, permit: Permit<Arc<Limit>>) {
        // The job keeps only the flag: whoever clears it (`claim`, `abandon`) gives the slot
        // back to the pool's queue limit, which the pool keeps alive.
        if self.flag_if_pending(HOLDS_SLOT) {
            drop(permit.keep());
        }
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
