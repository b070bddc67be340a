//! Feature `metrics`: the figures of every pool and every `#[offload]` function, published
//! through the [`metrics`](https://docs.rs/metrics) facade, so that whatever exporter the
//! application installed (Prometheus, StatsD, OpenTelemetry, ...) serves them.

use crate::pool::live_pools;
use crate::site::function_metrics;

/// Publishes the current figures of every live pool and every `#[offload]` function called
/// so far to the installed `metrics` recorder. Call it where the exporter reads (in a
/// `/metrics` handler, before rendering) or on an interval.
///
/// Pool figures carry the label `pool` (its name); function figures the label `function`
/// (`module::function`, or `module::Type::method`). Gauges: `offthread_pool_threads`,
/// `offthread_pool_idle_threads`, `offthread_pool_queued`, `offthread_pool_running`.
/// Counters (totals, set absolutely): `offthread_pool_submitted_total`,
/// `offthread_pool_completed_total`, `offthread_pool_panicked_total`,
/// `offthread_pool_cancelled_total`,
/// `offthread_pool_queue_wait_microseconds_total`, `offthread_pool_run_microseconds_total`,
/// and per function `offthread_function_calls_total`, `offthread_function_completed_total`,
/// `offthread_function_panicked_total`, `offthread_function_timeouts_total`,
/// `offthread_function_cancelled_total`, `offthread_function_queue_wait_microseconds_total`,
/// `offthread_function_run_microseconds_total`.
///
/// Publishing reads atomics and does nothing per call: the calls themselves never touch
/// the recorder.
///
/// # Examples
///
/// ```
/// let pool = offthread::Pool::builder().name("files").build();
/// futures::executor::block_on(pool.spawn(|| ()));
/// // With a recorder installed (`metrics::set_global_recorder`, or an exporter's
/// // `install`), this makes the figures visible to it; without one it does nothing.
/// offthread::publish_metrics();
/// ```
pub fn publish_metrics() {
    for (name, m) in live_pools() {
        let pool = || [("pool", name.to_string())];
        metrics::gauge!("offthread_pool_threads", &pool()).set(m.threads as f64);
        metrics::gauge!("offthread_pool_idle_threads", &pool()).set(m.idle_threads as f64);
        metrics::gauge!("offthread_pool_queued", &pool()).set(m.queued as f64);
        metrics::gauge!("offthread_pool_running", &pool()).set(m.running as f64);
        metrics::counter!("offthread_pool_submitted_total", &pool()).absolute(m.submitted);
        metrics::counter!("offthread_pool_completed_total", &pool()).absolute(m.completed);
        metrics::counter!("offthread_pool_panicked_total", &pool()).absolute(m.panicked);
        metrics::counter!("offthread_pool_cancelled_total", &pool()).absolute(m.cancelled);
        metrics::counter!("offthread_pool_queue_wait_microseconds_total", &pool())
            .absolute(micros(m.queue_wait));
        metrics::counter!("offthread_pool_run_microseconds_total", &pool())
            .absolute(micros(m.run_time));
    }
    for f in function_metrics() {
        let function = || [("function", f.name)];
        metrics::counter!("offthread_function_calls_total", &function()).absolute(f.calls);
        metrics::counter!("offthread_function_completed_total", &function()).absolute(f.completed);
        metrics::counter!("offthread_function_panicked_total", &function()).absolute(f.panicked);
        metrics::counter!("offthread_function_timeouts_total", &function()).absolute(f.timeouts);
        metrics::counter!("offthread_function_cancelled_total", &function()).absolute(f.cancelled);
        metrics::counter!(
            "offthread_function_queue_wait_microseconds_total",
            &function()
        )
        .absolute(micros(f.queue_wait));
        metrics::counter!("offthread_function_run_microseconds_total", &function())
            .absolute(micros(f.run_time));
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
