//! [`Offload<T>`], the future of one offloaded call, and [`Checked<T>`].
//!
//! What happens to one call: `Pool::spawn` (or the macro) puts the body in a job
//! (`job.rs`), the one allocation of the call, and wraps it here with a handle to its pool.
//! The first poll counts the job as submitted, arms its timeout, waits (asynchronously) for
//! a `limit` permit if one applies, then asks the pool how to start it (`pool.rs`: inline,
//! after a queue slot, or queued now). Later polls read the result. Dropping the future
//! abandons the job.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::job::{Abandoned, TaskRef};
use crate::limit::{Acquire, Limit, LimitRef};
use crate::pool::{Admit, Pool};
use crate::site::Site;

/// The future of an offloaded call: its output is the body's value.
///
/// `Offload<T>` is `Send + Unpin + 'static` when `T: Send + 'static`, and works under any
/// executor: it only uses the `Waker` it is polled with.
///
/// - **Lazy**: nothing runs until the first poll.
/// - **Panics** in the body resume in the task that awaits it, with the original payload;
///   the worker thread survives. Use [`checked`](Offload::checked) to get them as values.
/// - **Dropped before its body started**: the body never runs.
///   **Dropped while running**: the body runs to its end (a thread cannot be stopped safely),
///   [`is_cancelled`](crate::is_cancelled) returns true inside it, and its result is dropped.
/// - **Nested**: a body that `block_on`s another call of its own pool queues it like any
///   call while another thread can take it (an idle worker, or room below `max_threads`:
///   the pool starts a thread for a call queued behind blocked bodies). When none can (the
///   pool is at `max_threads` with every worker busy), it runs the nested body right there,
///   inline in the poll, so nested calls never deadlock, even on a pool of one thread. Only
///   in that inline case does a nested body that itself calls
///   `futures::executor::block_on` panic (that executor refuses to run inside another):
///   give such pools room, or make the nested call a plain function call.
///   Run inline, the nested body also sees [`is_cancelled`](crate::is_cancelled) of the
///   outer call.
/// - A job that could not run because its pool is shut down makes a plain `.await` panic with
///   a message naming the pool; [`checked`](Offload::checked) returns the error instead.
///
/// # Examples
///
/// ```
/// use offthread::{Offload, Pool};
///
/// let pool = Pool::builder().name("fs").build();
/// let len: Offload<usize> = pool.spawn(|| std::fs::read("Cargo.toml").map_or(0, |b| b.len()));
/// assert!(futures::executor::block_on(len) > 0);
/// ```
#[must_use = "an Offload does nothing unless it is awaited or polled"]
pub struct Offload<T> {
    repr: Repr<T>,
}

/// A call on a pool, or a value that is already there ([`Offload::ready`]).
enum Repr<T> {
    Call(Call<T>),
    /// Boxed, so that `Offload<T>` stays `Unpin` whatever `T` is; `None` once returned.
    Ready(Option<Box<T>>),
}

/// One call on a pool: its job and the future's side of its bookkeeping.
struct Call<T> {
    job: TaskRef<T>,
    pool: Pool,
    state: State,
    limit: Option<&'static Limit>,
    timeout: Option<Duration>,
    /// Turns a timeout or shutdown into the output (set by `with_timeout`).
    on_error: Option<fn(Error) -> T>,
    /// The armed timer entry, removed when the future is dropped (if still there).
    timer: Option<crate::timer::Key>,
    /// The `#[offload]` function's counters, if it is one.
    site: Option<&'static Site>,
    /// The count of queued calls awaited on the thread that queued this one, while this
    /// one is among them (see [`spin_for_result`]). A future forgotten with `mem::forget`
    /// stays counted, and that thread no longer spins for results: a cost in speed only.
    outstanding: Option<Arc<AtomicUsize>>,
}

enum State {
    /// Not polled yet: not submitted, not counted.
    Unpolled,
    /// Waiting for a `limit = N` permit.
    Limit(Acquire<&'static Limit>),
    /// Ready to queue.
    Ready,
    /// Waiting for a slot in a bounded queue.
    Slot(Acquire<Arc<Limit>>),
    /// Queued, running or done: the result comes from the job.
    Submitted,
    /// The output was returned, or the job abandoned.
    Done,
}

impl<T> Offload<T> {
    pub(crate) fn new(job: TaskRef<T>, pool: Pool) -> Offload<T> {
        Offload {
            repr: Repr::Call(Call {
                job,
                pool,
                state: State::Unpolled,
                limit: None,
                timeout: None,
                on_error: None,
                timer: None,
                site: None,
                outstanding: None,
            }),
        }
    }

    /// An `Offload` whose output is `value`, already there: it runs nothing, uses no pool
    /// (no pool's [`Metrics`](crate::Metrics) count it) and is ready at its first poll.
    ///
    /// For implementations of a trait whose methods return `Offload<R>` that have nothing to
    /// run on a thread, such as a fake repository in tests or a cache hit. Like any
    /// `Offload`, it is `Send + Unpin + 'static` when `T: Send + 'static`.
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::Offload;
    ///
    /// trait Users {
    ///     fn name(&self, id: u32) -> Offload<Option<String>>;
    /// }
    ///
    /// struct FakeUsers;
    ///
    /// impl Users for FakeUsers {
    ///     fn name(&self, id: u32) -> Offload<Option<String>> {
    ///         Offload::ready((id == 7).then(|| "ada".to_owned()))
    ///     }
    /// }
    ///
    /// let name = futures::executor::block_on(FakeUsers.name(7));
    /// assert_eq!(name.as_deref(), Some("ada"));
    /// ```
    pub fn ready(value: T) -> Offload<T> {
        Offload {
            repr: Repr::Ready(Some(Box::new(value))),
        }
    }

    pub(crate) fn set_site(&mut self, site: &'static Site) {
        if let Repr::Call(call) = &mut self.repr {
            call.site = Some(site);
        }
    }

    /// Makes the call hold a permit of `limit` while its body runs. Before the first poll.
    pub(crate) fn set_limit(&mut self, limit: &'static Limit) {
        if let Repr::Call(call) = &mut self.repr {
            call.limit = Some(limit);
        }
    }

    /// Turns offthread's own errors (not panics) into the output, as a timeout does.
    pub(crate) fn set_on_error(&mut self, on_error: fn(Error) -> T) {
        if let Repr::Call(call) = &mut self.repr {
            call.on_error.get_or_insert(on_error);
        }
    }

    pub(crate) fn set_timeout(&mut self, after: Duration, on_error: fn(Error) -> T) {
        if let Repr::Call(call) = &mut self.repr {
            call.timeout = Some(after);
            call.on_error = Some(on_error);
        }
    }

    /// A future of `Result<T, Error>`: panics, shutdown and timeouts become `Err` values
    /// instead of panicking in the awaiting task.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().build();
    /// let r = futures::executor::block_on(pool.spawn(|| -> u8 { panic!("bad input") }).checked());
    /// let err = r.unwrap_err();
    /// assert!(err.is_panic());
    /// assert!(err.to_string().contains("bad input"));
    /// ```
    pub fn checked(self) -> Checked<T> {
        Checked { inner: self }
    }

    /// The output, or why there is none.
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        match &mut self.repr {
            Repr::Call(call) => call.poll_call(cx),
            Repr::Ready(value) => {
                let value = value.take().expect("`Offload` polled after it completed");
                Poll::Ready(Ok(*value))
            }
        }
    }
}

impl<T> Call<T> {
    /// Drives the call: submits on the first poll, then reads the result.
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        loop {
            match &mut self.state {
                State::Unpolled => {
                    let shared = self.pool.shared();
                    shared.count_submitted();
                    if let Some(site) = self.site {
                        site.count_call();
                    }
                    if shared.is_closed() {
                        self.job.abandon(None);
                        shared.count_cancelled(false);
                        self.state = State::Done;
                        return Poll::Ready(Err(Error::shutdown(Arc::clone(&shared.name))));
                    }
                    if let Some(after) = self.timeout {
                        // A deadline past what `Instant` can hold never comes.
                        if let Some(at) = Instant::now().checked_add(after) {
                            match crate::timer::expire_at(at, self.job.erase()) {
                                Ok(key) => self.timer = Some(key),
                                Err(cause) => {
                                    // A timeout that cannot be kept fails the call rather
                                    // than let it run unbounded.
                                    self.job.abandon(None);
                                    shared.count_cancelled(false);
                                    self.state = State::Done;
                                    let timer = Arc::from("offthread-timer");
                                    return Poll::Ready(Err(Error::no_threads(timer, cause)));
                                }
                            }
                        }
                    }
                    self.state = match self.limit {
                        Some(limit) => State::Limit(limit.acquire()),
                        None => State::Ready,
                    };
                }
                State::Limit(acquire) => match Pin::new(acquire).poll(cx) {
                    Poll::Ready(permit) => {
                        self.job.hold_limit(permit);
                        self.state = State::Ready;
                    }
                    Poll::Pending => return self.wait(cx),
                },
                State::Ready => {
                    let shared = self.pool.shared();
                    match shared.admit() {
                        Admit::Inline => {
                            shared.run_inline(&self.job.erase());
                            self.state = State::Submitted;
                        }
                        Admit::Slot(slots) => self.state = State::Slot(slots.acquire()),
                        Admit::Queue => {
                            let alone = count_in(&mut self.outstanding) == 0;
                            shared.submit(&self.job, self.limit.is_some(), alone);
                            self.state = State::Submitted;
                        }
                    }
                }
                State::Slot(acquire) => match Pin::new(acquire).poll(cx) {
                    Poll::Ready(permit) => {
                        self.job.hold_slot(permit);
                        let alone = count_in(&mut self.outstanding) == 0;
                        self.pool
                            .shared()
                            .submit(&self.job, self.limit.is_some(), alone);
                        self.state = State::Submitted;
                    }
                    Poll::Pending => return self.wait(cx),
                },
                State::Submitted => {
                    return match self.job.poll_result(cx) {
                        Poll::Ready(result) => {
                            self.state = State::Done;
                            self.settle_outstanding();
                            Poll::Ready(result)
                        }
                        Poll::Pending => self.wait(cx),
                    };
                }
                State::Done => panic!("`Offload` polled after it completed"),
            }
        }
    }

    /// Pending, unless the timeout fired: then the job is abandoned and the call fails.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        if !matches!(self.state, State::Submitted) {
            // Let the timer's wake-up reach us while we wait for a permit. The job is not
            // queued yet, so nothing can have given it a result.
            let registered = self.job.poll_result(cx);
            debug_assert!(registered.is_pending());
        }
        if self.job.timed_out() {
            if let Some(site) = self.site {
                site.count_timeout();
            }
            self.abandon();
            let after = self.timeout.unwrap_or_default();
            return Poll::Ready(Err(Error::timeout(after)));
        }
        Poll::Pending
    }

    /// No longer awaited: counts this call out (on the thread that counted it in).
    fn settle_outstanding(&mut self) {
        if let Some(count) = self.outstanding.take() {
            count.fetch_sub(1, Relaxed);
        }
    }

    /// Gives up on the job (dropped or timed out), with the pool's bookkeeping.
    fn abandon(&mut self) {
        self.settle_outstanding();
        let state = std::mem::replace(&mut self.state, State::Done);
        let shared = self.pool.shared();
        match state {
            State::Unpolled | State::Done => {}
            State::Limit(_) | State::Ready | State::Slot(_) => {
                self.job.abandon(shared.queue_limit.as_deref());
                shared.count_cancelled(false);
            }
            State::Submitted => match self.job.abandon(shared.queue_limit.as_deref()) {
                Abandoned::BeforeStart => shared.count_cancelled(true),
                // Its `on_cancel` hooks, if the body registered any, run now.
                Abandoned::WhileRunning => shared.cancels.cancelled(self.job.id()),
                Abandoned::AfterEnd => {}
            },
        }
    }

    fn resolve(&mut self, result: Result<T, Error>) -> T {
        match result {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => match self.on_error {
                Some(on_error) => on_error(e),
                None => panic!("offthread: {e}"),
            },
        }
    }
}

impl<T> Future for Offload<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.repr {
            Repr::Call(call) => call.poll_call(cx).map(|result| call.resolve(result)),
            Repr::Ready(value) => {
                let value = value.take().expect("`Offload` polled after it completed");
                Poll::Ready(*value)
            }
        }
    }
}

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        if let Some(site) = self.site {
            if !matches!(self.state, State::Unpolled | State::Done) {
                site.count_cancelled();
            }
        }
        self.abandon();
        if let Some(key) = self.timer.take() {
            crate::timer::cancel(key);
        }
    }
}

impl<T> std::fmt::Debug for Offload<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let call = match &self.repr {
            Repr::Call(call) => call,
            Repr::Ready(value) => {
                let state = if value.is_some() { "ready" } else { "done" };
                return f
                    .debug_struct("Offload")
                    .field("state", &state)
                    .finish_non_exhaustive();
            }
        };
        let state = match call.state {
            State::Unpolled => "unpolled",
            State::Limit(_) => "waiting for a limit permit",
            State::Ready => "ready to queue",
            State::Slot(_) => "waiting for a queue slot",
            State::Submitted => "submitted",
            State::Done => "done",
        };
        f.debug_struct("Offload")
            .field("pool", &call.pool.shared().name)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Queued calls awaited on this thread: counted in when one is queued here, out when its
    /// future completes or is dropped, wherever that is (a task may move between threads).
    /// The pool lets a caller spin for its result only when it awaits no other call.
    static OUTSTANDING: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// Counts a call being queued among those awaited on this thread, keeping the count in
/// `slot` to count it out later; returns how many others are awaited here.
fn count_in(slot: &mut Option<Arc<AtomicUsize>>) -> usize {
    // While the thread's locals are being torn down there is no count: say "not alone".
    let Ok(count) = OUTSTANDING.try_with(Arc::clone) else {
        return 1;
    };
    let others = count.fetch_add(1, Relaxed);
    *slot = Some(count);
    others
}

/// The future of [`Offload::checked`]: the body's value, or why there is none.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let pool = offthread::Pool::builder().build();
/// pool.shutdown(Duration::ZERO);
/// let r = futures::executor::block_on(pool.spawn(|| 1).checked());
/// assert!(r.unwrap_err().is_shutdown());
/// ```
#[must_use = "a Checked does nothing unless it is awaited or polled"]
#[derive(Debug)]
pub struct Checked<T> {
    inner: Offload<T>,
}

impl<T> Future for Checked<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        self.inner.poll_call(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Offload, OUTSTANDING};
    use crate::Pool;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::{Context, Poll, Waker};

    /// Calls awaited on this thread, as the caller's spin decision sees them.
    fn outstanding() -> usize {
        OUTSTANDING.with(|count| count.load(Relaxed))
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_call_is_counted_as_awaited_on_its_thread_until_it_ends_wherever_it_ends() {
        // A thread of its own, so that no other test's calls are counted.
        std::thread::spawn(|| {
            let pool = Pool::builder().max_threads(1).build();
            let (open, gate) = std::sync::mpsc::channel::<()>();
            let mut held = pool.spawn(move || gate.recv().is_ok());
            assert!(poll_once(&mut held).is_pending());
            assert_eq!(outstanding(), 1, "queued and awaited here");
            let mut queued = pool.spawn(|| 2);
            assert!(poll_once(&mut queued).is_pending());
            assert_eq!(outstanding(), 2);
            drop(queued);
            assert_eq!(outstanding(), 1, "a dropped call is no longer awaited");
            open.send(()).unwrap();
            assert!(futures::executor::block_on(held));
            assert_eq!(outstanding(), 0, "a completed call is no longer awaited");

            // Queued here (behind a held body on the one thread), completed on another
            // thread: counted out here all the same.
            let (open, gate) = std::sync::mpsc::channel::<()>();
            let mut held = pool.spawn(move || gate.recv().is_ok());
            assert!(poll_once(&mut held).is_pending());
            let mut moved = pool.spawn(|| 3);
            assert!(poll_once(&mut moved).is_pending());
            assert_eq!(outstanding(), 2);
            let moved = std::thread::spawn(move || futures::executor::block_on(moved));
            open.send(()).unwrap();
            assert!(futures::executor::block_on(held));
            assert_eq!(moved.join().unwrap(), 3);
            assert_eq!(outstanding(), 0);

            // Never queued (the pool is closed): never counted.
            pool.shutdown(std::time::Duration::ZERO);
            assert!(futures::executor::block_on(pool.spawn(|| 4).checked()).is_err());
            assert_eq!(outstanding(), 0);
        })
        .join()
        .unwrap();
    }

    fn send_unpin_static<T: Send + Unpin + 'static>(_: &T) {}

    #[test]
    fn a_ready_offload_runs_nothing_and_counts_in_no_pool() {
        let pool = Pool::builder().build();
        // `PhantomPinned` is not `Unpin`: the value is boxed, so the future still is.
        let ready = Offload::ready((7, std::marker::PhantomPinned));
        send_unpin_static(&ready);
        assert!(format!("{ready:?}").contains("ready"));
        assert_eq!(futures::executor::block_on(ready).0, 7);
        let checked = futures::executor::block_on(Offload::ready("x").checked());
        assert_eq!(checked.unwrap(), "x");
        let m = pool.metrics();
        assert_eq!((m.submitted, m.completed, m.threads), (0, 0, 0));
    }
}
