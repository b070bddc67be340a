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

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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

/// At most this many threads' `stat` files are kept open at once (by all pools of the
/// process), so that a pool of hundreds of threads does not take hundreds of the process's
/// file descriptors; beyond it a reading opens and closes the file.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const MAX_OPEN: usize = 64;

/// Files kept open by [`ThreadState`]s now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Reads what one thread of this process is doing. The thread's `stat` file is kept open
/// between readings, so each reading is one `pread` (about 3 µs here, against 12 µs to
/// open, read and close it: the monitor reads up to 32 a millisecond while a pool of
/// blocked bodies grows).
#[derive(Default)]
pub(crate) struct ThreadState {
    /// The thread the open file belongs to, and the file.
    open: Option<(u32, std::fs::File)>,
}

impl ThreadState {
    /// What thread `tid` is doing now.
    pub(crate) fn read(&mut self, tid: u32) -> Activity {
        if tid == 0 {
            return Activity::Unknown;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            if self.open.as_ref().is_some_and(|(t, _)| *t != tid) {
                self.close();
            }
            let mut once = None;
            let file = match &self.open {
                Some((_, file)) => file,
                None => {
                    let Ok(file) = std::fs::File::open(format!("/proc/self/task/{tid}/stat"))
                    else {
                        return Activity::Unknown;
                    };
                    if OPEN.fetch_add(1, Relaxed) < MAX_OPEN {
                        &self.open.insert((tid, file)).1
                    } else {
                        OPEN.fetch_sub(1, Relaxed);
                        once.insert(file)
                    }
                }
            };
            // `pid (comm) S ...`: the name is at most 15 bytes, so the state is well within
            // the first 128; each read at offset 0 makes the kernel write the line afresh.
            let mut buf = [0u8; 128];
            match file.read_at(&mut buf, 0) {
                Ok(n) if n > 0 => parse_state(&buf[..n]),
                _ => {
                    // The thread is gone: let the file go too.
                    self.close();
                    Activity::Unknown
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Activity::Unknown
        }
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            OPEN.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        self.close();
    }
}

/// The state in a `stat` line: the name may hold spaces and parentheses, so the state is
/// the first letter after the last `)`.
fn parse_state(line: &[u8]) -> Activity {
    let Some(close) = line.iter().rposition(|&b| b == b')') else {
        return Activity::Unknown;
    };
    match line[close + 1..].iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'R') => Activity::Busy,
        Some(b'S' | b'D') => Activity::Blocked,
        _ => Activity::Unknown,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let mut state = ThreadState::default();
        assert_eq!(state.read(tid), Activity::Blocked);
        // Read again through the file kept open.
        assert_eq!(state.read(tid), Activity::Blocked);
        sleeper.join().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(state.read(tid), Activity::Unknown, "the thread has exited");
        // This thread is running while it reads itself (the file is opened afresh).
        assert_eq!(state.read(current_tid()), Activity::Busy);
        assert_eq!(state.read(0), Activity::Unknown);
    }

    #[test]
    fn past_the_cap_on_open_files_a_reading_still_answers() {
        let mut states: Vec<ThreadState> =
            (0..MAX_OPEN + 8).map(|_| ThreadState::default()).collect();
        for state in &mut states {
            assert_eq!(state.read(current_tid()), Activity::Busy);
        }
        assert!(OPEN.load(Relaxed) <= MAX_OPEN);
        let kept = states.iter().filter(|s| s.open.is_some()).count();
        assert!(kept <= MAX_OPEN, "{kept} files kept open");
        assert!(
            kept < states.len(),
            "the last readings opened and closed their file"
        );
        drop(states);
    }
}
