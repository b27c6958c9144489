//! One non-atomic migration at a time among concurrent upgraders (PostgreSQL).
//!
//! An atomic migration is serialized by the transaction-scoped lock its transaction takes.
//! A non-atomic one runs its statements outside any transaction (`CREATE INDEX CONCURRENTLY`
//! cannot run in one), so that lock cannot cover them: two upgraders would both find the
//! migration not yet done and build the same indexes together, one dropping what the other
//! is building, or deadlocking on the table.
//!
//! So the runner first takes a second, transaction-scoped lock on a connection of its own (the
//! guard) and keeps that transaction open while the steps run. It is transaction-scoped for
//! the same reason as the other lock: through a transaction pooler a session lock could be
//! left on a server connection nobody owns. And it is waited for by polling
//! (`pg_try_advisory_xact_lock` in short transactions, never a blocking wait): a concurrent
//! index build waits for every transaction whose snapshot is older than the build, and a
//! waiter blocked in a statement holds one, so a blocking wait would stall the build it waits
//! for, with no deadlock PostgreSQL could see. A guard that dies (its process killed) ends its
//! transaction, so the lock cannot outlive its holder.

use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

use crate::runner::{Conn, RunError};

/// How often a waiting upgrader asks again.
const POLL: Duration = Duration::from_millis(200);

/// The open transaction that holds the non-atomic lock until [`Guard::release`] or drop.
pub struct Guard {
    conn: Conn,
}

impl Guard {
    /// Connects with `options` and waits, polling, until this process holds the lock of
    /// `version_table`'s non-atomic migrations.
    pub async fn take(options: &PgConnectOptions, version_table: &str) -> Result<Self, RunError> {
        let connection = options
            .clone()
            .statement_cache_capacity(0)
            .connect()
            .await?;
        let mut conn = Conn::Postgres(connection);
        let try_lock = format!(
            "SELECT pg_try_advisory_xact_lock({})::text",
            lock_key(version_table)
        );
        loop {
            conn.execute("BEGIN").await?;
            let rows = conn.fetch_text(&try_lock).await?;
            if rows.first().and_then(|row| row.first()).cloned().flatten() == Some("true".into()) {
                return Ok(Guard { conn });
            }
            conn.execute("ROLLBACK").await?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends the guard's transaction, which gives the lock up, and closes its connection.
    pub async fn release(mut self) {
        let _ = self.conn.execute("ROLLBACK").await;
        if let Conn::Postgres(connection) = self.conn {
            use sqlx::Connection as _;
            let _ = connection.close().await;
        }
    }
}

/// The advisory lock key of the non-atomic migrations of `version_table`: another key than the
/// one each migration's transaction takes, so upgraders that only look at migrations already
/// done never wait behind an index build.
fn lock_key(version_table: &str) -> i64 {
    crate::runner::lock_key(&format!("{version_table}:non-atomic"))
}
