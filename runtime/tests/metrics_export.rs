//! Feature `metrics`: `publish_metrics` hands every live pool's and every `#[offload]`
//! function's figures to the installed recorder (here one that keeps what it is given).
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[offthread::offload]
fn exported(n: u64) -> u64 {
    n * 2
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
    let pool = offthread::Pool::builder().name("exported-pool").build();
    for i in 0..3 {
        assert_eq!(futures::executor::block_on(pool.spawn(move || i)), i);
    }
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
        Some("Counter(3)".to_owned())
    );
    assert_eq!(
        find(&snapshot, "offthread_pool_completed_total", pool_label),
        Some("Counter(3)".to_owned())
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
    assert_eq!(pool.metrics().submitted, 4);
    metrics::with_local_recorder(&recorder, offthread_runtime::publish_metrics);
    let later: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    // (Had it been published, the recorder would now hold its 4 submissions.)
    assert_ne!(
        find(&later, "offthread_pool_submitted_total", pool_label),
        Some("Counter(4)".to_owned())
    );
    // The function is still published: its counter is set again to what it was.
    let function = ("function", "metrics_export::exported");
    assert!(find(&later, "offthread_function_calls_total", function).is_some());
}
