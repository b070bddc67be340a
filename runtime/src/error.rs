//! [`Error`]: why an offloaded call produced no value.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why an offloaded call did not produce its value.
///
/// Returned by [`Offload::checked`](crate::Offload::checked), by [`Builder::try_build`]
/// and [`configure_default`](crate::configure_default), and converted into the user's error
/// type by `#[offload(timeout = ..)]`. Like tokio's `JoinError`, it tells a panic (whose
/// payload [`into_panic`](Error::into_panic) returns) from a job that could not run.
///
/// [`Builder::try_build`]: crate::Builder::try_build
///
/// # Examples
///
/// ```
/// let pool = offthread::Pool::builder().name("ex").build();
/// let err = futures::executor::block_on(pool.spawn(|| panic!("boom")).checked()).unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "boom");
/// ```
pub struct Error {
    /// Boxed so that a job's result slot (`Result<T, Error>`) stays one word larger than `T`.
    kind: Box<Kind>,
}

enum Kind {
    /// The body panicked. The payload sits in a `Mutex` only so that `Error` is `Sync`
    /// without `unsafe`; it is never locked concurrently.
    Panic {
        payload: Mutex<Box<dyn Any + Send + 'static>>,
        message: Option<String>,
    },
    /// The pool was shut down before the job could run.
    Shutdown { pool: Arc<str> },
    /// The body had not finished within its timeout.
    Timeout { after: Duration },
    /// The pool has no thread and could not start one.
    NoThreads {
        pool: Arc<str>,
        cause: std::io::Error,
    },
    /// The pool has no per-worker resource of the type a `#[local]` parameter needs.
    MissingLocal(MissingLocal),
    /// A `try_worker_local` init failed, now or lately (the call was not retried yet).
    LocalInit {
        type_name: &'static str,
        pool: Arc<str>,
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
        /// The init was not run for this call: an earlier failure is retried after this.
        retry_in: Option<Duration>,
    },
    /// Bad pool settings, or the default pool configured too late.
    Config { message: String },
}

/// What a pool that lacks a `#[local]` resource says.
pub(crate) struct MissingLocal {
    pub(crate) type_name: &'static str,
    pub(crate) pool: Arc<str>,
}

/// The payload a call unwinds with (without the panic hook, through
/// [`std::panic::resume_unwind`]) when it fails before its body could run, such as a missing
/// or failed `#[local]` resource: the job turns it back into this error, not a panic.
pub(crate) struct Failure(pub(crate) Error);

impl Error {
    /// The error of a body that unwound with `payload`: a panic, or a [`Failure`].
    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Error {
        let payload = match payload.downcast::<Failure>() {
            Ok(failure) => return failure.0,
            Err(payload) => payload,
        };
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Some((*s).to_owned())
        } else {
            payload.downcast_ref::<String>().cloned()
        };
        Error {
            kind: Box::new(Kind::Panic {
                payload: Mutex::new(payload),
                message,
            }),
        }
    }

    pub(crate) fn missing_local(missing: MissingLocal) -> Error {
        Error {
            kind: Box::new(Kind::MissingLocal(missing)),
        }
    }

    pub(crate) fn local_init(
        type_name: &'static str,
        pool: Arc<str>,
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
        retry_in: Option<Duration>,
    ) -> Error {
        Error {
            kind: Box::new(Kind::LocalInit {
                type_name,
                pool,
                source,
                retry_in,
            }),
        }
    }

    pub(crate) fn shutdown(pool: Arc<str>) -> Error {
        Error {
            kind: Box::new(Kind::Shutdown { pool }),
        }
    }

    pub(crate) fn timeout(after: Duration) -> Error {
        Error {
            kind: Box::new(Kind::Timeout { after }),
        }
    }

    pub(crate) fn no_threads(pool: Arc<str>, cause: std::io::Error) -> Error {
        Error {
            kind: Box::new(Kind::NoThreads { pool, cause }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error {
            kind: Box::new(Kind::Config {
                message: message.into(),
            }),
        }
    }

    /// True if the body panicked; [`into_panic`](Error::into_panic) gives the payload.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().build();
    /// let err = futures::executor::block_on(pool.spawn(|| panic!("x")).checked()).unwrap_err();
    /// assert!(err.is_panic() && !err.is_shutdown() && !err.is_timeout());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(*self.kind, Kind::Panic { .. })
    }

    /// True if the job never ran because its pool was shut down (or all its handles dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = offthread::Pool::builder().build();
    /// pool.shutdown(Duration::ZERO);
    /// let err = futures::executor::block_on(pool.spawn(|| 1).checked()).unwrap_err();
    /// assert!(err.is_shutdown());
    /// ```
    pub fn is_shutdown(&self) -> bool {
        matches!(*self.kind, Kind::Shutdown { .. })
    }

    /// True if the call did not finish within the `timeout` given to `#[offload]`.
    ///
    /// A body that had not started never starts; a running body goes on, sees
    /// [`is_cancelled`](crate::is_cancelled) turn true, and its result is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use offthread::offload;
    /// use std::time::Duration;
    ///
    /// #[offload(timeout = "10ms")]
    /// fn slow() -> Result<(), offthread::Error> {
    ///     std::thread::sleep(Duration::from_millis(200));
    ///     Ok(())
    /// }
    ///
    /// assert!(futures::executor::block_on(slow()).unwrap_err().is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(*self.kind, Kind::Timeout { .. })
    }

    /// True if the call failed because its pool had no thread and the OS refused to start
    /// one (a thread limit, no memory, an impossible `stack_size`). Calls made while the
    /// pool has some threads wait for those instead.
    ///
    /// # Examples
    ///
    /// ```
    /// // A stack no OS can give: the pool cannot start its first thread.
    /// let pool = offthread::Pool::builder().stack_size(usize::MAX / 2).build();
    /// let err = futures::executor::block_on(pool.spawn(|| 1).checked()).unwrap_err();
    /// assert!(err.is_no_threads());
    /// ```
    pub fn is_no_threads(&self) -> bool {
        matches!(*self.kind, Kind::NoThreads { .. })
    }

    /// True if the call failed because the worker could not make the `#[local]` resource it
    /// needs: the `init` given to [`Builder::try_worker_local`] returned an error, on this
    /// call or on a recent one whose retry is not due yet. [`source`] is that error.
    ///
    /// [`Builder::try_worker_local`]: crate::Builder::try_worker_local
    /// [`source`]: std::error::Error::source
    ///
    /// # Examples
    ///
    /// ```
    /// use std::error::Error as _;
    /// use offthread::Pool;
    ///
    /// struct Conn;
    /// let pool = Pool::builder()
    ///     .try_worker_local(|| Err::<Conn, _>(std::io::Error::other("connection refused")))
    ///     .build();
    /// let err = futures::executor::block_on(pool.spawn_local(|_: &mut Conn| ()).checked()).unwrap_err();
    /// assert!(err.is_local_init() && !err.is_panic());
    /// assert_eq!(err.source().unwrap().to_string(), "connection refused");
    /// ```
    pub fn is_local_init(&self) -> bool {
        matches!(*self.kind, Kind::LocalInit { .. })
    }

    /// The panic payload, to resume with [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// If this error is not a panic, like tokio's `JoinError::into_panic`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = offthread::Pool::builder().build();
    /// let err = futures::executor::block_on(pool.spawn(|| std::panic::panic_any(7_u8)).checked());
    /// assert_eq!(*err.unwrap_err().into_panic().downcast::<u8>().unwrap(), 7);
    /// ```
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match *self.kind {
            Kind::Panic { payload, .. } => payload
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            _ => panic!("`Error::into_panic` called on an error that is not a panic: {self}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::Panic {
                message: Some(m), ..
            } => write!(f, "offloaded body panicked: {m}"),
            Kind::Panic { message: None, .. } => f.write_str("offloaded body panicked"),
            Kind::Shutdown { pool } => write!(
                f,
                "pool `{pool}` is shut down: the offloaded job could not run"
            ),
            Kind::Timeout { after } => write!(f, "offloaded call timed out after {after:?}"),
            Kind::NoThreads { pool, cause } => write!(
                f,
                "pool `{pool}` has no thread and the OS refused to start one ({cause}): \
                 the offloaded job could not run"
            ),
            Kind::MissingLocal(MissingLocal { type_name, pool }) => write!(
                f,
                "pool `{pool}` has no worker-local `{type_name}` for a `#[local]` parameter: \
                 register one with `Builder::worker_local`"
            ),
            Kind::LocalInit {
                type_name,
                pool,
                source,
                retry_in: None,
            } => write!(
                f,
                "pool `{pool}` could not make its worker-local `{type_name}`: {source}"
            ),
            Kind::LocalInit {
                type_name,
                pool,
                source,
                retry_in: Some(retry_in),
            } if retry_in.is_zero() => write!(
                f,
                "pool `{pool}` could not make its worker-local `{type_name}`: {source} \
                 (the last attempt failed; another is under way)"
            ),
            Kind::LocalInit {
                type_name,
                pool,
                source,
                retry_in: Some(retry_in),
            } => write!(
                f,
                "pool `{pool}` could not make its worker-local `{type_name}`: {source} \
                 (the last attempt failed; the next one is due in {} ms)",
                retry_in.as_millis()
            ),
            Kind::Config { message } => f.write_str(message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match *self.kind {
            Kind::Panic { .. } => "Panic",
            Kind::Shutdown { .. } => "Shutdown",
            Kind::Timeout { .. } => "Timeout",
            Kind::NoThreads { .. } => "NoThreads",
            Kind::MissingLocal(_) => "MissingLocal",
            Kind::LocalInit { .. } => "LocalInit",
            Kind::Config { .. } => "Config",
        };
        f.debug_struct("Error")
            .field("kind", &kind)
            .field("message", &self.to_string())
            .finish()
    }
}

/// The source of a [local init](Error::is_local_init) error is the init's own error.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            Kind::LocalInit { source, .. } => Some(&**source),
            Kind::NoThreads { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// So that `#[offload(timeout = ..)]` works on functions returning `std::io::Result<T>`,
/// like tokio's `JoinError`: a timeout becomes [`TimedOut`](std::io::ErrorKind::TimedOut),
/// anything else [`Other`](std::io::ErrorKind::Other), with this error as the source.
///
/// # Examples
///
/// ```
/// let pool = offthread::Pool::builder().build();
/// pool.shutdown(std::time::Duration::ZERO);
/// let err = futures::executor::block_on(pool.spawn(|| ()).checked()).unwrap_err();
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::Other);
/// ```
impl From<Error> for std::io::Error {
    fn from(err: Error) -> std::io::Error {
        let kind = if err.is_timeout() {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, err)
    }
}
