//! The raw job, [`RawJob`]: the one allocation of a call, the traits its handles reach it
//! through, and every `unsafe` access to its cells.
//!
//! Each access relies on a rule of "Who owns what" (the module's docs). The private
//! helpers that touch a cell are `unsafe fn`s whose `# Safety` names the rule their caller
//! must have established, most often by the compare-and-swap it just made.

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
/// The methods marked `unsafe` write the cells that belong to the future while it has
/// them ("Who owns what" in the module's docs): the waker cell, and the limit cell before
/// `HOLDS_LIMIT` is set.
pub(super) trait Task<T>: Run {
    /// The result if there is one, else registers the waker.
    ///
    /// # Safety
    ///
    /// Only the job's future calls it, through its one `TaskRef`, and never while another
    /// of `poll_result`, `abandon` and `hold_limit` runs on this job.
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
    /// As for [`poll_result`](Task::poll_result).
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
    /// Stage, flags and handle count (see `state.rs`).
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
            state: AtomicUsize::new(NEW),
            waker: UnsafeCell::new(None),
            limit: UnsafeCell::new(None),
            slot: UnsafeCell::new(Slot {
                body: ManuallyDrop::new(body),
            }),
        }
    }

    /// Takes the body out of the slot.
    ///
    /// # Safety
    ///
    /// The caller alone owns the slot, which holds the body: its own compare-and-swap
    /// moved the job out of PENDING (to RUNNING to run or fail it, to TAKEN to abandon it),
    /// or the last handle is gone and the job is still PENDING. Only those moves take the
    /// body out, once.
    #[allow(unsafe_code)]
    unsafe fn take_body(&self) -> F {
        // SAFETY: the caller owns the slot, and the body is there (above).
        self.slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).body) })
    }

    /// Takes the result out of the slot.
    ///
    /// # Safety
    ///
    /// The caller alone owns the slot, which holds a result: it is the future moving the
    /// job from DONE to TAKEN (DONE slots belong to the future, the only party that leaves
    /// DONE), the runner that stored the result and then ended the job itself because the
    /// future was gone, or the drop of a job freed in DONE. Each finds the result there
    /// (published with release, read after an acquire of the state).
    #[allow(unsafe_code)]
    unsafe fn take_result(&self) -> Result<T, Error> {
        // SAFETY: the caller owns the slot, and the result is there (above).
        self.slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).result) })
    }

    /// Wakes the future's waker.
    ///
    /// # Safety
    ///
    /// The caller made an event (DONE, `TIMED_OUT`) that found `WAKER_SET` set, and holds a
    /// handle: from that event on the cell is never written again until the job is freed.
    #[allow(unsafe_code)]
    unsafe fn wake_waiter(&self) {
        // SAFETY: nobody writes the cell any more (above), and the caller's handle keeps it
        // allocated.
        self.waker.with(|waker| {
            if let Some(waker) = unsafe { &*waker } {
                contain(|| waker.wake_by_ref());
            }
        });
    }

    /// Gives back the permit of the job's `limit`.
    ///
    /// # Safety
    ///
    /// The caller's compare-and-swap cleared `HOLDS_LIMIT`.
    #[allow(unsafe_code)]
    unsafe fn give_back_limit(&self) {
        // SAFETY: the future wrote the cell before it set `HOLDS_LIMIT` (with release), the
        // caller cleared the flag (with acquire) after that, and the cell is never written
        // again once the flag is set.
        if let Some(limit) = self.limit.with(|limit| unsafe { *limit }) {
            contain(|| limit.release());
        }
    }

    /// Sets `flag` (a held permit) if the job is still pending; false if it is not.
    fn flag_if_pending(&self, flag: usize) -> bool {
        let mut s = self.state.load(Acquire);
        while stage(s) == PENDING {
            // Release: for `HOLDS_LIMIT`, the limit is written before the flag is seen.
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

impl<F, T> RawJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    /// Takes the job out of PENDING to run or fail it, giving back the queue slot it held.
    /// False if it was not pending; if true, the caller owns the slot (holding the body)
    /// until it publishes.
    fn claim(&self, give_back_slot: impl FnOnce()) -> bool {
        let mut s = self.state.load(Acquire);
        loop {
            if stage(s) != PENDING {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, claimed(s), Acquire, Acquire)
            {
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
    /// gives back the limit permit.
    ///
    /// # Safety
    ///
    /// The caller claimed the job ([`claim`](RawJob::claim) returned true) and took the
    /// body out: it owns the empty slot. Once per claim.
    #[allow(unsafe_code)]
    unsafe fn publish(&self, result: Result<T, Error>) -> Option<Result<T, Error>> {
        // SAFETY: the caller holds the job in RUNNING, so it alone owns the (empty) slot.
        self.slot
            .with_mut(|slot| unsafe { (*slot).result = ManuallyDrop::new(result) });
        let mut s = self.state.load(Relaxed);
        loop {
            // Release: the result is written before DONE can be seen.
            match self
                .state
                .compare_exchange_weak(s, published(s), AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let unwanted = if s & CANCELLED != 0 {
            // SAFETY: the future gave up and will not take it: this thread ended the job
            // (TAKEN) with the result it stored still there.
            Some(unsafe { self.take_result() })
        } else {
            if s & WAKER_SET != 0 {
                // SAFETY: DONE is an event, and it found `WAKER_SET` set; the caller's
                // handle keeps the job.
                unsafe { self.wake_waiter() };
            }
            None
        };
        if s & HOLDS_LIMIT != 0 {
            // SAFETY: `published` cleared `HOLDS_LIMIT`.
            unsafe { self.give_back_limit() };
        }
        unwanted
    }
}

impl<F, T> Run for RawJob<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    #[allow(unsafe_code)]
    fn run(&self, hook: &dyn RunHooks) -> Outcome {
        if !self.claim(|| hook.release_slot()) {
            return Outcome::NotRun;
        }
        // SAFETY: this thread claimed the job.
        let body = unsafe { self.take_body() };
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
        // SAFETY: this thread claimed the job and took the body out.
        let unwanted = unsafe { self.publish(result) };
        contain(|| drop(unwanted));
        outcome
    }

    #[allow(unsafe_code)]
    fn fail(&self, err: Error, slots: Option<&Limit>) -> bool {
        if !self.claim(|| slots.map_or((), Limit::release)) {
            return false;
        }
        // SAFETY: this thread claimed the job.
        let body = unsafe { self.take_body() };
        // SAFETY: this thread claimed the job and took the body out.
        let unwanted = unsafe { self.publish(Err(err)) };
        contain(|| drop((body, unwanted)));
        true
    }

    #[allow(unsafe_code)]
    fn expire(&self) {
        let s = self.state.fetch_or(TIMED_OUT, AcqRel);
        if s & WAKER_SET != 0 {
            // SAFETY: `TIMED_OUT` is an event, and it found `WAKER_SET` set; the caller's
            // handle keeps the job.
            unsafe { self.wake_waiter() };
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
        handles(old) == 1
    }
}

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
                        // SAFETY: the future (the caller) has just moved the job from DONE
                        // on to TAKEN.
                        Ok(_) => return Poll::Ready(unsafe { self.take_result() }),
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
            // SAFETY: nobody but the future reads or writes the cell while `WAKER_SET` is
            // clear, and the caller is the future, in its only call (the trait's # Safety).
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
            match self
                .state
                .compare_exchange_weak(s, abandoned(s), AcqRel, Acquire)
            {
                Ok(_) => break abandoned(s),
                Err(actual) => s = actual,
            }
        };
        let waker = if s & WAKER_SET != 0 && next & WAKER_SET == 0 {
            // SAFETY: the future (the caller, in its only call) cleared `WAKER_SET` with no
            // event: the cell is its own again.
            self.waker.with_mut(|cell| unsafe { (*cell).take() })
        } else {
            None
        };
        let found = match stage(s) {
            PENDING => {
                // SAFETY: the future has just moved the job from PENDING to TAKEN.
                let body = unsafe { self.take_body() };
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
                    // SAFETY: `abandoned` cleared `HOLDS_LIMIT` of a pending job.
                    unsafe { self.give_back_limit() };
                }
                Abandoned::BeforeStart
            }
            RUNNING => Abandoned::WhileRunning,
            DONE => {
                // SAFETY: the future has just moved the job from DONE on to TAKEN.
                let result = unsafe { self.take_result() };
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
        // (the caller, in its only call) sets the flag, after writing the cell. The flag is
        // clear and was never set: clearing it takes the job out of PENDING for good, and
        // the job was pending. So nobody reads the cell before the flag is set below.
        self.limit.with_mut(|cell| unsafe { *cell = Some(limit) });
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

impl<F, T> Drop for RawJob<F, T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let s = self.state.load(Acquire);
        // The last handle is gone: a PENDING slot still holds the body and a DONE slot the
        // result, which nobody took.
        match stage(s) {
            PENDING => {
                // SAFETY: freed while PENDING, with no other handle.
                let body = unsafe { self.take_body() };
                contain(|| drop(body));
            }
            DONE => {
                // SAFETY: freed in DONE, with no other handle.
                let result = unsafe { self.take_result() };
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
        // SAFETY: the last handle is gone: nobody else can reach the cell.
        let waker = self.waker.with_mut(|cell| unsafe { (*cell).take() });
        contain(|| drop(waker));
    }
}
