//! The `orm` example's data layer, small enough for CI, on SQLite (`tests/orm_postgres.rs`
//! runs the same check on PostgreSQL, in a process of its own: the data pool's database is
//! set once per process).

#[path = "orm/check.rs"]
mod check;
#[allow(dead_code)]
#[path = "../examples/orm/db.rs"]
mod db;
#[allow(dead_code)]
#[path = "../examples/orm/workload.rs"]
mod workload;

use std::path::PathBuf;

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("offthread-orm-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One test, because the data pool's database is set once per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_diesel_queries_agree_with_direct_calls() {
    let dir = TempDir::new();
    let seeded = db::Database::Sqlite(dir.0.join("seeded.db"));
    check::offloaded_queries_agree_with_direct_calls(&seeded).await;
}
