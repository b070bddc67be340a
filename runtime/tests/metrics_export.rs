//! Feature `metrics`: `publish_metrics` hands every live pool's and every `#[offload]`
//! function's figures to the installed recorder (here one that keeps what it is given), and
//! each `#[offload]` call records its queue wait and run time in histograms.
#![cfg(feature = "metrics")]

use std::sync::LazyLock;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[offthread::offload]
fn exported(n: u64) -> u64 {
    n * 2
}

/// One thread: of two calls made together, the second waits for the first.
static ONE_THREAD: LazyLock<offthread::Pool> = LazyLock::new(|| {
    offthread::Pool::builder()
        .name("histogram-pool")
        .max_threads(1)
        .build()
});

#[offthread::offload(pool = ONE_THREAD)]
fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The value of metric `name` with the label `label`, as `Counter(3)` or `Gauge(..)`.
fn find(
    snapshot: &[(metrics_util::CompositeKey, DebugValue)],
    name: &str,
    label: (&str, &str),
) -> Option<String> {
    snapshot.iter().find_map(|(key, value)| {
        let key = key.key();
        let labelled = key
            .labels()
            .any(|l| l.key() == label.0 && l.value() == label.1);
        (key.name() == name && labelled).then(|| format!("{value:?}"))
    })
}

#[test]
fn publish_metrics_hands_pool_and_function_figures_to_the_recorder() {
    let pool = offthread::Pool::builder()
        .name("exported-pool")
        .max_threads(1)
        .worker_local(|| 0_u32)
        .build();
    for i in 0..3 {
        assert_eq!(futures::executor::block_on(pool.spawn(move || i)), i);
    }
    // Its one worker makes its value once: one connect.
    futures::executor::block_on(pool.spawn_local(|_: &mut u32| ()));
    assert_eq!(futures::executor::block_on(exported(21)), 42);

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, offthread_runtime::publish_metrics);
    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();

    let pool_label = ("pool", "exported-pool");
    assert_eq!(
        find(&snapshot, "offthread_pool_submitted_total", pool_label),
        Some("Counter(4)".to_owned())
    );
    assert_eq!(
        find(&snapshot, "offthread_pool_completed_total", pool_label),
        Some("Counter(4)".to_owned())
    );
    assert_eq!(
        find(&snapshot, "offthread_pool_locals_made_total", pool_label),
        Some("Counter(1)".to_owned())
    );
    assert!(find(&snapshot, "offthread_pool_threads", pool_label)
        .is_some_and(|v| v.starts_with("Gauge(")));
    let function = ("function", "metrics_export::exported");
    assert_eq!(
        find(&snapshot, "offthread_function_calls_total", function),
        Some("Counter(1)".to_owned())
    );
    assert_eq!(
        find(&snapshot, "offthread_function_completed_total", function),
        Some("Counter(1)".to_owned())
    );

    // A pool that is shut down is no longer published: its later figures do not reach
    // the recorder.
    pool.shutdown(std::time::Duration::from_secs(1));
    let refused = futures::executor::block_on(pool.spawn(|| 0).checked());
    assert!(refused.unwrap_err().is_shutdown());
    assert_eq!(pool.metrics().submitted, 5);
    metrics::with_local_recorder(&recorder, offthread_runtime::publish_metrics);
    let later: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    // (Had it been published, the recorder would now hold its 5 submissions.)
    assert_ne!(
        find(&later, "offthread_pool_submitted_total", pool_label),
        Some("Counter(5)".to_owned())
    );
    // The function is still published: its counter is set again to what it was.
    let function = ("function", "metrics_export::exported");
    assert!(find(&later, "offthread_function_calls_total", function).is_some());
}

#[test]
fn each_call_records_its_queue_wait_and_run_time_in_histograms() {
    // The bodies end on the pool's worker: they record to the global recorder.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only global recorder of this binary");

    assert_eq!(futures::executor::block_on(sleeps(20)), 20);
    let both = futures::future::join(sleeps(30), sleeps(30));
    assert_eq!(futures::executor::block_on(both), (30, 30));

    let snapshot = snapshotter.snapshot().into_vec();
    let histogram = |name: &str| -> Vec<f64> {
        snapshot
            .iter()
            .find_map(|(key, _, _, value)| {
                let key = key.key();
                let labelled = key
                    .labels()
                    .any(|l| l.key() == "function" && l.value() == "metrics_export::sleeps");
                match value {
                    DebugValue::Histogram(values) if key.name() == name && labelled => {
                        Some(values.iter().map(|v| v.into_inner()).collect())
                    }
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("no histogram {name} in {snapshot:?}"))
    };
    // One value per call, in seconds.
    let run = histogram("offthread_function_run_seconds");
    assert_eq!(run.len(), 3, "{run:?}");
    assert!(run.iter().all(|&s| (0.019..10.0).contains(&s)), "{run:?}");
    let wait = histogram("offthread_function_queue_wait_seconds");
    assert_eq!(wait.len(), 3, "{wait:?}");
    assert!(wait.iter().all(|&s| (0.0..10.0).contains(&s)), "{wait:?}");
    // The call that waited for the other's 30 ms shows it.
    assert!(wait.iter().any(|&s| s >= 0.025), "{wait:?}");
}
