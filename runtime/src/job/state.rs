//! The job's state word: its stage, flags and handle count, and the pure functions on it.

/// The stage bits of the state word.
pub(super) const STAGE: usize = 0b11;
/// The body waits in the slot.
pub(super) const PENDING: usize = 0;
/// A worker (or shutdown) took the body; the slot is empty.
pub(super) const RUNNING: usize = 1;
/// The result waits in the slot.
pub(super) const DONE: usize = 2;
/// The job is over: the body was dropped unrun, or the result taken or dropped.
pub(super) const TAKEN: usize = 3;
/// The future was dropped or timed out: `offthread::is_cancelled()`.
pub(super) const CANCELLED: usize = 1 << 2;
/// The timer fired; the future must resolve with a timeout error.
pub(super) const TIMED_OUT: usize = 1 << 3;
/// The waker cell holds the future's waker, published for whoever makes an event.
pub(super) const WAKER_SET: usize = 1 << 4;
/// The job holds a slot of its pool's bounded queue.
pub(super) const HOLDS_SLOT: usize = 1 << 5;
/// The job holds a permit of its `limit` semaphore.
pub(super) const HOLDS_LIMIT: usize = 1 << 6;
/// One handle, in the count that takes the rest of the word.
pub(super) const REF_ONE: usize = 1 << 7;

pub(super) fn stage(state: usize) -> usize {
    state & STAGE
}

/// True once something happened that the waiting task must see (a result, or the deadline),
/// or the job is over (TAKEN, which only follows one of those or the future's giving up).
pub(super) fn has_event(state: usize) -> bool {
    stage(state) >= DONE || state & TIMED_OUT != 0
}

/// `state` moved to stage `to`, its flags and count unchanged.
pub(super) fn to_stage(state: usize, to: usize) -> usize {
    (state & !STAGE) | to
}
