//! A worker thread: its BUSY / SPIN / IDLE loop, keep-alive, and its start and exit.
//!
//! - **BUSY**: pop and run jobs while the queue has any. A worker that takes a job while
//!   more are queued than spinners can take wakes one more parked worker, so a burst fans
//!   out instead of waiting for the one worker that was awake.
//! - **SPIN**: out of work, spin for a few microseconds, but only while spinning has been
//!   paying: each worker keeps an estimate of how long after it ran dry the next job
//!   arrived, and spins only when that is shorter than the spin itself. Back-to-back calls
//!   then need no wake-up, and a lightly loaded pool (a call every millisecond) does not
//!   burn the spin's CPU after every call. At most `max_spinners` workers spin at once.
//! - **IDLE**: put itself on the idle list and park until a submitter hands it a wake-up,
//!   the pool closes, or it has been idle for `keep_alive` (then, above `min_threads`, it
//!   exits).
//!
//! Each worker has a [`WorkerSlot`] that the monitor reads: when the current body started,
//! and the OS thread id through which the monitor asks whether the thread is blocked.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::builder::Hook;
use crate::cancel::Cancels;
use crate::cpu::{self, Activity};
use crate::error::Error;
use crate::job::{contain, JobRef, Outcome, RunHooks};
use crate::pool::{Shared, State};
use crate::sync::lock_std as lock;

/// The longest an out-of-work worker spins before parking.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(50);

/// A spin pays for itself when the next job comes within this: a spin that waits `g` costs
/// `g` of CPU time, a park and a wake-up cost about this much between the worker and the
/// thread that wakes it (two system calls and two context switches). A stream of calls with
/// gaps of tens of microseconds (a caller that parks between calls, a light load) gets
/// parked workers, as from `spawn_blocking`; back-to-back calls get a spinning worker.
pub(crate) const SPIN_PAYS_WITHIN: Duration = Duration::from_micros(10);

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

/// How a parked worker is woken: under the state lock, the waker takes it off the idle list,
/// counts it in `waking` and sets `woken` ([`Parker::claim`]); then, without the lock, it
/// unparks the thread. A worker whose keep-alive ran out looks at `woken` under the same
/// lock, so it either was claimed (and counts itself out of `waking`) or is still on the
/// list; a wake-up is never half given.
pub(crate) struct Parker {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Parker {
    /// Marks this parker, just taken off the idle list, as woken. Under the state lock.
    pub(crate) fn claim(&self, waking: &AtomicUsize) {
        waking.fetch_add(1, SeqCst);
        self.woken.store(true, SeqCst);
    }

    /// Wakes the thread of a claimed parker.
    pub(crate) fn unpark(&self) {
        self.thread.unpark();
    }

    /// On the parked worker: true if a waker claimed it, which it then counts out of
    /// `waking` (it is about to look at the queue).
    fn was_claimed(&self, waking: &AtomicUsize) -> bool {
        let claimed = self.woken.load(SeqCst);
        if claimed {
            waking.fetch_sub(1, SeqCst);
        }
        claimed
    }
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

/// A worker counted in under the state lock, whose thread is not started yet.
pub(crate) struct Reserved {
    id: usize,
    slot: Arc<WorkerSlot>,
}

/// The record behind "spin only while it pays": of the last few times this worker ran out
/// of work, how often the next job was queued within a spin. A share of hits, not an
/// average of gaps, so one long pause between back-to-back calls does not stop the
/// spinning (parked, a worker answers later, which can itself stretch the next gap).
pub(crate) struct SpinGauge {
    /// Hits among recent tries, as a fixed-point share: [`SpinGauge::FULL`] is all hits.
    score: u32,
}

impl SpinGauge {
    const FULL: u32 = 1 << 16;

    /// Records how long after running dry the next job came.
    fn record(&mut self, gap_ns: u64) {
        self.record_hit(u128::from(gap_ns) < SPIN_PAYS_WITHIN.as_nanos());
    }

    /// Records whether a spin found (or would have found) what it waited for.
    pub(crate) fn record_hit(&mut self, hit: bool) {
        // Each new try weighs an eighth.
        self.score = self.score - self.score / 8 + if hit { Self::FULL / 8 } else { 0 };
    }

    /// Most recent tries would have found the next job within a spin.
    pub(crate) fn pays(&self) -> bool {
        self.score >= Self::FULL / 2
    }
}

impl Default for SpinGauge {
    fn default() -> SpinGauge {
        SpinGauge { score: Self::FULL }
    }
}

impl Shared {
    /// Counts a new worker in, under the state lock; [`launch`](Shared::launch) starts its
    /// thread after the lock is released (starting threads takes long enough that holding
    /// the lock meanwhile would stall every submitter, and so their executors).
    pub(crate) fn reserve_worker(&self, st: &mut State) -> Reserved {
        let id = st.next_id;
        st.next_id += 1;
        let slot = Arc::new(WorkerSlot::default());
        st.slots.push(Arc::clone(&slot));
        st.threads += 1;
        self.threads.fetch_add(1, SeqCst);
        Reserved { id, slot }
    }

    /// Starts the thread of a reserved worker. Call without holding the state lock.
    pub(crate) fn launch(self: &Arc<Self>, reserved: Reserved) {
        let Reserved { id, slot } = reserved;
        let mut builder = std::thread::Builder::new().name(format!("{}-{id}", self.name));
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = Arc::clone(self);
        let worker_slot = Arc::clone(&slot);
        match crate::priority::spawn(builder, move || shared.worker_main(&worker_slot, id)) {
            Ok(handle) => {
                let mut st = lock(&self.state);
                st.handles.retain(|h| !h.is_finished());
                st.handles.push(handle);
            }
            Err(cause) => {
                // Out of threads: with some workers, queued jobs wait for them (and the next
                // submit or tick tries again); with none, nothing would ever run them.
                let mut st = lock(&self.state);
                self.retire(&mut st, &slot);
                if st.threads == 0 {
                    drop(st);
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
        let parker = Arc::new(Parker {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        let mut gauge = SpinGauge::default();
        // When this worker last ran out of work (if it has not found any since).
        let mut dry_since: Option<u64> = None;
        loop {
            // BUSY: run jobs while there are any.
            loop {
                slot.starting.store(true, SeqCst);
                let Some(entry) = self.queue.pop(home) else {
                    slot.starting.store(false, SeqCst);
                    break;
                };
                if self.stopped.load(SeqCst) {
                    // Shutdown has given up on queued jobs: this one fails like them.
                    slot.starting.store(false, SeqCst);
                    if entry.job.fail(
                        Error::shutdown(Arc::clone(&self.name)),
                        self.queue_limit.as_deref(),
                    ) {
                        self.count_cancelled(true);
                    }
                    continue;
                }
                if let Some(since) = dry_since.take() {
                    gauge.record(entry.at.saturating_sub(since));
                }
                if fans_out(
                    self.queue.len(),
                    self.searching(),
                    self.sleeping.load(SeqCst),
                    self.monitor_awake.load(SeqCst),
                    self.threads.load(SeqCst) < self.config.max_threads,
                ) {
                    self.wake_or_grow();
                }
                // A body that started cleared `starting` then (`Accounting::started`); a job
                // abandoned before it could start did not.
                if self.run_job(&entry.job, Some(slot), Some(entry.at)) == Outcome::NotRun {
                    slot.starting.store(false, SeqCst);
                }
            }
            dry_since.get_or_insert_with(|| self.now());
            // SPIN: when the next job has lately come within a spin.
            if gauge.pays() && self.spin() {
                continue;
            }
            // IDLE: park until woken, closed, or idle past keep-alive.
            match self.park(slot, &parker) {
                Parked::Woken => {}
                Parked::TimedOut(waited) => {
                    gauge.record(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
                    dry_since = None;
                }
                Parked::Exit => break,
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

    /// Runs a nested call's job right here, on a worker of its own pool.
    pub(crate) fn run_inline(&self, job: &JobRef) {
        self.run_job(job, None, None);
    }

    /// Runs one job on this thread, with `is_cancelled()` and the totals kept.
    fn run_job(&self, job: &JobRef, slot: Option<&WorkerSlot>, queued_at: Option<u64>) -> Outcome {
        let acct = Accounting {
            shared: self,
            slot,
            queued_at,
            start: Cell::new(0),
            job: job.id(),
            hooks: crate::cancel::registered_here(),
        };
        CURRENT.with_borrow_mut(|jobs| jobs.push(job.clone()));
        let outcome = job.run(&acct);
        CURRENT.with_borrow_mut(Vec::pop);
        outcome
    }

    /// Spins briefly for new work. True if work arrived.
    fn spin(&self) -> bool {
        if self.spinning.fetch_add(1, SeqCst) >= self.config.max_spinners {
            self.spinning.fetch_sub(1, SeqCst);
            return false;
        }
        let start = Instant::now();
        let mut i: u32 = 0;
        let found = loop {
            if !self.queue.looks_empty() {
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

    /// Parks until there is work, or this worker should exit.
    fn park(&self, slot: &Arc<WorkerSlot>, parker: &Arc<Parker>) -> Parked {
        {
            let mut st = lock(&self.state);
            if self.is_closed() && self.queue.len() == 0 {
                self.retire(&mut st, slot);
                return Parked::Exit;
            }
            parker.woken.store(false, SeqCst);
            st.idle.push(Arc::clone(parker));
            self.sleeping.store(st.idle.len(), SeqCst);
            // After announcing ourselves (`sleeping`), look once more: a submitter that
            // read `sleeping` before we wrote it did not wake anyone (see `pool.rs`).
            if self.queue.len() > 0 {
                self.unidle(&mut st, parker);
                return Parked::Woken;
            }
        }
        let parked_at = Instant::now();
        // `None`: a keep-alive too long to represent is for ever.
        let deadline = parked_at.checked_add(self.config.keep_alive);
        loop {
            if parker.was_claimed(&self.waking) {
                return Parked::Woken;
            }
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::park_timeout(deadline - now);
                }
                None => std::thread::park(),
            }
        }
        let mut st = lock(&self.state);
        if parker.was_claimed(&self.waking) {
            return Parked::Woken; // a waker took us off the list just now
        }
        self.unidle(&mut st, parker);
        if self.queue.len() > 0 || (!self.is_closed() && st.threads <= self.config.min_threads) {
            return Parked::TimedOut(parked_at.elapsed());
        }
        self.retire(&mut st, slot);
        Parked::Exit
    }

    /// Takes a parker that was not woken off the idle list.
    fn unidle(&self, st: &mut State, parker: &Arc<Parker>) {
        st.idle.retain(|p| !Arc::ptr_eq(p, parker));
        self.sleeping.store(st.idle.len(), SeqCst);
    }

    /// Counts an exiting worker out, and tells a waiting shutdown.
    fn retire(&self, st: &mut State, slot: &Arc<WorkerSlot>) {
        st.threads -= 1;
        self.threads.fetch_sub(1, SeqCst);
        st.slots.retain(|s| !Arc::ptr_eq(s, slot));
        self.quiet.notify_all();
    }

    /// True on a worker thread of this pool: a call made here runs inline.
    pub(crate) fn is_own_worker(&self) -> bool {
        WORKER_OF.get() == self.id()
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

/// How a worker's park ended.
enum Parked {
    /// A submitter handed it a wake-up, or work was found before sleeping.
    Woken,
    /// Keep-alive ran out, but the worker stays (work arrived, or it is within
    /// `min_threads`); it waited this long.
    TimedOut(Duration),
    /// The worker was counted out and must exit.
    Exit,
}

/// What the worker (or an inline nested call) does when a body really starts and ends.
struct Accounting<'a> {
    shared: &'a Shared,
    slot: Option<&'a WorkerSlot>,
    /// When the job was queued; `None` for an inline nested call, which never was.
    queued_at: Option<u64>,
    start: Cell<u64>,
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
        s.counters
            .run_ns
            .fetch_add(now.saturating_sub(self.start.get()), Relaxed);
        match outcome {
            Outcome::Completed => s.counters.completed.fetch_add(1, Relaxed),
            _ => s.counters.panicked.fetch_add(1, Relaxed),
        };
        s.running.fetch_sub(1, SeqCst);
    }
}

/// Whether a worker that has just taken a job must wake another worker or have the
/// monitor look ([`Shared::wake_or_grow`]).
///
/// Submitters skip waking anyone while a worker spins or is being woken, so a burst can
/// find one worker awake; each worker that takes a job and sees more `waiting` than
/// `searching` workers (spinning, or unparked and on their way) can take wakes one more,
/// or, with none `sleeping`, has the (parked) monitor look while the pool has `room` for
/// a thread. Without the second part, a call queued while the only
/// spinning worker was leaving its spin for a body that never ends waited for ever: its
/// submitter had seen the spinner and woken nobody.
fn fans_out(
    waiting: usize,
    searching: usize,
    sleeping: usize,
    monitor_awake: bool,
    room: bool,
) -> bool {
    waiting > searching && (sleeping > 0 || (!monitor_awake && room))
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
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_takes_a_job_while_more_wait_makes_sure_someone_looks_at_them() {
        // (waiting, searching, sleeping, monitor awake, room for a thread)
        assert!(fans_out(1, 0, 1, false, true), "wakes a sleeper");
        assert!(fans_out(1, 0, 1, true, false), "wakes a sleeper at the cap");
        assert!(
            fans_out(1, 0, 0, false, true),
            "none asleep, the monitor parked: it must look, or the call may wait for ever"
        );
        assert!(!fans_out(1, 1, 0, false, true), "a spinner takes it");
        assert!(!fans_out(0, 0, 1, false, true), "nothing waits");
        assert!(
            !fans_out(2, 0, 0, true, true),
            "the monitor is looking already"
        );
        assert!(
            !fans_out(2, 0, 0, false, false),
            "at the cap, calls wait their turn"
        );
    }

    #[test]
    fn spinning_pays_only_while_the_next_job_comes_sooner_than_a_park_would_cost() {
        let mut g = SpinGauge::default();
        assert!(g.pays(), "a new worker spins");
        for _ in 0..3 {
            g.record(5_000);
        }
        assert!(g.pays(), "back-to-back calls 5 µs apart");
        g.record(1_000_000);
        assert!(g.pays(), "one pause does not stop the spinning");
        for _ in 0..6 {
            g.record(1_000_000);
        }
        assert!(!g.pays(), "a call every millisecond stops it");
        for _ in 0..6 {
            g.record(5_000);
        }
        assert!(g.pays(), "back-to-back calls bring it back");
        for _ in 0..6 {
            g.record(40_000);
        }
        assert!(
            !g.pays(),
            "calls 40 µs apart, within a spin but cheaper parked, stop it"
        );
        for _ in 0..6 {
            g.record(2_000);
        }
        assert!(g.pays(), "a few quick calls bring it back");
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
