//! Growth: when to start threads beyond the CPU count.
//!
//! Starting a thread per job when none is idle (what `spawn_blocking` does) starts hundreds
//! of threads for jobs that take microseconds. Here threads beyond the CPU count are started
//! only by the *monitor*, a thread that looks at the pool every [`TICK`] while jobs are
//! queued and every worker is inside a body. [`Growth::decide`] is its rule, a pure function
//! of what it saw ([`Sample`]), so it is tested on synthetic timelines below. It has two
//! parts:
//!
//! 1. **Liveness.** If no job has started for [`STALL`] while jobs were queued, every thread
//!    is stuck in a body that may never end (a slow query, a lock, a body waiting for a
//!    call that is itself still queued). The pool starts threads, up to one per queued job
//!    and at most doubling, so a queued call starts within a few milliseconds whatever the
//!    running bodies do. When the OS says every long body is *on the CPU* (see `cpu.rs`),
//!    more threads only share the same cores, so the rule waits [`CPU_STALL`] instead, and
//!    adds one thread at a time: busy loops get threads slowly, blocked ones fast.
//! 2. **Throughput.** If the queue moves but too slowly because threads sit *blocked*
//!    (sleeping, on I/O; or, where the OS cannot tell, inside a body for over a tick), the
//!    pool grows to clear the backlog within [`DRAIN_HORIZON`], at the average job
//!    time of the last few ticks, by at most one thread per blocked thread each
//!    tick. A thousand 1 ms sleeps get some fifty threads; microsecond jobs never trigger
//!    it, since by the estimate the threads there clear thousands of them well within the
//!    horizon; bodies that compute get none, since they block nobody.
//!
//! At `max_threads` neither applies: calls wait in the queue, in the order they came.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::cpu::Activity;
use crate::pool::Shared;
use crate::sync::lock_std as lock;
use crate::worker::WorkerSlot;

/// How often the monitor looks at a pool with queued work.
pub(crate) const TICK: Duration = Duration::from_micros(250);
/// No job started for this long while jobs are queued, with some body blocked (or nothing
/// known about them): the queue is stalled, start a thread.
pub(crate) const STALL: Duration = Duration::from_millis(1);
/// The same when every long-running body is busy on a CPU: more threads would only share
/// the cores, so wait longer before adding one.
pub(crate) const CPU_STALL: Duration = Duration::from_millis(5);
/// Grow for throughput only if the backlog would take longer than this to drain.
pub(crate) const DRAIN_HORIZON: Duration = Duration::from_millis(20);
/// Job times are averaged over this many ticks, and the throughput rule waits for half of
/// them, so one tick in which busy workers were descheduled is not mistaken for blocked
/// workers.
const RATE_WINDOW: usize = 8;
/// Monitor ticks without queued work before the monitor parks.
const IDLE_TICKS: u32 = 8;
/// A thread's state is read at most this often (a read costs a few system calls).
const PROBE_EVERY: Duration = Duration::from_micros(500);
/// At most this many threads are read per tick, however many are blocked.
const PROBES_PER_TICK: usize = 8;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the monitor sees at one tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Now, in nanoseconds on the pool's clock.
    pub(crate) now: u64,
    /// Jobs in the queue.
    pub(crate) queued: usize,
    /// Worker threads counted in.
    pub(crate) threads: usize,
    /// The pool's cap.
    pub(crate) max_threads: usize,
    /// Workers not inside a body: parked, spinning, starting, or between two jobs.
    pub(crate) free: usize,
    /// Bodies started so far.
    pub(crate) started: u64,
    /// Bodies finished so far, and the nanoseconds they ran.
    pub(crate) finished: u64,
    pub(crate) run_ns: u64,
    /// Bodies running for longer than a tick, by what their threads were doing.
    pub(crate) long: LongBodies,
}

/// Bodies running for longer than a tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LongBodies {
    /// Off the CPU for most of the last look.
    pub(crate) blocked: usize,
    /// On a CPU, or waiting for one.
    pub(crate) busy: usize,
    /// Nothing can be known: the OS gives no reading.
    pub(crate) unknown: usize,
    /// Not looked at yet (more long bodies than looks per tick): known within a few ticks.
    pub(crate) pending: usize,
    /// How long the longest has run, in nanoseconds.
    pub(crate) longest_ns: u64,
}

impl LongBodies {
    /// Bodies that may be holding a thread without using a core: blocked ones, and those
    /// the OS says nothing about (the portable fallback assumes the worst for liveness).
    fn maybe_blocked(&self) -> usize {
        self.blocked + self.unknown
    }
}

/// One point of the job-time window.
#[derive(Debug, Clone, Copy)]
struct Point {
    finished: u64,
    run_ns: u64,
}

/// The monitor's memory between ticks.
#[derive(Debug, Default)]
pub(crate) struct Growth {
    /// The `started` count last seen, and when the queue last moved (or was empty).
    started: u64,
    progress_at: u64,
    /// Starts still expected from threads this monitor started: a new thread taking a job
    /// is not the queue moving by itself (bodies that wait for each other would otherwise
    /// hide their stall behind each new thread's first job).
    credit: u64,
    /// The last few ticks, for job times.
    window: VecDeque<Point>,
    /// The average job time over the last window that saw jobs finish. (An earlier rule
    /// took the best average since the backlog formed, so that jobs slowed by threads
    /// outnumbering cores could not ask for yet more threads; but in a mix of quick and
    /// slow calls the best average is the quick calls', and the backlog of slow ones went
    /// unseen. Oversubscribed cores no longer inflate growth: only blocked threads count.)
    per_job: Option<u64>,
}

impl Growth {
    /// A fresh memory, as of `now`.
    pub(crate) fn new(now: u64) -> Growth {
        Growth {
            progress_at: now,
            ..Growth::default()
        }
    }

    /// How many threads to start now.
    pub(crate) fn decide(&mut self, s: &Sample) -> usize {
        let starts = s.started.saturating_sub(self.started);
        self.started = s.started;
        if starts > self.credit || s.queued == 0 {
            self.progress_at = s.now;
            self.credit = 0;
        } else {
            self.credit -= starts;
        }
        self.window.push_back(Point {
            finished: s.finished,
            run_ns: s.run_ns,
        });
        if self.window.len() > RATE_WINDOW {
            self.window.pop_front();
        }
        if s.queued == 0 {
            self.per_job = None;
            return 0;
        }
        let (first, last) = (self.window[0], self.window[self.window.len() - 1]);
        if let Some(per_job) =
            (last.run_ns - first.run_ns).checked_div(last.finished - first.finished)
        {
            self.per_job = Some(per_job);
        }
        // A free worker will take the job; a full pool cannot grow.
        if s.free > 0 || s.threads >= s.max_threads {
            return 0;
        }
        let room = s.max_threads - s.threads;

        // Threads about to be judged will be within a probe interval: wait for the verdict
        // rather than guess.
        if s.long.pending > 0 && s.long.maybe_blocked() + s.long.busy == 0 {
            return 0;
        }

        // 1. Liveness: the queue has not moved for a stall.
        let cpu_bound = s.long.maybe_blocked() == 0 && s.long.busy > 0;
        let stall = if cpu_bound { CPU_STALL } else { STALL };
        if s.now.saturating_sub(self.progress_at) >= nanos(stall) {
            // The new threads get a stall of their own before the next verdict.
            self.progress_at = s.now;
            let grow = if cpu_bound {
                1
            } else {
                s.queued.min(s.threads.max(1))
            };
            return self.grew(grow.min(room));
        }

        // 2. Throughput: blocked threads hold back a backlog that would drain too slowly.
        let blocked = s.long.maybe_blocked();
        if blocked == 0 || self.window.len() < RATE_WINDOW / 2 {
            return 0;
        }
        // How long one job takes: the recent average, or, before any finished, at
        // least as long as the longest running one has taken so far.
        let per_job = self.per_job.unwrap_or(s.long.longest_ns);
        let wanted = (s.queued as f64 * per_job as f64 / nanos(DRAIN_HORIZON) as f64).ceil();
        let wanted = (wanted as usize).min(s.threads + s.queued);
        if wanted <= s.threads {
            return 0;
        }
        self.grew((wanted - s.threads).min(blocked).min(room))
    }

    /// Remembers that `n` threads are being started, each to take a job.
    fn grew(&mut self, n: usize) -> usize {
        self.credit += n as u64;
        n
    }
}

/// The monitor thread: samples the pool every tick while work is queued, starts the threads
/// [`Growth::decide`] asks for, and parks when the queue has been empty for a while.
/// The monitor's own state: whether it runs, and how a submitter wakes it.
pub(crate) struct Monitor {
    /// The monitor is ticking (not parked): submitters need not poke it.
    awake: AtomicBool,
    state: Mutex<MonitorState>,
    /// The parked (or ticking) monitor waits here.
    wake: Condvar,
}

#[derive(Default)]
struct MonitorState {
    /// The monitor thread exists.
    started: bool,
    /// A submitter asked the parked monitor to look.
    wanted: bool,
    /// The pool closed: the monitor ends.
    closed: bool,
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            awake: AtomicBool::new(false),
            state: Mutex::new(MonitorState::default()),
            wake: Condvar::new(),
        }
    }

    /// The monitor is ticking now.
    pub(crate) fn is_awake(&self) -> bool {
        self.awake.load(SeqCst)
    }

    /// Has the monitor look at the pool: wakes it, or starts its thread.
    pub(crate) fn poke(&self, shared: &Arc<Shared>) {
        let mut st = lock(&self.state);
        if st.closed || self.is_awake() {
            return;
        }
        if st.started {
            st.wanted = true;
            self.wake.notify_one();
            return;
        }
        st.started = true;
        self.awake.store(true, SeqCst);
        let shared = Arc::clone(shared);
        let builder = std::thread::Builder::new()
            .name(format!("{}-monitor", shared.name))
            .stack_size(64 << 10);
        if crate::priority::spawn(builder, move || run(&shared)).is_err() {
            st.started = false;
            self.awake.store(false, SeqCst);
        }
    }

    /// The pool closed: the monitor ends at its next look.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_all();
    }
}

fn run(shared: &Arc<Shared>) {
    let monitor = &shared.monitor;
    let mut growth = Growth::new(shared.now());
    let mut probe = Prober::default();
    let mut idle_ticks = 0;
    let mut st = lock(&monitor.state);
    loop {
        if st.closed {
            break;
        }
        st = monitor
            .wake
            .wait_timeout(st, TICK)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        drop(st);
        let queued = shared.queue.len();
        if queued > 0 {
            idle_ticks = 0;
        } else {
            idle_ticks += 1;
        }
        let max_threads = shared.config.max_threads;
        let could_grow =
            queued > 0 && shared.sleep.sleeping() == 0 && shared.threads.count() < max_threads;
        let long = if could_grow {
            probe.slots = shared.threads.slots();
            let long = probe.look(shared.now());
            probe.slots.clear();
            long
        } else {
            LongBodies::default()
        };
        let c = &shared.counters;
        let threads = shared.threads.count();
        let running = shared.running.load(SeqCst);
        let sample = Sample {
            now: shared.now(),
            queued: shared.queue.len(),
            threads,
            max_threads,
            free: threads.saturating_sub(running),
            started: c.started.load(Relaxed),
            finished: c.completed.load(Relaxed) + c.panicked.load(Relaxed),
            run_ns: c.run_ns.load(Relaxed),
            long,
        };
        let grow = growth.decide(&sample);
        if grow > 0 {
            shared.start_threads(grow, max_threads);
            st = lock(&monitor.state);
            continue;
        }
        st = lock(&monitor.state);
        if idle_ticks < IDLE_TICKS {
            continue;
        }
        // Park until a submitter pokes. A poke made while `awake` still read true was not
        // sent, so look at the queue once more after clearing it.
        monitor.awake.store(false, SeqCst);
        while !st.wanted && !st.closed && shared.queue.len() == 0 {
            st = monitor
                .wake
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.wanted = false;
        monitor.awake.store(true, SeqCst);
        idle_ticks = 0;
        growth = Growth::new(shared.now());
    }
    st.started = false;
    monitor.awake.store(false, SeqCst);
}

#[derive(Default)]
struct Prober {
    /// The workers to look at this tick (a buffer reused from tick to tick, emptied after
    /// each look).
    slots: Vec<Arc<WorkerSlot>>,
    /// Where the last tick's reads stopped, so every thread gets its turn.
    cursor: usize,
}

impl Prober {
    fn look(&mut self, now: u64) -> LongBodies {
        let mut long = LongBodies::default();
        let mut reads = 0;
        let n = self.slots.len();
        for i in 0..n {
            let slot = &self.slots[(self.cursor + i) % n.max(1)];
            let since = slot.busy_since.load(Relaxed);
            if since == 0 {
                continue;
            }
            let ran = now.saturating_sub(since - 1);
            if ran <= nanos(TICK) {
                continue;
            }
            long.longest_ns = long.longest_ns.max(ran);
            let mut p = lock(&slot.probe);
            if p.body != since {
                p.body = since;
                p.last = None;
            }
            let due = p
                .last
                .is_none_or(|(at, _)| now.saturating_sub(at) >= nanos(PROBE_EVERY));
            if due && reads < PROBES_PER_TICK {
                reads += 1;
                if reads == PROBES_PER_TICK {
                    self.cursor = (self.cursor + i + 1) % n;
                }
                let activity = p.state.read(slot.tid.load(Relaxed));
                p.last = Some((now, activity));
            }
            match p.last {
                Some((_, Activity::Blocked)) => long.blocked += 1,
                Some((_, Activity::Busy)) => long.busy += 1,
                Some((_, Activity::Unknown)) => long.unknown += 1,
                None => long.pending += 1,
            }
        }
        long
    }
}

#[cfg(test)]
mod tests {
    //! The growth rule on synthetic timelines: a [`Sample`] per tick, as the monitor would
    //! see it.

    use super::*;

    const MS: u64 = 1_000_000;
    const TICK_NS: u64 = 250_000;

    /// A pool of `threads`, all in bodies, with `queued` jobs waiting.
    fn busy_pool(now: u64, threads: usize, queued: usize) -> Sample {
        Sample {
            now,
            queued,
            threads,
            max_threads: 512,
            ..Sample::default()
        }
    }

    /// Runs `ticks` ticks of `sample(tick, threads)`, starting what `decide` asks for;
    /// returns the threads at the end and the tick of each growth.
    fn run(
        threads: usize,
        ticks: u64,
        mut sample: impl FnMut(u64, usize) -> Sample,
    ) -> (usize, Vec<(u64, usize)>) {
        let mut g = Growth::new(0);
        let mut threads = threads;
        let mut grew = Vec::new();
        for t in 1..=ticks {
            let n = g.decide(&sample(t, threads));
            if n > 0 {
                grew.push((t, n));
                threads += n;
            }
        }
        (threads, grew)
    }

    #[test]
    fn a_call_queued_behind_blocked_bodies_gets_a_thread_within_a_stall() {
        // 2 threads blocked for ever in slow bodies; one fast call queued at tick 1.
        let (threads, grew) = run(2, 40, |t, threads| {
            let mut s = busy_pool(t * TICK_NS, threads, usize::from(threads == 2));
            s.started = 2;
            s.long = LongBodies {
                blocked: 2,
                longest_ns: 10_000 * MS,
                ..LongBodies::default()
            };
            // Once a third thread runs, it takes the call and goes free.
            s.free = threads - 2;
            s
        });
        assert_eq!(threads, 3, "{grew:?}");
        assert!(
            grew[0].0 * TICK_NS <= STALL.as_nanos() as u64 + TICK_NS,
            "{grew:?}"
        );
    }

    #[test]
    fn bodies_waiting_for_each_other_all_get_threads_within_milliseconds() {
        // 64 bodies that each wait for all 64 to run (a barrier): none ends until all run.
        let (threads, grew) = run(2, 200, |t, threads| {
            let mut s = busy_pool(t * TICK_NS, threads, 64 - threads.min(64));
            s.started = threads as u64;
            s.long = LongBodies {
                unknown: threads,
                longest_ns: t * TICK_NS,
                ..LongBodies::default()
            };
            s
        });
        assert_eq!(threads, 64);
        let last = grew.last().unwrap().0 * TICK_NS;
        assert!(
            last <= 10 * MS,
            "all 64 ran after {} ms: {grew:?}",
            last / MS
        );
    }

    #[test]
    fn a_moving_queue_of_microsecond_jobs_never_grows() {
        // 4096 callers of 1 µs jobs on 2 threads: the queue is never empty, jobs start all
        // the time, no body lasts a tick.
        let (threads, grew) = run(2, 4_000, |t, threads| {
            let mut s = busy_pool(t * TICK_NS, threads, 4_000);
            s.started = t * 500;
            s.finished = t * 500 - 2;
            s.run_ns = s.finished * 1_000;
            s
        });
        assert_eq!(threads, 2, "{grew:?}");
    }

    #[test]
    fn cpu_bound_bodies_get_threads_slowly() {
        // 64 callers of 5 ms busy loops on 2 cores for a second: jobs start every 2.5 ms.
        let (threads, grew) = run(2, 4_000, |t, threads| {
            let now = t * TICK_NS;
            let mut s = busy_pool(now, threads, 62);
            // Each thread gets 2/threads of a core: a job ends every 2.5 ms overall.
            s.started = now / (5 * MS / 2) + threads as u64;
            s.finished = now / (5 * MS / 2);
            s.run_ns = s.finished * 5 * MS * threads as u64 / 2;
            s.long = LongBodies {
                busy: threads,
                longest_ns: 5 * MS,
                ..LongBodies::default()
            };
            s
        });
        assert_eq!(threads, 2, "{grew:?}");
        // Bodies that spin for ever get a thread per CPU stall, not a burst.
        let (threads, grew) = run(2, 100, |t, threads| {
            let mut s = busy_pool(t * TICK_NS, threads, 10);
            s.started = 2;
            s.long = LongBodies {
                busy: threads,
                longest_ns: 1_000 * MS,
                ..LongBodies::default()
            };
            s
        });
        assert!(grew.iter().all(|&(_, n)| n == 1), "{grew:?}");
        assert!(threads <= 2 + 100 * TICK_NS as usize / CPU_STALL.as_nanos() as usize);
    }

    #[test]
    fn a_thousand_sleeps_grow_the_pool_to_drain_them_in_a_horizon() {
        // 1000 calls of 1 ms sleeps: each thread finishes one job a millisecond.
        let mut done = 0.0;
        let (threads, grew) = run(2, 200, |t, threads| {
            done += threads as f64 * TICK_NS as f64 / MS as f64;
            let finished = (done as u64).min(1_000);
            let queued = 1_000 - finished as usize - threads.min(1_000 - finished as usize);
            let mut s = busy_pool(t * TICK_NS, threads, queued);
            s.finished = finished;
            s.started = finished + threads as u64;
            s.run_ns = finished * MS;
            s.long = LongBodies {
                blocked: threads,
                longest_ns: MS,
                ..LongBodies::default()
            };
            s
        });
        assert!((32..=128).contains(&threads), "{threads} threads: {grew:?}");
    }

    #[test]
    fn nothing_grows_while_a_worker_is_free_or_at_the_cap() {
        let mut g = Growth::new(0);
        for t in 1..100 {
            let mut s = busy_pool(t * TICK_NS, 4, 10);
            s.free = 1;
            s.long.blocked = 3;
            assert_eq!(g.decide(&s), 0);
        }
        let mut g = Growth::new(0);
        for t in 1..100 {
            let mut s = busy_pool(t * TICK_NS, 8, 10);
            s.max_threads = 8;
            s.long.blocked = 8;
            assert_eq!(g.decide(&s), 0);
        }
    }

    #[test]
    fn a_burst_after_idle_is_judged_afresh() {
        let mut g = Growth::new(0);
        // Idle for a long time: the queue is empty, so the stall clock does not run.
        for t in 1..1_000 {
            assert_eq!(g.decide(&busy_pool(t * TICK_NS, 2, 0)), 0);
        }
        // A burst of 1 µs jobs: no growth in the first stall.
        let mut s = busy_pool(1_000 * TICK_NS, 2, 100);
        s.started = 10;
        assert_eq!(g.decide(&s), 0);
    }
}
