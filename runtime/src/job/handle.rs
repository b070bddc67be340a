//! The counted handles of a job: [`JobRef`], type-erased, for the queue, the workers and
//! the timer, and [`TaskRef`], typed, for the job's future; the last one dropped frees it.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use super::raw::{Run, Task};
use crate::limit::Limit;

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

impl<T> TaskRef<T> {
    /// The handle of a job just made: its only one.
    pub(super) fn new(job: Box<dyn Task<T>>) -> TaskRef<T> {
        TaskRef {
            job: NonNull::from(Box::leak(job)),
            _result: PhantomData,
        }
    }
}
