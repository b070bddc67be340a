//! The timer behind `#[offload(timeout = ..)]`: one lazily started thread for the whole
//! process, sleeping until the earliest deadline, then expiring the jobs that are due.
//!
//! Expiring only flags the job and wakes its future; the future itself abandons the job
//! (so a body that has not started never starts) and resolves with a timeout error. An
//! entry holds a handle to its job, and the future removes its entry when it is dropped
//! before the deadline, so calls with long timeouts at a high rate do not pile up entries
//! nor keep their jobs allocated.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use crate::job::JobRef;
use crate::sync::lock_std as lock;

/// An entry's key: its deadline, and a sequence number to keep keys distinct.
pub(crate) type Key = (Instant, u64);

/// The jobs waiting for their deadlines, earliest first.
type Entries = BTreeMap<Key, JobRef>;

/// What the timer's lock guards.
#[derive(Default)]
struct State {
    /// Jobs by deadline, earliest first.
    entries: Entries,
    /// The sequence number of the next entry.
    next_seq: u64,
}

struct Timer {
    state: Mutex<State>,
    /// Signalled when a new earliest deadline arrives.
    changed: Condvar,
}

/// The timer, started on first use. If the OS refuses the thread, the error is returned
/// and the next call tries again.
fn timer() -> std::io::Result<&'static Arc<Timer>> {
    static TIMER: OnceLock<Arc<Timer>> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    // In tests, a refusal set by the test fails the timer as a refused start would, even
    // when another test started it already.
    crate::priority::injected_refusal()?;
    if let Some(t) = TIMER.get() {
        return Ok(t);
    }
    let _starting = lock(&STARTING);
    if let Some(t) = TIMER.get() {
        return Ok(t);
    }
    let t = Arc::new(Timer {
        state: Mutex::default(),
        changed: Condvar::new(),
    });
    let run = Arc::clone(&t);
    let builder = std::thread::Builder::new()
        .name("offthread-timer".to_owned())
        .stack_size(64 << 10);
    crate::priority::spawn(builder, move || run.run())?;
    Ok(TIMER.get_or_init(|| t))
}

/// Expires `job` at `at` unless [`cancel`]led first; returns the key to cancel with, or
/// the error if the timer thread could not be started.
pub(crate) fn expire_at(at: Instant, job: JobRef) -> std::io::Result<Key> {
    let t = timer()?;
    let mut st = lock(&t.state);
    let key = (at, st.next_seq);
    st.next_seq += 1;
    let earliest = st
        .entries
        .first_key_value()
        .is_none_or(|(first, _)| key < *first);
    st.entries.insert(key, job);
    drop(st);
    if earliest {
        t.changed.notify_one();
    }
    Ok(key)
}

/// Forgets an entry whose call ended before its deadline.
pub(crate) fn cancel(key: Key) {
    // A key exists only if the timer does.
    if let Ok(t) = timer() {
        let removed = lock(&t.state).entries.remove(&key);
        drop(removed);
    }
}

/// Entries waiting, for tests.
#[cfg(test)]
pub(crate) fn pending() -> usize {
    timer().map_or(0, |t| lock(&t.state).entries.len())
}

impl Timer {
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while st
                .entries
                .first_key_value()
                .is_some_and(|(key, _)| key.0 <= now)
            {
                if let Some((_, job)) = st.entries.pop_first() {
                    due.push(job);
                }
            }
            if !due.is_empty() {
                drop(st);
                for job in due {
                    job.expire();
                }
                st = lock(&self.state);
                continue;
            }
            st = match st.entries.first_key_value() {
                Some((key, _)) => {
                    let wait = key.0.saturating_duration_since(now);
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

#[cfg(test)]
mod tests {
    use super::pending;
    use crate::__private::with_timeout;
    use crate::{Error, Pool};
    use std::future::Future;
    use std::task::{Context, Poll};
    use std::time::Duration;

    #[test]
    fn calls_that_end_before_their_deadline_leave_no_entry() {
        let pool = Pool::builder().build();
        let before = pending();
        for i in 0..100 {
            let call = with_timeout(
                pool.spawn(move || Ok::<_, Error>(i)),
                Duration::from_secs(60),
            );
            assert_eq!(futures::executor::block_on(call).unwrap(), i);
        }
        let waker = futures::task::noop_waker();
        for _ in 0..100 {
            let mut call = with_timeout(
                pool.spawn(|| {
                    std::thread::sleep(Duration::from_millis(1));
                    Ok::<_, Error>(())
                }),
                Duration::from_secs(60),
            );
            let polled = std::pin::Pin::new(&mut call).poll(&mut Context::from_waker(&waker));
            assert!(matches!(polled, Poll::Pending | Poll::Ready(Ok(()))));
            drop(call);
        }
        assert_eq!(
            pending(),
            before,
            "every entry was removed when its call ended"
        );
    }

    #[test]
    fn a_timeout_that_cannot_be_kept_fails_the_call_and_its_body_never_runs() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::Arc;
        let pool = Pool::builder().build();
        let ran = Arc::new(AtomicBool::new(false));
        let body_ran = Arc::clone(&ran);
        crate::priority::refuse_next_starts(1);
        let call = with_timeout(
            pool.spawn(move || {
                body_ran.store(true, SeqCst);
                Ok::<_, Error>(())
            }),
            Duration::from_secs(60),
        );
        let err = futures::executor::block_on(call).unwrap_err();
        assert!(err.is_no_threads(), "{err}");
        assert!(err.to_string().contains("offthread-timer"), "{err}");
        // The next call gets its timer.
        let call = with_timeout(pool.spawn(|| Ok::<_, Error>(7)), Duration::from_secs(60));
        assert_eq!(futures::executor::block_on(call).unwrap(), 7);
        assert!(
            !ran.load(SeqCst),
            "the failed call's body was dropped unrun"
        );
        assert_eq!(pool.metrics().cancelled, 1);
    }
}
