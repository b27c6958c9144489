//! Every pool checkout's wait, as sqlx reports it, into `app_db_pool_acquire_wait_seconds`.
//!
//! SeaORM checks a connection out inside each query, where the app cannot time it; sqlx can.
//! With [`PoolOptions::acquire_time_level`](sqlx::pool::PoolOptions::acquire_time_level) set
//! (see `db::pool`), each successful `Pool::acquire` emits one event under [`ACQUIRE_TARGET`]
//! carrying `acquired_after_secs`: "acquired connection" at the level set there (TRACE), or,
//! when the checkout took longer than the slow threshold, "acquired connection, but time to
//! acquire exceeded slow threshold" at the slow level (WARN, or INFO with
//! `DATABASE_ECHO_POOL`) instead. Never both. The [`AcquireWaitLayer`] reads that field from
//! either and records it. A checkout that timed out emits nothing; it is recorded where the
//! timeout is counted (see [`Metrics::pool_timeout`](super::Metrics::pool_timeout)).
//!
//! The layer is installed with a per-layer filter of its own ([`layer`]), so the events reach
//! it whatever the log filter says, and the log filter alone decides what is printed.

use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

/// The tracing target of sqlx's checkout events.
pub const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// The field of those events holding the checkout's time, in seconds.
const WAIT_FIELD: &str = "acquired_after_secs";

/// Records the wait of each checkout event it sees (only those of [`ACQUIRE_TARGET`]).
#[derive(Debug, Clone, Copy)]
pub struct AcquireWaitLayer {
    observe: fn(Duration),
}

impl Default for AcquireWaitLayer {
    fn default() -> Self {
        AcquireWaitLayer {
            observe: super::observe_acquire_wait,
        }
    }
}

impl<S: Subscriber> Layer<S> for AcquireWaitLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if let Some(waited) = acquired_after(event) {
            (self.observe)(waited);
        }
    }
}

/// The layer with its filter: every level of [`ACQUIRE_TARGET`], nothing else.
pub fn layer<S>() -> Filtered<AcquireWaitLayer, Targets, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    AcquireWaitLayer::default().with_filter(filter())
}

fn filter() -> Targets {
    Targets::new().with_target(ACQUIRE_TARGET, LevelFilter::TRACE)
}

/// The checkout time an acquire event carries; `None` for any other event.
fn acquired_after(event: &Event<'_>) -> Option<Duration> {
    if event.metadata().target() != ACQUIRE_TARGET {
        return None;
    }
    let mut visitor = WaitVisitor(None);
    event.record(&mut visitor);
    visitor
        .0
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

struct WaitVisitor(Option<f64>);

impl Visit for WaitVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == WAIT_FIELD {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    static SEEN: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

    fn remember(waited: Duration) {
        SEEN.lock().unwrap().push(waited);
    }

    /// The waits recorded while `emit` runs under a subscriber like the app's: a log layer
    /// whose filter is `log_filter` (writing nowhere) beside the metrics layer.
    fn recorded(log_filter: &str, emit: impl FnOnce()) -> Vec<Duration> {
        SEEN.lock().unwrap().clear();
        let metrics = AcquireWaitLayer { observe: remember }.with_filter(filter());
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(EnvFilter::new(log_filter));
        let subscriber = tracing_subscriber::registry().with(logs).with(metrics);
        tracing::subscriber::with_default(subscriber, emit);
        std::mem::take(&mut *SEEN.lock().unwrap())
    }

    // One test, so the shared `SEEN` is never used by two at once.
    #[test]
    fn acquire_layer_records_both_sqlx_acquire_events_whatever_the_log_filter() {
        for log_filter in ["off", "info", "trace"] {
            let seen = recorded(log_filter, || {
                // The two events of sqlx-core 0.9 `PoolInner::acquire`, as it emits them.
                tracing::event!(
                    target: "sqlx::pool::acquire",
                    tracing::Level::TRACE,
                    acquired_after_secs = 0.25_f64,
                    "acquired connection"
                );
                tracing::event!(
                    target: "sqlx::pool::acquire",
                    tracing::Level::WARN,
                    acquired_after_secs = 2.5_f64,
                    slow_acquire_threshold_secs = 2.0_f64,
                    "acquired connection, but time to acquire exceeded slow threshold"
                );
                // Not checkouts: another target, or no wait field.
                tracing::event!(
                    target: "sqlx::pool::other",
                    tracing::Level::WARN,
                    acquired_after_secs = 1.0_f64,
                    "other"
                );
                tracing::event!(target: "sqlx::pool::acquire", tracing::Level::INFO, "no field");
                tracing::event!(
                    target: "sqlx::pool::acquire",
                    tracing::Level::INFO,
                    acquired_after_secs = -1.0_f64,
                    "negative"
                );
            });
            assert_eq!(
                seen,
                [Duration::from_millis(250), Duration::from_millis(2500)],
                "log filter {log_filter}"
            );
        }
    }
}
