//! Call blocking code from async Rust without stalling the executor.
//!
//! ```
//! let n = futures::executor::block_on(offthread::spawn(|| 6 * 7));
//! assert_eq!(n, 42);
//! ```

#![forbid(unsafe_code)]

pub use offthread_macros::offload;
pub use offthread_runtime::{
    configure_default, default_pool, is_cancelled, spawn, Builder, Checked, Error, Metrics,
    Offload, Pool, ShutdownReport, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_THREADS, MAX_THREADS_ENV,
    MAX_THREADS_RANGE,
};

#[doc(hidden)]
pub mod __private {
    pub use offthread_runtime::__private::*;
}
