//! The `orm` test's check on PostgreSQL, at `DATABASE_URL`, in schemas of its own
//! (`offthread_orm_test...`, dropped at the end). Without `DATABASE_URL` it skips, except
//! under CI (`CI` set), which must provide a server (`.ci/run` starts one with `.ci/pg`).

#[path = "orm/check.rs"]
mod check;
#[allow(dead_code)]
#[path = "../examples/orm/db.rs"]
mod db;
#[allow(dead_code)]
#[path = "../examples/orm/workload.rs"]
mod workload;

use std::io::Write;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_diesel_queries_agree_with_direct_calls_on_postgres() {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => url,
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but DATABASE_URL names no PostgreSQL server: CI must run this test \
             (`source .ci/pg && pg_start` starts a throwaway server and sets DATABASE_URL)"
        ),
        _ => {
            // Past the test harness's capture, so that a plain `cargo test` shows it.
            let _ = writeln!(
                std::io::stderr(),
                "skipping the PostgreSQL orm test: DATABASE_URL is not a postgres:// URL; \
                 to run it: `source .ci/pg && pg_start`, then `cargo test --test orm_postgres`, \
                 then `pg_stop`"
            );
            return;
        }
    };
    let seeded = db::Database::Postgres {
        url,
        schema: "offthread_orm_test".to_owned(),
    };
    check::offloaded_queries_agree_with_direct_calls(&seeded).await;
}
