//! The monitor keeps the `/proc` `stat` files of the threads it asks about open between
//! looks; they must close when those threads exit, so a pool that grows and shrinks again
//! leaves no file descriptor behind. (A file of its own: it counts the process's open files,
//! which tests running beside it would change.)
#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use futures::executor::block_on;
use offthread_runtime::Pool;
use support::eventually;

/// The process's open files that are some thread's `stat` file.
fn stat_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            t.contains("/task/") && t.ends_with("/stat")
        })
        .count()
}

#[test]
fn the_stat_files_of_exited_workers_are_closed() {
    assert_eq!(stat_files(), 0);
    let pool = Pool::builder()
        .max_threads(32)
        .keep_alive(Duration::from_millis(50))
        .build();
    // Sleeping bodies queued beyond the threads there are: the monitor asks whether the
    // long ones are blocked before it adds threads.
    let calls: Vec<_> = (0..48)
        .map(|_| pool.spawn(|| std::thread::sleep(Duration::from_millis(20))))
        .collect();
    let mut seen = 0;
    let all = std::thread::spawn(move || block_on(futures::future::join_all(calls)));
    while !all.is_finished() {
        seen = seen.max(stat_files());
        std::thread::sleep(Duration::from_millis(1));
    }
    all.join().unwrap();
    assert!(
        seen > 0,
        "the monitor kept no stat file open: {:?}",
        pool.metrics()
    );
    eventually("the grown threads exit after their keep-alive", || {
        pool.metrics().threads == 0
    });
    eventually("their stat files close", || stat_files() == 0);
}
