//! `DATABASE_ECHO`: one log line per SQL statement, with its duration.

/// The tracing target of echoed statements, so `RUST_LOG=app::db::sql=info` selects them.
pub const SQL_TARGET: &str = "app::db::sql";

/// SeaORM's metric callback: sees each statement after it ran (not BEGIN/COMMIT).
pub(super) fn log_statement(info: &sea_orm::metric::Info<'_>) {
    tracing::info!(
        target: SQL_TARGET,
        elapsed_ms = info.elapsed.as_secs_f64() * 1000.0,
        failed = info.failed,
        "{}",
        info.statement
    );
}
