//! The `service` example on PostgreSQL while the server restarts under load: requests fail
//! only while the server is down (with a 503 or 500 and the JSON error, never a dropped
//! connection or a panic), every data worker replaces its connection, and soon after the
//! server accepts connections again every request succeeds.
//!
//! Needs `DATABASE_URL` (a PostgreSQL server) and `OFFTHREAD_PG_CTL` (its `pg_ctl`), as
//! `.ci/run` sets them; without them it skips, except under CI.

#[allow(dead_code)]
#[path = "../examples/service/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/orm/db.rs"]
mod db;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server and its `pg_ctl`, or `None` (and a note) where there are none outside CI.
fn server() -> Option<(String, String)> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    let pg_ctl = std::env::var("OFFTHREAD_PG_CTL").ok();
    match (url, pg_ctl) {
        (Some(url), Some(pg_ctl)) => Some((url, pg_ctl)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must set DATABASE_URL and OFFTHREAD_PG_CTL (`source .ci/pg && pg_start`)")
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipping the service restart test: it needs DATABASE_URL and OFFTHREAD_PG_CTL \
                 (`source .ci/pg && pg_start`)"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_only_while_the_database_restarts() {
    let Some((url, pg_ctl)) = server() else {
        return;
    };
    let database = db::Database::Postgres {
        url,
        schema: "offthread_service_restart".to_owned(),
    };
    db::create_and_seed(&database, 500, 5_000, |_, _| {}).expect("seed");
    db::use_database(&database);
    let state = app::AppState {
        shop: Arc::new(app::DbShop),
        metrics: Arc::new(String::new),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app::router(state)).await.unwrap() });
    let client = reqwest::Client::new();
    // Every data worker connected before the restart.
    for id in 1..=32 {
        let r = client
            .get(format!("{base}/users/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let made_before = db::DATA.metrics().locals_made;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // 16 clients, each reading users and placing an order now and then.
    let clients: Vec<_> = (0..16_i64)
        .map(|c| {
            let (client, base, stop) = (client.clone(), base.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = 0_i64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let request = if i % 10 == 0 {
                        client
                            .post(format!("{base}/orders"))
                            .json(&app::NewOrder {
                                user_id: 1 + (c + i) % 500,
                                amount_cents: 100,
                            })
                            .send()
                            .await
                    } else {
                        client
                            .get(format!("{base}/users/{}", 1 + (c * 31 + i) % 500))
                            .send()
                            .await
                    };
                    let response = request.expect("the service answers every request");
                    let status = response.status().as_u16();
                    let body: serde_json::Value =
                        response.json().await.expect("a JSON body, also for errors");
                    if status >= 300 {
                        assert!(body["error"].is_string(), "{status}: {body}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    seen.push((start.elapsed(), status));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down_at = start.elapsed();
    let restarted = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{pg_ctl} restart -m fast -w >/dev/null"))
            .status()
            .expect("run pg_ctl")
    })
    .await
    .unwrap();
    assert!(restarted.success(), "pg_ctl restart failed");
    let up_at = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for client in clients {
        seen.extend(client.await.expect("a client task"));
    }

    let failed: Vec<_> = seen.iter().filter(|(_, status)| *status >= 300).collect();
    let last_failure = failed.iter().map(|(t, _)| *t).max().unwrap_or_default();
    let mut statuses: Vec<u16> = failed.iter().map(|(_, s)| *s).collect();
    statuses.sort_unstable();
    statuses.dedup();
    eprintln!(
        "service restart: {} requests, {} failed ({statuses:?}); down at {down_at:?}, \
         accepting at {up_at:?}, last failure {:?} after that; {} connections made",
        seen.len(),
        failed.len(),
        last_failure.saturating_sub(up_at),
        db::DATA.metrics().locals_made - made_before,
    );
    assert!(
        failed
            .iter()
            .all(|(t, s)| *t >= down_at && matches!(s, 500 | 503)),
        "only errors of the database's restart, while it restarted: {failed:?}"
    );
    assert!(
        seen.iter().any(|(t, s)| *s < 300 && *t > up_at),
        "nothing succeeded after the restart"
    );
    assert!(
        last_failure < up_at + Duration::from_secs(3),
        "requests still failed {:?} after the server was back",
        last_failure.saturating_sub(up_at)
    );
    let threads = db::DATA.metrics().threads as u64;
    assert!(db::DATA.metrics().locals_made - made_before >= threads);
    db::drop_database(&database).expect("drop the test's schema");
}
