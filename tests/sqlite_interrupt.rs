//! A cancel reaches a running SQLite statement: `on_cancel` with the interrupt handle of
//! the worker's rusqlite connection. (Diesel's `SqliteConnection` exposes no interrupt, so
//! a Diesel body on SQLite can only check `is_cancelled` between statements.)

use std::sync::mpsc::{channel, Sender};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use offthread::{offload, Pool};

static SQLITE: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name("sqlite")
        .max_threads(1)
        .try_worker_local(rusqlite::Connection::open_in_memory)
        .build()
});

/// How each body's statement ended, for the test to see after the call has gone.
static ENDED: Mutex<Option<Sender<Result<i64, String>>>> = Mutex::new(None);

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through `Debug`
enum AppError {
    Sqlite(rusqlite::Error),
    Offthread(offthread::Error),
}

impl From<offthread::Error> for AppError {
    fn from(e: offthread::Error) -> AppError {
        AppError::Offthread(e)
    }
}

/// Counts to `n` in a recursive query: seconds of CPU for a large `n`.
#[offload(pool = SQLITE, timeout = "100ms")]
fn count_to(#[local] conn: &mut rusqlite::Connection, n: i64) -> Result<i64, AppError> {
    let interrupt = conn.get_interrupt_handle();
    offthread::on_cancel(move || interrupt.interrupt());
    let counted = conn.query_row(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1)
         SELECT count(*) FROM c",
        [n],
        |row| row.get(0),
    );
    if let Some(ended) = ENDED.lock().unwrap().as_ref() {
        let _ = ended.send(counted.as_ref().map(|n| *n).map_err(|e| e.to_string()));
    }
    counted.map_err(AppError::Sqlite)
}

#[test]
fn a_timed_out_statement_is_interrupted() {
    let (tx, ended) = channel();
    *ENDED.lock().unwrap() = Some(tx);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A short count finishes.
    assert_eq!(rt.block_on(count_to(1_000)).unwrap(), 1_000);
    assert_eq!(ended.recv().unwrap(), Ok(1_000));
    // Ten billion rows would take minutes: the timeout's cancel interrupts the statement.
    let err = rt.block_on(count_to(10_000_000_000)).unwrap_err();
    assert!(
        matches!(&err, AppError::Offthread(e) if e.is_timeout()),
        "{err:?}"
    );
    let how = ended
        .recv_timeout(Duration::from_secs(30))
        .expect("the statement still runs");
    let message = how.unwrap_err();
    assert!(message.contains("interrupt"), "{message}");
    // The connection serves the next call.
    assert_eq!(rt.block_on(count_to(10)).unwrap(), 10);
}
