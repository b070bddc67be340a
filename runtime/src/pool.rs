//! The workers: queue, BUSY / SPIN / IDLE loop, growth, keep-alive, shutdown.
//!
//! # Queue
//!
//! Jobs wait in a few mutex-guarded deques (shards). A submitting thread always uses the
//! same shard, chosen once per thread, so executor threads do not contend on one lock;
//! a worker pops from its home shard first and then from the others. Jobs that already
//! hold a `limit = N` permit go to a separate urgent queue that workers take first: they
//! have waited their turn at the permit, and a permit should not be held while its job
//! queues behind unrelated work (with `limit = 1` that would cap the function at one call
//! per queue wait). `len` counts entries
//! in all shards and is what every "is there work?" check reads.
//!
//! # Who wakes whom
//!
//! A worker that runs out of work first *spins* for a few microseconds (at most
//! `max_spinners` at a time, so spinning never takes every core), then puts itself on the
//! idle list and *parks*. A submitter pushes its job and then, in order:
//! 1. if a worker is spinning, does nothing: the spinner will see the job;
//! 2. else if a worker is parked, takes the most recently parked one off the idle list and
//!    unparks it (a hand-off to one thread that is really asleep, so no wake-up is lost to
//!    a thread that was already waking, and rarely used threads are the ones that time out);
//! 3. else if fewer than `core` threads (the number of CPUs, or `min_threads`) exist,
//!    starts one;
//! 4. else all workers are busy and the job waits for one of them; the *monitor* (below)
//!    decides whether the pool needs more threads.
//!
//! Each step reads counters that the worker writes before its last look at the queue
//! (`SeqCst` on both sides), so a job is never left with every worker asleep. A worker
//! (spinning or woken) that takes a job while others are still queued wakes one more, so a
//! burst fans out to every idle worker instead of waiting for the one that was awake.
//!
//! # Growth
//!
//! Starting a thread per job when none is idle (what `spawn_blocking` does) starts hundreds
//! of threads for jobs that take microseconds. Here threads beyond `core` are started only by
//! the monitor, a thread that wakes every [`TICK`] while jobs are queued. It grows the pool
//! only when queued work waits behind *blocked* workers: every thread is inside a body, and
//! some has been for longer than a tick. It then estimates how long a job takes (the best
//! average of a few ticks since the backlog formed, or the longest running body if none
//! finished yet) and asks for
//! enough threads to clear the backlog within [`DRAIN_HORIZON`], at most doubling per tick.
//! Growth must pay off: after growing, the monitor waits until the new threads have finished
//! a job or two, and grows again only if the completion rate rose in proportion (see
//! `Growth`). So a thousand one-millisecond sleeps get 70 to 90 threads within a few
//! milliseconds (on two cores; `spawn_blocking` starts 512),
//! while microsecond jobs never trigger growth however many callers wait: by the estimate,
//! the threads there are clear thousands of them well within the horizon.
//!
//! # Shrinking and shutdown
//!
//! A parked worker above `min_threads` exits after `keep_alive` without work. When the last
//! [`Pool`] handle is dropped, or [`Pool::shutdown`] is called, the pool is *closed*: new
//! submissions fail with a shutdown error, workers finish the queue and exit.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::builder::{Builder, Hook};
use crate::error::Error;
use crate::job::{Job, Outcome, Run, RunHooks, Task};
use crate::limit::Limit;
use crate::metrics::Metrics;
use crate::offload::Offload;
use crate::sync::lock_std as lock;

/// How often the monitor looks at a pool with queued work.
pub const TICK: Duration = Duration::from_micros(200);
/// The monitor grows the pool only if the backlog would take longer than this to drain at
/// the completion rate of the last tick.
pub const DRAIN_HORIZON: Duration = Duration::from_millis(20);
/// How long an out-of-work worker spins before parking.
const SPIN_FOR: Duration = Duration::from_micros(50);
/// The completion rate is measured over this many ticks, and growth waits until half of
/// them have passed, so one tick in which busy workers were descheduled is not mistaken
/// for blocked workers.
const RATE_WINDOW: usize = 8;
/// Monitor ticks without queued work before the monitor parks.
const MONITOR_IDLE_TICKS: u32 = 50;

/// A value on a cache line of its own, so counters written by different threads do not
/// slow each other down.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A cheap, cloneable handle to a thread pool for blocking work.
///
/// Cloning shares the pool. When the last handle (and the last [`Offload`] made from it) is
/// gone, the pool closes: queued jobs still run, then the threads exit.
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use offthread_runtime::Pool;
///
/// static DB: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("db").max_threads(8).build());
///
/// let n = futures::executor::block_on(DB.spawn(|| (1..=10u64).product::<u64>()));
/// assert_eq!(n, 3_628_800);
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// Closes the pool when the last [`Pool`] clone is dropped (workers hold `Shared`, not this).
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// One part of the queue.
type Shard = Mutex<VecDeque<Arc<dyn Run>>>;

/// The monitor's memory between ticks: the recent completion rate, and whether the last
/// growth paid off.
///
/// Growth must pay: on a machine with few cores each thread costs context switches, and
/// past some count more threads make every job slower, which makes the backlog look longer
/// and would ask for still more threads. So after growing, the monitor waits until the new
/// threads have had time to finish jobs, then grows again only if the completion rate rose
/// in proportion; if it did not, growth stops until the backlog clears.
#[derive(Default)]
struct Growth {
    /// (when, bodies finished, nanoseconds run) at each of the last few ticks.
    window: VecDeque<(Instant, u64, u64)>,
    /// The last growth: when, the threads before it and after it, the rate before it.
    last: Option<(Instant, usize, usize, f64)>,
    /// Growth did not pay: no more until the backlog clears.
    frozen: bool,
    /// The shortest average job time seen in a window since the backlog formed. Jobs slow
    /// down when threads outnumber cores, which would make the backlog look longer and ask
    /// for yet more threads; the best time seen is the honest estimate.
    best_per_job: Option<u64>,
}

impl Growth {
    fn sample(&mut self, (done, ran): (u64, u64)) {
        self.window.push_back((Instant::now(), done, ran));
        if self.window.len() > RATE_WINDOW {
            self.window.pop_front();
        }
    }

    fn backlog_cleared(&mut self) {
        self.last = None;
        self.frozen = false;
        self.best_per_job = None;
    }

    /// Calls `grow(per_job_ns)` if growing a pool of `threads` may help now; returns what it
    /// returns, remembering a growth.
    fn decide(
        &mut self,
        threads: usize,
        grow: impl FnOnce(Option<u64>) -> Vec<Reserved>,
    ) -> Vec<Reserved> {
        let (Some(&(t0, d0, r0)), Some(&(t1, d1, r1))) = (self.window.front(), self.window.back())
        else {
            return Vec::new();
        };
        if self.frozen || self.window.len() < RATE_WINDOW / 2 {
            return Vec::new();
        }
        let (done, ran) = (d1 - d0, r1 - r0);
        let rate = done as f64 / (t1 - t0).as_secs_f64().max(1e-9);
        if let Some(per_job) = ran.checked_div(done) {
            self.best_per_job = Some(self.best_per_job.map_or(per_job, |b| b.min(per_job)));
        }
        if let Some((at, before, after, rate_before)) = self.last {
            // Let the new threads finish a job or two before judging them.
            let per_job = Duration::from_nanos(ran.checked_div(done).unwrap_or(0));
            if t1 - at < (TICK * RATE_WINDOW as u32).max(per_job * 2) {
                return Vec::new();
            }
            let expected = rate_before * (1.0 + 0.5 * (after - before) as f64 / before as f64);
            if rate < expected {
                self.frozen = true;
                return Vec::new();
            }
        }
        let start = grow(self.best_per_job);
        if !start.is_empty() {
            self.last = Some((t1, threads, threads + start.len(), rate));
        }
        start
    }
}

/// How a parked worker is woken: the waker sets `woken`, then unparks `thread`.
struct Parker {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Parker {
    fn wake(&self) {
        self.woken.store(true, SeqCst);
        self.thread.unpark();
    }
}

/// A worker counted in under the state lock, whose thread is not started yet.
struct Reserved {
    id: usize,
    slot: Arc<WorkerSlot>,
}

/// A per-worker record the monitor reads to tell blocked workers from busy ones.
#[derive(Default)]
struct WorkerSlot {
    /// When the current body started (nanoseconds since the epoch, plus one); 0 when idle.
    busy_since: AtomicU64,
}

/// Everything the pool's threads share.
pub(crate) struct Shared {
    /// The thread-name prefix, also used in error messages.
    pub(crate) name: Arc<str>,
    min_threads: usize,
    max_threads: usize,
    keep_alive: Duration,
    stack_size: Option<usize>,
    on_thread_start: Option<Hook>,
    on_thread_stop: Option<Hook>,
    /// The `worker_local` initialisers, by type.
    locals: crate::local::Registry,
    /// Threads started eagerly by submitters: the CPU count, at least `min_threads`.
    core: usize,
    /// At most this many workers spin at once.
    max_spinners: usize,
    /// The zero of every timestamp stored in jobs and worker slots.
    epoch: Instant,
    /// The queue, split in shards; a power-of-two count.
    shards: Box<[Padded<Shard>]>,
    /// Jobs that already hold a `limit` permit: taken before the shards, so a permit is
    /// not held while its job waits behind unrelated work.
    urgent: Padded<Shard>,
    /// Entries in `urgent`.
    urgent_len: AtomicIsize,
    /// Entries in all shards and `urgent` (including abandoned jobs not yet popped).
    /// Counted after the push and after the pop, so it never exceeds the true number of
    /// entries but may dip below zero for an instant: read it with `queue_len()`.
    len: Padded<AtomicIsize>,
    /// Workers spinning for work now.
    spinning: Padded<AtomicUsize>,
    /// Workers parked now (mirror of `State::idle.len()`, readable without the lock).
    sleeping: AtomicUsize,
    /// Worker threads alive (mirror of `State::threads`).
    threads: AtomicUsize,
    /// Bodies running now.
    running: AtomicUsize,
    /// No new submissions: shut down or every handle dropped. Set under the state lock, so
    /// a check made holding that lock stays true until the lock is released.
    closed: AtomicBool,
    /// The monitor is ticking (not parked), so submitters need not call it.
    monitor_awake: AtomicBool,
    /// Bounds the queue when `queue_capacity` was set.
    pub(crate) queue_limit: Option<Arc<Limit>>,
    counters: Counters,
    /// Thread bookkeeping, under one lock taken only off the fast path.
    state: Mutex<State>,
    /// The parked monitor waits here.
    monitor_wake: Condvar,
}

#[derive(Default)]
/// The totals behind [`Metrics`]; each written by the party the comment names.
struct Counters {
    /// Jobs first polled (by their futures).
    submitted: Padded<AtomicU64>,
    /// Jobs in the queue that have not started nor been abandoned (submit adds; the worker
    /// that starts a job, or whoever abandons or fails a queued one, subtracts).
    queued: Padded<AtomicUsize>,
    /// Bodies that returned (by the thread that ran them).
    completed: Padded<AtomicU64>,
    /// Bodies that panicked (by the thread that ran them).
    panicked: AtomicU64,
    /// Jobs that never ran (by whoever abandoned or failed them).
    cancelled: AtomicU64,
    /// Nanoseconds jobs waited in the queue (by the worker that starts them).
    queue_wait_ns: Padded<AtomicU64>,
    /// Nanoseconds bodies ran (by the thread that ran them).
    run_ns: AtomicU64,
}

/// Thread bookkeeping, under `Shared::state`.
struct State {
    /// Workers counted in (started or being started) and not yet exited.
    threads: usize,
    /// Parked workers, most recently parked last. A waker pops one and unparks it, so each
    /// wake-up goes to exactly one worker that is really asleep.
    idle: Vec<Arc<Parker>>,
    /// The `n` of the next thread's name `{prefix}-{n}`.
    next_id: usize,
    /// One per worker counted in, for the monitor to see which are blocked.
    slots: Vec<Arc<WorkerSlot>>,
    /// The monitor thread exists.
    monitor_started: bool,
    /// A submitter asked the parked monitor to look.
    monitor_wanted: bool,
}

thread_local! {
    /// The pool this thread works for (address of its `Shared`), 0 if none.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
    /// The job running on this thread, for `is_cancelled()`.
    static CURRENT: RefCell<Option<Arc<dyn Run>>> = const { RefCell::new(None) };
    /// This thread's queue shard, chosen on first submit.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// True inside a body whose [`Offload`] was dropped or timed out; false elsewhere,
/// including outside any worker.
///
/// A long body can poll it between steps and stop early: nobody will see its result.
///
/// # Examples
///
/// ```
/// assert!(!offthread_runtime::is_cancelled());
/// let pool = offthread_runtime::Pool::builder().build();
/// assert!(!futures::executor::block_on(pool.spawn(offthread_runtime::is_cancelled)));
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.with_borrow(|c| c.as_ref().is_some_and(|job| job.is_cancelled()))
}

fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// A report of [`Pool::shutdown`].
///
/// # Examples
///
/// ```
/// let pool = offthread_runtime::Pool::builder().build();
/// let report = pool.shutdown(std::time::Duration::from_millis(10));
/// assert_eq!((report.still_running, report.failed), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs whose bodies had not returned at the deadline (they run on to their end).
    pub still_running: usize,
    /// Queued jobs that never started and were failed with a shutdown error.
    pub failed: usize,
}

impl Pool {
    /// A [`Builder`] with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread_runtime::Pool::builder().name("io").max_threads(4).build();
    /// assert_eq!(futures::executor::block_on(pool.spawn(|| "done")), "done");
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_builder(b: Builder) -> Pool {
        let cpus = cpus();
        let shards = (cpus * 2).next_power_of_two().max(2);
        let shared = Shared {
            name: b.name.into(),
            min_threads: b.min_threads,
            max_threads: b.max_threads,
            keep_alive: b.keep_alive,
            stack_size: b.stack_size,
            on_thread_start: b.on_thread_start,
            on_thread_stop: b.on_thread_stop,
            locals: Arc::new(b.locals),
            core: cpus.max(b.min_threads).min(b.max_threads),
            max_spinners: (cpus / 2).max(1),
            epoch: Instant::now(),
            shards: (0..shards).map(|_| Padded::default()).collect(),
            urgent: Padded::default(),
            urgent_len: AtomicIsize::new(0),
            len: Padded::default(),
            spinning: Padded::default(),
            sleeping: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            monitor_awake: AtomicBool::new(false),
            queue_limit: b.queue_capacity.map(|n| Arc::new(Limit::new(n))),
            counters: Counters::default(),
            state: Mutex::new(State {
                threads: 0,
                idle: Vec::new(),
                next_id: 0,
                slots: Vec::new(),
                monitor_started: false,
                monitor_wanted: false,
            }),
            monitor_wake: Condvar::new(),
        };
        Pool {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Runs `f` on the pool and returns a future of its value.
    ///
    /// Nothing runs until the future is first polled (like an `async fn`). Awaiting gives
    /// `f`'s value; a panic in `f` resumes in the awaiting task. See [`Offload`] for
    /// cancellation and [`Offload::checked`] to get errors as values.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread_runtime::Pool::builder().build();
    /// let contents = futures::executor::block_on(pool.spawn(|| std::fs::read_to_string("Cargo.toml")));
    /// assert!(contents.unwrap().contains("[package]"));
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        #[cfg(feature = "tracing")]
        let f = {
            let span = tracing::Span::current();
            move || span.in_scope(f)
        };
        let job: Arc<dyn Task<T>> = Arc::new(Job::new(f));
        Offload::new(job, self.clone())
    }

    /// A snapshot of the pool's threads, queue and totals.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread_runtime::Pool::builder().build();
    /// let _ = futures::executor::block_on(pool.spawn(|| panic!("x")).checked());
    /// assert_eq!(pool.metrics().panicked, 1);
    /// ```
    pub fn metrics(&self) -> Metrics {
        let s = self.shared();
        let c = &s.counters;
        let threads = s.threads.load(Relaxed);
        let running = s.running.load(Relaxed);
        Metrics {
            threads,
            idle_threads: threads.saturating_sub(running),
            queued: c.queued.load(Relaxed),
            running,
            submitted: c.submitted.load(Relaxed),
            completed: c.completed.load(Relaxed),
            panicked: c.panicked.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            queue_wait: Duration::from_nanos(c.queue_wait_ns.load(Relaxed)),
            run_time: Duration::from_nanos(c.run_ns.load(Relaxed)),
        }
    }

    /// Stops accepting work and waits up to `deadline` for queued and running jobs.
    ///
    /// New calls fail with [`Error::is_shutdown`] from the moment this is called (a plain
    /// `.await` panics naming the pool; [`Offload::checked`] returns the error). Workers keep
    /// taking queued jobs until the deadline; jobs still queued then are failed with a
    /// shutdown error. Bodies still running at the deadline cannot be stopped: they run to
    /// their end and are counted in [`ShutdownReport::still_running`]. Threads exit once idle.
    ///
    /// Called from inside a body of this pool, that body counts as still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = offthread_runtime::Pool::builder().build();
    /// let report = pool.shutdown(Duration::from_secs(1));
    /// assert_eq!(report.failed, 0);
    /// let late = futures::executor::block_on(pool.spawn(|| 1).checked());
    /// assert!(late.unwrap_err().is_shutdown());
    /// ```
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let s = self.shared();
        s.close();
        let end = Instant::now().checked_add(deadline);
        let mut pause = Duration::from_micros(20);
        loop {
            let busy = s.counters.queued.load(SeqCst) + s.running.load(SeqCst);
            if busy == 0 {
                break;
            }
            let now = Instant::now();
            let left = match end {
                Some(end) if end > now => end - now,
                Some(_) => break,
                None => Duration::MAX,
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(2));
        }
        let mut failed = 0;
        for (i, shard) in std::iter::once(&s.urgent)
            .chain(s.shards.iter())
            .enumerate()
        {
            let drained: Vec<_> = lock(shard).drain(..).collect();
            if i == 0 {
                s.urgent_len.fetch_sub(count(drained.len()), SeqCst);
            }
            s.len.fetch_sub(count(drained.len()), SeqCst);
            for job in drained {
                if job.fail(Error::shutdown(Arc::clone(&s.name))) {
                    s.counters.queued.fetch_sub(1, SeqCst);
                    s.counters.cancelled.fetch_add(1, Relaxed);
                    failed += 1;
                }
            }
        }
        ShutdownReport {
            still_running: s.running.load(SeqCst),
            failed,
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared().name)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// What the worker (or an inline nested call) does when a body really starts and ends.
struct Accounting<'a> {
    shared: &'a Shared,
    job: &'a dyn Run,
    slot: Option<&'a WorkerSlot>,
    /// The job came from the queue (not an inline nested call).
    queued: bool,
    start: Cell<u64>,
}

impl RunHooks for Accounting<'_> {
    fn started(&self) {
        let s = self.shared;
        let now = s.now();
        self.start.set(now);
        if self.queued {
            s.counters.queued.fetch_sub(1, SeqCst);
            let waited = now.saturating_sub(self.job.queued_at());
            s.counters.queue_wait_ns.fetch_add(waited, Relaxed);
        }
        s.running.fetch_add(1, SeqCst);
        if let Some(slot) = self.slot {
            slot.busy_since.store(now + 1, Relaxed);
        }
    }

    fn finished(&self, outcome: Outcome) {
        let s = self.shared;
        let now = s.now();
        if let Some(slot) = self.slot {
            slot.busy_since.store(0, Relaxed);
        }
        s.counters
            .run_ns
            .fetch_add(now.saturating_sub(self.start.get()), Relaxed);
        s.running.fetch_sub(1, SeqCst);
        match outcome {
            Outcome::Completed => s.counters.completed.fetch_add(1, Relaxed),
            _ => s.counters.panicked.fetch_add(1, Relaxed),
        };
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// True on a worker thread of this pool: a call made here runs inline.
    pub(crate) fn is_own_worker(&self) -> bool {
        WORKER_OF.get() == self.id()
    }

    pub(crate) fn count_submitted(&self) {
        self.counters.submitted.fetch_add(1, Relaxed);
    }

    /// A job that was never queued (waiting for a permit, or refused) is abandoned.
    pub(crate) fn count_cancelled(&self, was_queued: bool) {
        if was_queued {
            self.counters.queued.fetch_sub(1, SeqCst);
        }
        self.counters.cancelled.fetch_add(1, Relaxed);
    }

    /// Queues `job`, ahead of the others if it is `urgent` (it holds a `limit` permit).
    /// On a closed pool, fails it with a shutdown error instead.
    pub(crate) fn submit<T>(self: &Arc<Self>, job: &Arc<dyn Task<T>>, urgent: bool) {
        job.set_queued_at(self.now());
        self.counters.queued.fetch_add(1, SeqCst);
        let entry: Arc<dyn Run> = job.clone();
        // Pushed, then counted: a worker that sees the count can find the job.
        if urgent {
            lock(&self.urgent).push_back(entry);
            self.urgent_len.fetch_add(1, SeqCst);
        } else {
            lock(&self.shards[self.my_shard()]).push_back(entry);
        }
        self.len.fetch_add(1, SeqCst);
        // Checked after the push: closed before it, or closed and drained while we pushed,
        // the job must still end. (An abandoned entry is skipped by whoever pops it.)
        if self.is_closed() {
            if job.fail(Error::shutdown(Arc::clone(&self.name))) {
                self.count_cancelled(true);
            }
            return;
        }
        self.notify();
    }

    fn my_shard(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut i = SHARD.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed);
            SHARD.set(i);
        }
        i & (self.shards.len() - 1)
    }

    /// After a push: make sure some worker will look at the queue (steps 1-4 above).
    fn notify(self: &Arc<Self>) {
        if self.spinning.load(SeqCst) > 0 {
            return;
        }
        let threads = self.threads.load(SeqCst);
        if self.sleeping.load(SeqCst) == 0
            && threads >= self.core
            && (self.monitor_awake.load(SeqCst) || threads >= self.max_threads)
        {
            return;
        }
        self.wake_or_grow();
    }

    #[cold]
    fn wake_or_grow(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        if self.is_closed() {
            return;
        }
        if let Some(parker) = st.idle.pop() {
            self.sleeping.store(st.idle.len(), SeqCst);
            drop(st);
            parker.wake();
        } else if st.threads < self.core {
            let reserved = self.reserve_worker(&mut st);
            drop(st);
            self.launch(reserved);
        } else if st.threads < self.max_threads && !self.monitor_awake.load(SeqCst) {
            if st.monitor_started {
                st.monitor_wanted = true;
                self.monitor_wake.notify_one();
            } else {
                st.monitor_started = true;
                self.monitor_awake.store(true, SeqCst);
                let shared = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-monitor", self.name))
                    .stack_size(64 << 10)
                    .spawn(move || shared.monitor_main());
                if spawned.is_err() {
                    st.monitor_started = false;
                    self.monitor_awake.store(false, SeqCst);
                }
            }
        }
    }

    /// Counts a new worker in, under the state lock; [`launch`](Shared::launch) starts its
    /// thread after the lock is released (starting threads takes long enough that holding
    /// the lock meanwhile would stall every submitter, and so their executors).
    fn reserve_worker(&self, st: &mut State) -> Reserved {
        let id = st.next_id;
        st.next_id += 1;
        let slot = Arc::new(WorkerSlot::default());
        st.slots.push(Arc::clone(&slot));
        st.threads += 1;
        self.threads.fetch_add(1, SeqCst);
        Reserved { id, slot }
    }

    /// Starts the thread of a reserved worker. Call without holding the state lock.
    fn launch(self: &Arc<Self>, reserved: Reserved) {
        let Reserved { id, slot, .. } = reserved;
        let mut builder = std::thread::Builder::new().name(format!("{}-{id}", self.name));
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = Arc::clone(self);
        let worker_slot = Arc::clone(&slot);
        if builder
            .spawn(move || shared.worker_main(worker_slot, id))
            .is_err()
        {
            // Out of threads: the job waits for a running worker, or for a later try.
            let mut st = lock(&self.state);
            st.threads -= 1;
            self.threads.fetch_sub(1, SeqCst);
            st.slots.retain(|s| !Arc::ptr_eq(s, &slot));
        }
    }

    fn worker_main(self: Arc<Self>, slot: Arc<WorkerSlot>, id: usize) {
        WORKER_OF.set(self.id());
        crate::local::enter_worker(Arc::clone(&self.name), Arc::clone(&self.locals));
        run_hook(self.on_thread_start.as_ref());
        let parker = Arc::new(Parker {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        loop {
            // BUSY: run jobs while there are any.
            while let Some(job) = self.pop(id) {
                // Fan out: submitters skip waking anyone while a worker spins, so a burst
                // can find one worker awake; each worker that takes a job and sees more
                // waiting than spinners can take wakes one more.
                if self.sleeping.load(SeqCst) > 0 && self.queue_len() > self.spinning.load(SeqCst) {
                    self.wake_or_grow();
                }
                self.run_job(&job, Some(&slot), true);
            }
            // SPIN: new work often arrives within microseconds.
            if self.spin() {
                continue;
            }
            // IDLE: park until woken, closed, or idle past keep-alive.
            if !self.park(&slot, &parker) {
                break;
            }
        }
        let _ = catch_unwind(crate::local::leave_worker);
        run_hook(self.on_thread_stop.as_ref());
        WORKER_OF.set(0);
    }

    /// Entries in the queue, as far as the counter knows.
    fn queue_len(&self) -> usize {
        usize::try_from(self.len.load(SeqCst)).unwrap_or(0)
    }

    fn pop(&self, home: usize) -> Option<Arc<dyn Run>> {
        if self.queue_len() == 0 {
            return None;
        }
        if self.urgent_len.load(SeqCst) > 0 {
            let job = lock(&self.urgent).pop_front();
            if let Some(job) = job {
                self.urgent_len.fetch_sub(1, SeqCst);
                self.len.fetch_sub(1, SeqCst);
                return Some(job);
            }
        }
        let n = self.shards.len();
        for i in 0..n {
            let job = lock(&self.shards[(home + i) & (n - 1)]).pop_front();
            if let Some(job) = job {
                self.len.fetch_sub(1, SeqCst);
                return Some(job);
            }
        }
        None
    }

    /// Runs a nested call's job right here, on a worker of its own pool.
    pub(crate) fn run_inline(&self, job: &Arc<dyn Run>) {
        self.run_job(job, None, false);
    }

    /// Runs one job on this thread, with `is_cancelled()` and the totals kept.
    fn run_job(&self, job: &Arc<dyn Run>, slot: Option<&WorkerSlot>, queued: bool) {
        let acct = Accounting {
            shared: self,
            job: &**job,
            slot,
            queued,
            start: Cell::new(0),
        };
        let previous = CURRENT.replace(Some(Arc::clone(job)));
        job.run(&acct);
        CURRENT.set(previous);
    }

    /// Spins briefly for new work. True if work arrived.
    fn spin(&self) -> bool {
        if self.spinning.fetch_add(1, SeqCst) >= self.max_spinners {
            self.spinning.fetch_sub(1, SeqCst);
            return false;
        }
        let start = Instant::now();
        let mut i: u32 = 0;
        let found = loop {
            if self.len.load(Relaxed) > 0 {
                break true;
            }
            i = i.wrapping_add(1);
            if i % 128 == 0 && (self.closed.load(Relaxed) || start.elapsed() >= SPIN_FOR) {
                break false;
            }
            std::hint::spin_loop();
        };
        self.spinning.fetch_sub(1, SeqCst);
        found
    }

    /// Parks until there is work (true) or this worker should exit (false).
    fn park(&self, slot: &Arc<WorkerSlot>, parker: &Arc<Parker>) -> bool {
        {
            let mut st = lock(&self.state);
            if self.is_closed() && self.queue_len() == 0 {
                self.retire(&mut st, slot);
                return false;
            }
            parker.woken.store(false, SeqCst);
            st.idle.push(Arc::clone(parker));
            self.sleeping.store(st.idle.len(), SeqCst);
            // After announcing ourselves (`sleeping`), look once more: a submitter that
            // read `sleeping` before we wrote it did not wake anyone (see module docs).
            if self.queue_len() > 0 {
                self.unidle(&mut st, parker);
                return true;
            }
        }
        let deadline = Instant::now() + self.keep_alive;
        loop {
            if parker.woken.load(SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        let mut st = lock(&self.state);
        if parker.woken.load(SeqCst) {
            return true; // a waker took us off the list just now
        }
        self.unidle(&mut st, parker);
        if self.queue_len() > 0 || (!self.is_closed() && st.threads <= self.min_threads) {
            return true;
        }
        self.retire(&mut st, slot);
        false
    }

    /// Takes a parker that was not woken off the idle list.
    fn unidle(&self, st: &mut State, parker: &Arc<Parker>) {
        st.idle.retain(|p| !Arc::ptr_eq(p, parker));
        self.sleeping.store(st.idle.len(), SeqCst);
    }

    /// Counts an exiting worker out.
    fn retire(&self, st: &mut State, slot: &Arc<WorkerSlot>) {
        st.threads -= 1;
        self.threads.fetch_sub(1, SeqCst);
        st.slots.retain(|s| !Arc::ptr_eq(s, slot));
    }

    fn close(&self) {
        let mut st = lock(&self.state);
        self.closed.store(true, SeqCst);
        let idle = std::mem::take(&mut st.idle);
        self.sleeping.store(0, SeqCst);
        drop(st);
        for parker in idle {
            parker.wake();
        }
        self.monitor_wake.notify_all();
    }

    /// The monitor: grows the pool while queued work waits behind blocked workers.
    fn monitor_main(self: Arc<Self>) {
        let mut growth = Growth::default();
        growth.sample(self.done());
        let mut idle_ticks = 0;
        let mut st = lock(&self.state);
        loop {
            if self.is_closed() {
                break;
            }
            st = self
                .monitor_wake
                .wait_timeout(st, TICK)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            growth.sample(self.done());
            let len = self.queue_len();
            if len > 0 {
                idle_ticks = 0;
                let threads = st.threads;
                let start =
                    growth.decide(threads, |per_job| self.maybe_grow(&mut st, len, per_job));
                if !start.is_empty() {
                    drop(st);
                    for reserved in start {
                        self.launch(reserved);
                    }
                    st = lock(&self.state);
                }
                continue;
            }
            growth.backlog_cleared();
            idle_ticks += 1;
            if idle_ticks < MONITOR_IDLE_TICKS {
                continue;
            }
            // Nothing queued for a while: park until a submitter finds every worker busy.
            self.monitor_awake.store(false, SeqCst);
            while !st.monitor_wanted && !self.is_closed() && self.queue_len() == 0 {
                st = self
                    .monitor_wake
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            st.monitor_wanted = false;
            self.monitor_awake.store(true, SeqCst);
            idle_ticks = 0;
            growth = Growth::default();
            growth.sample(self.done());
        }
        st.monitor_started = false;
        self.monitor_awake.store(false, SeqCst);
    }

    /// Bodies finished so far, and the nanoseconds they ran.
    fn done(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.completed.load(Relaxed) + c.panicked.load(Relaxed),
            c.run_ns.load(Relaxed),
        )
    }

    /// The growth rule (module docs): more threads only for work queued behind blocked ones.
    /// `per_job` is how long a body takes, if any finished lately (see [`Growth`]).
    /// Returns the workers to start, reserved under the lock.
    fn maybe_grow(&self, st: &mut State, len: usize, per_job: Option<u64>) -> Vec<Reserved> {
        if self.is_closed()
            || st.threads >= self.max_threads
            || !st.idle.is_empty()
            || self.spinning.load(SeqCst) > 0
            // Some thread is not inside a body: parked, or woken and on its way to a job.
            || self.running.load(SeqCst) < st.threads
        {
            return Vec::new();
        }
        let now = self.now();
        let tick = u64::try_from(TICK.as_nanos()).unwrap_or(u64::MAX);
        let mut blocked = 0;
        let mut longest = 0;
        for slot in &st.slots {
            let since = slot.busy_since.load(Relaxed);
            if since != 0 {
                let busy = now.saturating_sub(since - 1);
                longest = longest.max(busy);
                blocked += usize::from(busy > tick);
            }
        }
        if blocked == 0 {
            return Vec::new();
        }
        // How long one job takes: the recent average, or, before any finished, at least as
        // long as the longest running one has taken so far.
        let per_job_ns = per_job.unwrap_or(longest);
        // The threads that would clear the backlog within the horizon.
        let horizon = DRAIN_HORIZON.as_nanos() as f64;
        let wanted = ((len as f64) * (per_job_ns as f64) / horizon).ceil() as usize;
        let wanted = wanted.min(self.max_threads).min(st.threads + len);
        if wanted <= st.threads {
            return Vec::new();
        }
        // At most double per tick, so a burst of misjudged jobs costs few threads.
        let grow = (wanted - st.threads).min(st.threads.max(1));
        (0..grow).map(|_| self.reserve_worker(st)).collect()
    }
}

/// A queue count as the signed type of the counters.
fn count(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

fn run_hook(hook: Option<&Hook>) {
    if let Some(hook) = hook {
        let _ = catch_unwind(AssertUnwindSafe(|| hook()));
    }
}
