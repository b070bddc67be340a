//! Call blocking code from async Rust without stalling the executor: `#[offload]` and a
//! fast, bounded thread pool.
//!
//! Most libraries that touch a database, a file system or a legacy SDK are synchronous.
//! Call one inside an async task and every other task on that executor thread waits until
//! it returns. `#[offload]` makes such a function return a future instead; its body runs on
//! a dedicated pool and the executor stays free.
//!
//! ```
//! use offthread::offload;
//!
//! #[offload]
//! fn word_count(text: &str) -> usize {
//!     std::thread::sleep(std::time::Duration::from_millis(5)); // stands for blocking I/O
//!     text.split_whitespace().count()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let n = word_count("async when you can, threads when you must").await;
//! assert_eq!(n, 8);
//! # }
//! ```
//!
//! It works under any executor: tokio (both flavours), smol, `futures::executor::block_on`.
//! offthread brings none of its own, so add the one your program runs on: `futures` for
//! `futures::executor::block_on` (as in most examples here), `tokio` with the
//! `rt-multi-thread` and `macros` features for `#[tokio::main]`, or `smol`.
//!
//! # What it expands to
//!
//! The function keeps its name, visibility, attributes, generics and parameters; its return
//! type `R` becomes [`Offload<R>`], a `Send + Unpin + 'static` future of the body's value.
//! Borrowed arguments are copied at the call (`&str` to `String`, `&[u8]` to `Vec<u8>`,
//! `&Path` to `PathBuf`, `&T` to a clone), so the future borrows nothing from the caller:
//!
//! ```text
//! fn word_count(text: &str) -> ::offthread::Offload<usize> {
//!     let copy = ToOwned::to_owned(text);
//!     ::offthread::Pool::spawn(::offthread::default_pool(), move || {
//!         let text: &str = Borrow::borrow(&copy);
//!         text.split_whitespace().count()
//!     })
//! }
//! ```
//!
//! Calling it runs nothing: like an `async fn`, the first poll submits the body.
//!
//! # Options
//!
//! ```
//! use std::sync::LazyLock;
//! use offthread::{offload, Pool};
//!
//! static FILES: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("files").max_threads(4).build());
//!
//! #[derive(Debug)]
//! enum FsError { Io(std::io::Error), Offthread(offthread::Error) }
//! impl From<offthread::Error> for FsError {
//!     fn from(e: offthread::Error) -> Self { FsError::Offthread(e) }
//! }
//!
//! #[offload(pool = FILES, limit = 2, timeout = "5s", sync = read_config_blocking)]
//! fn read_config(path: &std::path::Path) -> Result<String, FsError> {
//!     std::fs::read_to_string(path).map_err(FsError::Io)
//! }
//!
//! # futures::executor::block_on(async {
//! let text = read_config("Cargo.toml".as_ref()).await.unwrap();   // on a "files-*" thread
//! assert_eq!(text, read_config_blocking("Cargo.toml".as_ref()).unwrap());
//! # });
//! ```
//!
//! | option | meaning |
//! | --- | --- |
//! | `pool = DB` | run on this pool (a `static` that derefs to [`Pool`], or any `&Pool`) instead of the [default pool](default_pool) |
//! | `limit = N` | at most `N` bodies of this function run at once; excess callers wait asynchronously in FIFO order, holding no thread and no queue slot. A body that calls its own `limit`ed function again (and blocks on it) waits for a permit it may itself hold: don't recurse through a limit |
//! | `timeout = "250ms"` | for `Result<T, E>` with `E: From<offthread::Error>`: past the time, the call resolves to `Err(E::from(err))` with `err.is_timeout()`; a body not yet started never starts, a running one sees [`is_cancelled`] turn true |
//! | `timeout_error = path` | with `timeout`, for an error type with no `From<offthread::Error>` (a foreign one, such as `diesel::result::Error`): a `fn(offthread::Error) -> E`; past the time, the call resolves to `Err(path(err))` |
//! | `sync = name` | also keep the original blocking function, under `name` |
//! | `crate = path` | where to find `offthread` if it was renamed in `Cargo.toml` |
//!
//! An error type you cannot give `From<offthread::Error>` (it belongs to another crate) takes
//! a timeout through a conversion named in the attribute:
//!
//! ```
//! use offthread::offload;
//!
//! #[derive(Debug)]
//! enum LibError { TimedOut, NotFound }   // stands for `diesel::result::Error`
//!
//! fn timed_out(_: offthread::Error) -> LibError { LibError::TimedOut }
//!
//! #[offload(timeout = "20ms", timeout_error = timed_out)]
//! fn lookup(slow: bool) -> Result<u8, LibError> {
//!     if slow { std::thread::sleep(std::time::Duration::from_secs(1)); }
//!     Err(LibError::NotFound)
//! }
//!
//! # futures::executor::block_on(async {
//! assert!(matches!(lookup(true).await, Err(LibError::TimedOut)));
//! assert!(matches!(lookup(false).await, Err(LibError::NotFound)));
//! # });
//! ```
//!
//! # Per-worker resources: `#[local]`
//!
//! A connection should be neither opened nor checked out per call. Register it with
//! [`Builder::worker_local`] and mark the parameter `#[local]`: each worker thread makes its
//! own on first use and keeps it; the parameter disappears from the function's signature.
//!
//! ```
//! use std::sync::LazyLock;
//! use offthread::{offload, Pool};
//!
//! struct Conn { calls: u32 }   // stands for a real connection, e.g. Diesel's
//!
//! static DATA: LazyLock<Pool> = LazyLock::new(|| {
//!     Pool::builder().name("data").max_threads(1).worker_local(|| Conn { calls: 0 }).build()
//! });
//!
//! #[offload(pool = DATA)]
//! fn calls_so_far(#[local] conn: &mut Conn) -> u32 {
//!     conn.calls += 1;
//!     conn.calls
//! }
//!
//! # futures::executor::block_on(async {
//! assert_eq!(calls_so_far().await, 1);
//! assert_eq!(calls_so_far().await, 2);   // the same worker, the same connection
//! # });
//! ```
//!
//! A pool without a `worker_local` of that type fails the call with an error naming the type
//! and the pool.
//!
//! # Traits and impl blocks: the repository pattern
//!
//! `#[offload]` on a trait declares each of its methods to return [`Offload<R>`], a concrete
//! future type: the trait stays dyn-compatible (`Arc<dyn UserRepo>` in an app's state) with
//! no boxed futures. On an impl block it offloads every method with a body, with the block's
//! options as defaults; a method's own `#[offload(..)]` adds to or overrides them, and
//! `#[offload(skip)]` leaves a method alone. A fake for tests answers with
//! [`Offload::ready`], which needs no pool:
//!
//! ```
//! use std::sync::{Arc, LazyLock};
//! use offthread::{offload, Offload, Pool};
//!
//! #[offload]
//! trait UserRepo: Send + Sync {
//!     fn name(&self, id: u32) -> Option<String>;   // declared `-> Offload<Option<String>>`
//! }
//!
//! struct Conn;   // stands for a real connection, e.g. Diesel's `SqliteConnection`
//! impl Conn {
//!     fn query_name(&mut self, id: u32) -> Option<String> { (id == 7).then(|| "ada".into()) }
//! }
//!
//! static DB: LazyLock<Pool> =
//!     LazyLock::new(|| Pool::builder().name("db").worker_local(|| Conn).build());
//!
//! #[derive(Clone)]
//! struct SqlRepo;
//!
//! #[offload(pool = DB)]
//! impl UserRepo for SqlRepo {
//!     fn name(&self, #[local] conn: &mut Conn, id: u32) -> Option<String> {
//!         conn.query_name(id)   // on a "db-*" thread, with that thread's connection
//!     }
//! }
//!
//! struct FakeRepo;
//!
//! impl UserRepo for FakeRepo {
//!     fn name(&self, _: u32) -> Offload<Option<String>> {
//!         Offload::ready(Some("fake".into()))
//!     }
//! }
//!
//! # futures::executor::block_on(async {
//! let repos: [Arc<dyn UserRepo>; 2] = [Arc::new(SqlRepo), Arc::new(FakeRepo)];
//! assert_eq!(repos[0].name(7).await.as_deref(), Some("ada"));
//! assert_eq!(repos[1].name(7).await.as_deref(), Some("fake"));
//! # });
//! ```
//!
//! A trait method with a default body is an error (the trait cannot know that `Self` can be
//! copied to a worker), unless it is `#[offload(skip)]`, which keeps it a plain method. In
//! impl blocks, `sync = name` goes on a method (and only in inherent impls), and
//! constructors and other methods that should not be offloaded take `#[offload(skip)]`.
//!
//! # Cancellation, panics and errors
//!
//! Drop an [`Offload`] before its body starts and the body never runs. Drop it while the
//! body runs and the body runs to its end (a thread cannot be stopped safely), with
//! [`is_cancelled`] returning true inside it, and its result is dropped.
//!
//! A panic in the body resumes in the task that awaits it, with its original payload; the
//! worker survives. [`Offload::checked`] gives `Result<T, offthread::Error>` instead:
//!
//! ```
//! # futures::executor::block_on(async {
//! let err = offthread::spawn(|| -> u8 { panic!("corrupt page") }).checked().await.unwrap_err();
//! assert!(err.is_panic());
//! # });
//! ```
//!
//! # Pools, metrics, shutdown
//!
//! ```
//! use std::time::Duration;
//! use offthread::Pool;
//!
//! let pool = Pool::builder().name("db").min_threads(1).max_threads(8).queue_capacity(1024).build();
//! let rows = futures::executor::block_on(pool.spawn(|| vec![1, 2, 3]));
//! assert_eq!(rows.len(), 3);
//! let m = pool.metrics();
//! assert_eq!((m.submitted, m.completed), (1, 1));
//! let report = pool.shutdown(Duration::from_secs(5));
//! assert_eq!(report.still_running, 0);
//! ```
//!
//! The pool starts threads on demand, up to the CPU count at once; past that it adds threads
//! when the queue stops moving (a call queued behind bodies that never end still starts
//! within milliseconds) or while queued work waits behind *blocked* threads, so microsecond
//! jobs run on a couple of threads however many callers there are, busy loops get few, and
//! a thousand sleeping calls get dozens. At `max_threads`, calls wait in the order they came.
//! The default pool's cap is [`DEFAULT_MAX_THREADS`], or `OFFTHREAD_MAX_THREADS`, or what
//! [`configure_default`] set before its first use.
//!
//! # Features
//!
//! `tracing`: the span current at the call is entered while the body runs on its worker.
//!
//! `metrics`: `publish_metrics()` hands every live pool's and every `#[offload]`
//! function's figures ([`function_metrics`]) to the installed
//! [`metrics`](https://docs.rs/metrics) recorder, for the exporter the application runs.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use offthread_macros::offload;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use offthread_runtime::publish_metrics;
pub use offthread_runtime::{
    configure_default, default_pool, function_metrics, is_cancelled, on_cancel, spawn, Builder,
    Checked, Error, FunctionMetrics, Metrics, Offload, Pool, ShutdownReport, DEFAULT_KEEP_ALIVE,
    DEFAULT_LOCAL_KEEP_ALIVE, DEFAULT_MAX_THREADS, MAX_THREADS_ENV, MAX_THREADS_RANGE,
};

// The README's examples are compiled and run as doctests, so it cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use offthread_runtime::__private::*;
}
