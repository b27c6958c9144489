//! Is a transaction pooler (PgBouncer in `pool_mode = transaction`) between the service and
//! PostgreSQL, and does `DATABASE_URL` say so (`pgbouncer=true`)?
//!
//! Two client connections ask `SELECT pg_backend_pid()` in turn, with the simple query protocol
//! (which any pooler passes on). Straight to PostgreSQL, and through a pooler in session mode,
//! each client keeps a server process of its own, so they never see the same pid. A pooler in
//! transaction (or statement) mode hands a server connection to whichever client sends next,
//! and PgBouncer hands out the one released last: the second client gets the first one's.
//! Other clients of a busy pooler may take it first, hence a few rounds.

use strata::runner::Conn;

use super::Finding;
use crate::config::DatabaseSettings;
use crate::db::Database;

/// Rounds of the two clients before concluding that no server connection is shared.
const ROUNDS: usize = 8;

/// The `pooler` finding (PostgreSQL only).
pub(super) async fn finding(db: &Database, settings: &DatabaseSettings) -> Finding {
    let declared = settings.url.pgbouncer();
    let shared = match shares_server_connections(db).await {
        Ok(shared) => shared,
        Err(err) => {
            return Finding::warn(
                "pooler",
                format!("cannot tell whether a pooler is in between: {err}"),
            );
        }
    };
    match (shared, declared) {
        (true, false) => Finding::fail(
            "pooler",
            "a transaction pooler hands one server connection to several clients, and \
             DATABASE_URL lacks pgbouncer=true: statements will fail with prepared statement errors",
        )
        .hint("add pgbouncer=true to DATABASE_URL (e.g. postgresql://u:p@host:6432/db?pgbouncer=true)"),
        (true, true) => Finding::ok(
            "pooler",
            "a transaction pooler is in between; pgbouncer=true runs every statement inside a transaction",
        ),
        (false, true) => Finding::ok(
            "pooler",
            "pgbouncer=true is set, but no transaction pooler was seen (it costs round trips for nothing \
             straight to PostgreSQL)",
        ),
        (false, false) => Finding::ok(
            "pooler",
            "no transaction pooler seen: each client connection keeps its server session",
        ),
    }
}

/// Whether two client connections were ever served by the same server process.
async fn shares_server_connections(db: &Database) -> Result<bool, String> {
    let mut first = db
        .dedicated_connection()
        .await
        .map_err(|err| err.to_string())?;
    let mut second = db
        .dedicated_connection()
        .await
        .map_err(|err| err.to_string())?;
    let mut shared = false;
    for _ in 0..ROUNDS {
        let a = backend_pid(&mut first).await?;
        let b = backend_pid(&mut second).await?;
        if a == b {
            shared = true;
            break;
        }
    }
    Ok(shared)
}

async fn backend_pid(conn: &mut Conn) -> Result<String, String> {
    let rows = conn
        .fetch_text("SELECT pg_backend_pid()")
        .await
        .map_err(|err| err.to_string())?;
    rows.first()
        .and_then(|row| row.first().cloned().flatten())
        .ok_or_else(|| "SELECT pg_backend_pid() returned nothing".to_string())
}
