//! The synchronisation primitives of the job state machine, the wake-up protocol and the
//! `on_cancel` hooks, swapped for loom's under `--cfg loom` so that the loom models in
//! `job.rs`, `sleep.rs` and `cancel.rs` explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{
        atomic::{fence, AtomicBool, AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

/// `std::cell::UnsafeCell` with the closure-based access of `loom::cell::UnsafeCell`, so
/// that the job's cells are checked by loom and cost nothing otherwise.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Reads through the cell's pointer; the caller makes sure nobody writes meanwhile.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Writes through the cell's pointer; the caller makes sure nobody else accesses it.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks `m`, ignoring poison: no user code ever runs while one of our locks is held, so a
/// poisoned lock can only come from a bug in this crate, and the data is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] for the std mutexes of the pool and the timer, which loom does not model.
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
