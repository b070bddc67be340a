//! The pool: the public [`Pool`] handle, what its threads share, the path of a call into
//! the queue, and shutdown.
//!
//! One call's path: [`Pool::spawn`] makes the job, its [`Offload`] asks the pool on first
//! poll how to start it ([`Shared::admit`]: inline, after a queue slot, or queued now),
//! [`Shared::submit`] queues it (`queue.rs`) and tells the wake-up protocol (`sleep.rs`),
//! a worker (`worker.rs`) takes and runs it. Who spins, parks and wakes whom is all in
//! `sleep.rs`; which threads exist in `threads.rs`; the monitor (`monitor.rs`) starts
//! threads beyond the CPU count when queued work waits behind blocked ones.
//!
//! # Shrinking and shutdown
//!
//! A parked worker above `min_threads` exits after `keep_alive` without work. When the last
//! [`Pool`] handle is dropped, or [`Pool::shutdown`] is called, the pool is *closed*: new
//! submissions fail with a shutdown error, workers finish the queue and exit. Shutdown
//! waits for that (up to its deadline), then gives up on what is still queued: it fails
//! those jobs, and waits for any worker that has just taken one to start it (counted
//! running) or fail it (counted failed), so its report misses no job. It then joins the
//! threads that exited, so their `on_thread_stop` hooks have run and their `worker_local`
//! values are dropped when it returns.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::builder::{Builder, Hook};
use crate::cancel::Cancels;
use crate::error::Error;
use crate::job::{new_job, TaskRef};
use crate::limit::Limit;
use crate::metrics::{Counters, Metrics};
use crate::monitor::Monitor;
use crate::offload::Offload;
use crate::queue::Queue;
use crate::sleep::{Notified, Sleep};
#[cfg(feature = "metrics")]
use crate::sync::lock_std as lock;
use crate::threads::Threads;

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
    /// Who spins, parks and wakes whom (`sleep.rs`).
    pub(crate) sleep: Sleep,
    /// Which workers exist (`threads.rs`).
    pub(crate) threads: Threads,
    /// The thread that adds workers beyond the CPU count (`monitor.rs`).
    pub(crate) monitor: Monitor,
    /// Bodies running now.
    pub(crate) running: AtomicUsize,
    /// No new submissions: shut down or every handle dropped.
    closed: AtomicBool,
    /// `shutdown` was called: bodies of this pool see `is_cancelled()` return true.
    pub(crate) stopping: Arc<AtomicBool>,
    /// `shutdown` gave up on queued jobs: a worker that takes one fails it instead.
    pub(crate) stopped: AtomicBool,
    /// The `on_cancel` hooks of the bodies running now.
    pub(crate) cancels: Arc<Cancels>,
    /// Bounds the queue when `queue_capacity` was set.
    pub(crate) queue_limit: Option<Arc<Limit>>,
    pub(crate) counters: Counters,
}

/// How a call that is ready to run starts ([`Shared::admit`]).
pub(crate) enum Admit {
    /// Right here, in the poll: a nested call on a worker of its own pool that no other
    /// thread could take.
    Inline,
    /// After a slot of the bounded queue.
    Slot(Arc<Limit>),
    /// Queued now.
    Queue,
}

/// Every pool built, for `publish_metrics` (feature `metrics`); dead ones are pruned.
#[cfg(feature = "metrics")]
static POOLS: std::sync::Mutex<Vec<std::sync::Weak<Shared>>> = std::sync::Mutex::new(Vec::new());

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
            },
            epoch: Instant::now(),
            queue: Queue::new(cpus),
            // Spinners never take every core.
            sleep: Sleep::new((cpus / 2).max(1)),
            threads: Threads::new(),
            monitor: Monitor::new(),
            running: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stopping: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            cancels: Arc::new(Cancels::new(name)),
            queue_limit: b.queue_capacity.map(|n| Arc::new(Limit::new(n))),
            counters: Counters::default(),
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
        // Workers finish the queue, then exit.
        s.threads.wait_until_at_most(own, end);
        // From here no body starts: what is queued is failed, by us or by a worker that
        // takes it first (which counts it). A worker that took a job before is waited for:
        // it either starts the body (counted running) or fails it (counted failed) before
        // it clears `starting`; and it set `starting` before it took the job, which was
        // before our drain found it gone.
        let failed_before = s.counters.failed_at_stop.load(SeqCst);
        s.stopped.store(true, SeqCst);
        let failed = s.fail_queued(|| Error::shutdown(Arc::clone(&s.name)));
        let slots = s.threads.slots();
        for slot in &slots {
            while slot.starting.load(SeqCst) {
                std::thread::yield_now();
            }
        }
        let failed = failed + (s.counters.failed_at_stop.load(SeqCst) - failed_before);
        let still_running_in: Vec<&'static str> = slots
            .iter()
            .filter(|slot| slot.busy_since.load(Relaxed) != 0)
            .filter_map(|slot| crate::site::name_of(slot.running_in.load(Relaxed)))
            .collect();
        s.threads.join_retired();
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
        let threads = self.threads.count();
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

    /// Another thread can take a call now: an idle worker, or room to start one. A nested
    /// call made on a worker runs inline only when this is false.
    fn can_take_another(&self) -> bool {
        self.sleep.sleeping() > 0
            || self.sleep.searching() > 0
            || self.threads.count() < self.config.max_threads
    }

    /// How a call that is ready to run starts: inline when it is a nested call on a
    /// worker of this pool that no other thread could take (so nested calls never
    /// deadlock), after a queue slot when the queue is bounded, else queued now.
    pub(crate) fn admit(&self) -> Admit {
        if self.is_own_worker() && !self.can_take_another() {
            Admit::Inline
        } else if let Some(slots) = &self.queue_limit {
            Admit::Slot(Arc::clone(slots))
        } else {
            Admit::Queue
        }
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

    /// Queues `job`, ahead of the others if it is `urgent` (it holds a `limit` permit), and
    /// makes sure a worker will look at it. On a closed pool, fails it with a shutdown
    /// error instead.
    ///
    /// A caller that awaits no other call (`alone`), whose job a spinning worker takes at
    /// once on a pool whose bodies lately ran short, then spins briefly for the result
    /// (`sleep::caller_spin`): a trivial call costs it no park and wake-up of its own
    /// thread.
    pub(crate) fn submit<T>(self: &Arc<Self>, job: &TaskRef<T>, urgent: bool, alone: bool) {
        let quick =
            alone && self.sleep.spinning() && self.sleep.bodies_short() && self.queue.looks_empty();
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
        if self.sleep.job_queued() == Notified::NoneIdle {
            self.need_thread();
        }
        if quick {
            crate::sleep::caller_spin(|| job.is_done());
        }
    }

    /// Queued work and no idle worker: below `core` threads, start one; past that, every
    /// worker is in a body, and the monitor decides whether the pool needs more.
    #[cold]
    pub(crate) fn need_thread(self: &Arc<Self>) {
        let threads = self.threads.count();
        if threads < self.config.core && self.start_threads(1, self.config.core) > 0 {
            return;
        }
        if threads >= self.config.max_threads || self.monitor.is_awake() {
            return;
        }
        // A worker that has no job in hand will look at the queue again (`sleep.rs`): only
        // when every worker has one may the queue need a thread the monitor would start.
        // (Checked here, off the fast path, so that a sequential caller that finds its
        // worker between two jobs does not wake the monitor for nothing.)
        if self.threads.any_free() {
            return;
        }
        self.monitor.poke(self);
    }

    /// Starts up to `n` workers while fewer than `below` exist; returns how many.
    pub(crate) fn start_threads(self: &Arc<Self>, n: usize, below: usize) -> usize {
        let reserved = self.threads.reserve(n, below);
        let started = reserved.len();
        for r in reserved {
            self.launch(r);
        }
        started
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.threads.close();
        self.sleep.close();
        self.monitor.close();
    }
}
