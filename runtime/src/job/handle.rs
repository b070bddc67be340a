//! The counted handles of a job: [`JobRef`], type-erased, for the queue, the workers and
//! the timer, and [`TaskRef`], typed, for the job's future. Each says what its holder may
//! do with the job; the last one dropped frees it.
//!
//! The handle count lives in the state word, and only this file changes it: [`Run::retain`]
//! and [`Run::release`] take a [`HandleKey`], which only this file can make. A handle
//! derefs to nothing, so the rest of the crate reaches the job only through the methods
//! below.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::raw::{Run, Task};
use super::{Abandoned, Outcome, RunHooks};
use crate::error::Error;
use crate::limit::{Limit, Permit};

/// Leave to change the handle count: made only here, by the handles' `Clone` and `Drop`.
pub(super) struct HandleKey(());

/// A counted, type-erased handle to a job: what the queue, the workers and the timer hold.
pub(crate) struct JobRef {
    job: NonNull<dyn Run>,
}

// SAFETY: a `JobRef` only reaches the job through `&dyn Run`, which is `Send + Sync`, and
// the count it keeps is atomic.
#[allow(unsafe_code)]
unsafe impl Send for JobRef {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl Sync for JobRef {}

impl JobRef {
    #[allow(unsafe_code)]
    fn raw(&self) -> &dyn Run {
        // SAFETY: the job stays allocated while this handle counts in it.
        unsafe { self.job.as_ref() }
    }

    /// The job's address: the same for every handle of one job while any exists.
    pub(crate) fn id(&self) -> usize {
        self.job.as_ptr().cast::<()>().addr()
    }

    /// Runs the body on this thread if it is still pending (else `Outcome::NotRun`),
    /// telling `hooks` when it starts and ends and when the job's queue slot is free.
    pub(crate) fn run(&self, hooks: &dyn RunHooks) -> Outcome {
        self.raw().run(hooks)
    }

    /// Fails a still-pending job with `err` (shutdown), giving its queue slot back to
    /// `slots`. True if it was pending.
    pub(crate) fn fail(&self, err: Error, slots: Option<&Limit>) -> bool {
        self.raw().fail(err, slots)
    }

    /// Marks the job timed out and wakes its future, which then abandons it.
    pub(crate) fn expire(&self) {
        self.raw().expire();
    }

    /// True once the future was dropped or timed out: `offthread::is_cancelled()`.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.raw().is_cancelled()
    }
}

impl Clone for JobRef {
    fn clone(&self) -> JobRef {
        self.raw().retain(HandleKey(()));
        JobRef { job: self.job }
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        if self.raw().release(HandleKey(())) {
            free(self.job);
        }
    }
}

/// Frees a job whose last handle is gone.
#[allow(unsafe_code)]
fn free(job: NonNull<dyn Run>) {
    // SAFETY: `job` came from `Box::leak` in `TaskRef::new` (through unsizing coercions,
    // which keep the pointer and give the vtable of the same `RawJob`), and the caller
    // dropped the last handle, so nobody else uses it.
    drop(unsafe { Box::from_raw(job.as_ptr()) });
}

/// The counted, typed handle of a job's [`Offload`](crate::Offload): the only handle that
/// can take the result. Not `Clone`: a job has one future, and the methods of the
/// future's side take `&mut self`, so they never run at the same time.
pub(crate) struct TaskRef<T> {
    job: NonNull<dyn Task<T>>,
    /// The future takes a `T` out; `fn() -> T` keeps the handle `Unpin` whatever `T` is.
    _result: PhantomData<fn() -> T>,
}

// SAFETY: a `TaskRef` reaches the job through `&dyn Task<T>` (`Send + Sync`) and moves `T`
// out of it, so it can go to another thread when `T: Send`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for TaskRef<T> {}
// SAFETY: through `&TaskRef` only the methods taking `&self` are reachable, and those only
// read the state word or act as a `JobRef` would: none touches the future's cells.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for TaskRef<T> {}

impl<T> TaskRef<T> {
    /// The handle of a job just made: its only one.
    pub(super) fn new(job: Box<dyn Task<T>>) -> TaskRef<T> {
        TaskRef {
            job: NonNull::from(Box::leak(job)),
            _result: PhantomData,
        }
    }

    #[allow(unsafe_code)]
    fn raw(&self) -> &dyn Task<T> {
        // SAFETY: the job stays allocated while this handle counts in it.
        unsafe { self.job.as_ref() }
    }

    /// A type-erased handle to the same job, for the queue, a worker or the timer.
    pub(crate) fn erase(&self) -> JobRef {
        self.raw().retain(HandleKey(()));
        let job: NonNull<dyn Run> = self.job;
        JobRef { job }
    }

    /// The job's address, as [`JobRef::id`].
    pub(crate) fn id(&self) -> usize {
        self.job.as_ptr().cast::<()>().addr()
    }

    /// The result if there is one (taking it: the job is then over), else registers the
    /// waker of `cx` to be woken by the result or the deadline.
    ///
    /// # Panics
    ///
    /// If the result was taken already.
    #[allow(unsafe_code)]
    pub(crate) fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        // SAFETY: this is the job's one `TaskRef` (it is made once, by `new_job`, and is
        // not `Clone`), and `&mut self` keeps any other future-side call from running now.
        unsafe { self.raw().poll_result(cx) }
    }

    /// The future gives up on the job (dropped or timed out): a pending body is dropped
    /// unrun, a running one sees `is_cancelled()` and its result is dropped. A queue slot
    /// the job held goes back to `slots`.
    #[allow(unsafe_code)]
    pub(crate) fn abandon(&mut self, slots: Option<&Limit>) -> Abandoned {
        // SAFETY: as in `poll_result`.
        unsafe { self.raw().abandon(slots) }
    }

    /// Hands the job a permit of a `limit` (of `#[offload(limit = N)]`), held until the
    /// body returns and then given back to the limit it is of; given back at once if the
    /// job is no longer pending.
    #[allow(unsafe_code)]
    pub(crate) fn hold_limit(&mut self, permit: Permit<&'static Limit>) {
        // SAFETY: as in `poll_result`.
        unsafe { self.raw().hold_limit(permit) }
    }

    /// Hands the job a queue slot, held until it leaves the queue; given back at once if
    /// the job is no longer pending.
    pub(crate) fn hold_slot(&mut self, permit: Permit<Arc<Limit>>) {
        self.raw().hold_slot(permit);
    }

    /// True once the timer fired for this job.
    pub(crate) fn timed_out(&self) -> bool {
        self.raw().timed_out()
    }

    /// True once a result is stored (the next `poll_result` is ready), read without a lock.
    pub(crate) fn is_done(&self) -> bool {
        self.raw().is_done()
    }

    /// Fails the job with `err` if it is still pending, as [`JobRef::fail`]: for the future
    /// that queued it on a pool that closed meanwhile.
    pub(crate) fn fail(&self, err: Error, slots: Option<&Limit>) -> bool {
        self.raw().fail(err, slots)
    }
}

impl<T> Drop for TaskRef<T> {
    fn drop(&mut self) {
        if self.raw().release(HandleKey(())) {
            free(self.job);
        }
    }
}
