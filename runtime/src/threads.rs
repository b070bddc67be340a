//! Thread bookkeeping: which workers are counted in, their slots and join handles, and the
//! condition shutdown waits on. One lock, taken only off the fast path: to start a thread,
//! to let one go, and by shutdown and the monitor.
//!
//! A worker is *counted in* from the moment it is reserved, before its thread starts
//! (starting a thread takes long enough that the lock is released meanwhile), until it
//! retires. The count decides growth, so two submitters racing for the last free place
//! below `core` reserve one thread, not two.

use std::sync::atomic::{
    AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::lock_std as lock;
use crate::worker::WorkerSlot;

/// The pool's threads.
pub(crate) struct Threads {
    /// Workers counted in (mirror of `Book::count`, readable without the lock).
    count: AtomicUsize,
    book: Mutex<Book>,
    /// Shutdown waits here; each retiring worker signals it.
    quiet: Condvar,
}

/// What the lock guards.
struct Book {
    /// Workers counted in and not yet retired.
    count: usize,
    /// The `n` of the next thread's name `{prefix}-{n}`.
    next_id: usize,
    /// One per worker counted in, for the monitor and shutdown.
    slots: Vec<Arc<WorkerSlot>>,
    /// The threads started and not yet joined (those known to have ended are dropped at
    /// each start).
    handles: Vec<JoinHandle<()>>,
    /// The pool closed: nothing more is reserved.
    closed: bool,
}

/// A worker counted in, whose thread is not started yet.
pub(crate) struct Reserved {
    pub(crate) id: usize,
    pub(crate) slot: Arc<WorkerSlot>,
}

impl Threads {
    pub(crate) fn new() -> Threads {
        Threads {
            count: AtomicUsize::new(0),
            book: Mutex::new(Book {
                count: 0,
                next_id: 0,
                slots: Vec::new(),
                handles: Vec::new(),
                closed: false,
            }),
            quiet: Condvar::new(),
        }
    }

    /// Workers counted in now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(SeqCst)
    }

    /// Counts in up to `n` workers while the pool is open and fewer than `below` are
    /// counted in; their threads are for the caller to start, without the lock.
    pub(crate) fn reserve(&self, n: usize, below: usize) -> Vec<Reserved> {
        let mut book = lock(&self.book);
        let n = n.min(below.saturating_sub(book.count));
        if book.closed || n == 0 {
            return Vec::new();
        }
        (0..n)
            .map(|_| {
                let id = book.next_id;
                book.next_id += 1;
                let slot = Arc::new(WorkerSlot::default());
                book.slots.push(Arc::clone(&slot));
                book.count += 1;
                self.count.fetch_add(1, SeqCst);
                Reserved { id, slot }
            })
            .collect()
    }

    /// Keeps the handle of a reserved worker's thread, just started.
    pub(crate) fn started(&self, slot: &WorkerSlot, handle: JoinHandle<()>) {
        // Known here before the thread may have set it: shutdown tells by it which
        // handles belong to workers still counted in.
        let _ = slot.thread.set(handle.thread().id());
        let mut book = lock(&self.book);
        book.handles.retain(|h| !h.is_finished());
        book.handles.push(handle);
    }

    /// Counts a worker out (its thread could not start, or it exits); returns how many
    /// remain.
    pub(crate) fn retire(&self, slot: &Arc<WorkerSlot>) -> usize {
        let mut book = lock(&self.book);
        Self::retire_locked(&mut book, &self.count, slot);
        self.quiet.notify_all();
        book.count
    }

    fn retire_locked(book: &mut MutexGuard<'_, Book>, count: &AtomicUsize, slot: &Arc<WorkerSlot>) {
        book.count -= 1;
        count.fetch_sub(1, SeqCst);
        book.slots.retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// A worker whose keep-alive ran out retires if `leave(count)` says so, decided under
    /// the lock. A submitter that finds no idle worker decides under the same lock whether
    /// to start one ([`reserve`](Threads::reserve)), so either it sees this worker gone
    /// and starts another, or this worker's last look at the queue (in `leave`) sees its
    /// job.
    pub(crate) fn retire_if(
        &self,
        slot: &Arc<WorkerSlot>,
        leave: impl FnOnce(usize) -> bool,
    ) -> bool {
        let mut book = lock(&self.book);
        if !leave(book.count) {
            return false;
        }
        Self::retire_locked(&mut book, &self.count, slot);
        self.quiet.notify_all();
        true
    }

    /// No more workers are reserved.
    pub(crate) fn close(&self) {
        lock(&self.book).closed = true;
    }

    /// Some worker counted in has not taken a job it has yet to finish: it will look at the
    /// queue again (taking a job, spinning, or parking after a last look), or start and
    /// look for the first time.
    pub(crate) fn any_free(&self) -> bool {
        lock(&self.book).slots.iter().any(|slot| {
            // `starting` first: a worker that took a job set it before and cleared it only
            // after marking its body begun.
            !slot.starting.load(SeqCst) && slot.busy_since.load(Relaxed) == 0
        })
    }

    /// The slots of the workers counted in now.
    pub(crate) fn slots(&self) -> Vec<Arc<WorkerSlot>> {
        lock(&self.book).slots.clone()
    }

    /// Waits until at most `own` workers are counted in, or `deadline` passes (`None`:
    /// never); true if they were.
    pub(crate) fn wait_until_at_most(&self, own: usize, deadline: Option<Instant>) -> bool {
        let mut book = lock(&self.book);
        while book.count > own {
            let now = Instant::now();
            let left = match deadline {
                Some(end) if end > now => end - now,
                Some(_) => return false,
                None => Duration::MAX,
            };
            book = self
                .quiet
                .wait_timeout(book, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Joins the threads that have retired (their `on_thread_stop` hooks and locals are done
    /// when a join returns); those still counted in stay unjoined.
    pub(crate) fn join_retired(&self) {
        let exited: Vec<JoinHandle<()>> = {
            let mut book = lock(&self.book);
            let alive: Vec<_> = book
                .slots
                .iter()
                .filter_map(|s| s.thread.get().copied())
                .collect();
            let (exited, running) = std::mem::take(&mut book.handles)
                .into_iter()
                .partition(|h| !alive.contains(&h.thread().id()));
            book.handles = running;
            exited
        };
        for handle in exited {
            let _ = handle.join();
        }
    }
}
