//! What SeaORM reports after each statement: `DATABASE_ECHO` logging, per-task counts and the
//! statement-duration metric.

use std::cell::{Cell, RefCell};
use std::future::Future;

use crate::metrics::Metrics;

/// The tracing target of echoed statements, so `RUST_LOG=app::db::sql=info` selects them.
pub const SQL_TARGET: &str = "app::db::sql";

tokio::task_local! {
    static STATEMENTS: Cell<usize>;
    static CAPTURED: RefCell<Vec<sea_orm::Statement>>;
}

/// Runs `work` and returns every SQL statement it sent, with its values, in order: what the
/// service really asks the database, for tests that EXPLAIN it.
pub async fn capture_statements<F: Future>(work: F) -> (F::Output, Vec<sea_orm::Statement>) {
    CAPTURED
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            (output, CAPTURED.with(|captured| captured.take()))
        })
        .await
}

/// Runs `work` and returns how many SQL statements it sent (BEGIN/COMMIT not counted).
pub async fn count_statements<F: Future>(work: F) -> (F::Output, usize) {
    STATEMENTS
        .scope(Cell::new(0), async {
            let output = work.await;
            (output, STATEMENTS.with(Cell::get))
        })
        .await
}

/// SeaORM's metric callback: counts the statement for the task, records its duration in
/// `metrics`, and logs it when `echo`.
pub(super) fn on_statement(info: &sea_orm::metric::Info<'_>, echo: bool, metrics: &Metrics) {
    let _ = STATEMENTS.try_with(|count| count.set(count.get() + 1));
    let _ = CAPTURED.try_with(|captured| captured.borrow_mut().push(info.statement.clone()));
    metrics.observe_statement(info.elapsed, info.failed);
    if echo {
        tracing::info!(
            target: SQL_TARGET,
            elapsed_ms = info.elapsed.as_secs_f64() * 1000.0,
            failed = info.failed,
            "{}",
            info.statement
        );
    }
}
