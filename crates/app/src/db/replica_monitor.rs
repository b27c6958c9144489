//! The watch over each read replica: a task per replica that asks it, every
//! [`POLL_INTERVAL`], whether it is a replica, how far it has replayed and how far it lags,
//! and records the answer for [`Replicas`](super::replicas::Replicas) to route by.
//!
//! The monitor keeps one connection of its own per replica, outside the replica's pool, so a
//! pool busy with reads does not make a healthy replica look down. It ends when the replicas
//! are dropped.

use std::sync::Weak;
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection};

use super::replicas::Inner;

/// How often each replica is asked for its state.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A replica that does not answer within this is down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the server is a replica, what it has replayed (bytes from `0/0`), and its lag in
/// seconds: 0 when it has replayed all it received, else the age of the last transaction it
/// replayed (NULL when it replayed none yet).
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, \
     CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL \
               AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8 \
          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END";

/// Starts the watch over replica `index`; it stops once `replicas` is gone.
pub(super) fn spawn(replicas: Weak<Inner>, index: usize) {
    tokio::spawn(async move {
        let mut conn: Option<PgConnection> = None;
        loop {
            let Some(inner) = replicas.upgrade() else {
                if let Some(conn) = conn {
                    let _ = conn.close().await;
                }
                return;
            };
            let replica = &inner.replicas[index];
            let answer =
                tokio::time::timeout(PROBE_TIMEOUT, probe(&mut conn, &replica.options)).await;
            let answer = match answer {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
            };
            if answer.is_err() {
                // Whatever state the connection is in, the next probe starts afresh.
                conn = None;
            }
            record(replica, answer);
            drop(inner);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
}

type Answer = (bool, Option<i64>, Option<f64>);

/// Asks the replica, connecting first when there is no connection.
async fn probe(
    conn: &mut Option<PgConnection>,
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<Answer, sqlx::Error> {
    // No statement cache: the probe is one short query, and a transaction pooler in front of
    // the replica would mix up named statements.
    let conn = match conn.take() {
        Some(open) => conn.insert(open),
        None => conn.insert(
            options
                .clone()
                .statement_cache_capacity(0)
                .connect()
                .await?,
        ),
    };
    sqlx::query_as::<_, Answer>(PROBE_SQL).fetch_one(conn).await
}

/// Stores what a probe learned; logs when the replica goes down or comes back.
fn record(replica: &super::replicas::Replica, answer: Result<Answer, String>) {
    let mut seen = replica
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let was_up = seen.up;
    match answer {
        Ok((true, replayed, lag)) => {
            seen.up = true;
            seen.error = None;
            let replayed = replayed.and_then(|lsn| u64::try_from(lsn).ok());
            // Replay only moves forward: keep the highest position seen.
            seen.replay_lsn = seen.replay_lsn.max(replayed);
            seen.lag_seconds = lag.map(|lag| lag.max(0.0));
        }
        Ok((false, ..)) => {
            seen.up = false;
            seen.error = Some("the server is not a replica (not in recovery)".into());
        }
        Err(error) => {
            seen.up = false;
            seen.error = Some(error);
        }
    }
    match (was_up, seen.up) {
        (false, true) => tracing::info!(replica = %replica.name, "read replica is up"),
        (true, false) => tracing::warn!(
            replica = %replica.name,
            error = seen.error.as_deref().unwrap_or_default(),
            "read replica is down"
        ),
        _ => {}
    }
}
