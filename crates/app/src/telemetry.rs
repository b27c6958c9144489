//! Logging, and the tracing layer behind the checkout-wait metric, set up once for the binary
//! and for tests.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::metrics::acquire;

/// Sends logs to stderr (stdout stays for command output) filtered by `filter`, a
/// `RUST_LOG`-style directive already checked by the settings, and feeds sqlx's checkout
/// events to `app_db_pool_acquire_wait_seconds` whatever `filter` says (`"off"` prints nothing
/// and still records them). A second call does nothing.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The `log` records worth turning into events are those the log filter lets through; the
    // metrics layer wants only tracing events. Without this the `log` max level would follow the
    // subscriber's, which the metrics layer's TRACE raises for every `log` call site.
    let log_level = filter
        .max_level_hint()
        .map_or(log::LevelFilter::Trace, as_log);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .log_internal_errors(true)
        .with_filter(filter);
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(acquire::layer())
        .try_init();
    if installed.is_ok() {
        log::set_max_level(log_level);
    }
}

fn as_log(level: tracing_subscriber::filter::LevelFilter) -> log::LevelFilter {
    use tracing::Level;
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(Level::ERROR) => log::LevelFilter::Error,
        Some(Level::WARN) => log::LevelFilter::Warn,
        Some(Level::INFO) => log::LevelFilter::Info,
        Some(Level::DEBUG) => log::LevelFilter::Debug,
        Some(Level::TRACE) => log::LevelFilter::Trace,
    }
}
