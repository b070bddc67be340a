//! Per-worker resources: [`Builder::worker_local`](crate::Builder::worker_local),
//! [`try_worker_local`](crate::Builder::try_worker_local) and
//! [`check_local`](crate::Builder::check_local), the runtime side of `#[local]`.
//!
//! Each worker thread keeps, in a thread-local store, at most one value of each registered
//! type. A body that needs one takes it out of the store for the duration of the call (so a
//! nested inline call on the same worker makes a second one rather than alias the first),
//! making it with the registered `init` the first time, and puts it back afterwards unless
//! the body panicked or the registered health check turns it down. The values are dropped
//! when the worker exits.
//!
//! # A failing init
//!
//! An `init` that panics (`worker_local`) fails its call with the panic; the next call on
//! that worker tries again. One that returns an error (`try_worker_local`) fails its call
//! with an [`Error`] that keeps it as its source, and the pool then holds back: the next
//! attempt, by whichever worker needs a value first, is made after [`FIRST_RETRY`],
//! doubling after each further failure up to [`MAX_RETRY`]; until then, and while that
//! one attempt runs, calls needing a value fail at once with the last error, without
//! running `init`. So a database that is down sees one connection attempt per pool every
//! half second at most, not one per worker per call, and is used again within
//! [`MAX_RETRY`] of coming back. The first success lets every worker make its own at once.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Failure, MissingLocal};
use crate::sync::lock_std as lock;

/// The wait before the first retry of a failed `try_worker_local` init.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(25);
/// The longest wait between two attempts while an init keeps failing.
pub(crate) const MAX_RETRY: Duration = Duration::from_millis(500);

/// An init's error, shared by the calls it fails.
type InitError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Makes one worker's value of a registered type.
type Make = Box<dyn Fn() -> Result<Box<dyn Any>, InitError> + Send + Sync>;

/// Says whether a worker's value is kept after a call.
pub(crate) type Check = Arc<dyn Fn(&mut dyn Any) -> bool + Send + Sync>;

/// One registered type: how to make a value, whether to keep it, and the pool-wide state
/// of its failures.
pub(crate) struct Local {
    type_name: &'static str,
    make: Make,
    /// `try_worker_local`: a failure is an error, and attempts are spaced out.
    fallible: bool,
    check: Option<Check>,
    failing: Mutex<Failing>,
}

/// The failures of one type's init in a row, across the pool's workers.
#[derive(Default)]
struct Failing {
    /// Failed attempts since the last success.
    count: u32,
    /// The last attempt's error, while `count > 0`.
    last: Option<InitError>,
    /// No attempt before this.
    retry_at: Option<Instant>,
    /// A worker is making the attempt now.
    trying: bool,
}

impl Local {
    /// `init` of `worker_local`: a panic fails the call, and nothing is held back.
    pub(crate) fn infallible<T: 'static>(init: impl Fn() -> T + Send + Sync + 'static) -> Local {
        Local {
            type_name: std::any::type_name::<T>(),
            make: Box::new(move || Ok(Box::new(init()) as Box<dyn Any>)),
            fallible: false,
            check: None,
            failing: Mutex::default(),
        }
    }

    /// `init` of `try_worker_local`.
    pub(crate) fn fallible<T, E>(init: impl Fn() -> Result<T, E> + Send + Sync + 'static) -> Local
    where
        T: 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Local {
            type_name: std::any::type_name::<T>(),
            make: Box::new(move || match init() {
                Ok(value) => Ok(Box::new(value) as Box<dyn Any>),
                Err(e) => Err(Arc::new(e) as InitError),
            }),
            fallible: true,
            check: None,
            failing: Mutex::default(),
        }
    }

    pub(crate) fn set_check(&mut self, check: Check) {
        self.check = Some(check);
    }
}

/// The registered types of a pool, and what happened to their values.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) locals: HashMap<TypeId, Local>,
    /// Values made (an `init` that returned one).
    pub(crate) made: AtomicU64,
    /// `init`s that failed: returned an error or panicked.
    pub(crate) failed: AtomicU64,
    /// Values dropped before their worker exited: turned down by the check, or held by a
    /// body that panicked.
    pub(crate) discarded: AtomicU64,
}

struct Store {
    pool: Arc<str>,
    registry: Arc<Registry>,
    values: HashMap<TypeId, Held>,
}

/// A worker's value, with its type's check (looked up once, when the value is made).
struct Held {
    value: Box<dyn Any>,
    check: Option<Check>,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

/// Sets up the store of a worker thread of `pool`.
pub(crate) fn enter_worker(pool: Arc<str>, registry: Arc<Registry>) {
    STORE.set(Some(Store {
        pool,
        registry,
        values: HashMap::new(),
    }));
}

/// Drops the worker's values (the worker is exiting).
pub(crate) fn leave_worker() {
    let store = STORE.take();
    drop(store);
}

/// What a call found in its worker's store.
enum Found {
    Value(Held),
    /// None yet: make one with the registry's `Local`.
    Make(Arc<Registry>, Arc<str>),
    Missing(Arc<str>),
}

/// Runs `f` with this worker's `L`. Called inside a job, on a worker of the job's pool.
pub(crate) fn with_local<L: 'static, T>(f: impl FnOnce(&mut L) -> T) -> T {
    let key = TypeId::of::<L>();
    let found = STORE.with_borrow_mut(|store| {
        let Some(store) = store.as_mut() else {
            return Found::Missing(Arc::from("<not a worker>"));
        };
        match store.values.remove(&key) {
            Some(value) => Found::Value(value),
            None if store.registry.locals.contains_key(&key) => {
                Found::Make(Arc::clone(&store.registry), Arc::clone(&store.pool))
            }
            None => Found::Missing(Arc::clone(&store.pool)),
        }
    });
    // `init` runs outside the borrow: it may itself offload a nested call.
    let mut held = match found {
        Found::Value(held) => held,
        Found::Make(registry, pool) => {
            let local = &registry.locals[&key];
            Held {
                value: make(&registry, local, &pool),
                check: local.check.clone(),
            }
        }
        Found::Missing(pool) => fail(Error::missing_local(MissingLocal {
            type_name: std::any::type_name::<L>(),
            pool,
        })),
    };
    // If `f` panics, `held` is dropped as it unwinds: it may be mid-transaction.
    let discarded = DiscardOnUnwind;
    let local = held
        .value
        .downcast_mut::<L>()
        .expect("worker-local registered under the wrong type");
    let result = f(local);
    std::mem::forget(discarded);
    put_back(key, held);
    result
}

/// Counts the value of a body that panicked as discarded.
struct DiscardOnUnwind;

impl Drop for DiscardOnUnwind {
    fn drop(&mut self) {
        count_discarded();
    }
}

fn count_discarded() {
    STORE.with_borrow(|store| {
        if let Some(store) = store {
            store.registry.discarded.fetch_add(1, Relaxed);
        }
    });
}

/// Returns `held` to the store, unless its type's check turns it down.
fn put_back(key: TypeId, mut held: Held) {
    if let Some(check) = &held.check {
        // Outside the store's borrow (it is user code); a check that panics turns it down.
        let healthy = catch_unwind(AssertUnwindSafe(|| check(&mut *held.value))).unwrap_or(false);
        if !healthy {
            count_discarded();
            crate::job::contain(|| drop(held));
            return;
        }
    }
    STORE.with_borrow_mut(|store| {
        if let Some(store) = store.as_mut() {
            store.values.entry(key).or_insert(held);
        }
    });
}

/// Makes a value with `local`'s init, or fails the call (see "A failing init").
fn make(registry: &Registry, local: &Local, pool: &Arc<str>) -> Box<dyn Any> {
    if !local.fallible {
        let counted = CountFailure(registry);
        let value = (local.make)().unwrap_or_else(|_| unreachable!("an infallible init"));
        std::mem::forget(counted);
        registry.made.fetch_add(1, Relaxed);
        return value;
    }
    {
        let mut failing = lock(&local.failing);
        if let Some(last) = &failing.last {
            let now = Instant::now();
            let due = failing.retry_at.is_none_or(|at| at <= now);
            if failing.trying || !due {
                let retry_in = failing
                    .retry_at
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
                let err = Error::local_init(
                    local.type_name,
                    Arc::clone(pool),
                    Arc::clone(last),
                    Some(retry_in),
                );
                drop(failing);
                fail(err);
            }
            failing.trying = true;
        }
    }
    let attempt = Attempt(local, registry);
    let made = (local.make)();
    std::mem::forget(attempt);
    let mut failing = lock(&local.failing);
    failing.trying = false;
    match made {
        Ok(value) => {
            *failing = Failing::default();
            drop(failing);
            registry.made.fetch_add(1, Relaxed);
            value
        }
        Err(e) => {
            failing.count = failing.count.saturating_add(1);
            let wait = FIRST_RETRY
                .saturating_mul(1 << (failing.count - 1).min(16))
                .min(MAX_RETRY);
            failing.retry_at = Instant::now().checked_add(wait);
            failing.last = Some(Arc::clone(&e));
            drop(failing);
            registry.failed.fetch_add(1, Relaxed);
            fail(Error::local_init(
                local.type_name,
                Arc::clone(pool),
                e,
                None,
            ))
        }
    }
}

/// Counts an infallible init that panicked.
struct CountFailure<'a>(&'a Registry);

impl Drop for CountFailure<'_> {
    fn drop(&mut self) {
        self.0.failed.fetch_add(1, Relaxed);
    }
}

/// A fallible init under way: if it panics, the attempt is over and counts as failed
/// (without holding back the next one, as for `worker_local`).
struct Attempt<'a>(&'a Local, &'a Registry);

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        lock(&self.0.failing).trying = false;
        self.1.failed.fetch_add(1, Relaxed);
    }
}

/// Fails the call with `err`: unwinds without the panic hook, and the job turns the
/// payload back into `err`.
#[cold]
fn fail(err: Error) -> ! {
    std::panic::resume_unwind(Box::new(Failure(err)))
}
