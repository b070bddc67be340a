//! The wake-up protocol: who spins, who parks, who wakes whom. The pool calls these of
//! [`Sleep`] and nothing else touches its state:
//!
//! - a submitter, after pushing a job: [`Sleep::job_queued`];
//! - a worker that took a job while more wait: [`Sleep::job_taken`];
//! - a worker finishing a body with nothing queued, that will spin: [`Sleep::start_looking`]
//!   before it hands over the result ([`Sleep::found_work`] if it then takes a job);
//! - a worker out of work: [`Sleep::spin`] while its [`SpinRule`] says spinning pays, then
//!   [`Sleep::park`];
//! - the pool closing: [`Sleep::close`].
//!
//! # The protocol
//!
//! A worker is *searching* while it will look at the queue without being woken: spinning,
//! or unparked by a waker and not yet back at the queue. A submitter pushes its job, then:
//!
//! 1. if a worker is searching, does nothing: that worker will see the job;
//! 2. else if a worker is parked, takes the most recently parked one off the idle list,
//!    counts it searching and unparks it (one wake-up, to one thread really asleep; rarely
//!    used threads stay parked and are the ones whose keep-alive runs out);
//! 3. else reports that no worker is idle, and the pool starts a thread or asks its
//!    monitor to look ([`Notified::NoneIdle`]).
//!
//! A burst costs its submitters one unpark, not one per job: a worker that takes a job
//! while more are queued than workers are searching wakes the next one ([`Sleep::job_taken`]),
//! so the fan-out runs on the pool's threads, not on the executor's.
//!
//! A worker out of work spins only while its [`SpinRule`] says the next job has lately come
//! within a spin; then it puts itself on the idle list, looks at the queue once more, and
//! parks until a submitter claims it, the pool closes, or its keep-alive runs out. It counts
//! as searching from just before it hands over its last result: a caller that sees its
//! result calls again within a fraction of a microsecond, before the worker is back at the
//! queue, and found no spinner (so woke another worker and did not spin for its result)
//! in a third to four fifths of its calls. A spin that loses its CPU for a while (the cores
//! are busy) stops: it would hold up the thread it shares a core with.
//!
//! # Why no job waits while every worker sleeps
//!
//! The submitter writes the queue's count, then reads `searching` and `sleeping`. A worker
//! stops searching by writing `searching` (or `sleeping`, as it goes on the idle list), then
//! reads the queue's count. Each side puts a `SeqCst` fence between its write and its read,
//! so in the fences' single total order one side sees the other's write: either the
//! submitter sees the worker still searching or sleeping (and relies on it, or wakes it),
//! or the worker sees the job. (The accesses are `SeqCst` too, which alone would do; the
//! fences are what loom checks, as it models `SeqCst` accesses as acquire/release only.) A parked worker is
//! woken only through a claim made under the idle list's lock: the waker takes it off the
//! list and counts it searching before it unparks it, so a wake-up is never given to a
//! thread that was not asleep, and a worker whose keep-alive runs out finds, under the same
//! lock, either that it was claimed (and goes back to the queue) or that it is still on
//! the list (and takes itself off). `close` empties the list and forbids parking under
//! that lock, so no worker parks for ever on a closed pool. The loom model at the end of
//! this file checks these claims for two workers and a submitter.
//!
//! # When spinning pays
//!
//! A spin that waits `g` for the next job costs `g` of CPU; a park and a wake-up cost the
//! submitter (an executor thread) a system call and the caller a wake-up latency of
//! 20-60 µs on a 2-core VM. What makes a sequential caller fast is that *both* sides stay
//! awake: the worker spinning when the call comes, the caller spinning for the result
//! (`pool.rs`). Judged by gaps alone, that mode is bistable: once the caller sleeps between
//! calls, each gap is a wake-up long, a rule that spins only for gaps of a few microseconds
//! parks the worker, and the caller is woken for the next call too. [`SpinRule`] therefore
//! spins for [`SPIN_FOR`], long enough to catch a caller being woken, whenever the last few
//! gaps were short, and, when the last gap was within a spin but longer than back-to-back,
//! it *probes*: spins once, to see whether that brings the calls back to back. A probe that
//! does not is repeated ever more rarely, so a light load whose gaps fall within a spin
//! (calls 0.2 ms apart around a 0.1 ms body) pays a spin once in dozens of calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::Padded;
use crate::sync::{
    fence, lock, AtomicBool, AtomicUsize, Mutex,
    Ordering::{Relaxed, SeqCst},
};

/// The longest an out-of-work worker spins before parking: long enough to catch the next
/// call of a caller that is being woken (20-60 µs here), short enough that a pool going
/// quiet burns little.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(100);

/// A spin that sees this much time pass between two of its looks (a few hundred
/// nanoseconds apart when it has a CPU) was descheduled: the cores are busy.
const PREEMPTED: Duration = Duration::from_micros(20);

/// A gap this short is a caller calling back to back: both sides were awake.
pub(crate) const BACK_TO_BACK: Duration = Duration::from_micros(10);

/// The rarest a probe gets: once in this many runs-dry whose next job came within a spin.
const PROBE_AT_MOST_EVERY: u32 = 64;

/// What a submitter's or a worker's notice found (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notified {
    /// Nothing to do: a searching worker will see the queued jobs.
    Searcher,
    /// A parked worker was claimed and unparked.
    Woke,
    /// No worker is idle: the pool should start one, or have its monitor look.
    NoneIdle,
}

/// How [`Sleep::park`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// A waker claimed this worker, or work was there before it slept: look at the queue.
    Woken,
    /// The keep-alive ran out and the worker is off the idle list; it waited this long.
    TimedOut(Duration),
    /// The pool is closed: no parking any more.
    Closed,
}

/// How a worker parks and is woken: its thread and whether a waker claimed it.
pub(crate) struct Parker {
    thread: Thread,
    /// Set by a waker under the idle list's lock; cleared by the worker as it parks.
    claimed: AtomicBool,
}

#[cfg(not(loom))]
type Thread = std::thread::Thread;
#[cfg(loom)]
type Thread = loom::thread::Thread;

impl Parker {
    /// A parker for the calling thread.
    pub(crate) fn new() -> Arc<Parker> {
        #[cfg(not(loom))]
        let thread = std::thread::current();
        #[cfg(loom)]
        let thread = loom::thread::current();
        Arc::new(Parker {
            thread,
            claimed: AtomicBool::new(false),
        })
    }
}

/// Parks the calling thread for at most `timeout` (`None`: until unparked).
fn park(timeout: Option<Duration>) {
    #[cfg(not(loom))]
    match timeout {
        Some(t) => std::thread::park_timeout(t),
        None => std::thread::park(),
    }
    // loom has no timed park: its models use no keep-alive.
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
}

/// The idle list, under its lock.
struct Idle {
    /// Parked workers, most recently parked last.
    parked: Vec<Arc<Parker>>,
    /// The pool closed: nobody parks any more.
    closed: bool,
}

/// The wake-up protocol's shared state (see the module docs).
pub(crate) struct Sleep {
    /// Workers spinning, or claimed and unparked and not yet back at the queue.
    searching: Padded<AtomicUsize>,
    /// Of those, the spinning ones (at most `max_spinners`).
    spinning: AtomicUsize,
    /// Workers on the idle list (its length, readable without the lock).
    sleeping: AtomicUsize,
    idle: Mutex<Idle>,
    max_spinners: usize,
    /// See [`Sleep::bodies_short`].
    bodies_short: AtomicBool,
}

impl Sleep {
    /// The protocol for a pool that lets at most `max_spinners` workers spin at once.
    pub(crate) fn new(max_spinners: usize) -> Sleep {
        Sleep {
            searching: Padded(AtomicUsize::new(0)),
            spinning: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            idle: Mutex::new(Idle {
                parked: Vec::new(),
                closed: false,
            }),
            max_spinners,
            bodies_short: AtomicBool::new(true),
        }
    }

    /// A submitter has just pushed a job (and counted it in the queue's `SeqCst` length).
    pub(crate) fn job_queued(&self) -> Notified {
        // Between the push and the reads below (see "Why no job waits").
        fence(SeqCst);
        if self.searching.load(SeqCst) > 0 {
            return Notified::Searcher;
        }
        self.wake_one()
    }

    /// A worker has just taken a job and sees `waiting` more queued: it wakes another worker
    /// if more wait than workers are searching, so a burst fans out on the pool's threads.
    pub(crate) fn job_taken(&self, waiting: usize) -> Notified {
        if waiting <= self.searching.load(SeqCst) {
            return Notified::Searcher;
        }
        self.wake_one()
    }

    /// Claims the most recently parked worker and unparks it; `NoneIdle` if none is parked.
    fn wake_one(&self) -> Notified {
        if self.sleeping.load(SeqCst) == 0 {
            return Notified::NoneIdle;
        }
        let mut idle = lock(&self.idle);
        let Some(parker) = idle.parked.pop() else {
            return Notified::NoneIdle;
        };
        self.sleeping.store(idle.parked.len(), SeqCst);
        self.claim(&parker);
        drop(idle);
        parker.thread.unpark();
        Notified::Woke
    }

    /// Marks a parker just taken off the idle list as claimed. Under the idle list's lock.
    fn claim(&self, parker: &Parker) {
        self.searching.fetch_add(1, SeqCst);
        parker.claimed.store(true, SeqCst);
    }

    /// A worker about to run out of work (it is finishing a job with nothing queued, and
    /// will spin) starts looking now, before it hands over the result: the caller, which
    /// may call again within a fraction of a microsecond, then finds a spinner, and no
    /// submitter wakes another worker for a job this one is about to take. False if
    /// `max_spinners` spin already.
    pub(crate) fn start_looking(&self) -> bool {
        if self.spinning.fetch_add(1, SeqCst) >= self.max_spinners {
            self.spinning.fetch_sub(1, SeqCst);
            return false;
        }
        self.searching.fetch_add(1, SeqCst);
        true
    }

    /// A worker that started looking took a job.
    pub(crate) fn found_work(&self) {
        self.searching.fetch_sub(1, SeqCst);
        self.spinning.fetch_sub(1, SeqCst);
    }

    /// A worker out of work spins for at most [`SPIN_FOR`] while `work()` is false and the
    /// pool is open (`closed()` false). `looking`: it started looking already
    /// ([`start_looking`](Sleep::start_looking)); else it starts now, unless
    /// `max_spinners` spin already. True if work came; the worker is then no longer
    /// counted as looking either way.
    pub(crate) fn spin(
        &self,
        looking: bool,
        work: impl Fn() -> bool,
        closed: impl Fn() -> bool,
    ) -> bool {
        if !looking && !self.start_looking() {
            return false;
        }
        let start = Instant::now();
        let mut seen = Duration::ZERO;
        let mut i: u32 = 0;
        let found = loop {
            if work() {
                break true;
            }
            // loom: one look stands for the whole spin.
            if cfg!(loom) {
                break false;
            }
            i = i.wrapping_add(1);
            if i % 128 == 0 {
                let now = start.elapsed();
                // A spin that lost its CPU for a while (the cores are busy with other
                // threads) holds up whoever it shares one with: park instead.
                if closed() || now >= SPIN_FOR || now - seen >= PREEMPTED {
                    break false;
                }
                seen = now;
            }
            std::hint::spin_loop();
        };
        // Stop searching before the last look, which `park` makes (module docs).
        self.searching.fetch_sub(1, SeqCst);
        self.spinning.fetch_sub(1, SeqCst);
        found
    }

    /// Parks the calling worker (its `parker`) until a waker claims it, the pool closes or
    /// `keep_alive` passes (`None`: never). `work()` is the last look at the queue, made
    /// after the worker is on the idle list.
    pub(crate) fn park(
        &self,
        parker: &Arc<Parker>,
        keep_alive: Option<Duration>,
        work: impl Fn() -> bool,
    ) -> Parked {
        {
            let mut idle = lock(&self.idle);
            if idle.closed {
                return Parked::Closed;
            }
            parker.claimed.store(false, SeqCst);
            idle.parked.push(Arc::clone(parker));
            self.sleeping.store(idle.parked.len(), SeqCst);
            // After `sleeping` (and, for a worker that was spinning, `searching`) is written:
            // a submitter that read them before did not wake anyone, so look once more.
            fence(SeqCst);
            if work() {
                Self::unlist(&mut idle, parker);
                self.sleeping.store(idle.parked.len(), SeqCst);
                return Parked::Woken;
            }
        }
        let parked_at = Instant::now();
        let deadline = keep_alive.and_then(|k| parked_at.checked_add(k));
        loop {
            if self.was_claimed(parker) {
                return Parked::Woken;
            }
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    park(Some(deadline - now));
                }
                None => park(None),
            }
        }
        let mut idle = lock(&self.idle);
        if self.was_claimed(parker) {
            return Parked::Woken; // claimed just now, between the last look and the lock
        }
        Self::unlist(&mut idle, parker);
        self.sleeping.store(idle.parked.len(), SeqCst);
        Parked::TimedOut(parked_at.elapsed())
    }

    /// On the worker: true if a waker claimed it; it then stops counting as searching, as
    /// its next step is to look at the queue.
    fn was_claimed(&self, parker: &Parker) -> bool {
        let claimed = parker.claimed.load(SeqCst);
        if claimed {
            self.searching.fetch_sub(1, SeqCst);
            // Between no longer searching and the look at the queue that follows.
            fence(SeqCst);
        }
        claimed
    }

    fn unlist(idle: &mut Idle, parker: &Arc<Parker>) {
        idle.parked.retain(|p| !Arc::ptr_eq(p, parker));
    }

    /// The pool closed: wakes every parked worker, and no worker parks from now on.
    pub(crate) fn close(&self) {
        let mut idle = lock(&self.idle);
        idle.closed = true;
        let parked = std::mem::take(&mut idle.parked);
        self.sleeping.store(0, SeqCst);
        for parker in &parked {
            self.claim(parker);
        }
        drop(idle);
        for parker in parked {
            parker.thread.unpark();
        }
    }

    /// Workers spinning or on their way to the queue.
    pub(crate) fn searching(&self) -> usize {
        self.searching.load(SeqCst)
    }

    /// Workers parked.
    pub(crate) fn sleeping(&self) -> usize {
        self.sleeping.load(SeqCst)
    }

    /// A worker is spinning now: a job pushed onto an empty queue starts at once.
    pub(crate) fn spinning(&self) -> bool {
        self.spinning.load(SeqCst) > 0
    }

    /// Records whether the body a worker has just run was short enough for its caller to
    /// spin for the result (written only when it changes, so a steady stream of either kind
    /// writes nothing).
    pub(crate) fn body_ran(&self, short: bool) {
        if self.bodies_short.load(Relaxed) != short {
            self.bodies_short.store(short, Relaxed);
        }
    }

    /// The last body a worker ran was short: a caller whose call a spinning worker takes may
    /// spin for the result ([`caller_spin`]).
    pub(crate) fn bodies_short(&self) -> bool {
        self.bodies_short.load(Relaxed)
    }
}

/// One worker's record behind "spin only while it pays" (module docs).
#[derive(Debug, Clone)]
pub(crate) struct SpinRule {
    /// Among recent runs-dry, the share whose next job came back to back, in fixed point
    /// ([`SpinRule::FULL`] is all).
    back_to_back: u32,
    /// How the last job came.
    last: Gap,
    /// A probe is made once in this many runs-dry whose next job came within a spin.
    probe_every: u32,
    since_probe: u32,
    /// The last body was short enough for its caller to spin for the result: only then can
    /// a spin bring calls back to back (a caller of a longer body sleeps through it anyway).
    short_body: bool,
}

/// How long after a worker ran dry its next job came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Within [`BACK_TO_BACK`].
    BackToBack,
    /// Within a spin.
    WithinSpin,
    /// Later.
    Late,
}

impl SpinRule {
    const FULL: u32 = 1 << 16;

    /// The next job came `gap_ns` after this worker ran dry (`u64::MAX`: it parked out its
    /// keep-alive without one).
    pub(crate) fn record(&mut self, gap_ns: u64) {
        let gap = if u128::from(gap_ns) < BACK_TO_BACK.as_nanos() {
            Gap::BackToBack
        } else if u128::from(gap_ns) < SPIN_FOR.as_nanos() {
            Gap::WithinSpin
        } else {
            Gap::Late
        };
        // Each new run-dry weighs an eighth.
        let hit = if gap == Gap::BackToBack {
            Self::FULL / 8
        } else {
            0
        };
        self.back_to_back = self.back_to_back - self.back_to_back / 8 + hit;
        // Calls back to back, or a pause (which ends whatever pattern there was): probes
        // start afresh.
        if gap != Gap::WithinSpin {
            self.probe_every = 1;
            self.since_probe = 0;
        }
        self.last = gap;
    }

    /// The last body ran for `ns`; true if that was short enough for its caller to spin
    /// for the result.
    pub(crate) fn ran(&mut self, ns: u64) -> bool {
        self.short_body = u128::from(ns) < CALLER_SPIN.as_nanos();
        self.short_body
    }

    /// Whether [`should_spin`](SpinRule::should_spin) would say to spin if the worker ran
    /// dry now (it changes nothing).
    pub(crate) fn would_spin(&self) -> bool {
        self.last == Gap::BackToBack
            || self.back_to_back >= Self::FULL / 2
            || (self.last == Gap::WithinSpin
                && self.short_body
                && self.since_probe + 1 >= self.probe_every)
    }

    /// Whether to spin now, having just run dry.
    pub(crate) fn should_spin(&mut self) -> bool {
        if self.last == Gap::BackToBack || self.back_to_back >= Self::FULL / 2 {
            return true;
        }
        if self.last != Gap::WithinSpin || !self.short_body {
            return false;
        }
        self.since_probe += 1;
        if self.since_probe < self.probe_every {
            return false;
        }
        // A probe; the next one comes later unless this one brings calls back to back.
        self.since_probe = 0;
        self.probe_every = (self.probe_every * 2).min(PROBE_AT_MOST_EVERY);
        true
    }
}

impl Default for SpinRule {
    /// A new worker spins: it was started for work, and more usually follows.
    fn default() -> SpinRule {
        SpinRule {
            back_to_back: SpinRule::FULL,
            last: Gap::BackToBack,
            probe_every: 1,
            since_probe: 0,
            short_body: true,
        }
    }
}

/// How long a caller that has just queued a call spins for its result before it returns
/// `Pending`, when a spinning worker took the call: a trivial body answers in about a
/// microsecond, while going to sleep and being woken costs the caller's executor thread a
/// park and a wake-up (20-60 µs), which would otherwise be the whole cost of such a call.
const CALLER_SPIN: Duration = Duration::from_micros(10);

/// The caller's side of a fast round trip: right after queueing a call that a spinning
/// worker takes at once, on a pool whose bodies lately ran shorter than [`CALLER_SPIN`]
/// ([`Sleep::bodies_short`]), from a thread that awaits no other call, spin up to
/// [`CALLER_SPIN`] for `done()`. With other calls out, the thread has their tasks to run
/// instead (16 tasks calling back to back on a 2-worker runtime did 1.28 M calls/s without
/// a spin against 0.99 M with it).
///
/// No history of this thread's own spins decides it: a caller that stopped spinning after
/// a few misses (a worker preempted, a burst of another pool's work) slept between calls
/// from then on, so every gap its worker saw was a wake-up long, and the worker stopped
/// spinning too: the slow mode, from the caller's side. Whether the body will answer
/// within the spin is the pool's to know.
pub(crate) fn caller_spin(done: impl Fn() -> bool) {
    let start = Instant::now();
    let mut i: u32 = 0;
    loop {
        if done() {
            return;
        }
        i = i.wrapping_add(1);
        if i % 64 == 0 && start.elapsed() >= CALLER_SPIN {
            return;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    /// Runs-dry after which the worker spins, of `times` with bodies of `body_us` and the
    /// next job `gap_us` after each.
    fn spins_after(rule: &mut SpinRule, body_us: u64, gap_us: u64, times: usize) -> usize {
        (0..times)
            .filter(|_| {
                rule.ran(body_us * US);
                rule.record(gap_us * US);
                rule.should_spin()
            })
            .count()
    }

    fn spins(rule: &mut SpinRule, gap_us: u64, times: usize) -> usize {
        spins_after(rule, 0, gap_us, times)
    }

    #[test]
    fn back_to_back_calls_keep_the_worker_spinning_through_pauses_and_wake_ups() {
        let mut r = SpinRule::default();
        assert_eq!(spins(&mut r, 1, 50), 50);
        // A burst of 50 after 2 ms of idle: the first call comes late, the second after the
        // caller's wake-up, the rest back to back: the worker spins after every one.
        for _ in 0..20 {
            assert!(
                spins(&mut r, 2_000, 1) == 1,
                "after the first call of a burst"
            );
            assert!(spins(&mut r, 40, 1) == 1, "after the second");
            assert_eq!(spins(&mut r, 1, 48), 48);
        }
    }

    /// The slow mode: the worker parks, so the caller sleeps between calls and each gap
    /// is its wake-up (30 µs). A worker that spins instead makes the next gap back to back
    /// (the caller spins for its result and calls again at once). Calls until the mode is
    /// left, from `rule`.
    fn slow_calls(mut r: SpinRule) -> usize {
        let mut spun = false;
        let mut slow = 0;
        for call in 0..500 {
            r.ran(0);
            r.record(if spun { US } else { 30 * US });
            spun = r.should_spin();
            if !spun {
                slow = call + 1;
            }
        }
        assert!(r.back_to_back >= SpinRule::FULL / 2, "{r:?}");
        slow
    }

    #[test]
    fn a_caller_that_sleeps_between_calls_is_probed_back_into_back_to_back_calls() {
        let cold = SpinRule {
            back_to_back: 0,
            last: Gap::Late,
            probe_every: 1,
            since_probe: 0,
            short_body: true,
        };
        assert!(slow_calls(cold.clone()) <= 1, "after a pause");
        // Even after a long stream of gaps within a spin that no probe shortened.
        let stale = SpinRule {
            last: Gap::WithinSpin,
            probe_every: PROBE_AT_MOST_EVERY,
            ..cold
        };
        assert!(slow_calls(stale) <= PROBE_AT_MOST_EVERY as usize);
    }

    #[test]
    fn a_light_load_within_a_spin_never_spins_when_the_caller_sleeps_through_the_body() {
        // Calls 0.2 ms apart around a 0.1 ms body: gaps of 50-80 µs, which a spin would
        // catch, but its caller sleeps through the body whatever the worker does.
        let mut r = SpinRule::default();
        let _ = spins_after(&mut r, 100, 60, 20);
        assert_eq!(spins_after(&mut r, 100, 60, 1_000), 0);
    }

    #[test]
    fn trivial_calls_paced_within_a_spin_probe_ever_more_rarely() {
        // A caller that spins for its result but then waits 60 µs before the next call:
        // spinning buys nothing.
        let mut r = SpinRule::default();
        let _ = spins(&mut r, 60, 100);
        let n = spins(&mut r, 60, 1_000);
        assert!(n <= 1_000 / 64 + 1, "{n} spins in 1000 runs-dry");
    }

    #[test]
    fn calls_later_than_a_spin_never_make_it_spin() {
        let mut r = SpinRule::default();
        let _ = spins(&mut r, 900, 10);
        assert_eq!(spins(&mut r, 900, 1_000), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Submit against spin, park and wake-up under every interleaving loom finds:
    //! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.

    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// A queue of `n` jobs that only counts (the real queue pushes, then counts, `SeqCst`).
    struct Jobs(AtomicUsize);
    impl Jobs {
        fn push(&self) {
            self.0.fetch_add(1, SeqCst);
        }
        fn take(&self) -> bool {
            let mut n = self.0.load(SeqCst);
            while n > 0 {
                match self.0.compare_exchange(n, n - 1, SeqCst, SeqCst) {
                    Ok(_) => return true,
                    Err(actual) => n = actual,
                }
            }
            false
        }
        fn any(&self) -> bool {
            self.0.load(SeqCst) > 0
        }
    }

    /// A worker's loop: take jobs, spin (one look) if `spin`, park; the one that sees all
    /// `total` jobs done closes, which lets the other out.
    fn worker(sleep: &Sleep, jobs: &Jobs, done: &AtomicUsize, total: usize, spin: bool) {
        let parker = Parker::new();
        // A spinning worker starts looking as it finishes a job with nothing queued, as
        // the real one does before it hands over the result.
        let mut looking = false;
        loop {
            while jobs.take() {
                if std::mem::take(&mut looking) {
                    sleep.found_work();
                }
                done.fetch_add(1, SeqCst);
                let _ = sleep.job_taken(jobs.0.load(SeqCst));
                if spin && !jobs.any() {
                    looking = sleep.start_looking();
                }
            }
            if done.load(SeqCst) == total {
                if looking {
                    sleep.found_work();
                }
                // Every job ran: let the other worker out too.
                sleep.close();
                return;
            }
            let was_looking = std::mem::take(&mut looking);
            if (spin || was_looking) && sleep.spin(was_looking, || jobs.any(), || false) {
                continue;
            }
            match sleep.park(&parker, None, || jobs.any()) {
                Parked::Woken | Parked::TimedOut(_) => {}
                Parked::Closed => return,
            }
        }
    }

    /// Two jobs submitted one after the other against two workers that spin or park: every
    /// job runs, so no wake-up is lost and no worker sleeps while a job waits with nobody
    /// searching (loom reports a deadlock if every thread ends up parked).
    #[test]
    fn loom_submit_against_park_and_wake_loses_no_job() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let sleep = Arc::new(Sleep::new(1));
            let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
            let done = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = [true, false]
                .into_iter()
                .map(|spin| {
                    let (sleep, jobs, done) =
                        (Arc::clone(&sleep), Arc::clone(&jobs), Arc::clone(&done));
                    thread::spawn(move || worker(&sleep, &jobs, &done, 2, spin))
                })
                .collect();
            for _ in 0..2 {
                jobs.push();
                let _ = sleep.job_queued();
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(done.load(SeqCst), 2);
            assert_eq!(sleep.searching(), 0, "a worker left counted as searching");
        });
    }

    /// A submitter's wake-up racing a parked worker's keep-alive running out (a keep-alive
    /// of zero): the job is taken by the worker, claimed or on its way out (the pool's exit
    /// path looks at the queue once more), or the submitter learns that nobody is idle
    /// and the job is still there for the thread the pool then starts.
    #[test]
    fn loom_a_claim_racing_a_keep_alive_is_given_or_seen() {
        loom::model(|| {
            let sleep = Arc::new(Sleep::new(1));
            let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
            let w = {
                let (sleep, jobs) = (Arc::clone(&sleep), Arc::clone(&jobs));
                thread::spawn(move || {
                    let parker = Parker::new();
                    match sleep.park(&parker, Some(Duration::ZERO), || jobs.any()) {
                        Parked::Woken => {
                            assert!(jobs.take(), "woken, or it saw work: the job is there");
                            true
                        }
                        Parked::TimedOut(_) => jobs.take(),
                        Parked::Closed => unreachable!(),
                    }
                })
            };
            jobs.push();
            let notified = sleep.job_queued();
            let ran = w.join().unwrap();
            match notified {
                Notified::Woke => assert!(ran, "a claimed worker must run the job"),
                Notified::NoneIdle => assert!(ran || jobs.any()),
                Notified::Searcher => unreachable!("nobody spins here"),
            }
            assert_eq!(sleep.searching(), 0);
            assert_eq!(sleep.sleeping(), 0);
        });
    }
}
