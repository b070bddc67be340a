//! The pool: the public [`Pool`] handle, what its threads share, submission and wake-ups,
//! and shutdown.
//!
//! One call's path: [`Pool::spawn`] makes the job, its [`Offload`] queues it on first poll
//! ([`Shared::submit`]), a worker (`worker.rs`) takes it from the queue (`queue.rs`) and
//! runs it; the monitor (`monitor.rs`) starts threads when queued work waits behind
//! blocked ones.
//!
//! # Who wakes whom
//!
//! A worker that runs out of work may spin for a few microseconds (at most `max_spinners`
//! at a time, so spinning never takes every core), then puts itself on the idle list and
//! parks. A submitter pushes its job and then, in order:
//! 1. if a worker is spinning, or was unparked and has not looked at the queue yet
//!    (`waking`), does nothing: that worker will see the job;
//! 2. else if a worker is parked, takes the most recently parked one off the idle list and
//!    unparks it (a hand-off to one thread that is really asleep, so no wake-up is lost to
//!    a thread that was already waking, and rarely used threads are the ones that time out);
//! 3. else if fewer than `core` threads (the number of CPUs, or `min_threads`) exist,
//!    starts one;
//! 4. else every worker is in a body; it wakes the monitor if it is parked, which decides
//!    whether the pool needs more threads.
//!
//! Each step reads counters that the worker writes before its last look at the queue
//! (`SeqCst` on both sides), so a job is never left with every worker asleep.
//!
//! A burst thus costs its submitters one unpark, not one per job: the woken worker, on
//! taking a job while more wait, wakes the next (`worker.rs`), so the fan-out runs on the
//! pool's threads and not on the executor's.
//!
//! # Shrinking and shutdown
//!
//! A parked worker above `min_threads` exits after `keep_alive` without work. When the last
//! [`Pool`] handle is dropped, or [`Pool::shutdown`] is called, the pool is *closed*: new
//! submissions fail with a shutdown error, workers finish the queue and exit. Shutdown
//! waits for that (up to its deadline) on a condition variable that each exiting worker
//! signals, then joins the threads that exited, so their `on_thread_stop` hooks have run
//! and their `worker_local` values are dropped when it returns.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::builder::{Builder, Hook};
use crate::cancel::Cancels;
use crate::error::Error;
use crate::job::{new_job, TaskRef};
use crate::limit::Limit;
use crate::metrics::{Counters, Metrics};
use crate::offload::Offload;
use crate::queue::{Padded, Queue};
use crate::sync::lock_std as lock;
use crate::worker::{Parker, WorkerSlot};

/// A cheap, cloneable handle to a thread pool for blocking work.
///
/// Cloning shares the pool. When the last handle (and the last [`Offload`] made from it) is
/// gone, the pool closes: queued jobs still run, then the threads exit.
///
/// # Scheduling
///
/// Threads start on demand, up to the CPU count at once; past that, a thread is added when
/// queued calls wait behind bodies that are blocked (on I/O, a lock, a sleep) or stuck.
/// While the pool has fewer than `max_threads` threads, a queued call starts within a few
/// milliseconds whatever the running bodies do. At `max_threads`, calls wait in the order
/// they were queued (calls of a `limit = N` function that already hold their permit go
/// first).
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use offthread::Pool;
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

/// The settings the threads run by, fixed when the pool is built.
pub(crate) struct Config {
    pub(crate) min_threads: usize,
    pub(crate) max_threads: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) stack_size: Option<usize>,
    /// Workers move themselves to the OS's idle scheduling class as they start.
    pub(crate) idle_priority: bool,
    pub(crate) on_thread_start: Option<Hook>,
    pub(crate) on_thread_stop: Option<Hook>,
    /// The `worker_local` initialisers, by type.
    pub(crate) locals: Arc<crate::local::Registry>,
    /// Threads started eagerly by submitters: the CPU count, at least `min_threads`.
    pub(crate) core: usize,
    /// At most this many workers spin at once.
    pub(crate) max_spinners: usize,
}

/// Everything the pool's threads share.
pub(crate) struct Shared {
    /// The thread-name prefix, also used in error messages.
    pub(crate) name: Arc<str>,
    pub(crate) config: Config,
    /// The zero of every timestamp stored in jobs and worker slots.
    epoch: Instant,
    /// The jobs waiting for a worker.
    pub(crate) queue: Queue,
    /// Workers spinning for work now.
    pub(crate) spinning: Padded<AtomicUsize>,
    /// Workers taken off the idle list and unparked that have not looked at the queue yet.
    /// Like spinners they will see what is queued, so submitters do not wake another for
    /// each job pushed while a wake-up is on its way (an unpark costs the submitter, an
    /// executor thread, a system call, and the woken thread competes with it for a core).
    pub(crate) waking: Padded<AtomicUsize>,
    /// Workers parked now (mirror of `State::idle.len()`, readable without the lock).
    pub(crate) sleeping: AtomicUsize,
    /// Worker threads alive (mirror of `State::threads`).
    pub(crate) threads: AtomicUsize,
    /// Bodies running now.
    pub(crate) running: AtomicUsize,
    /// No new submissions: shut down or every handle dropped. Set under the state lock, so
    /// a check made holding that lock stays true until the lock is released.
    pub(crate) closed: AtomicBool,
    /// `shutdown` was called: bodies of this pool see `is_cancelled()` return true.
    pub(crate) stopping: Arc<AtomicBool>,
    /// `shutdown` gave up on queued jobs: a worker that takes one fails it instead.
    pub(crate) stopped: AtomicBool,
    /// The `on_cancel` hooks of the bodies running now.
    pub(crate) cancels: Arc<Cancels>,
    /// The monitor is ticking (not parked), so submitters need not call it.
    pub(crate) monitor_awake: AtomicBool,
    /// Bounds the queue when `queue_capacity` was set.
    pub(crate) queue_limit: Option<Arc<Limit>>,
    pub(crate) counters: Counters,
    /// Thread bookkeeping, under one lock taken only off the fast path.
    pub(crate) state: Mutex<State>,
    /// The parked monitor waits here.
    pub(crate) monitor_wake: Condvar,
    /// Shutdown waits here; each exiting worker signals it.
    pub(crate) quiet: Condvar,
}

/// Thread bookkeeping, under `Shared::state`.
pub(crate) struct State {
    /// Workers counted in (started or being started) and not yet exited.
    pub(crate) threads: usize,
    /// Parked workers, most recently parked last. A waker pops one and unparks it, so each
    /// wake-up goes to exactly one worker that is really asleep.
    pub(crate) idle: Vec<Arc<Parker>>,
    /// The `n` of the next thread's name `{prefix}-{n}`.
    pub(crate) next_id: usize,
    /// One per worker counted in, for the monitor to see which are blocked.
    pub(crate) slots: Vec<Arc<WorkerSlot>>,
    /// The worker threads started and not yet known to have ended (pruned at each start).
    pub(crate) handles: Vec<JoinHandle<()>>,
    /// The monitor thread exists.
    pub(crate) monitor_started: bool,
    /// A submitter asked the parked monitor to look.
    pub(crate) monitor_wanted: bool,
}

/// Every pool built, for `publish_metrics` (feature `metrics`); dead ones are pruned.
#[cfg(feature = "metrics")]
static POOLS: Mutex<Vec<std::sync::Weak<Shared>>> = Mutex::new(Vec::new());

/// The name and figures of every pool still alive (feature `metrics`).
#[cfg(feature = "metrics")]
pub(crate) fn live_pools() -> Vec<(Arc<str>, Metrics)> {
    let pools: Vec<Arc<Shared>> = lock(&POOLS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    pools
        .into_iter()
        .filter(|s| !s.is_closed())
        .map(|s| (Arc::clone(&s.name), s.metrics()))
        .collect()
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
/// let pool = offthread::Pool::builder().build();
/// let report = pool.shutdown(std::time::Duration::from_millis(10));
/// assert_eq!((report.still_running, report.failed), (0, 0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs whose bodies had not returned at the deadline (they run on to their end).
    pub still_running: usize,
    /// The `#[offload]` functions (`module::function`, `module::Type::method`) of the
    /// bodies still running on the pool's threads at the deadline, one entry per body;
    /// bodies run with `Pool::spawn` have no name and are only counted.
    pub still_running_in: Vec<&'static str>,
    /// Queued jobs that never started and were failed with a shutdown error.
    pub failed: usize,
}

impl Pool {
    /// A [`Builder`] with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().name("io").max_threads(4).build();
    /// assert_eq!(futures::executor::block_on(pool.spawn(|| "done")), "done");
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_builder(mut b: Builder) -> Pool {
        let cpus = cpus();
        let keep_alive = b.resolved_keep_alive();
        let mut locals = std::mem::take(&mut b.locals);
        for (key, (_, check)) in std::mem::take(&mut b.checks) {
            if let Some(local) = locals.get_mut(&key) {
                local.set_check(check);
            }
        }
        let locals = crate::local::Registry {
            locals,
            ..Default::default()
        };
        let name: Arc<str> = b.name.into();
        let shared = Shared {
            name: Arc::clone(&name),
            config: Config {
                min_threads: b.min_threads,
                max_threads: b.max_threads,
                keep_alive,
                stack_size: b.stack_size,
                idle_priority: b.idle_priority,
                on_thread_start: b.on_thread_start,
                on_thread_stop: b.on_thread_stop,
                locals: Arc::new(locals),
                core: cpus.max(b.min_threads).min(b.max_threads),
                max_spinners: (cpus / 2).max(1),
            },
            epoch: Instant::now(),
            queue: Queue::new(cpus),
            spinning: Padded::default(),
            waking: Padded::default(),
            sleeping: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stopping: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            cancels: Arc::new(Cancels::new(name)),
            monitor_awake: AtomicBool::new(false),
            queue_limit: b.queue_capacity.map(|n| Arc::new(Limit::new(n))),
            counters: Counters::default(),
            state: Mutex::new(State {
                threads: 0,
                idle: Vec::new(),
                next_id: 0,
                slots: Vec::new(),
                handles: Vec::new(),
                monitor_started: false,
                monitor_wanted: false,
            }),
            monitor_wake: Condvar::new(),
            quiet: Condvar::new(),
        };
        let shared = Arc::new(shared);
        #[cfg(feature = "metrics")]
        {
            let mut pools = lock(&POOLS);
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(&shared));
        }
        Pool {
            handle: Arc::new(Handle { shared }),
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
    /// let pool = offthread::Pool::builder().build();
    /// let contents = futures::executor::block_on(pool.spawn(|| std::fs::read_to_string("Cargo.toml")));
    /// assert!(contents.unwrap().contains("[package]"));
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The caller's span goes into the job only when there is one: outside any span (or
        // with no subscriber) a call costs the same 64 bytes as without the feature.
        #[cfg(feature = "tracing")]
        {
            let span = tracing::Span::current();
            if !span.is_none() {
                return Offload::new(new_job(move || span.in_scope(f)), self.clone());
            }
        }
        Offload::new(new_job(f), self.clone())
    }

    /// Runs `f` on the pool with the worker's own `L`, the per-worker resource registered
    /// with [`Builder::worker_local`](crate::Builder::worker_local), and returns a future of
    /// its value. It is what `#[offload]` makes of a `#[local] conn: &mut L` parameter.
    ///
    /// The worker makes its `L` with the registered `init` the first time a body needs one
    /// there, and lends the same value to every later body on that thread: no checkout per
    /// call, and `L` need not be `Send`. On a pool with no `worker_local` of type `L`, the call
    /// fails: [`checked`](Offload::checked) gives an error naming `L` and the pool, a plain
    /// `.await` panics with it. Otherwise it behaves as [`spawn`](Pool::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::Pool;
    ///
    /// struct Conn { queries: u32 }   // stands for a database connection
    ///
    /// let pool = Pool::builder().max_threads(1).worker_local(|| Conn { queries: 0 }).build();
    /// let count = |conn: &mut Conn| { conn.queries += 1; conn.queries };
    /// futures::executor::block_on(async {
    ///     assert_eq!(pool.spawn_local(count).await, 1);
    ///     assert_eq!(pool.spawn_local(count).await, 2); // the same worker, the same Conn
    ///     let err = pool.spawn_local(|_: &mut String| ()).checked().await.unwrap_err();
    ///     assert!(err.to_string().contains("String"), "{err}");
    /// });
    /// ```
    pub fn spawn_local<L, F, T>(&self, f: F) -> Offload<T>
    where
        L: 'static,
        F: FnOnce(&mut L) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(move || crate::local::with_local::<L, T>(f))
    }

    /// A snapshot of the pool's threads, queue and totals.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().build();
    /// let _ = futures::executor::block_on(pool.spawn(|| panic!("x")).checked());
    /// assert_eq!(pool.metrics().panicked, 1);
    /// ```
    pub fn metrics(&self) -> Metrics {
        self.shared().metrics()
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
    /// let pool = offthread::Pool::builder().build();
    /// let report = pool.shutdown(Duration::from_secs(1));
    /// assert_eq!(report.failed, 0);
    /// let late = futures::executor::block_on(pool.spawn(|| 1).checked());
    /// assert!(late.unwrap_err().is_shutdown());
    /// ```
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let s = self.shared();
        s.stopping.store(true, SeqCst);
        s.cancels.shutting_down();
        s.close();
        let end = Instant::now().checked_add(deadline);
        // A body of this pool calling shutdown is itself a worker that cannot exit yet.
        let own = usize::from(s.is_own_worker());
        // Workers finish the queue, then exit, each signalling `quiet`.
        let mut st = lock(&s.state);
        while st.threads > own {
            let now = Instant::now();
            let left = match end {
                Some(end) if end > now => end - now,
                Some(_) => break,
                None => Duration::MAX,
            };
            st = s
                .quiet
                .wait_timeout(st, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        // From here no body starts: workers that take a job fail it, and one that took a
        // job just before is waited for (it is about to start the body or drop it).
        // (Without the state lock: such a worker may need it to wake another.)
        s.stopped.store(true, SeqCst);
        let slots = st.slots.clone();
        drop(st);
        for slot in &slots {
            while slot.starting.load(SeqCst) {
                std::thread::yield_now();
            }
        }
        let mut st = lock(&s.state);
        // Join the threads that exited (their hooks and locals are done when a join
        // returns); those still in a body at the deadline run on, unjoined.
        let still_running_in: Vec<&'static str> = st
            .slots
            .iter()
            .filter(|slot| slot.busy_since.load(Relaxed) != 0)
            .filter_map(|slot| crate::site::name_of(slot.running_in.load(Relaxed)))
            .collect();
        let alive: Vec<_> = st
            .slots
            .iter()
            .filter_map(|s| s.thread.get().copied())
            .collect();
        let (exited, running): (Vec<_>, Vec<_>) = std::mem::take(&mut st.handles)
            .into_iter()
            .partition(|h| !alive.contains(&h.thread().id()));
        st.handles = running;
        drop(st);
        for handle in exited {
            let _ = handle.join();
        }
        let failed = s.fail_queued(|| Error::shutdown(Arc::clone(&s.name)));
        ShutdownReport {
            still_running: s.running.load(SeqCst),
            still_running_in,
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

impl Shared {
    /// A snapshot of the gauges and totals (see [`Pool::metrics`]).
    pub(crate) fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let threads = self.threads.load(Relaxed);
        let running = self.running.load(Relaxed);
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
            locals_made: self.config.locals.made.load(Relaxed),
            local_init_failures: self.config.locals.failed.load(Relaxed),
            locals_discarded: self.config.locals.discarded.load(Relaxed),
        }
    }

    /// Nanoseconds since the pool was built: the clock of every stored timestamp.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
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

    /// Workers that will look at the queue without a wake-up: spinning, or unparked and on
    /// their way.
    pub(crate) fn searching(&self) -> usize {
        self.spinning.load(SeqCst) + self.waking.load(SeqCst)
    }

    /// A worker is spinning and nothing is queued: a job pushed now starts at once.
    pub(crate) fn has_idle_spinner(&self) -> bool {
        self.spinning.load(Relaxed) > 0 && self.queue.looks_empty()
    }

    /// Another thread can take a call now: an idle worker, or room to start one. A nested
    /// call made on a worker runs inline only when this is false.
    pub(crate) fn can_take_another(&self) -> bool {
        self.sleeping.load(SeqCst) > 0
            || self.searching() > 0
            || self.threads.load(SeqCst) < self.config.max_threads
    }

    /// Fails every queued job that has not started with `err()`; returns how many.
    pub(crate) fn fail_queued(&self, err: impl Fn() -> Error) -> usize {
        let mut failed = 0;
        for entry in self.queue.drain() {
            if entry.job.fail(err(), self.queue_limit.as_deref()) {
                self.count_cancelled(true);
                failed += 1;
            }
        }
        failed
    }

    /// Queues `job`, ahead of the others if it is `urgent` (it holds a `limit` permit).
    /// On a closed pool, fails it with a shutdown error instead.
    pub(crate) fn submit<T>(self: &Arc<Self>, job: &TaskRef<T>, urgent: bool) {
        self.counters.queued.fetch_add(1, SeqCst);
        self.queue.push(job.erase(), self.now(), urgent);
        // Checked after the push: closed before it, or closed and drained while we pushed,
        // the job must still end. (An abandoned entry is skipped by whoever pops it.)
        if self.is_closed() {
            if job.fail(
                Error::shutdown(Arc::clone(&self.name)),
                self.queue_limit.as_deref(),
            ) {
                self.count_cancelled(true);
            }
            return;
        }
        self.notify();
    }

    /// After a push: make sure some worker will look at the queue (steps 1-4 above).
    fn notify(self: &Arc<Self>) {
        if self.searching() > 0 {
            return;
        }
        let threads = self.threads.load(SeqCst);
        if self.sleeping.load(SeqCst) == 0
            && threads >= self.config.core
            && (self.monitor_awake.load(SeqCst) || threads >= self.config.max_threads)
        {
            return;
        }
        self.wake_or_grow();
    }

    #[cold]
    pub(crate) fn wake_or_grow(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        if self.is_closed() {
            return;
        }
        if let Some(parker) = st.idle.pop() {
            self.sleeping.store(st.idle.len(), SeqCst);
            parker.claim(&self.waking);
            drop(st);
            parker.unpark();
        } else if st.threads < self.config.core {
            let reserved = self.reserve_worker(&mut st);
            drop(st);
            self.launch(reserved);
        } else if st.threads < self.config.max_threads && !self.monitor_awake.load(SeqCst) {
            if st.monitor_started {
                st.monitor_wanted = true;
                self.monitor_wake.notify_one();
            } else {
                st.monitor_started = true;
                self.monitor_awake.store(true, SeqCst);
                let shared = Arc::clone(self);
                let builder = std::thread::Builder::new()
                    .name(format!("{}-monitor", self.name))
                    .stack_size(64 << 10);
                let spawned = crate::priority::spawn(builder, move || crate::monitor::run(&shared));
                if spawned.is_err() {
                    st.monitor_started = false;
                    self.monitor_awake.store(false, SeqCst);
                }
            }
        }
    }

    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        self.closed.store(true, SeqCst);
        let idle = std::mem::take(&mut st.idle);
        self.sleeping.store(0, SeqCst);
        for parker in &idle {
            parker.claim(&self.waking);
        }
        drop(st);
        for parker in idle {
            parker.unpark();
        }
        self.monitor_wake.notify_all();
    }
}
