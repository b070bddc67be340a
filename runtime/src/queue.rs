//! The queue of jobs waiting for a worker, and its count.
//!
//! Jobs wait in a few mutex-guarded deques (shards). A submitting thread always pushes to
//! the same shard, chosen once per thread, so executor threads do not contend on one lock.
//! Each shard publishes when its oldest entry was queued (`head_at`), and a worker pops from
//! the shard whose head is oldest: across shards, jobs start in the order they were queued
//! (FIFO), at the cost of a few relaxed loads per pop, not a lock per shard.
//!
//! Jobs that already hold a `limit = N` permit go to a separate *urgent* deque that workers
//! take first: they have waited their turn at the permit, and a permit should not be held
//! while its job queues behind unrelated work (with `limit = 1` that would cap the function
//! at one call per queue wait).
//!
//! Lock-free segment queues (crossbeam's `SegQueue`, `concurrent-queue`) were weighed: they
//! allocate a block every few dozen pushes, so a call would cost more than its one
//! allocation; a deque's buffer is reused once it has grown.
//!
//! # Push, then count
//!
//! `len` counts the entries of every deque. A push counts *after* the entry is in its deque
//! and a pop uncounts *after* it took one, so `len` never exceeds the entries really there:
//! a worker that reads `len > 0` will find a job (or a racing worker took it). It may dip
//! below zero for an instant (a pop's uncount before the push's count); [`Queue::len`]
//! reads that as zero.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use crate::job::JobRef;
use crate::sync::lock_std as lock;

/// A value on a cache line of its own, so counters written by different threads do not
/// slow each other down.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// `head_at` of an empty shard.
const EMPTY: u64 = u64::MAX;

/// How far, in nanoseconds, a worker's own shard may lag the oldest head and still be
/// served first (see [`Queue::pop`]): far below any wait a caller would notice, far above
/// the spread of heads when microsecond jobs stream in.
const FIFO_SLACK: u64 = 50_000;

/// A deque that ran dry holding room for more entries than this gives the memory back (a
/// burst of a million queued calls leaves no 24 MB behind); below it, the room is kept so
/// that steady traffic never reallocates.
const SHRINK_ABOVE: usize = 4096;

/// A queued job and when it was queued (nanoseconds on the pool's clock). The time lives
/// here rather than in the job, whose allocation every call pays for.
pub(crate) struct Entry {
    pub(crate) job: JobRef,
    pub(crate) at: u64,
}

/// One deque and when its oldest entry was queued.
#[derive(Default)]
struct Shard {
    jobs: Mutex<VecDeque<Entry>>,
    /// `queued_at` of the front entry, [`EMPTY`] when there is none. Written under `jobs`'
    /// lock; read without it to choose a shard (a stale value only costs a retry).
    head_at: AtomicU64,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            jobs: Mutex::default(),
            head_at: AtomicU64::new(EMPTY),
        }
    }

    fn push(&self, entry: Entry) {
        let mut jobs = lock(&self.jobs);
        if jobs.is_empty() {
            self.head_at.store(entry.at, Relaxed);
        }
        jobs.push_back(entry);
    }

    fn pop(&self) -> Option<Entry> {
        let mut jobs = lock(&self.jobs);
        let entry = jobs.pop_front()?;
        let next = jobs.front().map_or(EMPTY, |e| e.at);
        self.head_at.store(next, Relaxed);
        if jobs.is_empty() && jobs.capacity() > SHRINK_ABOVE {
            jobs.shrink_to(0);
        }
        Some(entry)
    }

    fn drain(&self) -> Vec<Entry> {
        let mut jobs = lock(&self.jobs);
        self.head_at.store(EMPTY, Relaxed);
        let all = jobs.drain(..).collect();
        jobs.shrink_to(0);
        all
    }
}

/// The jobs waiting for a worker.
pub(crate) struct Queue {
    /// The plain jobs, split in shards; a power-of-two count.
    shards: Box<[Padded<Shard>]>,
    /// Jobs that already hold a `limit` permit: taken before the shards.
    urgent: Padded<Shard>,
    /// Entries in `urgent` (counted like `len`).
    urgent_len: AtomicIsize,
    /// Entries in every deque, counted after the push and after the pop (module docs).
    len: Padded<AtomicIsize>,
}

thread_local! {
    /// This thread's shard, chosen on its first push.
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

impl Queue {
    /// A queue with enough shards that `cpus` submitting threads rarely share one.
    pub(crate) fn new(cpus: usize) -> Queue {
        let shards = (cpus * 2).next_power_of_two().max(2);
        Queue {
            shards: (0..shards).map(|_| Padded(Shard::new())).collect(),
            urgent: Padded(Shard::new()),
            urgent_len: AtomicIsize::new(0),
            len: Padded::default(),
        }
    }

    /// Queues `job`, queued at `at`, ahead of plain jobs if `urgent`.
    pub(crate) fn push(&self, job: JobRef, at: u64, urgent: bool) {
        let entry = Entry { job, at };
        if urgent {
            self.urgent.push(entry);
            self.urgent_len.fetch_add(1, SeqCst);
        } else {
            self.shards[self.my_shard()].push(entry);
        }
        // Pushed, then counted: whoever sees the count can find the job.
        self.len.fetch_add(1, SeqCst);
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

    /// Entries queued, as far as the count knows (never more than are there).
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.len.load(SeqCst)).unwrap_or(0)
    }

    /// True if the count says there is something to pop; a cheaper read for spinning.
    pub(crate) fn looks_empty(&self) -> bool {
        self.len.load(Relaxed) <= 0
    }

    /// The oldest entry: urgent ones first, then the plain shard whose head is oldest.
    pub(crate) fn pop(&self, home: usize) -> Option<Entry> {
        if self.len() == 0 {
            return None;
        }
        if self.urgent_len.load(SeqCst) > 0 {
            if let Some(job) = self.urgent.pop() {
                self.urgent_len.fetch_sub(1, SeqCst);
                self.len.fetch_sub(1, SeqCst);
                return Some(job);
            }
        }
        // A few tries at the oldest head; heads move under us only when others pop too.
        // The worker's own shard goes first while its head is within `FIFO_SLACK` of the
        // oldest: workers then mostly keep to different shards (and locks), and the order
        // is first come, first served to within that slack.
        let home = home & (self.shards.len() - 1);
        for _ in 0..self.shards.len() {
            let oldest = self
                .shards
                .iter()
                .map(|s| s.head_at.load(Relaxed))
                .enumerate()
                .min_by_key(|&(_, at)| at)?;
            if oldest.1 == EMPTY {
                break;
            }
            let own = self.shards[home].head_at.load(Relaxed);
            let pick = if own != EMPTY && own <= oldest.1.saturating_add(FIFO_SLACK) {
                home
            } else {
                oldest.0
            };
            if let Some(job) = self.shards[pick].pop() {
                self.len.fetch_sub(1, SeqCst);
                return Some(job);
            }
        }
        // Heads still moving (or a push between its entry and its `head_at`): any entry.
        for shard in self.shards.iter() {
            if let Some(job) = shard.pop() {
                self.len.fetch_sub(1, SeqCst);
                return Some(job);
            }
        }
        None
    }

    /// Takes every entry out (shutdown), uncounting them.
    pub(crate) fn drain(&self) -> Vec<Entry> {
        let mut all = self.urgent.drain();
        self.urgent_len.fetch_sub(count(all.len()), SeqCst);
        for shard in self.shards.iter() {
            all.extend(shard.drain());
        }
        self.len.fetch_sub(count(all.len()), SeqCst);
        all
    }
}

/// A queue count as the signed type of the counters.
fn count(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{new_job, Outcome, RunHooks};
    use std::sync::Arc;

    struct NoHooks;
    impl RunHooks for NoHooks {
        fn started(&self) {}
        fn finished(&self, _: Outcome) {}
        fn release_slot(&self) {}
    }

    fn job(at: u64, tag: u32, log: &Arc<Mutex<Vec<u32>>>) -> Entry {
        let log = Arc::clone(log);
        let job = new_job(move || lock(&log).push(tag)).erase();
        Entry { job, at }
    }

    #[test]
    fn pops_are_fifo_across_shards_and_urgent_jobs_go_first() {
        let q = Queue::new(2);
        let log = Arc::new(Mutex::new(Vec::new()));
        // Three submitting threads (three shards), their pushes interleaved in time, each
        // a millisecond after the last: far beyond the slack a worker's own shard gets.
        for (i, shard) in [(0, 1), (1, 2), (2, 0), (3, 1), (4, 2), (5, 0)] {
            q.shards[shard].push(job(i * 1_000_000, u32::try_from(i).unwrap(), &log));
            q.len.fetch_add(1, SeqCst);
        }
        let urgent = job(9, 99, &log);
        q.push(urgent.job, urgent.at, true);
        assert_eq!(q.len(), 7);
        while let Some(e) = q.pop(0) {
            e.job.run(&NoHooks);
        }
        assert_eq!(*lock(&log), [99, 0, 1, 2, 3, 4, 5]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn drain_takes_everything_and_uncounts_it() {
        let q = Queue::new(4);
        let log = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let e = job(i, 0, &log);
            q.push(e.job, e.at, i % 2 == 0);
        }
        assert_eq!(q.drain().len(), 5);
        assert_eq!(q.len(), 0);
        assert!(q.pop(0).is_none());
    }
}
