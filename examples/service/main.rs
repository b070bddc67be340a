//! An axum service over the `orm` example's data layer: `cargo run --release --example
//! service` seeds a SQLite database in a temporary directory (or, with `DATABASE_URL` set,
//! the schema `offthread_orm` of that PostgreSQL database), starts the app on a port it
//! prints (or `PORT`), and serves until Ctrl-C or SIGTERM (what containers and systemd
//! send), then finishes the requests in flight, shuts the data pool down and removes the
//! database.
//!
//! ```text
//! curl http://127.0.0.1:PORT/users/7
//! curl 'http://127.0.0.1:PORT/users/7/orders?limit=5&offset=0'
//! curl -X POST http://127.0.0.1:PORT/orders -H 'content-type: application/json' -d '{"user_id": 7, "amount_cents": 1250}'
//! curl 'http://127.0.0.1:PORT/reports/top-customers?n=5'
//! curl http://127.0.0.1:PORT/metrics
//! ```

mod app;
#[allow(dead_code)]
#[path = "../orm/db.rs"]
mod db;

use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let dir = std::env::temp_dir().join(format!("offthread-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database = db::Database::from_env(dir.join("shop.sqlite"));
    eprintln!("seeding {database} ...");
    db::create_and_seed(&database, 10_000, 100_000, |_, _| {}).map_err(std::io::Error::other)?;
    db::use_database(&database);

    let prometheus = app::prometheus()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let state = app::AppState {
        shop: Arc::new(app::DbShop),
        metrics: Arc::new(move || prometheus.render()),
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".to_owned());
    let served = tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        let addr = listener.local_addr()?;
        // Listening for the signals from now on, before anyone is told where to connect.
        let stop = shutdown_signal()?;
        println!("serving on http://{addr}  (try: curl http://{addr}/users/7; Ctrl-C stops)");
        axum::serve(listener, app::router(state))
            .with_graceful_shutdown(stop)
            .await
    });
    // The data pool's workers hold connections to the database: close them, then remove it.
    let report = db::DATA.shutdown(std::time::Duration::from_secs(5));
    if report.still_running > 0 {
        eprintln!("{report:?}");
    }
    db::drop_database(&database).map_err(std::io::Error::other)?;
    std::fs::remove_dir_all(&dir)?;
    served
}

/// Resolves at the first Ctrl-C (SIGINT) or, on Unix, SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled: a signal that comes before
/// the server starts polling it is not lost (nor does SIGTERM kill the process then).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            eprintln!("{name}: finishing the requests in flight, then shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("Ctrl-C: finishing the requests in flight, then shutting down");
        })
    }
}
