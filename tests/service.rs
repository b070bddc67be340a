//! The `service` example over real HTTP: the app on `127.0.0.1:0`, a real client, concurrent
//! reads and writes with checked answers, a long report that does not hold up reads, bad
//! input, unknown routes and wrong methods answered with a 4xx and a JSON error, absent
//! parameters with their defaults, and `/metrics` with per-function figures and latency
//! histograms. On Unix, the example's own binary, run as a child process, stops cleanly at
//! SIGTERM.

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
    let path = db::Database::Sqlite(dir.join("shop.sqlite"));
    db::create_and_seed(&path, USERS, ORDERS, |_, _| {}).expect("seed");
    db::use_database(&path);
    let handle = app::prometheus()
        .install_recorder()
        .expect("one recorder per test binary");
    let state = app::AppState {
        shop: Arc::new(app::DbShop),
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

    // Out of range, or not a number, is a 400 on every route (never clamped).
    for query in [
        "reports/top-customers?n=-5",
        "reports/top-customers?n=0",
        "reports/top-customers?n=1001",
        "reports/top-customers?n=ten",
        "users/7/orders?limit=101",
        "users/7/orders?limit=-1",
        "users/7/orders?offset=-1",
        "users/7/orders?offset=10001",
        "users/7/orders?offset=9223372036854775807",
    ] {
        let (status, body) =
            json(client.get(format!("{base}/{query}")).send().await.unwrap()).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    // The bounds themselves are in range.
    for query in [
        "reports/top-customers?n=1",
        "users/7/orders?limit=100&offset=0",
        "users/7/orders?limit=1&offset=10000",
    ] {
        let (status, body) =
            json(client.get(format!("{base}/{query}")).send().await.unwrap()).await;
        assert_eq!(status, 200, "{query}: {body}");
    }

    // Absent parameters take their defaults: 10 customers; 20 orders from the newest.
    let (status, top) = json(
        client
            .get(format!("{base}/reports/top-customers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{top}");
    assert_eq!(top.as_array().unwrap().len(), 10, "{top}");
    let (status, orders) = json(
        client
            .get(format!("{base}/users/7/orders"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{orders}");
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 20, "user 7 has more than 20 orders by now");
    assert_eq!(orders[0], first[0], "the default page starts at the newest");

    // An unknown route is a 404, a known route's wrong method a 405, both with JSON errors.
    for (request, expected) in [
        (client.get(format!("{base}/nowhere")), 404),
        (client.post(format!("{base}/users/7/nowhere")), 404),
        (client.get(format!("{base}/")), 404),
        (client.delete(format!("{base}/users/7")), 405),
        (client.get(format!("{base}/orders")), 405),
    ] {
        let response = request.send().await.unwrap();
        let allow = response.headers().get("allow").cloned();
        let (status, body) = json(response).await;
        assert_eq!(status, expected, "{body}");
        assert!(body["error"].is_string(), "{body}");
        if status == 405 {
            assert!(allow.is_some(), "a 405 names the allowed methods");
        }
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
                && l.contains("function=\"service::app::DbShop::place_order\"")
        })
        .unwrap_or_else(|| panic!("no place_order figures in:\n{text}"));
    let n: f64 = calls.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 21.0, "{calls}");
    assert!(
        text.contains("offthread_pool_threads{pool=\"data\"}"),
        "{text}"
    );
    // Each call's queue wait and run time, as Prometheus histograms (the app gives them
    // buckets): one observation per call, so at least the 21 orders placed.
    for name in [
        "offthread_function_queue_wait_seconds",
        "offthread_function_run_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} histogram")),
            "{name}:\n{text}"
        );
        let count = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}_count{{")) && l.contains("::place_order\""))
            .unwrap_or_else(|| panic!("no {name} of place_order in:\n{text}"));
        let n: f64 = count.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 21.0, "{count}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}_bucket{{"))
                    && l.contains("::place_order\"")
                    && l.contains("le=\"+Inf\"")),
            "{text}"
        );
    }

    // The request's span reached the offloaded call's events on a `data` worker.
    let events = EVENTS.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|(thread, inside)| thread.starts_with("data-") && inside.contains(&"request")),
        "no event of the data layer inside a request's span: {events:?}"
    );
}

/// The example's binary, built by Cargo for the profile and target directory this test was
/// built for (`cargo test --workspace` has built it already, and then Cargo has nothing to
/// do; `cargo test --test service` has not).
#[cfg(unix)]
fn example_binary() -> std::path::PathBuf {
    // This test runs as `<target dir>/<profile dir>/deps/service-<hash>`.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "service",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("cargo runs");
    assert!(built.success(), "cargo build --example service: {built}");
    let binary = profile_dir.join("examples").join("service");
    assert!(
        binary.is_file(),
        "no example binary at {}",
        binary.display()
    );
    binary
}

/// One HTTP/1.1 request on a connection of its own; the whole response.
#[cfg(unix)]
fn http(addr: &str, request_line: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The example's binary as services are run: started as a process, sent SIGTERM (as
/// containers and systemd stop services) while a request is in flight, it answers that
/// request, exits with 0 and removes its database.
#[cfg(unix)]
#[test]
fn the_example_stops_cleanly_at_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let binary = example_binary();
    // Its own temporary directory (`TMPDIR`), so that what it leaves there is visible.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tmp = TempDir(std::env::temp_dir().join(format!("offthread-service-sigterm-{nanos}")));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let mut child = Command::new(&binary)
        .env("TMPDIR", &tmp.0)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kills the child if the test fails before it has exited.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut child = Reap(child);
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (lines, serving) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });

    // Seeding takes a while in a debug build.
    let line = serving
        .recv_timeout(Duration::from_secs(300))
        .expect("the example prints where it serves");
    let addr = line
        .strip_prefix("serving on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    assert!(
        http(&addr, "GET /users/7").starts_with("HTTP/1.1 200"),
        "it serves"
    );
    assert!(
        std::fs::read_dir(&tmp.0).unwrap().next().is_some(),
        "its database is in {}",
        tmp.0.display()
    );

    // The slow report, in flight when SIGTERM comes: graceful shutdown lets it finish.
    let in_flight = {
        let addr = addr.clone();
        std::thread::spawn(move || http(&addr, "GET /reports/top-customers?n=1000"))
    };
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid}: {sent}");

    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "still running 60 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{status}; its stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let report = in_flight.join().unwrap();
    assert!(
        report.starts_with("HTTP/1.1 200"),
        "the request in flight was answered: {report}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
