//! A worker thread: its loop, its start and exit, and what it records for the monitor.
//!
//! - **Busy**: take and run jobs while the queue has any. A worker that takes a job while
//!   more wait tells the wake-up protocol (`sleep.rs`), which wakes another worker, or has
//!   the pool start one, so a burst fans out.
//! - **Out of work**: spin while the worker's [`SpinRule`] says the next job has lately
//!   come within a spin, then park until woken, the pool closes, or `keep_alive` passes
//!   (then, above `min_threads`, the worker retires: `threads.rs`).
//!
//! Each worker has a [`WorkerSlot`] that the monitor reads: when the current body started,
//! and the OS thread id through which the monitor asks whether the thread is blocked.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::builder::Hook;
use crate::cancel::Cancels;
use crate::cpu::{self, Activity};
use crate::error::Error;
use crate::job::{contain, JobRef, Outcome, RunHooks};
use crate::pool::Shared;
use crate::sleep::{Notified, Parked, Parker, SpinRule};
use crate::threads::Reserved;

thread_local! {
    /// The pool this thread works for (address of its `Shared`), 0 if none.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
    /// The jobs running on this thread, outermost first (more than one when a body made
    /// a nested call that runs inline), for `is_cancelled()`.
    static CURRENT: RefCell<Vec<JobRef>> = const { RefCell::new(Vec::new()) };
    /// The shutdown flag of the pool this thread works for.
    static STOPPING: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    /// The `on_cancel` hooks of the pool this thread works for.
    static CANCELS: RefCell<Option<Arc<Cancels>>> = const { RefCell::new(None) };
}

/// The call whose body runs on this thread (the innermost, for a nested inline call).
pub(crate) struct CurrentCall {
    pub(crate) job: JobRef,
    pub(crate) cancels: Arc<Cancels>,
    pub(crate) stopping: Arc<AtomicBool>,
}

/// The call whose body runs on this thread, if this is a worker in a body.
pub(crate) fn current_call() -> Option<CurrentCall> {
    Some(CurrentCall {
        job: CURRENT.with_borrow(|jobs| jobs.last().cloned())?,
        cancels: CANCELS.with_borrow(Clone::clone)?,
        stopping: STOPPING.with_borrow(Clone::clone)?,
    })
}

/// True inside a body whose [`Offload`](crate::Offload) was dropped or timed out, or whose
/// pool is being shut down ([`Pool::shutdown`](crate::Pool::shutdown)); false elsewhere,
/// including outside any worker. In a nested call that runs inline, the outer call's
/// cancellation counts too.
///
/// A long body can poll it between steps and stop early: nobody will see its result.
///
/// # Examples
///
/// ```
/// assert!(!offthread::is_cancelled());
/// let pool = offthread::Pool::builder().build();
/// assert!(!futures::executor::block_on(pool.spawn(offthread::is_cancelled)));
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.with_borrow(|jobs| jobs.iter().any(|job| job.is_cancelled()))
        || STOPPING.with_borrow(|s| s.as_ref().is_some_and(|s| s.load(Relaxed)))
}

/// A per-worker record, read by the monitor.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    /// When the current body started (nanoseconds on the pool's clock, plus one); 0 when
    /// the worker is not in a body. Written by the worker.
    pub(crate) busy_since: AtomicU64,
    /// The OS id of the worker's thread (0 if unknown), set when it starts.
    pub(crate) tid: AtomicU32,
    /// Between taking a job from the queue and starting its body (or dropping it): shutdown
    /// waits for this to clear before it fails what is still queued, so no body starts
    /// after it returns. Written by the worker.
    pub(crate) starting: AtomicBool,
    /// The `#[offload]` function the current body belongs to (its site id, 0 if none or
    /// not known); written by the body's guard, read by shutdown to name what still runs.
    pub(crate) running_in: Arc<AtomicU32>,
    /// The worker's thread, set when it starts; shutdown joins exited workers by it.
    pub(crate) thread: OnceLock<std::thread::ThreadId>,
    /// What the monitor last learned of the current body (only the monitor locks this).
    pub(crate) probe: Mutex<Probe>,
}

/// The monitor's last look at one worker's body.
#[derive(Default)]
pub(crate) struct Probe {
    /// The body looked at (its `busy_since`).
    pub(crate) body: u64,
    /// When the thread was last looked at during that body, and what it was doing.
    pub(crate) last: Option<(u64, Activity)>,
    /// The thread's state file, kept open for the next look.
    pub(crate) state: cpu::ThreadState,
}

impl Shared {
    /// Starts the thread of a reserved worker (`threads.rs`). Call without holding a lock.
    pub(crate) fn launch(self: &Arc<Self>, reserved: Reserved) {
        let Reserved { id, slot } = reserved;
        let mut builder = std::thread::Builder::new().name(format!("{}-{id}", self.name));
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = Arc::clone(self);
        let worker_slot = Arc::clone(&slot);
        match crate::priority::spawn(builder, move || shared.worker_main(&worker_slot, id)) {
            Ok(handle) => self.threads.started(&slot, handle),
            Err(cause) => {
                // Out of threads: with some workers, queued jobs wait for them (and the next
                // submit or tick tries again); with none, nothing would ever run them.
                if self.threads.retire(&slot) == 0 {
                    self.fail_queued(|| {
                        Error::no_threads(Arc::clone(&self.name), clone_io(&cause))
                    });
                }
            }
        }
    }

    fn worker_main(self: Arc<Self>, slot: &Arc<WorkerSlot>, home: usize) {
        let _ = slot.thread.set(std::thread::current().id());
        slot.tid.store(cpu::current_tid(), Relaxed);
        WORKER_OF.set(self.id());
        STOPPING.set(Some(Arc::clone(&self.stopping)));
        CANCELS.set(Some(Arc::clone(&self.cancels)));
        crate::site::record_running_in(Some(Arc::clone(&slot.running_in)));
        crate::local::enter_worker(Arc::clone(&self.name), Arc::clone(&self.config.locals));
        if self.config.idle_priority {
            crate::priority::lower_to_idle();
        }
        run_hook(self.config.on_thread_start.as_ref());
        let parker = Parker::new();
        let rule = RefCell::new(SpinRule::default());
        // Counted as looking for work since the end of the last body (`Sleep::start_looking`).
        let looking = Cell::new(false);
        // As a body ends, with nothing queued: start looking before its result is handed
        // over, if this worker will spin, so that its caller's next call finds it spinning.
        let ahead = |ran_ns: u64| {
            let mut rule = rule.borrow_mut();
            self.sleep.body_ran(rule.ran(ran_ns));
            if rule.would_spin() && self.queue.looks_empty() {
                looking.set(self.sleep.start_looking());
            }
        };
        // When this worker last ran out of work (if it has not found any since).
        let mut dry_since: Option<u64> = None;
        // A keep-alive too long to represent is for ever.
        let keep_alive = Instant::now()
            .checked_add(self.config.keep_alive)
            .map(|_| self.config.keep_alive);
        loop {
            while let Some(entry) = self.take_job(slot, home) {
                if looking.replace(false) {
                    self.sleep.found_work();
                }
                if let Some(since) = dry_since.take() {
                    rule.borrow_mut().record(entry.at.saturating_sub(since));
                }
                if self.stopped.load(SeqCst) {
                    // Shutdown has given up on queued jobs: this one fails like them, and
                    // is counted before `starting` clears, so shutdown's report has it.
                    if entry.job.fail(
                        Error::shutdown(Arc::clone(&self.name)),
                        self.queue_limit.as_deref(),
                    ) {
                        self.count_cancelled(true);
                        self.counters.failed_at_stop.fetch_add(1, SeqCst);
                    }
                    slot.starting.store(false, SeqCst);
                    continue;
                }
                if self.sleep.job_taken(self.queue.len()) == Notified::NoneIdle {
                    self.need_thread();
                }
                // A body that started cleared `starting` then (`Accounting::started`); a job
                // abandoned before it could start did not.
                let outcome = self.run_job(&entry.job, Some(slot), Some(entry.at), Some(&ahead));
                if outcome == Outcome::NotRun {
                    slot.starting.store(false, SeqCst);
                }
            }
            dry_since.get_or_insert_with(|| self.now());
            let was_looking = looking.replace(false);
            if self.is_closed() {
                if was_looking {
                    self.sleep.found_work(); // no longer looking: it leaves
                }
                // Closed and the queue empty: a job pushed from now on is failed by its
                // submitter, which checks `closed` after its push.
                self.threads.retire(slot);
                break;
            }
            let wants = rule.borrow_mut().should_spin();
            if (was_looking || wants)
                && self.sleep.spin(
                    was_looking,
                    || !self.queue.looks_empty(),
                    || self.is_closed(),
                )
            {
                continue;
            }
            match self
                .sleep
                .park(&parker, keep_alive, || self.queue.len() > 0)
            {
                Parked::Woken | Parked::Closed => {}
                Parked::TimedOut(waited) => {
                    let waited = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                    rule.borrow_mut().record(waited);
                    dry_since = None;
                    let min = self.config.min_threads;
                    // Decided under the threads lock: see `Threads::retire_if`.
                    if self.threads.retire_if(slot, |count| {
                        self.queue.len() == 0 && (self.is_closed() || count > min)
                    }) {
                        break;
                    }
                }
            }
        }
        // Locals and hooks before the thread ends: shutdown joins exited workers, so they
        // have run by the time it returns.
        contain(crate::local::leave_worker);
        run_hook(self.config.on_thread_stop.as_ref());
        WORKER_OF.set(0);
        STOPPING.set(None);
        CANCELS.set(None);
        crate::site::record_running_in(None);
    }

    /// The next queued job, with `starting` set: shutdown waits for it to clear, so a job a
    /// worker has taken is either counted running or failed by the time it reports.
    fn take_job(&self, slot: &WorkerSlot, home: usize) -> Option<crate::queue::Entry> {
        slot.starting.store(true, SeqCst);
        let entry = self.queue.pop(home);
        if entry.is_none() {
            slot.starting.store(false, SeqCst);
        }
        entry
    }

    /// Runs a nested call's job right here, on a worker of its own pool.
    pub(crate) fn run_inline(&self, job: &JobRef) {
        self.run_job(job, None, None, None);
    }

    /// Runs one job on this thread, with `is_cancelled()` and the totals kept; `ahead` is
    /// told how long the body ran, before its result is handed over.
    fn run_job(
        &self,
        job: &JobRef,
        slot: Option<&WorkerSlot>,
        queued_at: Option<u64>,
        ahead: Option<&dyn Fn(u64)>,
    ) -> Outcome {
        let acct = Accounting {
            shared: self,
            slot,
            queued_at,
            start: Cell::new(0),
            ahead,
            job: job.id(),
            hooks: crate::cancel::registered_here(),
        };
        CURRENT.with_borrow_mut(|jobs| jobs.push(job.clone()));
        let outcome = job.run(&acct);
        CURRENT.with_borrow_mut(Vec::pop);
        outcome
    }

    /// True on a worker thread of this pool: a call made here runs inline.
    pub(crate) fn is_own_worker(&self) -> bool {
        WORKER_OF.get() == self.id()
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

/// What the worker (or an inline nested call) does when a body really starts and ends.
struct Accounting<'a> {
    shared: &'a Shared,
    slot: Option<&'a WorkerSlot>,
    /// When the job was queued; `None` for an inline nested call, which never was.
    queued_at: Option<u64>,
    start: Cell<u64>,
    /// Told how long the body ran, before its result is handed over (the worker's look
    /// ahead: see `worker_main`).
    ahead: Option<&'a dyn Fn(u64)>,
    /// The job's id, and the count of `on_cancel` hooks registered on this thread before it.
    job: usize,
    hooks: u64,
}

impl RunHooks for Accounting<'_> {
    fn started(&self) {
        let s = self.shared;
        let now = s.now();
        self.start.set(now);
        s.counters.started.fetch_add(1, Relaxed);
        let waited = self.queued_at.map_or(0, |queued_at| {
            s.counters.queued.fetch_sub(1, SeqCst);
            let waited = now.saturating_sub(queued_at);
            s.counters.queue_wait_ns.fetch_add(waited, Relaxed);
            waited
        });
        crate::site::set_queue_wait(waited);
        s.running.fetch_add(1, SeqCst);
        if let Some(slot) = self.slot {
            slot.busy_since.store(now + 1, Relaxed);
            slot.starting.store(false, SeqCst);
        }
    }

    fn release_slot(&self) {
        if let Some(slots) = &self.shared.queue_limit {
            slots.release();
        }
    }

    fn finished(&self, outcome: Outcome) {
        let s = self.shared;
        if crate::cancel::registered_here() != self.hooks {
            // The body registered `on_cancel` hooks: they are dropped (or waited for, if
            // one is running) before its result is handed over and the worker moves on.
            s.cancels.returned(self.job);
        }
        let now = s.now();
        if let Some(slot) = self.slot {
            slot.busy_since.store(0, Relaxed);
        }
        let ran = now.saturating_sub(self.start.get());
        s.counters.run_ns.fetch_add(ran, Relaxed);
        match outcome {
            Outcome::Completed => s.counters.completed.fetch_add(1, Relaxed),
            _ => s.counters.panicked.fetch_add(1, Relaxed),
        };
        s.running.fetch_sub(1, SeqCst);
        if let Some(ahead) = self.ahead {
            ahead(ran);
        }
    }
}

/// An `io::Error` to put in each failed call's error (`io::Error` is not `Clone`).
fn clone_io(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

fn run_hook(hook: Option<&Hook>) {
    if let Some(hook) = hook {
        contain(|| hook());
    }
}

#[cfg(test)]
mod thread_start_tests {
    use std::future::Future;
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::Pool;

    #[test]
    fn a_worker_that_cannot_start_leaves_its_jobs_to_the_workers_there_are() {
        let pool = Pool::builder().min_threads(0).max_threads(4).build();
        // One worker, held in a body until the test lets it go.
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let first = std::thread::spawn({
            let pool = pool.clone();
            move || {
                futures::executor::block_on(pool.spawn(move || {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                    1
                }))
            }
        });
        running.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(pool.metrics().threads, 1);
        // The second call's worker is refused: the call waits for the first worker.
        crate::priority::refuse_next_starts(1);
        let mut second = pool.spawn(|| 2);
        let waker = futures::task::noop_waker();
        let polled =
            std::pin::Pin::new(&mut second).poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending());
        assert_eq!(
            pool.metrics().threads,
            1,
            "the refused worker was counted out"
        );
        assert_eq!(pool.metrics().queued, 1);
        release.send(()).unwrap();
        assert_eq!(first.join().unwrap(), 1);
        assert_eq!(futures::executor::block_on(second), 2);
        // The refusal was one start: with a body held again, the next call gets a second
        // worker and ends while the first is still held.
        let (release, held) = mpsc::channel::<()>();
        let mut holding = pool.spawn(move || held.recv().unwrap());
        assert!(std::pin::Pin::new(&mut holding)
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_pending());
        assert_eq!(futures::executor::block_on(pool.spawn(|| 3)), 3);
        assert_eq!(pool.metrics().threads, 2);
        release.send(()).unwrap();
        futures::executor::block_on(holding);
    }
}
