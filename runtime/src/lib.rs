//! The thread pool and the [`Offload<T>`] future behind
//! [offthread](https://docs.rs/offthread): run blocking code from async Rust without
//! stalling the executor.
//!
//! Most users depend on the `offthread` facade and write `#[offload]`; this crate is the
//! runtime it expands to, and the facade re-exports all of it. The examples are written
//! against the facade, as a user's crate would paste them. It depends on no async runtime: an [`Offload`] wakes its task
//! through the [`Waker`](std::task::Waker) it was polled with, so it works under tokio
//! (either flavour), smol, `futures::executor::block_on` or any other executor.
//!
//! ```
//! use offthread::Pool;
//!
//! let pool = Pool::builder().name("db").max_threads(8).build();
//! let sum = futures::executor::block_on(async {
//!     let a = pool.spawn(|| (1..=100u64).sum::<u64>());   // runs on a "db-*" thread
//!     let b = offthread::spawn(|| 42u64);          // runs on the default pool
//!     a.await + b.await
//! });
//! assert_eq!(sum, 5092);
//! ```
//!
//! # Design
//!
//! One call is one allocation: the job (`job.rs`) holds the body, then its result, the
//! waiting task's waker and flags for any permits, under one atomic state word (64 bytes
//! for a body of four words; it holds all but one of the crate's `unsafe` blocks, the
//! other being the idle-priority system call). The future (`offload.rs`) asks the pool
//! (`pool.rs`) on its first poll how to start the job and has it queued. Workers
//! (`worker.rs`) take jobs from a sharded queue (`queue.rs`) in the order they came. Who
//! spins, who parks and who wakes whom is one protocol in one file (`sleep.rs`): a worker
//! out of work spins while the next job has lately come within a spin, then parks; a
//! submitter wakes one parked worker only when none is searching, and a woken worker that
//! takes a job while more wait wakes the next, so a burst costs the executor's thread one
//! wake-up. Which threads exist is `threads.rs`'s: the pool starts them on demand up to
//! the CPU count; past that a monitor (`monitor.rs`) adds threads when queued work stops
//! moving, or waits behind *blocked* workers. So short jobs never make it start hundreds
//! of threads, busy loops get few, a thousand sleeping calls quickly get dozens, and a call
//! queued behind bodies that never end still starts within milliseconds while the pool has
//! room.

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod cancel;
mod cpu;
mod error;
#[cfg(feature = "metrics")]
mod export;
mod job;
mod limit;
mod local;
mod metrics;
mod monitor;
mod offload;
mod pool;
mod priority;
mod queue;
mod site;
mod sleep;
mod sync;
mod threads;
mod timer;
mod worker;

use std::sync::OnceLock;

pub use builder::{Builder, DEFAULT_KEEP_ALIVE, DEFAULT_LOCAL_KEEP_ALIVE, DEFAULT_MAX_THREADS};
pub use cancel::on_cancel;
pub use error::Error;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use export::publish_metrics;
pub use metrics::Metrics;
pub use offload::{Checked, Offload};
pub use pool::{Pool, ShutdownReport};
pub use site::{function_metrics, FunctionMetrics};
pub use worker::is_cancelled;

/// The environment variable that sets the default pool's `max_threads`.
pub const MAX_THREADS_ENV: &str = "OFFTHREAD_MAX_THREADS";

/// The range `OFFTHREAD_MAX_THREADS` is clamped to, like smol's `BLOCKING_MAX_THREADS`.
pub const MAX_THREADS_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

static DEFAULT: OnceLock<Pool> = OnceLock::new();

/// The builder of the default pool: name `offthread`, `max_threads` from
/// `OFFTHREAD_MAX_THREADS` (clamped to [`MAX_THREADS_RANGE`]; unset or not a number:
/// [`DEFAULT_MAX_THREADS`]), the other settings as [`Builder::new`].
fn default_builder() -> Builder {
    let max = max_threads_from(std::env::var(MAX_THREADS_ENV).ok().as_deref());
    Builder::new().name("offthread").max_threads(max)
}

/// The default pool's cap for a value of `OFFTHREAD_MAX_THREADS`.
fn max_threads_from(var: Option<&str>) -> usize {
    var.and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_MAX_THREADS, |n| {
            n.clamp(*MAX_THREADS_RANGE.start(), *MAX_THREADS_RANGE.end())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_threads_env_is_clamped_and_bad_values_fall_back() {
        assert_eq!(max_threads_from(None), DEFAULT_MAX_THREADS);
        assert_eq!(max_threads_from(Some("16")), 16);
        assert_eq!(max_threads_from(Some(" 7 ")), 7);
        assert_eq!(max_threads_from(Some("0")), 1);
        assert_eq!(max_threads_from(Some("99999999")), 10_000);
        assert_eq!(max_threads_from(Some("lots")), DEFAULT_MAX_THREADS);
        assert_eq!(max_threads_from(Some("-3")), DEFAULT_MAX_THREADS);
    }
}

/// The default pool, used by [`spawn`] and by `#[offload]` without `pool = ..`.
///
/// Built on first use: threads named `offthread-{n}`, at most `OFFTHREAD_MAX_THREADS`
/// (default [`DEFAULT_MAX_THREADS`], clamped to [`MAX_THREADS_RANGE`]), idle threads kept
/// [`DEFAULT_KEEP_ALIVE`]; or as set by [`configure_default`] before that.
///
/// # Examples
///
/// ```
/// let pool = offthread::default_pool();
/// assert_eq!(futures::executor::block_on(pool.spawn(|| 3)), 3);
/// ```
pub fn default_pool() -> &'static Pool {
    DEFAULT.get_or_init(|| default_builder().build())
}

/// Replaces the default pool's settings. Call it before the first use of the default pool.
///
/// # Errors
///
/// If the builder's settings are bad (see [`Builder::try_build`]), or the default pool is
/// already in use: then nothing changes.
///
/// # Examples
///
/// ```
/// let r = offthread::configure_default(offthread::Pool::builder().max_threads(16));
/// assert!(r.is_ok());
/// let _ = offthread::default_pool();
/// assert!(offthread::configure_default(offthread::Pool::builder()).is_err());
/// ```
pub fn configure_default(builder: Builder) -> Result<(), Error> {
    let pool = builder.try_build()?;
    let mut installed = false;
    DEFAULT.get_or_init(|| {
        installed = true;
        pool
    });
    if installed {
        Ok(())
    } else {
        Err(Error::config(
            "configure_default: the default pool is already in use; call configure_default \
             before the first offloaded call",
        ))
    }
}

/// Runs `f` on the default pool; see [`Pool::spawn`].
///
/// # Examples
///
/// ```
/// let n = futures::executor::block_on(offthread::spawn(|| 6 * 7));
/// assert_eq!(n, 42);
/// ```
pub fn spawn<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_pool().spawn(f)
}

/// What `#[offload]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::limit::Limit;
    pub use crate::site::{RunGuard, Site};
    pub use ::core::{result::Result, time::Duration};
    pub use ::std::borrow::{Borrow, ToOwned};

    use crate::{Error, Offload};

    /// Every `#[offload]` call: counted in its function's figures (see
    /// [`function_metrics`](crate::function_metrics)).
    #[inline]
    pub fn with_site<T>(mut call: Offload<T>, site: &'static Site) -> Offload<T> {
        call.set_site(site);
        call
    }

    /// `limit = N`: a permit of `limit` is taken (asynchronously, FIFO) at the first poll
    /// and held until the body returns.
    #[inline]
    pub fn with_limit<T>(mut call: Offload<T>, limit: &'static Limit) -> Offload<T> {
        call.set_limit(limit);
        call
    }

    /// The error types `timeout = ".."` can put a timeout into by itself: those with
    /// `From<offthread::Error>`. For any other, the attribute names a conversion with
    /// `timeout_error = path`, and the expansion calls [`with_timeout_as`] instead.
    #[diagnostic::on_unimplemented(
        message = "`timeout` cannot turn a timeout into `{Self}`: it has no `From<offthread::Error>`",
        label = "the error type of this function",
        note = "name a conversion in the attribute: `timeout_error = to_my_error`, where `fn to_my_error(e: offthread::Error) -> {Self}`",
        note = "or, for an error type of your own crate, implement `From<offthread::Error>` for it"
    )]
    pub trait TimeoutError {
        /// The error a timeout becomes.
        fn from_timeout(error: Error) -> Self;
    }

    impl<E: From<Error>> TimeoutError for E {
        #[inline]
        fn from_timeout(error: Error) -> Self {
            E::from(error)
        }
    }

    /// `timeout = ".."`: past `after`, the call resolves to `Err(E::from(timeout error))`.
    #[inline]
    pub fn with_timeout<T, E>(
        mut call: Offload<Result<T, E>>,
        after: Duration,
    ) -> Offload<Result<T, E>>
    where
        E: TimeoutError,
    {
        call.set_timeout(after, |e| Err(E::from_timeout(e)));
        call
    }

    /// A `#[local]` function without `timeout`: if its error type `E` has
    /// `From<offthread::Error>`, a call that fails for offthread's reasons (its worker-local
    /// value could not be made, its pool is shut down) resolves to `Err(E::from(err))`
    /// instead of panicking in the awaiting task. The expansion picks the mapping with
    /// [`ErrorsInto`], which finds none for other return types.
    #[inline]
    pub fn with_errors_into<T>(
        mut call: Offload<T>,
        on_error: Option<fn(Error) -> T>,
    ) -> Offload<T> {
        if let Some(on_error) = on_error {
            call.set_on_error(on_error);
        }
        call
    }

    /// Picks, at compile time, how a function returning `R` takes offthread's errors:
    /// `(&ErrorsInto::<R>::NEW).on_error()` is `Some(|e| Err(E::from(e)))` when `R` is
    /// `Result<T, E>` with `E: From<Error>` (through [`IntoErr`]), and `None` otherwise
    /// (through [`NoErr`], found one auto-reference later).
    pub struct ErrorsInto<R>(::core::marker::PhantomData<fn() -> R>);

    impl<R> ErrorsInto<R> {
        /// The value the expansion takes a reference of.
        pub const NEW: ErrorsInto<R> = ErrorsInto(::core::marker::PhantomData);
    }

    /// The mapping for `Result<T, E>` where `E: From<offthread::Error>`.
    pub trait IntoErr<R> {
        /// `Some` mapping.
        fn on_error(&self) -> Option<fn(Error) -> R>;
    }

    impl<T, E: From<Error>> IntoErr<Result<T, E>> for ErrorsInto<Result<T, E>> {
        #[inline]
        fn on_error(&self) -> Option<fn(Error) -> Result<T, E>> {
            Some(|e| Err(E::from(e)))
        }
    }

    /// No mapping: any other return type.
    pub trait NoErr<R> {
        /// `None`.
        fn on_error(&self) -> Option<fn(Error) -> R>;
    }

    impl<R> NoErr<R> for &ErrorsInto<R> {
        #[inline]
        fn on_error(&self) -> Option<fn(Error) -> R> {
            None
        }
    }

    /// `timeout = "..", timeout_error = f`: past `after`, the call resolves to
    /// `on_timeout(timeout error)`, which the expansion writes as `|e| Err(f(e))`.
    #[inline]
    pub fn with_timeout_as<T>(
        mut call: Offload<T>,
        after: Duration,
        on_timeout: fn(Error) -> T,
    ) -> Offload<T> {
        call.set_timeout(after, on_timeout);
        call
    }
}
