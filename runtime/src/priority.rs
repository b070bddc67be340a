//! The OS's idle scheduling class for a pool's threads ([`Builder::idle_priority`]).
//!
//! A pool that serves an async executor competes with it for the same cores. Under Linux's
//! fair scheduler a thread that wakes (an executor worker with a timer due, say) may wait
//! for a running thread to use up its time slice, about a millisecond and a half on a
//! two-core machine, before it gets a core. A thread in the `SCHED_IDLE` class is preempted
//! at once by any ordinary thread that wakes, and gets only the CPU time that ordinary
//! threads leave: on a machine where the executor is the main consumer, that is nearly all.
//!
//! A thread inherits its creator's class, and an unprivileged thread cannot leave
//! `SCHED_IDLE` once in it. So a lowered worker must not start the crate's other threads
//! itself (another pool's workers when a body calls into that pool, a monitor, the timer):
//! [`spawn`] hands such starts to a starter thread that is in the ordinary class.
//!
//! This is the one place in the crate that calls the C library directly: std has no way to
//! set a thread's scheduling class.
//!
//! [`Builder::idle_priority`]: crate::Builder::idle_priority
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};

thread_local! {
    /// Whether [`lower_to_idle`] moved this thread to the idle class.
    static LOWERED: Cell<bool> = const { Cell::new(false) };
    /// Tests: how many of this thread's next thread starts fail as if the OS refused them.
    #[cfg(test)]
    static REFUSE: Cell<usize> = const { Cell::new(0) };
}

/// Tests: makes the calling thread's next `n` thread starts (the crate's, through
/// [`spawn`], and the timer's) fail as if the OS had no thread to give.
#[cfg(test)]
pub(crate) fn refuse_next_starts(n: usize) {
    REFUSE.set(n);
}

/// Tests: takes one refusal set by [`refuse_next_starts`], if any is left; always `Ok`
/// outside tests.
pub(crate) fn injected_refusal() -> io::Result<()> {
    #[cfg(test)]
    if REFUSE.get() > 0 {
        REFUSE.set(REFUSE.get() - 1);
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "refused by the test (no thread)",
        ));
    }
    Ok(())
}

/// A thread start the starter makes on behalf of a lowered thread.
type Start = Box<dyn FnOnce() + Send>;

/// The starter's inbox, once a thread about to lower itself has started it.
static STARTER: OnceLock<Sender<Start>> = OnceLock::new();

/// Moves the calling thread to the OS's idle scheduling class where the platform has one
/// (Linux); elsewhere, or if the OS refuses, the thread stays as it is.
/// `runtime/tests/pool.rs` checks the class of the workers and of the threads they start.
pub(crate) fn lower_to_idle() {
    #[cfg(target_os = "linux")]
    {
        // Started while this thread is still ordinary, so the starter is ordinary too.
        start_starter();
        LOWERED.set(linux::set_idle());
    }
}

#[cfg(target_os = "linux")]
fn start_starter() {
    STARTER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Start>();
        let started = thread::Builder::new()
            .name("offthread-starter".to_owned())
            .stack_size(64 << 10)
            .spawn(move || {
                for start in rx {
                    start();
                }
            });
        // If it could not start, the receiver is gone and `spawn` falls back to starting
        // threads itself.
        drop(started);
        tx
    });
}

/// Starts a thread as `builder.spawn(f)` does, in the ordinary scheduling class even when
/// the calling thread was lowered to the idle class: then the starter thread makes the
/// start and hands back its result. (If the starter is not there, the thread is started
/// here and inherits the idle class: slower to get a core, never wrong.)
pub(crate) fn spawn<F, T>(builder: thread::Builder, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    injected_refusal()?;
    let Some(starter) = STARTER.get().filter(|_| LOWERED.get()) else {
        return builder.spawn(f);
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let start: Start = Box::new(move || {
        let _ = tx.send(builder.spawn(f));
    });
    if let Err(mpsc::SendError(start)) = starter.send(start) {
        // The starter never started: start here, in this thread's class.
        start();
    }
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the offthread starter thread is gone")))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::raw::c_int;
    use std::os::unix::thread::RawPthread;

    /// `SCHED_IDLE` in `<sched.h>` (Linux, every architecture).
    const SCHED_IDLE: c_int = 5;

    /// `struct sched_param`: one `int` in glibc; musl adds reserved fields after it. This
    /// one is larger than either, zero-filled, so whichever the C library is, everything it
    /// or the kernel may read lies inside it.
    #[repr(C)]
    struct SchedParam {
        sched_priority: c_int,
        reserved: [u64; 8],
    }

    extern "C" {
        fn pthread_self() -> RawPthread;
        fn pthread_setschedparam(
            thread: RawPthread,
            policy: c_int,
            param: *const SchedParam,
        ) -> c_int;
    }

    pub(super) fn set_idle() -> bool {
        // `SCHED_IDLE` takes no static priority: it must be 0.
        let param = SchedParam {
            sched_priority: 0,
            reserved: [0; 8],
        };
        // SAFETY: both functions are in the C library std already links on Linux, declared
        // here with their C signatures (`pthread_t` is `RawPthread`, std's alias for it).
        // `pthread_self` has no preconditions and returns the calling thread's handle, valid
        // for as long as this thread runs, which covers the call. `param` points to an
        // initialised struct at least as large as the C library's `struct sched_param` (see
        // `SchedParam`), alive across the call; the function only reads it and keeps no
        // pointer. An unprivileged thread may always move itself to `SCHED_IDLE`; on any
        // failure the function returns an error number and changes nothing.
        unsafe { pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0 }
    }
}
