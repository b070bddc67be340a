//! `#[offload]` accepts every real signature: each shape below is awaited and
//! its result checked, under tokio (both flavours) and `futures::executor::block_on`.

#![deny(warnings)]
#![allow(missing_docs)]

use offthread::{offload, Offload};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// ---- free functions, return types ----

#[offload]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

static UNIT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[offload]
fn returns_nothing() {
    UNIT_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[offload]
fn parse_sum(a: &str, b: &str) -> Result<i64, std::num::ParseIntError> {
    let a: i64 = a.trim().parse()?;
    let b: i64 = b.trim().parse()?;
    Ok(a + b)
}

#[offload]
fn early_return(n: u32) -> &'static str {
    if n == 0 {
        return "zero";
    }
    "many"
}

#[offload]
fn boxed_closure(k: u32) -> Box<dyn Fn(&str) -> usize + Send> {
    Box::new(move |s: &str| s.len() + k as usize)
}

#[offload]
fn returns_impl_trait(n: u8) -> impl Iterator<Item = u8> + Send {
    (0..n).map(|i| i * 2)
}

// ---- `&T` parameters, copied at the call ----

#[offload]
fn shout(name: &str) -> String {
    name.to_uppercase()
}

#[offload]
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().map(|&b| u32::from(b)).sum()
}

#[offload]
fn file_name(path: &Path) -> PathBuf {
    path.file_name().map(PathBuf::from).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq)]
struct Config {
    factor: u32,
}

#[offload]
fn scaled(config: &Config, n: u32) -> u32 {
    config.factor * n
}

#[offload]
fn explicit_lifetime<'a>(text: &'a str, mut count: usize) -> usize {
    count += text.len();
    count
}

// ---- patterns, impl Trait, generics ----

#[offload]
fn patterns((a, b): (u32, u32), mut x: u32, _: String, [first, ..]: [u8; 3]) -> u32 {
    x += 1;
    a + b + x + u32::from(first)
}

#[offload]
fn ref_pattern(&(a, b): &(u8, u8), _: &str) -> u8 {
    a + b
}

#[offload]
fn impl_trait_arg(
    into: impl Into<String> + Send + 'static,
    shown: &(impl ToString + Clone + Send + 'static),
) -> String {
    let mut s: String = into.into();
    s.push_str(&shown.to_string());
    s
}

#[offload]
fn generic_bounds<T: Clone + Send + std::fmt::Debug + 'static, const N: usize>(item: &T) -> Vec<T> {
    vec![item.clone(); N]
}

#[offload]
fn generic_by_value<T>(items: Vec<T>) -> usize
where
    T: Send + 'static,
{
    items.len()
}

#[offload]
fn cfg_params(a: u32, #[cfg(not(test))] never: u32, #[cfg(test)] b: u32) -> u32 {
    #[cfg(not(test))]
    let _ = never;
    a + b
}

#[offload]
fn items_in_body(n: u32) -> u32 {
    const BASE: u32 = 100;
    fn helper(x: u32) -> u32 {
        x * 2
    }
    macro_rules! plus_base {
        ($e:expr) => {
            $e + BASE
        };
    }
    struct Local(u32);
    impl Local {
        fn get(&self) -> u32 {
            self.0
        }
    }
    plus_base!(helper(Local(n).get()))
}

// ---- attributes and visibility ----

mod api {
    use offthread::offload;

    /// Documented, public, inlined: all kept.
    #[offload]
    #[inline]
    #[must_use = "the answer matters"]
    #[allow(clippy::unused_self)]
    pub fn answer() -> u32 {
        42
    }

    #[cfg(not(test))]
    #[offload]
    pub fn compiled_out() -> u32 {
        compile_error!("a #[cfg] on the function must still remove it")
    }

    #[offload]
    pub(crate) fn crate_visible() -> u8 {
        7
    }
}

// ---- methods ----

#[derive(Clone, Debug)]
struct Counter {
    count: u32,
    label: String,
}

impl Counter {
    const STEP: u32 = 10;

    fn new(label: &str) -> Self {
        Counter {
            count: 1,
            label: label.to_owned(),
        }
    }

    #[offload]
    fn describe(&self, suffix: &str) -> String {
        format!("{}={}{}", self.label, self.count, suffix)
    }

    #[offload]
    fn bumped(mut self) -> Self {
        self.count += Self::STEP;
        self
    }

    #[offload]
    fn into_label(self) -> String {
        self.label
    }

    #[offload]
    fn shared(self: Arc<Self>) -> u32 {
        Arc::strong_count(&self) as u32 + self.count
    }

    #[offload]
    fn boxed(self: Box<Self>) -> String {
        let this = *self;
        this.label
    }

    #[offload]
    fn self_in_closures_and_macros(&self) -> Vec<String> {
        let make = |i: u32| format!("{}{}", self.label, i + self.count);
        vec![make(0), format!("{}", self.count), Self::helper(self)]
    }

    fn helper(this: &Self) -> String {
        this.label.clone()
    }

    #[offload]
    #[allow(clippy::needless_arbitrary_self_type)]
    fn typed_ref_self(self: &Self) -> u32 {
        self.count
    }

    #[offload]
    fn associated(n: u32) -> Self {
        Self {
            count: n * Self::STEP,
            label: String::new(),
        }
    }
}

// ---- trait impls ----

trait Store {
    fn load(&self, key: &str) -> impl std::future::Future<Output = Option<String>> + Send;
    fn size(self) -> impl std::future::Future<Output = usize> + Send;
}

#[derive(Clone)]
struct MemStore(Vec<(String, String)>);

impl Store for MemStore {
    #[offload]
    fn load(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    #[offload]
    fn size(self) -> usize {
        self.0.len()
    }
}

async fn use_store(store: &impl Store) -> Option<String> {
    store.load("a").await
}

// ---- the checks, run under three executors ----

async fn all_shapes() {
    assert_eq!(add(2, 3).await, 5);
    let before = UNIT_CALLS.load(Ordering::SeqCst);
    returns_nothing().await;
    assert_eq!(UNIT_CALLS.load(Ordering::SeqCst), before + 1);
    assert_eq!(parse_sum("40", " 2").await, Ok(42));
    assert!(parse_sum("x", "2").await.is_err());
    assert_eq!(early_return(0).await, "zero");
    assert_eq!(early_return(5).await, "many");
    assert_eq!(boxed_closure(1).await("abc"), 4);
    assert_eq!(
        returns_impl_trait(3).await.collect::<Vec<_>>(),
        vec![0, 2, 4]
    );

    assert_eq!(shout("hi").await, "HI");
    assert_eq!(checksum(&[1, 2, 3]).await, 6);
    assert_eq!(
        file_name(Path::new("/tmp/a.txt")).await,
        PathBuf::from("a.txt")
    );
    assert_eq!(scaled(&Config { factor: 3 }, 4).await, 12);
    assert_eq!(explicit_lifetime("abc", 1).await, 4);

    assert_eq!(patterns((1, 2), 3, String::new(), [4, 5, 6]).await, 11);
    assert_eq!(ref_pattern(&(1, 2), "ignored").await, 3);
    assert_eq!(impl_trait_arg("a", &7).await, "a7");
    assert_eq!(generic_bounds::<u8, 3>(&9).await, vec![9, 9, 9]);
    assert_eq!(generic_by_value(vec!["x"; 4]).await, 4);
    assert_eq!(cfg_params(1, 2).await, 3);
    assert_eq!(items_in_body(5).await, 110);

    assert_eq!(api::answer().await, 42);
    assert_eq!(api::crate_visible().await, 7);

    let counter = Counter::new("c");
    assert_eq!(counter.describe("!").await, "c=1!");
    assert_eq!(counter.clone().bumped().await.count, 11);
    assert_eq!(counter.clone().into_label().await, "c");
    assert_eq!(Arc::new(counter.clone()).shared().await, 2);
    assert_eq!(Box::new(counter.clone()).boxed().await, "c");
    assert_eq!(
        counter.self_in_closures_and_macros().await,
        vec!["c1".to_owned(), "1".to_owned(), "c".to_owned()]
    );
    assert_eq!(Counter::associated(2).await.count, 20);
    assert_eq!(counter.typed_ref_self().await, 1);

    let store = MemStore(vec![("a".into(), "1".into())]);
    assert_eq!(use_store(&store).await.as_deref(), Some("1"));
    assert_eq!(store.load("b").await, None);
    assert_eq!(store.size().await, 1);
}

#[test]
fn every_shape_under_block_on() {
    futures::executor::block_on(all_shapes());
}

#[tokio::test(flavor = "current_thread")]
async fn every_shape_under_tokio_current_thread() {
    all_shapes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_under_tokio_multi_thread() {
    all_shapes().await;
}

// ---- the future is 'static, lazy, and the body runs off the caller's thread ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_arguments_are_copied_so_the_future_outlives_them() {
    let handle = {
        let name = String::from("gone");
        let counter = Counter::new("also gone");
        let a = shout(&name);
        let b = counter.describe(&name);
        drop(name);
        drop(counter);
        tokio::spawn(async move { (a.await, b.await) })
    };
    assert_eq!(
        handle.await.unwrap(),
        ("GONE".to_owned(), "also gone=1gone".to_owned())
    );
}

static LAZY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[offload]
fn counted() -> usize {
    LAZY_RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

#[test]
fn calling_runs_nothing_until_the_first_poll() {
    let call: Offload<usize> = counted();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(LAZY_RUNS.load(Ordering::SeqCst), 0);
    drop(call);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(LAZY_RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(futures::executor::block_on(counted()), 1);
}

#[offload]
fn thread_id() -> std::thread::ThreadId {
    std::thread::current().id()
}

#[test]
fn the_body_runs_on_another_thread() {
    let body = futures::executor::block_on(thread_id());
    assert_ne!(body, std::thread::current().id());
}

#[offload]
fn drops_on_worker(guard: DropProbe) -> std::thread::ThreadId {
    let _ = &guard;
    std::thread::current().id()
}

struct DropProbe(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::thread::current().id());
    }
}

#[test]
fn by_value_arguments_move_into_the_job_and_drop_there() {
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let body = futures::executor::block_on(drops_on_worker(DropProbe(dropped_on.clone())));
    assert_eq!(*dropped_on.lock().unwrap(), Some(body));
}

#[test]
fn the_result_is_a_send_static_unpin_future() {
    fn check<F: std::future::Future + Send + Unpin + 'static>(_: &F) {}
    let name = String::from("x");
    let call = shout(&name);
    drop(name);
    check(&call);
    assert_eq!(futures::executor::block_on(call), "X");
}
