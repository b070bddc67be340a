//! Feature `metrics`: the figures of every pool and every `#[offload]` function, published
//! through the [`metrics`](https://docs.rs/metrics) facade, so that whatever exporter the
//! application installed (Prometheus, StatsD, OpenTelemetry, ...) serves them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};

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
/// `offthread_pool_locals_made_total` (per-worker values made: a pool of connections'
/// connects), `offthread_pool_local_init_failures_total`,
/// `offthread_pool_locals_discarded_total`, and per function `offthread_function_calls_total`, `offthread_function_completed_total`,
/// `offthread_function_panicked_total`, `offthread_function_timeouts_total`,
/// `offthread_function_cancelled_total`, `offthread_function_queue_wait_microseconds_total`,
/// `offthread_function_run_microseconds_total`.
///
/// Publishing reads atomics and does nothing per call. The one figure recorded per call is
/// each function's latency distribution, so that a dashboard can show its p99 and not only
/// its mean: two histograms with the label `function`, recorded by the worker as each body
/// ends (returned or panicked), in seconds: `offthread_function_queue_wait_seconds` (how
/// long the call waited in its pool's queue; 0 for a body run inline, nested in another on
/// its worker) and `offthread_function_run_seconds` (how long its body ran). They go to the
/// recorder installed when the body ends, without waiting for `publish_metrics`; with no
/// recorder installed, recording costs a few loads and no allocation. (Prometheus' exporter
/// renders histograms as summaries unless it is given buckets, e.g. with
/// `PrometheusBuilder::set_buckets_for_metric(Matcher::Suffix("_seconds".into()), ..)`.)
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
        metrics::counter!("offthread_pool_locals_made_total", &pool()).absolute(m.locals_made);
        metrics::counter!("offthread_pool_local_init_failures_total", &pool())
            .absolute(m.local_init_failures);
        metrics::counter!("offthread_pool_locals_discarded_total", &pool())
            .absolute(m.locals_discarded);
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

/// The keys of one function's histograms, built at its first recorded call (the macros
/// would build a key, with its label vector, at every call).
pub(crate) struct CallHistograms(OnceLock<[Key; 2]>);

/// Where the histograms come from, for recorders that filter by target or level.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl CallHistograms {
    pub(crate) const fn new() -> CallHistograms {
        CallHistograms(OnceLock::new())
    }

    /// Records one call of `function`: how long it was queued, and how long its body ran.
    pub(crate) fn record(&self, function: &'static str, queue_wait: Duration, run: Duration) {
        let [wait_key, run_key] = self.0.get_or_init(|| {
            let key = |name| Key::from_parts(name, vec![Label::new("function", function)]);
            [
                key("offthread_function_queue_wait_seconds"),
                key("offthread_function_run_seconds"),
            ]
        });
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(wait_key, &METADATA)
                .record(queue_wait.as_secs_f64());
            recorder
                .register_histogram(run_key, &METADATA)
                .record(run.as_secs_f64());
        });
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
