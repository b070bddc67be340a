//! Per-worker resources: [`Builder::worker_local`](crate::Builder::worker_local) and the
//! `#[local]` parameters of `#[offload]`.
//!
//! Each worker thread keeps, in a thread-local store, at most one value of each registered
//! type. A body that needs one takes it out of the store for the duration of the call (so a
//! nested inline call on the same worker makes a second one rather than alias the first),
//! making it with the registered `init` the first time, and puts it back afterwards. If
//! `init` panics, nothing is stored: that call fails with the panic and the next call on
//! that worker tries again. The values are dropped when the worker exits.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::MissingLocal;

/// Makes one worker's value of a registered type.
pub(crate) type Init = Arc<dyn Fn() -> Box<dyn Any> + Send + Sync>;

/// The registered `init`s of a pool, by type.
pub(crate) type Registry = Arc<HashMap<TypeId, Init>>;

struct Store {
    pool: Arc<str>,
    inits: Registry,
    values: HashMap<TypeId, Box<dyn Any>>,
}

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

/// Sets up the store of a worker thread of `pool`.
pub(crate) fn enter_worker(pool: Arc<str>, inits: Registry) {
    STORE.set(Some(Store {
        pool,
        inits,
        values: HashMap::new(),
    }));
}

/// Drops the worker's values (the worker is exiting).
pub(crate) fn leave_worker() {
    let store = STORE.take();
    drop(store);
}

/// Runs `f` with this worker's `L`. Called inside a job, on a worker of the job's pool.
pub(crate) fn with_local<L: 'static, T>(f: impl FnOnce(&mut L) -> T) -> T {
    let key = TypeId::of::<L>();
    let taken = STORE.with_borrow_mut(|store| {
        let store = store.as_mut()?;
        Some(match store.values.remove(&key) {
            Some(value) => Ok(value),
            None => match store.inits.get(&key) {
                Some(init) => Err(Ok(Arc::clone(init))),
                None => Err(Err(Arc::clone(&store.pool))),
            },
        })
    });
    let mut value: Box<dyn Any> = match taken {
        Some(Ok(value)) => value,
        // `init` runs outside the borrow: it may itself offload a nested call.
        Some(Err(Ok(init))) => init(),
        Some(Err(Err(pool))) => missing::<L>(pool),
        None => missing::<L>(Arc::from("<not a worker>")),
    };
    let local = value
        .downcast_mut::<L>()
        .expect("worker-local registered under the wrong type");
    let result = f(local);
    STORE.with_borrow_mut(|store| {
        if let Some(store) = store.as_mut() {
            store.values.entry(key).or_insert(value);
        }
    });
    result
}

/// Fails the call: unwinds without the panic hook, and the job turns the payload into
/// an [`Error`](crate::Error) naming the type and the pool.
#[cold]
fn missing<L>(pool: Arc<str>) -> ! {
    std::panic::resume_unwind(Box::new(MissingLocal {
        type_name: std::any::type_name::<L>(),
        pool,
    }))
}
