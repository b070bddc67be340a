//! [`Builder`]: a pool's settings, checked once by `try_build`.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::local::{Check, Local};
use crate::pool::Pool;

/// A hook run on each worker thread as it starts or stops.
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync + 'static>;

/// The cap of a pool built without [`Builder::max_threads`]: tokio's blocking pool allows
/// 512 threads and smol's `blocking` 500; offthread grows only while queued work waits
/// behind blocked threads, so a high cap costs nothing when jobs are short.
pub const DEFAULT_MAX_THREADS: usize = 512;

/// How long an idle thread above `min_threads` lives, by default: between tokio's 10 s and
/// smol's 500 ms, long enough that a service's bursts reuse threads instead of starting them.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How long an idle thread above `min_threads` lives, by default, on a pool with per-worker
/// values ([`Builder::worker_local`]): 10 minutes, r2d2's idle timeout for a connection. A
/// thread's values go with it, and remaking a database connection (a new server process,
/// an empty prepared-statement cache) costs milliseconds, so bursts a few seconds apart
/// should find their connections open.
pub const DEFAULT_LOCAL_KEEP_ALIVE: Duration = Duration::from_secs(600);

/// Settings for a [`Pool`]; every method takes and returns the builder by value.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use offthread::Pool;
///
/// let pool = Pool::builder()
///     .name("db")
///     .min_threads(1)
///     .max_threads(8)
///     .keep_alive(Duration::from_secs(30))
///     .queue_capacity(1024)
///     .build();
/// let name = futures::executor::block_on(pool.spawn(|| {
///     std::thread::current().name().map(str::to_owned)
/// }));
/// assert!(name.unwrap().starts_with("db-"));
/// ```
#[must_use = "a Builder does nothing until `build` or `try_build` is called"]
pub struct Builder {
    pub(crate) name: String,
    pub(crate) min_threads: usize,
    pub(crate) max_threads: usize,
    /// `None`: the default, which depends on whether values are registered.
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) idle_priority: bool,
    pub(crate) on_thread_start: Option<Hook>,
    pub(crate) on_thread_stop: Option<Hook>,
    pub(crate) locals: HashMap<TypeId, Local>,
    /// `check_local`s, by type, with the type's name for the error if none is registered.
    pub(crate) checks: HashMap<TypeId, (&'static str, Check)>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: "offthread".to_owned(),
            min_threads: 0,
            max_threads: DEFAULT_MAX_THREADS,
            keep_alive: None,
            queue_capacity: None,
            stack_size: None,
            idle_priority: false,
            on_thread_start: None,
            on_thread_stop: None,
            locals: HashMap::new(),
            checks: HashMap::new(),
        }
    }
}

impl Builder {
    /// A builder with the defaults: name `offthread`, 0 to [`DEFAULT_MAX_THREADS`] threads,
    /// [`DEFAULT_KEEP_ALIVE`], an unbounded queue, the platform's stack size.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Builder::new().build();
    /// assert_eq!(futures::executor::block_on(pool.spawn(|| 1)), 1);
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Threads are named `{prefix}-{n}`, `n` counting from 0 for each pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().name("files").build();
    /// let n = futures::executor::block_on(pool.spawn(|| std::thread::current().name().unwrap().to_owned()));
    /// assert!(n.starts_with("files-"));
    /// ```
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Threads kept alive even when idle (default 0). They start on demand, like the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().min_threads(2).max_threads(4).build();
    /// # drop(pool);
    /// ```
    pub fn min_threads(mut self, n: usize) -> Self {
        self.min_threads = n;
        self
    }

    /// The most threads the pool runs at once (default [`DEFAULT_MAX_THREADS`]); must be at
    /// least 1 and at least `min_threads`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(offthread::Pool::builder().max_threads(0).try_build().is_err());
    /// ```
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n;
        self
    }

    /// An idle thread above `min_threads` exits after `d`. The default is
    /// [`DEFAULT_KEEP_ALIVE`] (5 s), or [`DEFAULT_LOCAL_KEEP_ALIVE`] (10 minutes) on a pool
    /// with a [`worker_local`](Builder::worker_local) value, such as a connection, that its
    /// threads would take with them.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().keep_alive(std::time::Duration::from_millis(100)).build();
    /// # drop(pool);
    /// ```
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = Some(d);
        self
    }

    /// Bounds the queue to `n` jobs (default unbounded). When it is full, submitting futures
    /// wait asynchronously, in arrival order, without blocking any thread. Must be at least 1.
    ///
    /// A call waiting for a slot is not free: its caller holds its future and job, and the
    /// queue a small waiter, about 300 bytes in all on a 64-bit target. A waiting call that
    /// is dropped (a `select!`, a request timeout) leaves the line in O(log n).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().queue_capacity(64).build();
    /// # drop(pool);
    /// ```
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = Some(n);
        self
    }

    /// The stack size of each worker thread, in bytes (default: the platform's).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().stack_size(4 << 20).build();
    /// # drop(pool);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs the pool's threads in the OS's idle scheduling class, so that they use only
    /// the CPU time no ordinary thread wants: an async executor's worker that wakes (a
    /// timer due, a request arriving) takes the core from a body at once, instead of
    /// waiting a time slice for it.
    ///
    /// For a pool of CPU-heavy bodies (queries, compression, parsing) that shares the
    /// machine with the executor it serves, this keeps the executor's latency near what it
    /// is with the pool idle. The cost is the other side of the same rule: while other
    /// threads of the machine, in any process, keep every core busy, the pool's bodies do
    /// not run at all, and its calls wait (or time out). Use it where the service's own
    /// executor is what mostly runs on the machine, not beside unrelated CPU-bound work.
    ///
    /// On Linux this is `SCHED_IDLE`, set by each worker on itself as it starts, before the
    /// [`on_thread_start`](Builder::on_thread_start) hook (which may lower it further; an
    /// unprivileged thread cannot leave the idle class). Threads a body starts itself
    /// inherit the class; the threads offthread starts from such a body (another pool's
    /// workers, the timer) do not. Elsewhere it has no effect. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().name("reports").idle_priority(true).build();
    /// assert_eq!(futures::executor::block_on(pool.spawn(|| 6 * 7)), 42);
    /// ```
    pub fn idle_priority(mut self, on: bool) -> Self {
        self.idle_priority = on;
        self
    }

    /// Runs `f` on each worker thread when it starts, before its first job. A panic in `f`
    /// is caught and reported by the panic hook; the worker carries on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// static STARTED: AtomicUsize = AtomicUsize::new(0);
    /// let pool = offthread::Pool::builder()
    ///     .on_thread_start(|| { STARTED.fetch_add(1, Ordering::SeqCst); })
    ///     .build();
    /// futures::executor::block_on(pool.spawn(|| ()));
    /// assert!(STARTED.load(Ordering::SeqCst) >= 1);
    /// ```
    pub fn on_thread_start(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_thread_start = Some(Arc::new(f));
        self
    }

    /// Runs `f` on each worker thread just before it exits (idle past `keep_alive`, or the
    /// pool shut down).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder()
    ///     .on_thread_stop(|| eprintln!("worker {:?} stops", std::thread::current().name()))
    ///     .build();
    /// # drop(pool);
    /// ```
    pub fn on_thread_stop(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_thread_stop = Some(Arc::new(f));
        self
    }

    /// Registers a per-worker resource of type `T`, such as a database connection.
    ///
    /// Each worker thread makes its own `T` with `init` the first time a body that needs one
    /// runs there (a `#[local] conn: &mut T` parameter of `#[offload]`), and reuses it for
    /// every later body on that thread: no checkout per call, and `T` need not be `Send`.
    /// If `init` panics, that call fails with the panic and the next call on that worker
    /// tries again; for an `init` that can fail (connecting to a server), use
    /// [`try_worker_local`](Builder::try_worker_local). A body that panics drops the value it
    /// held (it may be mid-transaction), and [`check_local`](Builder::check_local) can turn
    /// down a broken one: the next call on that worker makes a fresh one. The value is dropped
    /// when its worker exits (idle past `keep_alive`, 10 minutes by default on a pool with
    /// worker-local values, or the pool shut down). Several types may be registered;
    /// registering a type again replaces its `init`. A body nested inline in another on the
    /// same worker that needs the same type while the outer one holds it gets a second value
    /// of its own. [`Metrics`](crate::Metrics) counts the values made, the inits that failed
    /// and the values dropped early.
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::Pool;
    ///
    /// struct Conn { queries: u32 }
    ///
    /// let pool = Pool::builder().max_threads(1).worker_local(|| Conn { queries: 0 }).build();
    /// let count = |conn: &mut Conn| { conn.queries += 1; conn.queries };
    /// assert_eq!(futures::executor::block_on(pool.spawn_local(count)), 1);
    /// assert_eq!(futures::executor::block_on(pool.spawn_local(count)), 2); // same worker, same Conn
    /// ```
    pub fn worker_local<T, F>(mut self, init: F) -> Self
    where
        T: 'static,
        F: Fn() -> T + Send + Sync + 'static,
    {
        self.locals
            .insert(TypeId::of::<T>(), Local::infallible::<T>(init));
        self
    }

    /// Registers a per-worker resource of type `T` whose `init` can fail, such as a
    /// connection to a database server that may be down.
    ///
    /// As [`worker_local`](Builder::worker_local), except that an `init` returning `Err(e)`
    /// fails that call (no panic, no panic hook) with an [`Error`] for which
    /// [`is_local_init`](Error::is_local_init) is true and whose
    /// [`source`](std::error::Error::source) is `e`; nothing is stored, and a later call
    /// tries again. Not at once, nor on every worker: after a failure the pool makes its
    /// next attempt after 25 ms, doubling after each further failure up to 500 ms, one
    /// attempt at a time whichever worker makes it; meanwhile the calls that need a value
    /// fail at once with the last error (its message says when the next attempt is due).
    /// A server that is down thus sees at most a couple of connection attempts per second
    /// from the pool, and is used again within half a second of coming back; the first
    /// attempt that succeeds lets every worker make its own value at once.
    ///
    /// Connections should be made from run-time settings: build the pool where they are
    /// known (in `main`, from the environment) and pass it to `#[offload(pool = ..)]` as any
    /// expression of type `&Pool`, or keep it in a `static OnceLock<Pool>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::Pool;
    ///
    /// struct Conn { url: String }
    ///
    /// fn connect(url: &str) -> std::io::Result<Conn> {
    ///     if url.is_empty() {
    ///         return Err(std::io::Error::other("no database configured"));
    ///     }
    ///     Ok(Conn { url: url.to_owned() })
    /// }
    ///
    /// let url = std::env::var("APP_DATABASE").unwrap_or_else(|_| "db.example:5432".to_owned());
    /// let pool = Pool::builder().try_worker_local(move || connect(&url)).build();
    /// let got = futures::executor::block_on(pool.spawn_local(|c: &mut Conn| c.url.clone()).checked());
    /// assert!(got.is_ok());
    ///
    /// let down = Pool::builder().try_worker_local(|| connect("")).build();
    /// let err = futures::executor::block_on(down.spawn_local(|c: &mut Conn| c.url.clone()).checked());
    /// assert!(err.unwrap_err().is_local_init());
    /// ```
    pub fn try_worker_local<T, E, F>(mut self, init: F) -> Self
    where
        T: 'static,
        E: std::error::Error + Send + Sync + 'static,
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        self.locals
            .insert(TypeId::of::<T>(), Local::fallible::<T, E>(init));
        self
    }

    /// After each call that used a worker's `T`, `healthy` says whether the worker keeps it.
    ///
    /// A value that fails the check is dropped there, and the next call on that worker that
    /// needs one makes a new one, so a connection broken by a server restart or a dropped
    /// network fails the call that found it broken and no other. `healthy` runs on the
    /// worker right after the body returns, before the call's result is handed over; keep
    /// it cheap (a flag the body set, Diesel's `R2D2Connection::is_broken`) rather than a
    /// round trip per call. A check that panics counts as unhealthy. `T` must be registered
    /// with [`worker_local`](Builder::worker_local) or
    /// [`try_worker_local`](Builder::try_worker_local) too, or
    /// [`try_build`](Builder::try_build) fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::Pool;
    ///
    /// struct Conn { id: u32, broken: bool }
    ///
    /// let next = std::sync::atomic::AtomicU32::new(0);
    /// let pool = Pool::builder()
    ///     .max_threads(1)
    ///     .worker_local(move || Conn { id: next.fetch_add(1, std::sync::atomic::Ordering::Relaxed), broken: false })
    ///     .check_local(|c: &mut Conn| !c.broken)
    ///     .build();
    /// let id = |c: &mut Conn| c.id;
    /// futures::executor::block_on(async {
    ///     assert_eq!(pool.spawn_local(id).await, 0);
    ///     pool.spawn_local(|c: &mut Conn| c.broken = true).await; // the server went away
    ///     assert_eq!(pool.spawn_local(id).await, 1);              // a new connection
    /// });
    /// ```
    pub fn check_local<T, F>(mut self, healthy: F) -> Self
    where
        T: 'static,
        F: Fn(&mut T) -> bool + Send + Sync + 'static,
    {
        let check: Check = Arc::new(move |value| value.downcast_mut::<T>().is_some_and(&healthy));
        self.checks
            .insert(TypeId::of::<T>(), (std::any::type_name::<T>(), check));
        self
    }

    /// The pool, or an error naming the bad setting: `max_threads(0)`,
    /// `min_threads > max_threads`, `queue_capacity(0)`, a `check_local` for a type with no
    /// `worker_local`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = offthread::Pool::builder().min_threads(4).max_threads(2).try_build().unwrap_err();
    /// assert!(err.to_string().contains("min_threads"));
    /// ```
    pub fn try_build(self) -> Result<Pool, Error> {
        if self.max_threads == 0 {
            return Err(Error::config(format!(
                "pool `{}`: max_threads(0) leaves no thread to run jobs; use at least 1",
                self.name
            )));
        }
        if self.min_threads > self.max_threads {
            return Err(Error::config(format!(
                "pool `{}`: min_threads ({}) is greater than max_threads ({})",
                self.name, self.min_threads, self.max_threads
            )));
        }
        if self.queue_capacity == Some(0) {
            return Err(Error::config(format!(
                "pool `{}`: queue_capacity(0) admits no job; use at least 1",
                self.name
            )));
        }
        for (key, (type_name, _)) in &self.checks {
            if !self.locals.contains_key(key) {
                return Err(Error::config(format!(
                    "pool `{}`: check_local for `{type_name}`, which has no worker_local: \
                     register it with `worker_local` or `try_worker_local`",
                    self.name
                )));
            }
        }
        Ok(Pool::from_builder(self))
    }

    /// The keep-alive the pool's threads get (see [`keep_alive`](Builder::keep_alive)).
    pub(crate) fn resolved_keep_alive(&self) -> Duration {
        self.keep_alive.unwrap_or(if self.locals.is_empty() {
            DEFAULT_KEEP_ALIVE
        } else {
            DEFAULT_LOCAL_KEEP_ALIVE
        })
    }

    /// The pool.
    ///
    /// # Panics
    ///
    /// On bad settings, with the message [`try_build`](Builder::try_build) would return.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().max_threads(2).build();
    /// # drop(pool);
    /// ```
    #[track_caller]
    pub fn build(self) -> Pool {
        match self.try_build() {
            Ok(pool) => pool,
            Err(e) => panic!("{e}"),
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("min_threads", &self.min_threads)
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .field("queue_capacity", &self.queue_capacity)
            .field("stack_size", &self.stack_size)
            .field("idle_priority", &self.idle_priority)
            .field("worker_locals", &self.locals.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn threads_holding_worker_locals_are_kept_longer_unless_told_otherwise() {
        assert_eq!(Builder::new().resolved_keep_alive(), DEFAULT_KEEP_ALIVE);
        let with_local = Builder::new().worker_local(|| 0_u8);
        assert_eq!(with_local.resolved_keep_alive(), DEFAULT_LOCAL_KEEP_ALIVE);
        let fallible = Builder::new().try_worker_local(|| Ok::<u8, std::io::Error>(0));
        assert_eq!(fallible.resolved_keep_alive(), DEFAULT_LOCAL_KEEP_ALIVE);
        let set = Builder::new()
            .worker_local(|| 0_u8)
            .keep_alive(Duration::from_secs(1));
        assert_eq!(set.resolved_keep_alive(), Duration::from_secs(1));
    }
}
