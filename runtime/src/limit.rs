//! A FIFO asynchronous semaphore: the permits behind `#[offload(limit = N)]` and
//! [`Builder::queue_capacity`](crate::Builder::queue_capacity).
//!
//! Waiting costs no thread: an acquirer that finds no permit enqueues a small waiter and
//! returns `Pending`; a release hands its permit straight to the oldest waiter and wakes it,
//! so permits go out in strict arrival order and a newcomer can never overtake a waiter.
//! A waiter dropped after it was granted a permit passes that permit on.
//!
//! Waiters are kept by arrival number in an ordered map, so a waiter that gives up (its
//! call dropped by a `select!` or a request timeout, in any order) leaves in O(log n): a
//! hundred thousand of them dropped newest first cost milliseconds, not seconds. Each
//! waiting acquirer costs one small allocation (its [`Waiter`], about 50 bytes) and an entry
//! in the map. Ready-made semaphores were weighed: tokio's (FIFO, O(1) removal through an
//! intrusive list) would bring tokio into a crate that works under any executor, and
//! `async-lock`'s does not promise that a newcomer cannot overtake a waiter.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use crate::sync::{lock, Mutex};
use std::task::{Context, Poll, Waker};

/// A FIFO async semaphore with a fixed number of permits.
///
/// `#[offload(limit = N)]` declares one as a `static` next to the function it limits.
///
/// # Examples
///
/// ```
/// use offthread::offload;
///
/// #[offload(limit = 1)] // declares a `static Limit` with one permit inside `one_at_a_time`
/// fn one_at_a_time(n: u32) -> u32 {
///     n
/// }
///
/// let (a, b) = (one_at_a_time(1), one_at_a_time(2));
/// assert_eq!(futures::executor::block_on(async { a.await + b.await }), 3);
/// ```
pub struct Limit {
    /// Free permits and the queue of waiters, in arrival order.
    state: Mutex<State>,
}

struct State {
    /// Permits not held by anyone. Never positive while `waiters` is non-empty.
    permits: usize,
    /// Acquirers waiting for a permit, by arrival number: oldest first.
    waiters: BTreeMap<u64, Arc<Waiter>>,
    /// The arrival number of the next waiter.
    next: u64,
}

/// One waiting acquirer: set `granted` and wake it to hand it a permit.
struct Waiter {
    state: Mutex<WaiterState>,
}

#[derive(Default)]
struct WaiterState {
    granted: bool,
    waker: Option<Waker>,
}

impl Limit {
    /// A semaphore with `permits` permits (`#[offload]` rejects `limit = 0` at compile time).
    #[cfg(not(loom))]
    pub const fn new(permits: usize) -> Limit {
        Limit {
            state: Mutex::new(State {
                permits,
                waiters: BTreeMap::new(),
                next: 0,
            }),
        }
    }

    /// `new` under loom, whose mutex cannot be made in a `const fn`.
    #[cfg(loom)]
    pub fn new(permits: usize) -> Limit {
        Limit {
            state: Mutex::new(State {
                permits,
                waiters: BTreeMap::new(),
                next: 0,
            }),
        }
    }

    /// Takes a permit now if one is free and nobody waits.
    #[cfg(all(test, not(loom)))]
    fn try_take(&self) -> bool {
        let mut st = lock(&self.state);
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Returns a permit: to the oldest waiter if there is one, else to the pool of permits.
    pub(crate) fn release(&self) {
        let waker = {
            let mut st = lock(&self.state);
            match st.waiters.pop_first() {
                Some((_, w)) => {
                    let mut ws = lock(&w.state);
                    ws.granted = true;
                    ws.waker.take()
                }
                None => {
                    st.permits += 1;
                    None
                }
            }
        };
        // Another caller's waker: its panic is not ours to propagate (a worker releasing
        // a queue slot must not unwind), so it is contained.
        if let Some(w) = waker {
            crate::job::contain(|| w.wake());
        }
    }
}

/// A handle to a [`Limit`]: `&'static Limit` for `limit = N`, `Arc<Limit>` for a pool's
/// queue slots. Kept generic so a held permit is one pointer.
pub(crate) trait LimitRef: Deref<Target = Limit> + Clone + Unpin {
    /// A future for one permit, in FIFO order.
    fn acquire(self) -> Acquire<Self> {
        Acquire {
            limit: self,
            waiter: None,
            done: false,
        }
    }
}

impl LimitRef for &'static Limit {}
impl LimitRef for Arc<Limit> {}

/// A held permit; dropping it releases the permit.
pub(crate) struct Permit<L: LimitRef> {
    /// `None` once [`keep`](Permit::keep) handed the release to the holder.
    limit: Option<L>,
}

impl<L: LimitRef> Permit<L> {
    /// Hands the permit to a holder that records it as a flag and calls
    /// [`Limit::release`] itself (a job, whose allocation has no room for the permit);
    /// returns the limit to release it to.
    pub(crate) fn keep(mut self) -> L {
        self.limit
            .take()
            .expect("a permit holds its limit until it is kept")
    }
}

impl<L: LimitRef> Drop for Permit<L> {
    fn drop(&mut self) {
        if let Some(limit) = self.limit.take() {
            limit.release();
        }
    }
}

/// The future of [`LimitRef::acquire`].
pub(crate) struct Acquire<L: LimitRef> {
    limit: L,
    /// Our arrival number and place in the queue once we had to wait.
    waiter: Option<(u64, Arc<Waiter>)>,
    /// The permit was handed out by `poll`; `Drop` has nothing to give back.
    done: bool,
}

impl<L: LimitRef> Future for Acquire<L> {
    type Output = Permit<L>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<L>> {
        let this = &mut *self;
        assert!(!this.done, "Acquire polled after completion");
        match &this.waiter {
            None => {
                let sem = &*this.limit;
                let mut st = lock(&sem.state);
                if st.permits > 0 && st.waiters.is_empty() {
                    st.permits -= 1;
                } else {
                    let w = Arc::new(Waiter {
                        state: Mutex::new(WaiterState {
                            granted: false,
                            waker: Some(cx.waker().clone()),
                        }),
                    });
                    let key = st.next;
                    st.next += 1;
                    st.waiters.insert(key, Arc::clone(&w));
                    this.waiter = Some((key, w));
                    return Poll::Pending;
                }
            }
            Some((_, w)) => {
                let mut ws = lock(&w.state);
                if !ws.granted {
                    match &ws.waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => ws.waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        }
        this.done = true;
        this.waiter = None;
        Poll::Ready(Permit {
            limit: Some(this.limit.clone()),
        })
    }
}

impl<L: LimitRef> Drop for Acquire<L> {
    fn drop(&mut self) {
        let Some((key, w)) = self.waiter.take() else {
            return;
        };
        if self.done {
            return;
        }
        let granted = {
            let mut st = lock(&self.limit.state);
            let granted = lock(&w.state).granted;
            if !granted {
                st.waiters.remove(&key);
            }
            granted
        };
        if granted {
            // We were handed a permit but will never use it: pass it on.
            self.limit.release();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn permits_go_out_in_arrival_order() {
        static L: Limit = Limit::new(1);
        let first = futures::executor::block_on((&L).acquire());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting: Vec<_> = (0..5)
            .map(|i| {
                let order = Arc::clone(&order);
                let mut acq = Box::pin((&L).acquire());
                let waker = futures::task::noop_waker();
                assert!(acq
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending());
                (i, acq, order)
            })
            .collect();
        drop(first);
        // Only the oldest waiter holds the permit; each release passes it to the next.
        for (i, acq, order) in waiting.drain(..) {
            let permit = futures::executor::block_on(acq);
            lock(&order).push(i);
            drop(permit);
        }
        assert_eq!(*lock(&order), vec![0, 1, 2, 3, 4]);
        assert!(L.try_take(), "the permit came back after the last waiter");
    }

    #[test]
    fn dropped_waiter_passes_its_granted_permit_on() {
        static L: Limit = Limit::new(1);
        let held = futures::executor::block_on((&L).acquire());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin((&L).acquire());
        let mut b = Box::pin((&L).acquire());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(held); // granted to `a`
        drop(a); // `a` never takes it: it must go to `b`
        assert!(b.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_waiter_leaves_the_queue() {
        static L: Limit = Limit::new(1);
        let held = futures::executor::block_on((&L).acquire());
        let waker = futures::task::noop_waker();
        let mut a = Box::pin((&L).acquire());
        assert!(a
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(a);
        drop(held);
        assert!(L.try_take());
    }

    #[test]
    fn never_more_holders_than_permits_under_contention() {
        static L: Limit = Limit::new(3);
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (inside, max) = (Arc::clone(&inside), Arc::clone(&max));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let p = futures::executor::block_on((&L).acquire());
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(max.load(Ordering::SeqCst) <= 3);
        assert_eq!(lock(&L.state).permits, 3);
    }

    #[test]
    fn waiters_dropped_in_any_order_leave_the_others_in_arrival_order() {
        static L: Limit = Limit::new(1);
        let held = futures::executor::block_on((&L).acquire());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let waiting: Vec<_> = (0..20_000)
            .map(|i| {
                let mut acq = Box::pin((&L).acquire());
                assert!(acq.as_mut().poll(&mut cx).is_pending());
                (i, acq)
            })
            .collect();
        // Drop every waiter but each tenth, newest first.
        let (waiting, dropped): (Vec<_>, Vec<_>) =
            waiting.into_iter().partition(|(i, _)| i % 10 == 0);
        for (_, acq) in dropped.into_iter().rev() {
            drop(acq);
        }
        let kept: Vec<_> = waiting.iter().map(|(i, _)| *i).collect();
        assert_eq!(lock(&L.state).waiters.len(), kept.len());
        drop(held);
        let mut order = Vec::new();
        for (i, mut acq) in waiting {
            match acq.as_mut().poll(&mut cx) {
                Poll::Ready(permit) => {
                    order.push(i);
                    drop(permit);
                }
                Poll::Pending => panic!("waiter {i} skipped"),
            }
        }
        assert_eq!(order, kept);
        assert!(L.try_take());
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Loom explores every interleaving of the permits between callers that acquire,
    //! release and give up. Run with
    //! `RUSTFLAGS="--cfg loom" cargo test -p offthread-runtime --release --lib loom`.

    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn poll<L: LimitRef>(acq: &mut Acquire<L>, waker: &Waker) -> Poll<Permit<L>> {
        Pin::new(acq).poll(&mut Context::from_waker(waker))
    }

    /// A waiter dropped while the holder releases: the permit is never lost; it comes back
    /// to the limit whichever runs first.
    #[test]
    fn loom_a_waiter_dropped_during_a_release_leaks_no_permit() {
        loom::model(|| {
            let limit = Arc::new(Limit::new(1));
            let held = futures::executor::block_on(Arc::clone(&limit).acquire());
            let waker = futures::task::noop_waker();
            let mut waiting = Arc::clone(&limit).acquire();
            assert!(poll(&mut waiting, &waker).is_pending());
            let releaser = loom::thread::spawn(move || drop(held));
            drop(waiting);
            releaser.join().unwrap();
            let st = lock(&limit.state);
            assert_eq!((st.permits, st.waiters.len()), (1, 0));
        });
    }

    /// A release racing a waiter's poll: the waiter is woken or sees the permit, never
    /// neither, and no permit is made out of thin air.
    #[test]
    fn loom_a_release_wakes_the_waiter_or_it_sees_the_permit() {
        loom::model(|| {
            let limit = Arc::new(Limit::new(1));
            let held = futures::executor::block_on(Arc::clone(&limit).acquire());
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let waker = Waker::from(Arc::clone(&count));
            let mut waiting = Arc::clone(&limit).acquire();
            let first = poll(&mut waiting, &waker);
            let releaser = loom::thread::spawn(move || drop(held));
            let second = if first.is_pending() {
                poll(&mut waiting, &waker)
            } else {
                first
            };
            releaser.join().unwrap();
            let permit = match second {
                Poll::Ready(p) => p,
                Poll::Pending => {
                    assert_eq!(count.0.load(SeqCst), 1, "a waiting acquirer must be woken");
                    match poll(&mut waiting, &waker) {
                        Poll::Ready(p) => p,
                        Poll::Pending => panic!("woken without a permit"),
                    }
                }
            };
            assert_eq!(lock(&limit.state).permits, 0);
            drop(permit);
            assert_eq!(lock(&limit.state).permits, 1);
        });
    }

    /// Two waiters and a release: the older one gets the permit first.
    #[test]
    fn loom_permits_go_to_waiters_in_arrival_order() {
        loom::model(|| {
            let limit = Arc::new(Limit::new(1));
            let held = futures::executor::block_on(Arc::clone(&limit).acquire());
            let waker = futures::task::noop_waker();
            let mut first = Arc::clone(&limit).acquire();
            let mut second = Arc::clone(&limit).acquire();
            assert!(poll(&mut first, &waker).is_pending());
            assert!(poll(&mut second, &waker).is_pending());
            let releaser = loom::thread::spawn(move || drop(held));
            let _ = poll(&mut second, &waker).map(|_| panic!("the younger waiter went first"));
            releaser.join().unwrap();
            assert!(poll(&mut second, &waker).is_pending());
            let permit = match poll(&mut first, &waker) {
                Poll::Ready(p) => p,
                Poll::Pending => panic!("the older waiter was passed over"),
            };
            drop(permit);
            assert!(poll(&mut second, &waker).is_ready());
        });
    }
}
