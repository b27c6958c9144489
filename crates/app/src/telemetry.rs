//! Logging, and the tracing layer behind the checkout-wait metric, set up once for the binary
//! and for tests.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;
use crate::metrics::acquire;

/// Sends logs to stderr (stdout stays for command output) filtered by `filter`, a
/// `RUST_LOG`-style directive already checked by the settings, as text or as one JSON object
/// per line, and feeds sqlx's checkout events to `app_db_pool_acquire_wait_seconds` whatever
/// `filter` says (`"off"` prints nothing and still records them). A second call does nothing.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The `log` records worth turning into events are those the log filter lets through; the
    // metrics layer wants only tracing events. Without this the `log` max level would follow the
    // subscriber's, which the metrics layer's TRACE raises for every `log` call site.
    let log_level = filter
        .max_level_hint()
        .map_or(log::LevelFilter::Trace, as_log);
    let text = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(colored(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .log_internal_errors(true);
    let logs = match format {
        LogFormat::Text => text.boxed(),
        // Flattened: the event's fields sit beside `timestamp`, `level` and `target`, where
        // log pipelines look for them; the spans the event ran in are listed under `spans`.
        LogFormat::Json => text
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    }
    .with_filter(filter);
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(acquire::layer())
        .try_init();
    if installed.is_ok() {
        log::set_max_level(log_level);
    }
}

/// Colors only for a person at a terminal, and never when `NO_COLOR` is set to anything
/// (<https://no-color.org>): in a file or a pipe escape codes are noise.
fn colored(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
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

#[cfg(test)]
mod tests {
    use super::colored;

    #[test]
    fn color_only_on_a_terminal_without_no_color() {
        assert!(colored(true, None));
        assert!(colored(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colored(true, Some("1".into())));
        assert!(
            !colored(false, None),
            "a file or a pipe gets no escape codes"
        );
    }
}
