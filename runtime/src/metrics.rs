//! [`Metrics`]: a snapshot of one pool's gauges and totals.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use crate::queue::Padded;

/// A snapshot of a pool's state, from [`Pool::metrics`](crate::Pool::metrics).
///
/// Gauges (`threads` .. `running`) are read one after another without a lock, so under load
/// they may disagree by a job or two. Totals only grow. Every submitted job ends up counted
/// exactly once in `completed`, `panicked` or `cancelled`; until then it is queued, waiting
/// for a `limit` or queue-slot permit, or running.
///
/// # Examples
///
/// ```
/// let pool = offthread::Pool::builder().name("m").build();
/// futures::executor::block_on(pool.spawn(|| 2 + 2));
/// let m = pool.metrics();
/// assert_eq!((m.submitted, m.completed), (1, 1));
/// assert!(m.threads >= 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Worker threads alive now.
    pub threads: usize,
    /// Worker threads alive and not running a body (spinning or parked).
    pub idle_threads: usize,
    /// Jobs in the queue, submitted and not yet started.
    pub queued: usize,
    /// Bodies running now (on workers, or inline in a nested call).
    pub running: usize,
    /// Jobs submitted: a job counts at its first poll.
    pub submitted: u64,
    /// Bodies that returned. A call that failed before its body could start, because its
    /// worker-local value could not be made, counts here too: it did not panic.
    pub completed: u64,
    /// Bodies that panicked.
    pub panicked: u64,
    /// Jobs that never ran: dropped or timed out before starting, or failed by shutdown.
    pub cancelled: u64,
    /// Total time jobs spent in the queue before a worker started them.
    pub queue_wait: Duration,
    /// Total time bodies spent running.
    pub run_time: Duration,
    /// Per-worker values ([`Builder::worker_local`](crate::Builder::worker_local)) made: for
    /// a database connection, the connects.
    pub locals_made: u64,
    /// Per-worker value inits that failed (returned an error, or panicked). Calls failed
    /// without an attempt while a retry was not yet due are not counted here.
    pub local_init_failures: u64,
    /// Per-worker values dropped before their worker exited: turned down by
    /// [`Builder::check_local`](crate::Builder::check_local), or held by a body that
    /// panicked.
    pub locals_discarded: u64,
}

/// One log line: `12 threads (3 idle), 4 queued, 9 running; 1200 submitted, 1180
/// completed, 2 panicked, 5 cancelled; mean queue wait 1.2ms, mean run 8.1ms`.
///
/// # Examples
///
/// ```
/// let pool = offthread::Pool::builder().build();
/// futures::executor::block_on(pool.spawn(|| ()));
/// let line = pool.metrics().to_string();
/// assert!(line.contains("1 submitted, 1 completed"));
/// ```
impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ran = self.completed + self.panicked;
        let mean = |total: Duration| total / u32::try_from(ran.max(1)).unwrap_or(u32::MAX);
        write!(
            f,
            "{} threads ({} idle), {} queued, {} running; {} submitted, {} completed, \
             {} panicked, {} cancelled; mean queue wait {:?}, mean run {:?}",
            self.threads,
            self.idle_threads,
            self.queued,
            self.running,
            self.submitted,
            self.completed,
            self.panicked,
            self.cancelled,
            mean(self.queue_wait),
            mean(self.run_time),
        )
    }
}

/// The totals behind [`Metrics`], each written by the party its comment names.
#[derive(Default)]
pub(crate) struct Counters {
    /// Jobs first polled (by their futures).
    pub(crate) submitted: Padded<AtomicU64>,
    /// Jobs in the queue that have not started nor been abandoned (submit adds; the worker
    /// that starts a job, or whoever abandons or fails a queued one, subtracts).
    pub(crate) queued: Padded<AtomicUsize>,
    /// Bodies started (by the thread that runs them); the monitor watches it move.
    pub(crate) started: Padded<AtomicU64>,
    /// Bodies that returned (by the thread that ran them).
    pub(crate) completed: Padded<AtomicU64>,
    /// Bodies that panicked (by the thread that ran them).
    pub(crate) panicked: AtomicU64,
    /// Jobs that never ran (by whoever abandoned or failed them).
    pub(crate) cancelled: AtomicU64,
    /// Nanoseconds jobs waited in the queue (by the worker that starts them).
    pub(crate) queue_wait_ns: Padded<AtomicU64>,
    /// Nanoseconds bodies ran (by the thread that ran them).
    pub(crate) run_ns: AtomicU64,
    /// Queued jobs a worker took after shutdown gave up on the queue, and failed (by that
    /// worker): shutdown's report counts them with those it failed itself.
    pub(crate) failed_at_stop: AtomicUsize,
}
