//! [`on_cancel`]: letting a cancel reach work that cannot poll [`is_cancelled`].
//!
//! A body blocked inside a database driver cannot check
//! [`is_cancelled`](crate::is_cancelled); what can stop it is another thread asking the
//! server (`pg_cancel_backend`), the library (SQLite's interrupt) or the kernel (shutting a
//! socket down). `on_cancel(f)` registers such an `f` for the call whose body is running on
//! this thread. Each pool keeps its registered hooks by job, and one thread of its own,
//! started the first time a hook fires, runs them.
//!
//! # The protocol
//!
//! - **Register** (the body, on its worker): insert the hook under the pool's lock, then
//!   look at the job's `CANCELLED` flag and the pool's `stopping` flag; if either is set,
//!   fire the hook now.
//! - **Cancel** (whoever drops the future or sees it time out; shutdown): set the flag
//!   first (`Task::abandon`'s compare-and-swap, `stopping`'s store), then fire the job's
//!   hooks (or every hook, for shutdown) found under the lock.
//!
//!   The lock orders the two: if the canceller's look comes first, its flag was set before
//!   it and so is seen by the registration's look after the lock; if the registration comes
//!   first, the canceller finds the hook. Either way the hook fires, and it may fire from
//!   both sides, so firing only hands it to the cancel thread, which runs each at most once
//!   (it takes `f` out of the hook).
//! - **Return** (the worker, when the body has returned): remove the job's hooks and take
//!   `f` out of each, dropping it unrun. Taking `f` locks the hook, which the cancel thread
//!   holds while `f` runs: so the worker waits for an `f` already running, and no `f` runs
//!   after its body's worker went on to another job. A cancel meant for one query cannot
//!   land on the next query of the same connection.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use crate::job::contain;
use crate::sync::{lock, Mutex, Ordering::SeqCst};

type Callback = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// Hooks registered on this thread so far: a worker that sees it move while a body ran
    /// removes that job's hooks ([`Cancels::returned`]), and takes no lock otherwise.
    static REGISTERED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The count of hooks registered on this thread, to compare before and after a body.
pub(crate) fn registered_here() -> u64 {
    REGISTERED.get()
}

/// One registered `f`, taken out by whoever runs or drops it.
struct Hook(Mutex<Option<Callback>>);

impl Hook {
    /// Runs `f` unless it was run or dropped already, holding the hook's lock meanwhile
    /// (so that [`Cancels::returned`] waits for it). A panic in `f` is contained.
    fn run(&self) {
        let mut f = lock(&self.0);
        if let Some(f) = f.take() {
            contain(f);
        }
    }
}

/// The hooks registered on one pool, and its cancel thread.
pub(crate) struct Cancels {
    name: Arc<str>,
    /// The hooks of the bodies running now, by job.
    hooks: Mutex<HashMap<usize, Vec<Arc<Hook>>>>,
    /// The cancel thread's inbox, once it has started. (A std mutex: loom models the hooks,
    /// not the thread.)
    runner: std::sync::Mutex<Option<Sender<Arc<Hook>>>>,
}

impl Cancels {
    pub(crate) fn new(name: Arc<str>) -> Cancels {
        Cancels {
            name,
            hooks: Mutex::new(HashMap::new()),
            runner: std::sync::Mutex::new(None),
        }
    }

    /// Registers `f` for the job `job`; `cancelled` says whether it is cancelled already,
    /// looked at after the registration.
    fn register(&self, job: usize, f: Callback, cancelled: impl FnOnce() -> bool) {
        REGISTERED.set(REGISTERED.get().wrapping_add(1));
        if let Some(hook) = self.add(job, f, cancelled) {
            self.fire(vec![hook]);
        }
    }

    /// The registration proper: the hook to fire if the call is cancelled already.
    fn add(&self, job: usize, f: Callback, cancelled: impl FnOnce() -> bool) -> Option<Arc<Hook>> {
        let hook = Arc::new(Hook(Mutex::new(Some(f))));
        lock(&self.hooks)
            .entry(job)
            .or_default()
            .push(Arc::clone(&hook));
        cancelled().then_some(hook)
    }

    /// The call of `job` was cancelled while its body runs: runs its hooks.
    pub(crate) fn cancelled(&self, job: usize) {
        self.fire(self.hooks_of(Some(job)));
    }

    /// The pool is shutting down: runs every hook of the bodies running now.
    pub(crate) fn shutting_down(&self) {
        self.fire(self.hooks_of(None));
    }

    /// The hooks of `job`, or of every job; taken after the cancel's flag was set.
    ///
    /// Always under the lock, even on a pool that never registered a hook: a flag read
    /// without it ("no hook yet") would race the registration's look at the cancel's flag
    /// (two stores and two loads of different words, which only `SeqCst` on all four would
    /// order), and the loom model of that race failed. A cancel of a running body is rare.
    fn hooks_of(&self, job: Option<usize>) -> Vec<Arc<Hook>> {
        let hooks = lock(&self.hooks);
        match job {
            Some(job) => hooks.get(&job).cloned().unwrap_or_default(),
            None => hooks.values().flatten().cloned().collect(),
        }
    }

    /// The body of `job` returned: its hooks are dropped unrun, or waited for if running.
    pub(crate) fn returned(&self, job: usize) {
        let hooks = lock(&self.hooks).remove(&job);
        for hook in hooks.into_iter().flatten() {
            let f = lock(&hook.0).take();
            contain(|| drop(f));
        }
    }

    /// Hands `hooks` to the cancel thread, starting it if need be. If the OS refuses the
    /// thread, they are not run, and dropped when their bodies return (the next cancel
    /// tries to start the thread again).
    fn fire(&self, hooks: Vec<Arc<Hook>>) {
        if hooks.is_empty() {
            return;
        }
        let mut runner = crate::sync::lock_std(&self.runner);
        if runner.is_none() {
            *runner = self.start();
        }
        if let Some(inbox) = runner.as_ref() {
            for hook in hooks {
                // The thread only ends when the inbox is dropped, with the pool.
                let _ = inbox.send(hook);
            }
        }
    }

    fn start(&self) -> Option<Sender<Arc<Hook>>> {
        let (inbox, hooks) = channel::<Arc<Hook>>();
        let builder = std::thread::Builder::new()
            .name(format!("{}-cancel", self.name))
            // User code runs here (a driver's cancel may open a connection): a full stack.
            .stack_size(2 << 20);
        let spawned = crate::priority::spawn(builder, move || {
            for hook in hooks {
                hook.run();
            }
        });
        spawned.ok().map(|_detached| inbox)
    }
}

/// Runs `f` if the call whose body is running on this thread is cancelled while it runs:
/// its future dropped, its `timeout` passed, or its pool shut down.
///
/// A body blocked in a driver cannot poll [`is_cancelled`](crate::is_cancelled), so a
/// dropped call's query would run on to its end, holding its connection and the server's
/// resources. Register with `on_cancel` what makes it return early: SQLite's interrupt
/// handle, PostgreSQL's `pg_cancel_backend` of the connection's backend, a socket's
/// `shutdown`. Then:
///
/// - `f` runs at most once, on a thread of the pool's own (`{name}-cancel`), never on the
///   thread that dropped the future, and soon after the cancel (a cancel thread runs the
///   hooks one after another: keep them short, and never make `f` wait for the body).
/// - If the body returns first, `f` is dropped unrun, before the call's result is handed
///   over. An `f` already running when the body returns is waited for, before the worker
///   takes its next job, so it cannot reach the next call on the same connection.
/// - Registered on a call that is already cancelled, `f` runs at once (on the cancel
///   thread), which may be before the work it should stop has begun: a body that can
///   should look at [`is_cancelled`](crate::is_cancelled) after registering, before it
///   starts that work.
/// - Several calls to `on_cancel` in one body register several hooks; a nested call run
///   inline registers for itself. Outside a body, `f` is dropped.
///
/// The body still runs to its end (the cancel only makes it end sooner, typically with an
/// error such as "canceling statement due to user request"), and its result is dropped.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use offthread::offload;
///
/// // Stands for a blocking query that an interrupt handle can stop.
/// #[offload(timeout = "50ms")]
/// fn slow_query() -> Result<&'static str, offthread::Error> {
///     let (interrupt, interrupted) = mpsc::channel::<()>();
///     offthread::on_cancel(move || { let _ = interrupt.send(()); });
///     match interrupted.recv_timeout(Duration::from_secs(10)) {
///         Ok(()) => Ok("interrupted"),
///         Err(_) => Ok("finished"),
///     }
/// }
///
/// let err = futures::executor::block_on(slow_query()).unwrap_err();
/// assert!(err.is_timeout()); // and the body returned at once instead of after 10 s
/// ```
pub fn on_cancel<F: FnOnce() + Send + 'static>(f: F) {
    match crate::worker::current_call() {
        Some(call) => call.cancels.register(call.job.id(), Box::new(f), || {
            call.job.is_cancelled() || call.stopping.load(SeqCst)
        }),
        None => drop(f),
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! The hooks' protocol under every interleaving loom finds:
    //! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.
    //! Firing runs the hooks on the cancelling thread here, where the pool hands them to
    //! its cancel thread: the hooks' own lock is what is modelled.

    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::thread;

    const JOB: usize = 1;

    fn run_all(hooks: Vec<Arc<Hook>>) {
        for hook in hooks {
            hook.run();
        }
    }

    /// A cancel racing the registration: the hook runs, exactly once.
    #[test]
    fn loom_a_cancel_racing_the_registration_runs_the_hook_once() {
        loom::model(|| {
            let cancels = Arc::new(Cancels::new(Arc::from("loom")));
            let cancelled = Arc::new(AtomicBool::new(false));
            let runs = Arc::new(AtomicUsize::new(0));
            let body = {
                let (cancels, cancelled, runs) = (
                    Arc::clone(&cancels),
                    Arc::clone(&cancelled),
                    Arc::clone(&runs),
                );
                thread::spawn(move || {
                    let f: Callback = Box::new(move || {
                        runs.fetch_add(1, SeqCst);
                    });
                    if let Some(hook) = cancels.add(JOB, f, || cancelled.load(SeqCst)) {
                        hook.run();
                    }
                })
            };
            // The future, dropped while the body runs: its flag, then its hooks.
            cancelled.store(true, SeqCst);
            run_all(cancels.hooks_of(Some(JOB)));
            body.join().unwrap();
            assert_eq!(runs.load(SeqCst), 1);
            cancels.returned(JOB);
            assert_eq!(runs.load(SeqCst), 1);
        });
    }

    /// A cancel racing the body's return: the hook runs at most once, and never after the
    /// worker is done with the body (`returned`).
    #[test]
    fn loom_a_hook_never_runs_after_its_body_returned() {
        loom::model(|| {
            let cancels = Arc::new(Cancels::new(Arc::from("loom")));
            let cancelled = Arc::new(AtomicBool::new(false));
            let moved_on = Arc::new(AtomicBool::new(false));
            let runs = Arc::new(AtomicUsize::new(0));
            let f: Callback = {
                let (moved_on, runs) = (Arc::clone(&moved_on), Arc::clone(&runs));
                Box::new(move || {
                    assert!(!moved_on.load(SeqCst), "a hook ran after its body returned");
                    runs.fetch_add(1, SeqCst);
                })
            };
            assert!(cancels.add(JOB, f, || false).is_none());
            let canceller = {
                let (cancels, cancelled) = (Arc::clone(&cancels), Arc::clone(&cancelled));
                thread::spawn(move || {
                    cancelled.store(true, SeqCst);
                    run_all(cancels.hooks_of(None));
                })
            };
            // The worker: the body returns, its hooks are dropped, then it moves on.
            cancels.returned(JOB);
            moved_on.store(true, SeqCst);
            canceller.join().unwrap();
            assert!(runs.load(SeqCst) <= 1);
        });
    }
}
