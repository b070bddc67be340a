//! The `service` example over real HTTP: the app on `127.0.0.1:0`, a real client, concurrent
//! reads and writes with checked answers, a long report that does not hold up reads, bad
//! input answered with a 4xx and a JSON error, and `/metrics` with per-function figures.

#[path = "../examples/service/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/orm/db.rs"]
mod db;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// What the recording subscriber saw: span names by id, and for each event from the
/// service's code, its thread and the names of the spans it was inside.
static SPANS: Mutex<Vec<&'static Metadata<'static>>> = Mutex::new(Vec::new());
static EVENTS: Mutex<Vec<(String, Vec<&'static str>)>> = Mutex::new(Vec::new());

thread_local! {
    /// The spans this thread is inside, innermost last.
    static STACK: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// A subscriber that records spans entered and events, per thread.
struct Recorder;

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut spans = SPANS.lock().unwrap();
        spans.push(span.metadata());
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if !event
            .metadata()
            .file()
            .is_some_and(|f| f.ends_with("app.rs"))
        {
            return;
        }
        let names = SPANS.lock().unwrap().clone();
        let inside = STACK.with_borrow(|s| {
            s.iter()
                .map(|id| names[id.into_u64() as usize - 1].name())
                .collect()
        });
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        EVENTS.lock().unwrap().push((thread, inside));
    }
    fn enter(&self, span: &Id) {
        STACK.with_borrow_mut(|s| s.push(span.clone()));
    }
    fn exit(&self, _: &Id) {
        STACK.with_borrow_mut(|s| s.pop());
    }
    fn current_span(&self) -> Current {
        let names = SPANS.lock().unwrap();
        match STACK.with_borrow(|s| s.last().cloned()) {
            Some(id) => Current::new(id.clone(), names[id.into_u64() as usize - 1]),
            None => Current::none(),
        }
    }
}

const USERS: usize = 500;
const ORDERS: usize = 20_000;

/// The test's database directory, removed when the test ends (passed or not).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seeds a database, starts the app on a free port and returns its base URL, and the
/// database's directory.
async fn start() -> (String, TempDir) {
    tracing::subscriber::set_global_default(Recorder).expect("one subscriber per test binary");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("offthread-service-test-{nanos}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shop.sqlite");
    db::create_and_seed(&path, USERS, ORDERS, |_, _| {}).expect("seed");
    db::use_database(&path);
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("one recorder per test binary");
    let state = app::AppState {
        shop: Arc::new(app::SqliteShop),
        metrics: Arc::new(move || handle.render()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app::router(state)).await.unwrap() });
    (format!("http://{addr}"), TempDir(dir))
}

/// The status and JSON body of a response.
async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_answers_over_http() {
    let (base, _dir) = start().await;
    let client = reqwest::Client::new();

    // A read, checked against the database directly.
    let (status, user) = json(client.get(format!("{base}/users/7")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["id"], 7);
    let orders_before = user["order_count"].as_i64().unwrap();

    // Concurrent writes and reads: every write lands once, every read answers.
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let body = serde_json::json!({"user_id": 7, "amount_cents": 100 + i});
                json(
                    client
                        .post(format!("{base}/orders"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    let reads: Vec<_> = (1..=40)
        .map(|id| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                json(
                    client
                        .get(format!("{base}/users/{id}"))
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    for w in writes {
        let (status, placed) = w.await.unwrap();
        assert_eq!(status, 201, "{placed}");
        assert!(placed["order_id"].as_i64().unwrap() > 0);
    }
    for (id, r) in (1..=40).zip(reads) {
        let (status, user) = r.await.unwrap();
        assert_eq!((status, user["id"].as_i64()), (200, Some(id)), "{user}");
    }
    let (_, user) = json(client.get(format!("{base}/users/7")).send().await.unwrap()).await;
    assert_eq!(user["order_count"].as_i64().unwrap(), orders_before + 20);

    // Paging: two pages of 5 are the first 10, newest first.
    let page = |offset: u32| {
        let url = format!("{base}/users/7/orders?limit=5&offset={offset}");
        let client = client.clone();
        async move { json(client.get(url).send().await.unwrap()).await }
    };
    let ((s1, first), (s2, second)) = (page(0).await, page(5).await);
    assert_eq!((s1, s2), (200, 200));
    let ten: Vec<i64> = first
        .as_array()
        .unwrap()
        .iter()
        .chain(second.as_array().unwrap())
        .map(|o| o["placed_at"].as_i64().unwrap())
        .collect();
    assert_eq!(ten.len(), 10);
    assert!(
        ten.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ten:?}"
    );

    // The long report runs while reads keep answering.
    let report = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let url = format!("{base}/reports/top-customers?n=5");
            json(client.get(url).send().await.unwrap()).await
        })
    };
    let (status, _) = json(client.get(format!("{base}/users/3")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, top) = report.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(top.as_array().unwrap().len(), 5);

    // Bad input: a 4xx with a JSON error, never a 500.
    let cases = [
        client.get(format!("{base}/users/seven")),
        client.get(format!("{base}/users/999999")),
        client.get(format!("{base}/users/7/orders?limit=many")),
        client.get(format!("{base}/users/7/orders?limit=0")),
        client
            .post(format!("{base}/orders"))
            .header("content-type", "application/json")
            .body("{not json"),
        client
            .post(format!("{base}/orders"))
            .json(&serde_json::json!({"user_id": 7})),
        client
            .post(format!("{base}/orders"))
            .json(&serde_json::json!({"user_id": 999999, "amount_cents": 5})),
    ];
    for case in cases {
        let (status, body) = json(case.send().await.unwrap()).await;
        assert!((400..500).contains(&status), "{status}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // /metrics: Prometheus text with the functions' own figures.
    let end = Instant::now() + Duration::from_secs(10);
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(Instant::now() < end);
    let calls = text
        .lines()
        .find(|l| {
            l.starts_with("offthread_function_calls_total")
                && l.contains("function=\"service::app::SqliteShop::place_order\"")
        })
        .unwrap_or_else(|| panic!("no place_order figures in:\n{text}"));
    let n: f64 = calls.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 21.0, "{calls}");
    assert!(
        text.contains("offthread_pool_threads{pool=\"data\"}"),
        "{text}"
    );

    // The request's span reached the offloaded call's events on a `data` worker.
    let events = EVENTS.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|(thread, inside)| thread.starts_with("data-") && inside.contains(&"request")),
        "no event of the data layer inside a request's span: {events:?}"
    );
}
