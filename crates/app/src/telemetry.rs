//! Logging, set up once for the binary and for tests.

use tracing_subscriber::EnvFilter;

/// Sends logs to stderr (stdout stays for command output) filtered by `filter`, a
/// `RUST_LOG`-style directive already checked by the settings. A second call does nothing.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
