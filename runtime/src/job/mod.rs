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
//!   twice. Which limit the permit is of is written by the future, with the permit, before
//!   it sets `HOLDS_LIMIT`, and read only by the party that clears the flag.
//! - **The waker.** While `WAKER_SET` is clear, the cell belongs to the future, which writes
//!   its waker there and then sets the flag. While it is set, the cell is only read. The
//!   future clears it again (to replace a waker, or to drop it when it gives up) only while
//!   no *event* has happened: a result published (DONE), the deadline passed (`TIMED_OUT`),
//!   or the job over (TAKEN, whose waker a notifier may still be waking). Whoever makes an
//!   event while `WAKER_SET` is set may therefore read the cell and wake the waker: from
//!   that moment on it is never written again until the job is freed.
//! - **The allocation** is freed by whoever drops the last handle.
//!
//! # What the types enforce
//!
//! - The rest of the crate reaches a job only through its handles' methods: [`JobRef`]
//!   (`run`, `fail`, `expire`, `is_cancelled`, `id`) for the queue, the workers and the
//!   timer, [`TaskRef`] for the future. Neither derefs to the job.
//! - The future's side (`poll_result`, `abandon`, `hold_limit`, `hold_slot`) takes
//!   `&mut TaskRef`, and a job has one `TaskRef` (not `Clone`): those calls, which write the
//!   cells the future owns, never run at the same time. Behind them, the trait methods that
//!   write a cell are `unsafe fn`s stating that obligation.
//! - The handle count is changed only by the handles' `Clone` and `Drop` (`handle.rs`): the
//!   job's `retain` and `release` take a key only that file can make.
//! - The traits the handles reach the job through are private to this module.
//!
//! # Files
//!
//! `state.rs`: the state word's bits and the pure functions on it (each transition's next
//! state). `raw.rs`: [`RawJob`](raw::RawJob), its `Slot` and every `unsafe` access to its
//! cells. `handle.rs`: the handles, their count and the free. `models.rs`: the loom models
//! (`RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`).

mod handle;
#[cfg(all(test, loom))]
mod models;
mod raw;
mod state;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) use handle::{JobRef, TaskRef};

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

/// What [`TaskRef::abandon`] found.
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

/// Runs user code (a waker, a `Drop`) that must not unwind into the pool's threads: a
/// panic is caught and its payload dropped, or leaked if dropping it panics too.
pub(crate) fn contain(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
    }
}

/// Makes a job for `body`; the returned handle is its only one.
pub(crate) fn new_job<F, T>(body: F) -> TaskRef<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    TaskRef::new(Box::new(raw::RawJob::new(body)))
}
