//! The timer behind `#[offload(timeout = ..)]`: one lazily started thread for the whole
//! process, sleeping until the earliest deadline, then expiring the jobs that are due.
//!
//! Expiring only flags the job and wakes its future; the future itself abandons the job
//! (so a body that has not started never starts) and resolves with a timeout error. The
//! timer holds jobs weakly: a job that finished or was dropped costs the timer nothing but
//! its entry until the deadline passes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, Weak};
use std::time::Instant;

use crate::job::Run;
use crate::sync::lock_std as lock;

struct Entry {
    at: Instant,
    seq: u64,
    job: Weak<dyn Run>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Timer {
    /// Deadlines, earliest first, and a sequence number to keep entries distinct.
    state: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    /// Signalled when a new earliest deadline arrives.
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            state: Mutex::new((BinaryHeap::new(), 0)),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("offthread-timer".to_owned())
            .stack_size(64 << 10)
            .spawn(move || t.run())
            .expect("offthread: could not start the timer thread");
        t
    })
}

/// Expires `job` at `at` unless it is gone by then.
pub(crate) fn expire_at(at: Instant, job: Weak<dyn Run>) {
    let t = timer();
    let mut st = lock(&t.state);
    let seq = st.1;
    st.1 += 1;
    let earliest = st.0.peek().is_none_or(|Reverse(e)| at < e.at);
    st.0.push(Reverse(Entry { at, seq, job }));
    drop(st);
    if earliest {
        t.changed.notify_one();
    }
}

impl Timer {
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while st.0.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = st.0.pop() {
                    due.push(e.job);
                }
            }
            if !due.is_empty() {
                drop(st);
                for job in due {
                    if let Some(job) = job.upgrade() {
                        job.expire();
                    }
                }
                st = lock(&self.state);
                continue;
            }
            st = match st.0.peek() {
                Some(Reverse(e)) => {
                    let wait = e.at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(st, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}
