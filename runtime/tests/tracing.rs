//! Feature `tracing`: the span current at the call is entered while the body runs, on the
//! worker thread. Run with `cargo test -p offthread-runtime --features tracing`.
#![cfg(feature = "tracing")]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use std::cell::RefCell;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// Span names by id, and each span entered with the thread that entered it.
struct Log {
    next: AtomicU64,
    names: Mutex<Vec<&'static Metadata<'static>>>,
    entered: Mutex<Vec<(&'static str, String)>>,
}

static LOG: Log = Log {
    next: AtomicU64::new(0),
    names: Mutex::new(Vec::new()),
    entered: Mutex::new(Vec::new()),
};

thread_local! {
    /// The spans this thread is inside, innermost last.
    static STACK: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// A subscriber that writes to `LOG`.
struct Recorder;

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut names = LOG.names.lock().unwrap();
        names.push(span.metadata());
        let _ = LOG.next.fetch_add(1, SeqCst);
        Id::from_u64(names.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        let name = LOG.names.lock().unwrap()[span.into_u64() as usize - 1].name();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        LOG.entered.lock().unwrap().push((name, thread));
        STACK.with_borrow_mut(|s| s.push(span.clone()));
    }
    fn exit(&self, _: &Id) {
        STACK.with_borrow_mut(|s| s.pop());
    }
    // `Span::current()`, which offthread calls at the call site, asks the subscriber.
    fn current_span(&self) -> Current {
        match STACK.with_borrow(|s| s.last().cloned()) {
            Some(id) => Current::new(
                id.clone(),
                LOG.names.lock().unwrap()[id.into_u64() as usize - 1],
            ),
            None => Current::none(),
        }
    }
}

#[test]
fn the_callers_span_is_entered_on_the_worker() {
    tracing::subscriber::set_global_default(Recorder).unwrap();
    let pool = offthread_runtime::Pool::builder().name("traced").build();
    let call = {
        let span = tracing::info_span!("handle_request");
        let _guard = span.enter();
        pool.spawn(|| 7) // the span is current here, at the call
    };
    assert_eq!(futures::executor::block_on(call), 7);
    let entered = LOG.entered.lock().unwrap();
    assert!(
        entered
            .iter()
            .any(|(name, thread)| *name == "handle_request" && thread.starts_with("traced-")),
        "{entered:?}"
    );
}
