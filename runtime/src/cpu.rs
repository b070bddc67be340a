//! Is a thread blocked, or busy on the CPU? The growth rule needs to tell them apart: a
//! thread blocked in a body (on I/O, a lock, a sleep) leaves its core free, so another
//! thread gets work done; a thread computing, or waiting for a core, does not.
//!
//! On Linux the scheduler says what each thread is doing now: its state in
//! `/proc/self/task/<tid>/stat` is `R` while it runs or waits for a core, `S` or `D` while it
//! sleeps. (The cumulative times of `schedstat` looked like the better signal, but for a
//! thread that keeps running they are brought up to date only at scheduler ticks and
//! switches, so over a millisecond a busy thread can look idle.) Elsewhere, or when the file
//! cannot be read, the answer is [`Activity::Unknown`] and the growth rule falls back to
//! what it can see without the OS: how long bodies have run and how long the queue waited.

/// What a thread is doing, as far as the OS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// No way to know.
    Unknown,
    /// Off the CPU, sleeping or waiting on I/O: another thread would find a core free.
    Blocked,
    /// On a CPU, or runnable and waiting for one.
    Busy,
}

/// The OS id of the calling thread, 0 if it cannot be known here.
pub(crate) fn current_tid() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // `/proc/thread-self` links to `<pid>/task/<tid>`.
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// What thread `tid` of this process is doing now.
pub(crate) fn activity(tid: u32) -> Activity {
    if tid == 0 {
        return Activity::Unknown;
    }
    #[cfg(target_os = "linux")]
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
            return Activity::Unknown;
        };
        // `pid (comm) S ...`: the name may hold spaces and parentheses; the state follows
        // the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        match state {
            Some('R') => Activity::Busy,
            Some('S' | 'D') => Activity::Blocked,
            _ => Activity::Unknown,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Activity::Unknown
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_sleeping_thread_is_blocked_and_a_running_one_busy() {
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(current_tid()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(activity(tid), Activity::Blocked);
        sleeper.join().unwrap();
        // This thread is running while it reads itself.
        assert_eq!(activity(current_tid()), Activity::Busy);
        let _ = Instant::now();
    }
}
