//! The job's state word: its stage, five flags and the count of handles in one `usize`,
//! and the pure functions on it. The transitions are computed here and applied by
//! `raw.rs` with compare-and-swaps; see the module's docs for the diagram.
//!
//! ```text
//!  bit:   7 ..            6            5           4          3          2        1 0
//!        handle count | HOLDS_LIMIT | HOLDS_SLOT | WAKER_SET | TIMED_OUT | CANCELLED | stage
//! ```

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

/// A job just made: pending, no flag, one handle (its future's).
pub(super) const NEW: usize = REF_ONE | PENDING;

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

/// The number of handles counted in `state`.
pub(super) fn handles(state: usize) -> usize {
    state / REF_ONE
}

/// A pending job taken to RUNNING, to run it or fail it: its taker gives the queue slot
/// back (the job has left the queue).
pub(super) fn claimed(pending: usize) -> usize {
    debug_assert_eq!(stage(pending), PENDING);
    to_stage(pending, RUNNING) & !HOLDS_SLOT
}

/// A running job whose result is stored: DONE for the future to take it, or TAKEN if the
/// future gave up meanwhile (the runner drops the result). The body has returned, so the
/// runner gives the limit permit back.
pub(super) fn published(running: usize) -> usize {
    debug_assert_eq!(stage(running), RUNNING);
    let to = if running & CANCELLED != 0 {
        TAKEN
    } else {
        DONE
    };
    to_stage(running, to) & !HOLDS_LIMIT
}

/// The future gives up: CANCELLED in any stage. A pending job ends unrun (its body dropped
/// and both permits given back by the future), and a done one ends with its result dropped;
/// a running one ends when its body returns. With no event yet, the future also takes the
/// waker cell back, to drop its waker now.
pub(super) fn abandoned(state: usize) -> usize {
    let mut next = state | CANCELLED;
    match stage(state) {
        PENDING => next = to_stage(next, TAKEN) & !(HOLDS_SLOT | HOLDS_LIMIT),
        DONE => next = to_stage(next, TAKEN),
        _ => {}
    }
    if !has_event(state) {
        next &= !WAKER_SET;
    }
    next
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claiming_gives_back_the_queue_slot_only() {
        let s = claimed(NEW | HOLDS_SLOT | HOLDS_LIMIT | WAKER_SET);
        assert_eq!(s, REF_ONE | RUNNING | HOLDS_LIMIT | WAKER_SET);
        assert!(!has_event(s));
    }

    #[test]
    fn publishing_gives_back_the_limit_and_ends_an_abandoned_job() {
        let running = claimed(NEW | HOLDS_LIMIT | WAKER_SET);
        assert_eq!(published(running), REF_ONE | DONE | WAKER_SET);
        assert_eq!(
            published(running | CANCELLED),
            REF_ONE | TAKEN | CANCELLED | WAKER_SET
        );
        assert!(has_event(published(running)));
    }

    #[test]
    fn abandoning_ends_a_pending_or_done_job_and_takes_the_waker_back_only_before_an_event() {
        let pending = NEW | HOLDS_SLOT | HOLDS_LIMIT | WAKER_SET;
        assert_eq!(abandoned(pending), REF_ONE | TAKEN | CANCELLED);
        let running = REF_ONE | RUNNING | HOLDS_LIMIT | WAKER_SET;
        assert_eq!(
            abandoned(running),
            REF_ONE | RUNNING | HOLDS_LIMIT | CANCELLED
        );
        // An event came: the notifier may be reading the cell, which stays published.
        assert_eq!(
            abandoned(running | TIMED_OUT),
            running | TIMED_OUT | CANCELLED
        );
        let done = REF_ONE | DONE | WAKER_SET;
        assert_eq!(abandoned(done), REF_ONE | TAKEN | CANCELLED | WAKER_SET);
    }

    #[test]
    fn the_count_is_above_the_flags() {
        assert_eq!(handles(NEW), 1);
        let all_flags = STAGE | CANCELLED | TIMED_OUT | WAKER_SET | HOLDS_SLOT | HOLDS_LIMIT;
        assert_eq!(handles(NEW + REF_ONE + all_flags), 2);
        assert!(all_flags < REF_ONE);
    }
}
