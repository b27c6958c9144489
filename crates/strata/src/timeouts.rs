//! Lock and statement timeouts for each migration, the retry of a lock timeout, and naming the
//! session in the way when the retries run out (PostgreSQL).
//!
//! A migration that waits for a lock (an `ALTER TABLE` behind a long transaction) makes every
//! later query on the table queue behind it: a short `lock_timeout` turns that outage into a
//! failed attempt, rolled back and retried after a backoff. The settings are `SET LOCAL`, so
//! they end with the migration's transaction and never leak to another client through a
//! transaction pooler. A non-atomic migration's statements run outside a transaction, where
//! `SET LOCAL` does not exist and a session `SET` would stay on a pooled server connection; they
//! run without these timeouts (their `CONCURRENTLY` statements take SHARE UPDATE EXCLUSIVE, which
//! reads and writes never queue behind), after a probe under the lock timeout that the table's
//! lock is free (see [`probe_sql`]).

use std::time::Duration;

use crate::Operation;
use crate::render::quote_ident;
use crate::runner::Conn;

/// How the runner guards each migration. The default sets nothing and never retries.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `SET LOCAL lock_timeout` in each migration's transaction (PostgreSQL).
    pub lock_timeout: Option<Duration>,
    /// `SET LOCAL statement_timeout` in each migration's transaction (PostgreSQL).
    pub statement_timeout: Option<Duration>,
    /// How many times a migration that hit the lock timeout is run again.
    pub lock_retries: u32,
    /// The wait before the first retry; it doubles for each next one (with jitter).
    pub retry_delay: Duration,
    /// Where a non-atomic migration opens the connection that keeps other upgraders out
    /// while its steps run (PostgreSQL; see `non_atomic_guard`). Without it, upgraders
    /// that run concurrently must not meet at a non-atomic migration.
    pub guard_connection: Option<sqlx::postgres::PgConnectOptions>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: None,
            statement_timeout: None,
            lock_retries: 0,
            retry_delay: Duration::from_secs(1),
            guard_connection: None,
        }
    }
}

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(60);

impl RunOptions {
    /// The `SET LOCAL` statements that open each migration's transaction.
    pub fn transaction_settings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(timeout) = self.lock_timeout {
            out.push(format!("SET LOCAL lock_timeout = '{}ms'", millis(timeout)));
        }
        if let Some(timeout) = self.statement_timeout {
            out.push(format!(
                "SET LOCAL statement_timeout = '{}ms'",
                millis(timeout)
            ));
        }
        out
    }

    /// The wait before retry number `attempt` (1 for the first): the base doubled each time,
    /// capped, with up to a quarter added at random so that several instances blocked by the
    /// same session do not come back in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .retry_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let base = doubled.min(MAX_DELAY);
        base + base.mul_f64(jitter() * 0.25)
    }
}

fn millis(d: Duration) -> u128 {
    // PostgreSQL reads 0 as "no timeout"; a sub-millisecond timeout is meant as the shortest.
    d.as_millis().max(1)
}

/// A number in [0, 1) that differs between processes and calls (no dependency for it).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether PostgreSQL gave up waiting for a lock (SQLSTATE 55P03, `lock_not_available`).
pub(crate) fn is_lock_timeout(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// The tables the operations touch, for naming who holds a lock on them.
pub(crate) fn tables(operations: &[Operation]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for op in operations {
        let mut add = |t: &str| {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        };
        if let Some(table) = op.table() {
            add(table);
        }
        if let Operation::RenameTable { to, .. } = op {
            add(to);
        }
        if let Operation::AddForeignKey { foreign_key, .. } = op {
            add(&foreign_key.ref_table);
        }
    }
    out
}

/// The statement that checks, under the lock timeout, that nothing holds a lock a concurrent
/// index build or drop on `table` would wait for (SHARE UPDATE EXCLUSIVE conflicts with schema
/// changes, VACUUM and other concurrent builds, not with reads and writes).
fn probe_sql(table: &str) -> String {
    format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        quote_ident(table)
    )
}

/// One line on the session holding a lock on one of `tables` (all user tables when none is
/// known): pid, state, for how long, and its query. `None` when no other session holds one.
pub(crate) async fn blocker(conn: &mut Conn, tables: &[String]) -> Option<String> {
    if !matches!(conn, Conn::Postgres(_)) {
        return None;
    }
    let relation_filter = if tables.is_empty() {
        // 16384 is FirstNormalObjectId: relations below it are the system's.
        "l.relation >= 16384".to_string()
    } else {
        let oids: Vec<String> = tables
            .iter()
            .map(|t| format!("to_regclass({})", sql_string(&quote_ident(t))))
            .collect();
        format!(
            "l.relation = ANY (CAST(ARRAY[{}] AS oid[]))",
            oids.join(", ")
        )
    };
    let sql = format!(
        "SELECT CAST(a.pid AS text), COALESCE(a.state, 'unknown'), \
         CAST(COALESCE(CAST(round(CAST(extract(epoch FROM now() - COALESCE(a.xact_start, a.query_start)) AS numeric), 1) AS text), '?') AS text), \
         COALESCE(a.query, ''), CAST(l.relation AS regclass)::text, l.mode \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid() \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND {relation_filter} \
         ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 1"
    );
    let rows = conn.fetch_text(&sql).await.ok()?;
    let row = rows.into_iter().next()?;
    let mut cells = row.into_iter().map(Option::unwrap_or_default);
    let pid = cells.next().unwrap_or_default();
    let state = cells.next().unwrap_or_default();
    let seconds = cells.next().unwrap_or_default();
    let query = cells.next().unwrap_or_default();
    let relation = cells.next().unwrap_or_default();
    let mode = cells.next().unwrap_or_default();
    Some(format!(
        "session pid {pid} ({state} for {seconds} s, holding {mode} on {relation}) running `{}`",
        one_line(&query, 200)
    ))
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` on one line, whitespace collapsed, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        collapsed
    } else {
        let cut: String = collapsed.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// Before a non-atomic migration's steps (which run without timeouts: see
/// the module's notes): checks under the lock timeout, in a short transaction, that each
/// table they touch can be locked as a concurrent index build locks it. True when one could
/// not be (a lock timeout, retried like any other).
pub(crate) async fn probe_locks(
    conn: &mut Conn,
    operations: &[Operation],
    options: &RunOptions,
) -> Result<bool, sqlx::Error> {
    let Some(timeout) = options.lock_timeout else {
        return Ok(false);
    };
    let settings = RunOptions {
        lock_timeout: Some(timeout),
        ..RunOptions::default()
    }
    .transaction_settings();
    'tables: for table in tables(operations) {
        conn.execute("BEGIN").await?;
        let mut statements = settings.clone();
        statements.push(probe_sql(&table));
        for sql in &statements {
            if let Err(error) = conn.execute(sql).await {
                let _ = conn.execute("ROLLBACK").await;
                if is_lock_timeout(&error) {
                    return Ok(true);
                }
                // A table the migration creates does not exist yet: nothing to probe.
                if error
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| code == "42P01")
                {
                    continue 'tables;
                }
                return Err(error);
            }
        }
        conn.execute("ROLLBACK").await?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_transaction_scoped_and_in_milliseconds() {
        let options = RunOptions {
            lock_timeout: Some(Duration::from_secs(5)),
            statement_timeout: Some(Duration::from_millis(1500)),
            ..RunOptions::default()
        };
        assert_eq!(
            options.transaction_settings(),
            [
                "SET LOCAL lock_timeout = '5000ms'",
                "SET LOCAL statement_timeout = '1500ms'"
            ]
        );
        assert!(RunOptions::default().transaction_settings().is_empty());
    }

    #[test]
    fn backoff_doubles_with_at_most_a_quarter_of_jitter_and_is_capped() {
        let options = RunOptions {
            retry_delay: Duration::from_millis(400),
            ..RunOptions::default()
        };
        for (attempt, base) in [(1, 400), (2, 800), (3, 1600)] {
            let delay = options.backoff(attempt);
            assert!(delay >= Duration::from_millis(base), "{delay:?}");
            assert!(delay <= Duration::from_millis(base * 5 / 4), "{delay:?}");
        }
        assert!(options.backoff(40) <= MAX_DELAY + MAX_DELAY / 4);
    }

    #[test]
    fn long_queries_are_cut_to_one_line() {
        assert_eq!(one_line("SELECT\n  1,\t2", 100), "SELECT 1, 2");
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
