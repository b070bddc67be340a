//! Per-function figures for `#[offload]` functions: which blocking call is slow.
//!
//! Each offloaded function gets one [`Site`], a `static` the macro declares next to it. A
//! call counts itself there at its first poll and when it times out or is dropped (the
//! future's side), and its body counts its run time, its queue wait and how it ended (the
//! worker's side, through a guard the macro puts at the top of the job). Every figure is a
//! relaxed atomic add on the function's own counters: a few uncontended atomic operations
//! per call, and nothing for calls made with `Pool::spawn`; with the feature `metrics`, the
//! guard also records the call's queue wait and run time in the function's histograms
//! (`export.rs`), through the installed recorder. While a body runs, its worker
//! records which function it is in, so [`Pool::shutdown`](crate::Pool::shutdown) can name
//! the bodies still running.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock_std as lock;

/// The counters of one offloaded function. Declared by `#[offload]`; not a public API.
#[doc(hidden)]
pub struct Site {
    /// `module::path::function`.
    name: &'static str,
    /// Its place in the registry plus one; 0 until its first call.
    id: AtomicU32,
    calls: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    timeouts: AtomicU64,
    cancelled: AtomicU64,
    queue_wait_ns: AtomicU64,
    run_ns: AtomicU64,
    /// Feature `metrics`: its latency histograms' keys.
    #[cfg(feature = "metrics")]
    histograms: crate::export::CallHistograms,
}

/// Every site that has been called, in order of first call.
static SITES: Mutex<Vec<&'static Site>> = Mutex::new(Vec::new());

impl Site {
    /// The counters of the function `name` (its full path).
    pub const fn new(name: &'static str) -> Site {
        Site {
            name,
            id: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            queue_wait_ns: AtomicU64::new(0),
            run_ns: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            histograms: crate::export::CallHistograms::new(),
        }
    }

    /// This site's id, registering it on its first call.
    fn id(&'static self) -> u32 {
        let id = self.id.load(Relaxed);
        if id != 0 {
            return id;
        }
        let mut sites = lock(&SITES);
        // Registered meanwhile by another thread?
        let id = self.id.load(Relaxed);
        if id != 0 {
            return id;
        }
        sites.push(self);
        let id = u32::try_from(sites.len()).unwrap_or(u32::MAX);
        self.id.store(id, Relaxed);
        id
    }

    pub(crate) fn count_call(&'static self) {
        self.id();
        self.calls.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> FunctionMetrics {
        FunctionMetrics {
            name: self.name,
            calls: self.calls.load(Relaxed),
            completed: self.completed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            queue_wait: Duration::from_nanos(self.queue_wait_ns.load(Relaxed)),
            run_time: Duration::from_nanos(self.run_ns.load(Relaxed)),
        }
    }
}

/// The name of the site with `id`, if there is one.
pub(crate) fn name_of(id: u32) -> Option<&'static str> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    lock(&SITES).get(index).map(|site| site.name)
}

thread_local! {
    /// On a worker: how long the job it is starting waited in the queue (set by the worker
    /// just before the body runs).
    static QUEUE_WAIT: Cell<u64> = const { Cell::new(0) };
    /// On a worker: where to record which function its body is in (the worker's slot).
    static RUNNING_IN: RefCell<Option<Arc<AtomicU32>>> = const { RefCell::new(None) };
}

/// Tells the body about to start on this thread how long it was queued.
pub(crate) fn set_queue_wait(nanos: u64) {
    QUEUE_WAIT.set(nanos);
}

/// Makes this worker thread record, in `slot`, the function its bodies are in.
pub(crate) fn record_running_in(slot: Option<Arc<AtomicU32>>) {
    RUNNING_IN.set(slot);
}

/// Counts one body of `site` from its start to its end (or its panic). The macro puts one
/// at the top of each job.
#[doc(hidden)]
#[must_use]
pub struct RunGuard {
    site: &'static Site,
    start: Instant,
    /// What the worker's slot said before (a nested inline call restores its caller's).
    outer: u32,
    /// Feature `metrics`: how long the job was queued, for its histogram.
    #[cfg(feature = "metrics")]
    queue_wait_ns: u64,
}

impl RunGuard {
    /// A body of `site` starts on this thread.
    pub fn enter(site: &'static Site) -> RunGuard {
        let queue_wait_ns = QUEUE_WAIT.replace(0);
        site.queue_wait_ns.fetch_add(queue_wait_ns, Relaxed);
        let outer = RUNNING_IN.with_borrow(|slot| {
            slot.as_ref()
                .map_or(0, |slot| slot.swap(site.id(), Relaxed))
        });
        RunGuard {
            site,
            start: Instant::now(),
            outer,
            #[cfg(feature = "metrics")]
            queue_wait_ns,
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let ran = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.site.run_ns.fetch_add(ran, Relaxed);
        #[cfg(feature = "metrics")]
        self.site.histograms.record(
            self.site.name,
            Duration::from_nanos(self.queue_wait_ns),
            elapsed,
        );
        if std::thread::panicking() {
            self.site.panicked.fetch_add(1, Relaxed);
        } else {
            self.site.completed.fetch_add(1, Relaxed);
        }
        RUNNING_IN.with_borrow(|slot| {
            if let Some(slot) = slot {
                slot.store(self.outer, Relaxed);
            }
        });
    }
}

/// The figures of one `#[offload]` function, from [`function_metrics`].
///
/// `calls` counts calls at their first poll; each ends up in `completed` or `panicked` if
/// its body ran, and may also count in `timeouts` (it timed out, whether or not its body had
/// started) or `cancelled` (its caller dropped it before it finished).
///
/// # Examples
///
/// ```
/// #[offthread::offload]
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// assert_eq!(futures::executor::block_on(add(2, 3)), 5);
/// let m = offthread::function_metrics()
///     .into_iter()
///     .find(|m| m.name.ends_with("::add"))
///     .unwrap();
/// assert_eq!((m.calls, m.completed), (1, 1));
/// println!("{m}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionMetrics {
    /// The function's path, `crate::module::function`; for a method of an `#[offload]` impl
    /// block, `crate::module::Type::method` (the type's name without its generics).
    pub name: &'static str,
    /// Calls made (counted at their first poll).
    pub calls: u64,
    /// Bodies that returned.
    pub completed: u64,
    /// Bodies that panicked.
    pub panicked: u64,
    /// Calls that timed out (`timeout = ".."`).
    pub timeouts: u64,
    /// Calls dropped by their caller before they finished.
    pub cancelled: u64,
    /// Total time the function's jobs waited in their pool's queue.
    pub queue_wait: Duration,
    /// Total time its bodies ran.
    pub run_time: Duration,
}

impl fmt::Display for FunctionMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ran = self.completed + self.panicked;
        let mean = |total: Duration| total / u32::try_from(ran.max(1)).unwrap_or(u32::MAX);
        write!(
            f,
            "{}: {} calls, {} completed, {} panicked, {} timed out, {} cancelled; \
             mean queue wait {:?}, mean run {:?}",
            self.name,
            self.calls,
            self.completed,
            self.panicked,
            self.timeouts,
            self.cancelled,
            mean(self.queue_wait),
            mean(self.run_time),
        )
    }
}

/// The figures of every `#[offload]` function called so far in this process, in the order
/// of their first calls. Functions offloaded with `Pool::spawn` have no entry.
///
/// # Examples
///
/// ```
/// for f in offthread::function_metrics() {
///     println!("{f}");
/// }
/// ```
pub fn function_metrics() -> Vec<FunctionMetrics> {
    lock(&SITES).iter().map(|site| site.snapshot()).collect()
}
