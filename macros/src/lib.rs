//! The `#[offload]` attribute macro of [offthread](https://docs.rs/offthread): one line turns
//! a blocking function into one that returns a future of its result, computed on a thread
//! pool.
//!
//! Use it through the `offthread` crate (`use offthread::offload;`), which provides the pool
//! and the `Offload<T>` future the expansion refers to.

mod args;
mod blocks;
mod errors;
mod expand;
mod item;
mod receiver;
mod signature;
mod validate;

use proc_macro::TokenStream;

/// Turns a blocking function into one that returns a future of its result, computed on a
/// thread pool.
///
/// The function keeps its name, visibility, attributes, generics and parameters; its return
/// type `R` becomes `offthread::Offload<R>`, a `Send + 'static` future whose output is exactly
/// what the body returned. Calling it runs nothing: the first poll submits the body to the
/// pool, like an `async fn`. It works under any executor.
///
/// ```
/// use offthread::offload;
/// use std::path::Path;
///
/// #[offload]
/// fn checksum(path: &Path) -> std::io::Result<u32> {
///     let bytes = std::fs::read(path)?; // blocking: runs on the pool
///     Ok(bytes.iter().map(|&b| u32::from(b)).sum())
/// }
///
/// # futures::executor::block_on(async {
/// let sum = checksum(Path::new("Cargo.toml")).await?;
/// assert!(sum > 0);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
///
/// # What it expands to
///
/// The body moves into a closure handed to the pool, and the function returns the job:
///
/// ```text
/// fn checksum(path: &Path) -> ::offthread::Offload<std::io::Result<u32>> {
///     let copy = ::std::borrow::ToOwned::to_owned(path); // a PathBuf, made at the call
///     ::offthread::Pool::spawn(::offthread::default_pool(), move || -> std::io::Result<u32> {
///         let path: &Path = ::std::borrow::Borrow::borrow(&copy);
///         let bytes = std::fs::read(path)?;
///         Ok(bytes.iter().map(|&b| u32::from(b)).sum())
///     })
/// }
/// ```
///
/// Parameters reach the body like this:
///
/// - by value (`x: T`, patterns such as `(a, b): (u8, u8)` or `mut x`, `impl Trait`): moved
///   into the job;
/// - `&T` (`&str`, `&[u8]`, `&Path`, `&SomeClone`, and `&self` on a `Clone` type): copied
///   with `ToOwned` at the call, and the body borrows the copy, so the future borrows nothing
///   from the caller and can be spawned after the borrowed value is gone;
/// - `self`, `mut self`, `self: Arc<Self>`, `self: Box<Self>`: moved;
/// - `&mut T` and `&mut self`: rejected, since the body would change a copy and the change
///   would be lost. Take the value by value and return it, or, for a per-worker resource such
///   as a database connection, use a `#[local]` parameter;
/// - `#[local] conn: &mut T` or `#[local] conn: &T`: not a parameter of the generated
///   function at all; the body gets the worker's own `T` (see below).
///
/// Every parameter, after the copy, and the return type must be `Send + 'static`; when one is
/// not, rustc's error points at that parameter. The return type cannot borrow from the
/// parameters (`-> &str` is rejected; `-> &'static str` is fine).
///
/// # Traits and impl blocks
///
/// On a trait, it declares every method to return `offthread::Offload<R>`, a concrete future
/// type, so the trait stays dyn-compatible (`Arc<dyn Repo>`) with no boxed futures. On an impl
/// block (inherent, or of such a trait), it offloads every method with a body, with the
/// block's options as defaults; a method's own `#[offload(..)]` adds to them or overrides
/// them, `#[offload(skip)]` leaves a method alone (a constructor, a cheap getter), and items
/// other than methods pass through.
///
/// ```
/// use std::sync::{Arc, LazyLock};
/// use offthread::{offload, Offload, Pool};
///
/// #[derive(Clone, Debug, PartialEq)]
/// pub struct User { pub id: i32 }
/// #[derive(Debug)]
/// pub enum DbError { NotFound, TimedOut }          // stands for `diesel::result::Error`
/// pub struct Conn;                                 // stands for `SqliteConnection`
///
/// fn timed_out(_: offthread::Error) -> DbError { DbError::TimedOut }
///
/// static DB: LazyLock<Pool> =
///     LazyLock::new(|| Pool::builder().name("db").worker_local(|| Conn).build());
///
/// #[offload]
/// pub trait UserRepo: Send + Sync {
///     fn find(&self, id: i32) -> Result<User, DbError>; // -> Offload<Result<User, DbError>>
///     #[offload(skip)]
///     fn name(&self) -> &'static str { "users" }        // a plain method, left alone
/// }
///
/// #[derive(Clone)]
/// pub struct SqlRepo;
///
/// #[offload(pool = DB, timeout = "2s", timeout_error = timed_out)]
/// impl UserRepo for SqlRepo {
///     fn find(&self, #[local] conn: &mut Conn, id: i32) -> Result<User, DbError> {
///         let _: &mut Conn = conn;                      // the worker's own connection
///         if id == 7 { Ok(User { id }) } else { Err(DbError::NotFound) }
///     }
/// }
///
/// pub struct FakeRepo;                                  // for tests: no pool, no thread
///
/// impl UserRepo for FakeRepo {
///     fn find(&self, id: i32) -> Offload<Result<User, DbError>> {
///         Offload::ready(Ok(User { id }))
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let repo: Arc<dyn UserRepo> = Arc::new(SqlRepo);
/// assert_eq!(repo.find(7).await.unwrap(), User { id: 7 });
/// let fake: Arc<dyn UserRepo> = Arc::new(FakeRepo);
/// assert_eq!(fake.find(8).await.unwrap(), User { id: 8 });
/// # });
/// ```
///
/// - A trait method with a default body is rejected: the trait cannot know that `Self` can
///   be copied to a worker thread. Write the body in each impl, or mark the method
///   `#[offload(skip)]` to keep it a plain, blocking method. In a trait, the options other
///   than `crate` belong to the impls and are rejected, as are `#[local]` parameters (callers
///   of the trait do not pass them: put them on the impl's method) and `&mut` parameters.
/// - In an impl block, `sync = name` goes on a method (one name, one function), and not in
///   an impl of a trait; `skip` goes on a method, not on the block.
///
/// A single method of a trait impl can also carry `#[offload]` by itself, when its trait
/// declares it as `fn m(&self, ..) -> offthread::Offload<R>` or as
/// `fn m(&self, ..) -> impl Future<Output = R> + Send`:
///
/// ```
/// use offthread::offload;
/// use std::future::Future;
/// use std::path::PathBuf;
///
/// trait Store {
///     fn get(&self, key: &str) -> impl Future<Output = Option<Vec<u8>>> + Send;
/// }
///
/// #[derive(Clone)]
/// struct Disk { dir: PathBuf }
///
/// impl Store for Disk {
///     #[offload]
///     fn get(&self, key: &str) -> Option<Vec<u8>> {
///         std::fs::read(self.dir.join(key)).ok()
///     }
/// }
///
/// let disk = Disk { dir: PathBuf::from(".") };
/// assert!(futures::executor::block_on(disk.get("Cargo.toml")).is_some());
/// ```
///
/// `async fn`, `const fn`, `unsafe fn`, `extern` functions and variadic functions are
/// rejected, each with an error on the offending keyword.
///
/// A rejected function is still emitted, in the shape it would have had (the `Offload<R>`
/// signature, with a body that never runs), so the callers that `.await` it compile and the
/// only errors are the attribute's own.
///
/// The body is the user's code, untouched: inner attributes (`#![allow(..)]`) stay inside it
/// (and inside the `sync` twin), and a syntax error in it is reported by the compiler where
/// it is.
///
/// # Options
///
/// All optional, each at most once, separated by commas:
///
/// | option | meaning |
/// | --- | --- |
/// | `pool = DB` | run on this pool instead of the default one. `DB` is a path to a `static` that dereferences to `offthread::Pool` (such as `static DB: LazyLock<Pool>`), or any expression of type `&Pool`; it is evaluated at each call. |
/// | `limit = N` | at most `N` bodies of this function run at once, across all callers. Excess callers wait asynchronously, in FIFO order, without holding a thread or a queue slot. The permit is held until the body returns, even if the caller has dropped the future. `N` is a constant expression of type `usize`, at least 1. |
/// | `timeout = "250ms"` | only for functions returning `Result<T, E>` (spelled `Result<..>` or an alias ending in `Result`, so `io::Result<T>` and Diesel's `QueryResult<T>` count): if the body has not finished in time, the future resolves to `Err(E::from(err))` where `err.is_timeout()`, which needs `E: From<offthread::Error>`; for an error type without it, name a conversion with `timeout_error`. A body not yet started never starts; a running one sees `offthread::is_cancelled()` turn true. Units `ms`, `s` and `m`, whole numbers only. With `limit`, the time spent waiting for a permit counts. |
/// | `timeout_error = path` | with `timeout`: a function (or a closure that captures nothing) `fn(offthread::Error) -> E` that makes the function's error type from the timeout, for an `E` with no `From<offthread::Error>`, such as `diesel::result::Error`: the future resolves to `Err(path(err))`. |
/// | `sync = name` | also emit the original blocking function under `name`, with the same attributes, visibility, generics and parameters, for sync callers and tests. Not in trait impls, where the extra method would not belong to the trait. |
/// | `crate = path` | the path of the `offthread` crate when it was renamed in `Cargo.toml` (`crate = ::my_offthread`). |
/// | `skip` | on a method of an `#[offload]` impl block or trait: leave this method alone. |
///
/// ```
/// use std::sync::LazyLock;
/// use offthread::{offload, Pool};
///
/// #[derive(Debug)]
/// pub enum AppError { Offthread(offthread::Error), NotFound }
/// impl From<offthread::Error> for AppError {
///     fn from(e: offthread::Error) -> Self { AppError::Offthread(e) }
/// }
///
/// static DB: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("db").build());
///
/// #[offload(pool = DB, limit = 4, timeout = "2s", sync = find_user_blocking)]
/// pub fn find_user(name: &str) -> Result<String, AppError> {
///     if name == "ada" { Ok(name.to_uppercase()) } else { Err(AppError::NotFound) }
/// }
///
/// // An error type of another crate cannot be given `From<offthread::Error>`, such as
/// // `diesel::result::Error` (whose `QueryBuilderError` takes any error):
/// #[derive(Debug)]
/// pub enum ForeignError { QueryBuilderError(Box<dyn std::error::Error + Send + Sync>) }
/// fn to_foreign(err: offthread::Error) -> ForeignError {
///     ForeignError::QueryBuilderError(Box::new(err))
/// }
///
/// #[offload(pool = DB, timeout = "2s", timeout_error = to_foreign)]
/// fn count_users() -> Result<i64, ForeignError> {
///     Ok(2)
/// }
///
/// # futures::executor::block_on(async {
/// assert_eq!(find_user("ada").await.unwrap(), "ADA");
/// assert_eq!(find_user_blocking("ada").unwrap(), "ADA");
/// assert_eq!(count_users().await.unwrap(), 2);
/// # });
/// ```
///
/// # Per-worker resources: `#[local]`
///
/// A parameter marked `#[local]` is a resource each thread of the pool keeps for itself, such
/// as a database connection, registered on the pool with `Builder::worker_local`. It
/// disappears from the generated signature: callers never pass it, and the body gets the
/// value of the worker it runs on, made by the registered `init` the first time that worker
/// needs one and reused by every later call there. There is no checkout per call, and `T`
/// need not be `Send`.
///
/// ```
/// use std::sync::LazyLock;
/// use offthread::{offload, Pool};
///
/// pub struct SqliteConnection { queries: u32 } // stands for Diesel's
///
/// static DB: LazyLock<Pool> = LazyLock::new(|| {
///     Pool::builder()
///         .name("db")
///         .max_threads(4)
///         .worker_local(|| SqliteConnection { queries: 0 }) // `establish("app.db")`, once per thread
///         .build()
/// });
///
/// #[offload(pool = DB)]
/// fn find_user(#[local] conn: &mut SqliteConnection, id: i32) -> Option<String> {
///     conn.queries += 1;
///     (id == 7).then(|| "ada".to_owned())
/// }
///
/// # futures::executor::block_on(async {
/// let user = find_user(7).await; // no connection at the call
/// assert_eq!(user.as_deref(), Some("ada"));
/// # });
/// ```
///
/// It expands to the worker-local form of the job, whose closure takes the worker's value:
///
/// ```text
/// fn find_user(id: i32) -> ::offthread::Offload<Option<String>> {
///     ::offthread::Pool::spawn_local::<SqliteConnection, _, _>(
///         &*(DB),
///         move |conn: &mut SqliteConnection| -> Option<String> {
///             conn.queries += 1;
///             (id == 7).then(|| "ada".to_owned())
///         },
///     )
/// }
/// ```
///
/// - `#[local] conn: &T` gives the body a shared borrow of the same value (`&*` of it).
/// - It goes anywhere in the parameter list, next to `&self` or `self`, and works with every
///   option. With `#[cfg(..)]` on it, the function exists in two forms: with the resource
///   where the `cfg` holds, and without it (an ordinary offloaded function) where it does
///   not. With `sync = name`, the blocking twin keeps the parameter as an ordinary one
///   (`find_user_blocking(&mut my_conn, 7)`): sync callers pass their own value.
/// - At most one `#[local]` parameter per function: to give a body two resources, put them in
///   one struct and register that.
/// - A pool without a `worker_local` of type `T` fails the call at run time: `.checked()`
///   gives an `Error` whose message names `T` and the pool, and a plain `.await` panics with
///   that message. If `init` panics, only that call fails; the next call on that worker tries
///   again. A body that panics drops the value it held (it may be mid-transaction).
/// - Compile errors: `#[local]` on a parameter that is not a reference (`#[local] conn: Conn`;
///   take `&mut Conn` or `&Conn`), with arguments (`#[local(x)]`), on `self`, twice, or on
///   `&mut impl Trait` (the type picks the pool's value, so it must be named).
///
/// # Hygiene
///
/// The expansion names everything by absolute paths (`::offthread::Pool::spawn`,
/// `::offthread::__private::...`), so it compiles in `#![no_implicit_prelude]` modules and
/// next to user items named `core`, `std`, `Result` or `Box`; its own local names cannot
/// clash with parameter names. It adds `#[allow(refining_impl_trait, clippy::double_must_use,
/// clippy::type_complexity, clippy::redundant_closure_call)]` to the function: for trait
/// impls, for a `#[must_use]` the user wrote on a function whose `Offload` is already
/// `#[must_use]`, for the extra `Offload<..>` around the return type, and for a
/// `timeout_error` written as a closure, which the expansion calls in place.
#[proc_macro_attribute]
pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    item::offload(args.into(), item.into()).into()
}
