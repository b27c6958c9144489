//! Read replicas (`DATABASE_REPLICA_URLS`): which connection a read-only request reads from,
//! and read-your-writes across instances.
//!
//! Each replica has a small pool of its own and a state that [`replica_monitor`] refreshes a
//! few times a second: up or down, how far it has replayed the primary's write-ahead log, and
//! how many seconds it lags. A read-only request (GET, HEAD) reads from a replica that is up,
//! lags at most `DATABASE_REPLICA_MAX_LAG`, and has replayed at least the *write position* of
//! the signed-in account; otherwise from the primary. Everything else (writes, transactions,
//! sign-in, and the per-request account and revocation check) runs on the primary.
//!
//! The write position is recorded by [`record_write_position`] on the primary after each write
//! request of an account, once the write committed and before the response leaves; the
//! account check of the next request (on the primary, on any instance) reads it back in the
//! same query. A replica whose last seen replay position is at or past it has the write, so
//! the author reads it back whichever instance and replica serve them.
//!
//! [`replica_monitor`]: super::replica_monitor

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, SqlxPostgresConnector};
use serde::Serialize;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::echo;
use super::pool::{self, LostConnections, PoolShape};
use super::pooler::DbConn;
use crate::config::DatabaseSettings;
use crate::metrics::Metrics;

/// Longest a read waits for a free connection of a replica's pool before it fails over to the
/// primary: a replica is there to relieve the primary, not to make reads wait.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The read replicas of this instance; cheap to clone. Empty without `DATABASE_REPLICA_URLS`.
#[derive(Debug, Clone)]
pub struct Replicas(Arc<Inner>);

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) replicas: Vec<Replica>,
    max_lag: Duration,
    /// Where the round-robin over eligible replicas starts next.
    next: AtomicUsize,
    reads_primary: AtomicU64,
    reads_replica: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Replica {
    pub(super) name: String,
    pub(super) options: sqlx::postgres::PgConnectOptions,
    conn: DbConn,
    pool: PgPool,
    lost: Arc<LostConnections>,
    pub(super) seen: Mutex<Seen>,
}

/// What the monitor last saw of a replica.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    pub(super) up: bool,
    /// The highest `pg_last_wal_replay_lsn()` seen, in bytes from `0/0`; a lower bound of
    /// what the replica has replayed now, as replay only moves forward.
    pub(super) replay_lsn: Option<u64>,
    /// Seconds behind the primary: 0 when all it received is replayed, else the age of the
    /// last transaction it replayed; `None` when unknown.
    pub(super) lag_seconds: Option<f64>,
    /// Why it is down, when it is.
    pub(super) error: Option<String>,
}

/// A replica's state in `/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    /// `host:port/database` (no user or password).
    pub name: String,
    /// `up` (reads may go to it), `down` (unreachable, or not a replica) or `lagging` (more
    /// than `DATABASE_REPLICA_MAX_LAG` behind: skipped).
    pub state: &'static str,
    pub lag_seconds: Option<f64>,
    /// The replay position last seen, as PostgreSQL writes an LSN (`0/3000148`).
    pub replay_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Replicas {
    /// No replicas: every read goes to the primary.
    pub fn none() -> Self {
        Self::from_list(Vec::new(), Duration::ZERO)
    }

    fn from_list(replicas: Vec<Replica>, max_lag: Duration) -> Self {
        Replicas(Arc::new(Inner {
            replicas,
            max_lag,
            next: AtomicUsize::new(0),
            reads_primary: AtomicU64::new(0),
            reads_replica: AtomicU64::new(0),
        }))
    }

    /// Makes a pool per replica without connecting (a replica that is down at start is skipped
    /// until it answers, it does not stop the service) and starts the monitor. Each pool holds
    /// up to `DATABASE_POOL_SIZE` connections, opened as reads need them, with the primary's
    /// recycling, pre-ping and logging settings; `DATABASE_ECHO` and the statement metrics
    /// see replica statements too.
    pub fn start(settings: &DatabaseSettings, metrics: &Arc<Metrics>) -> Self {
        let mut pool_settings = settings.clone();
        pool_settings.max_overflow = 0;
        pool_settings.pool_timeout = settings.pool_timeout.min(REPLICA_ACQUIRE_TIMEOUT);
        let mut shape = PoolShape::from_settings(&pool_settings, false);
        shape.min = 0;
        let replicas: Vec<Replica> = settings
            .replicas
            .replicas
            .iter()
            .map(|replica| {
                let lost = Arc::new(LostConnections::default());
                let pool: PgPool = pool::options(&pool_settings, shape, Arc::clone(&lost))
                    .connect_lazy_with(replica.options.clone());
                let mut conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
                let echo = settings.echo;
                let recorder = Arc::clone(metrics);
                conn.set_metric_callback(move |info| echo::on_statement(info, echo, &recorder));
                Replica {
                    name: replica.name.clone(),
                    options: replica.options.clone(),
                    conn: DbConn::new(conn, replica.pgbouncer),
                    pool,
                    lost,
                    seen: Mutex::new(Seen {
                        error: Some("not checked yet".into()),
                        ..Seen::default()
                    }),
                }
            })
            .collect();
        let replicas = Self::from_list(replicas, settings.replicas.max_lag);
        for index in 0..replicas.0.replicas.len() {
            super::replica_monitor::spawn(Arc::downgrade(&replicas.0), index);
        }
        replicas
    }

    pub fn is_empty(&self) -> bool {
        self.0.replicas.is_empty()
    }

    /// The connection a read-only request reads from: a replica that is up, lags at most
    /// `DATABASE_REPLICA_MAX_LAG` and has replayed the signed-in account's write position
    /// (taking turns among those that qualify), else `primary`. Outside [`route_reads`], or
    /// when the request must read from the primary, always `primary`.
    pub fn reader(&self, primary: &DbConn) -> DbConn {
        let chosen = ROUTE
            .try_with(|route| {
                let mut route = route.borrow_mut();
                if route.primary_only {
                    return None;
                }
                let index = self.eligible(route.write_lsn)?;
                route.replica = Some(index);
                Some(index)
            })
            .ok()
            .flatten();
        match chosen {
            Some(index) => {
                self.0.reads_replica.fetch_add(1, Ordering::Relaxed);
                self.0.replicas[index].conn.clone()
            }
            None => {
                self.0.reads_primary.fetch_add(1, Ordering::Relaxed);
                primary.clone()
            }
        }
    }

    /// The next replica, in turn, that may serve a reader who needs `write_lsn` replayed.
    fn eligible(&self, write_lsn: Option<i64>) -> Option<usize> {
        let count = self.0.replicas.len();
        if count == 0 {
            return None;
        }
        let needed = write_lsn.map_or(0, |lsn| u64::try_from(lsn).unwrap_or(0));
        let start = self.0.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|step| (start + step) % count)
            .find(|&index| {
                let seen = lock(&self.0.replicas[index].seen);
                state_of(&seen, self.0.max_lag) == "up"
                    && seen.replay_lsn.is_some_and(|replayed| replayed >= needed)
            })
    }

    /// Takes a replica out of rotation after a read on it failed for want of the server; the
    /// monitor puts it back when it answers again. Its idle connections are checked before
    /// their next use, as they may have died with the one that failed.
    pub fn mark_down(&self, index: usize, why: &str) {
        let Some(replica) = self.0.replicas.get(index) else {
            return;
        };
        replica.lost.note();
        let mut seen = lock(&replica.seen);
        if seen.up {
            tracing::warn!(replica = %replica.name, reason = why, "read replica marked down");
        }
        seen.up = false;
        seen.error = Some(why.to_string());
    }

    /// Each replica's state, for `/health`.
    pub fn health(&self) -> Vec<ReplicaHealth> {
        self.0
            .replicas
            .iter()
            .map(|replica| {
                let seen = lock(&replica.seen).clone();
                ReplicaHealth {
                    name: replica.name.clone(),
                    state: state_of(&seen, self.0.max_lag),
                    lag_seconds: seen.lag_seconds,
                    replay_lsn: seen.replay_lsn.map(lsn_text),
                    error: if seen.up { None } else { seen.error },
                }
            })
            .collect()
    }

    /// The replica families of `/metrics`: up, lag and replayed position per replica, and the
    /// read-only requests by where they read.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let health = self.health();
        let families: [(&str, &str, &str, Sample); 2] = [
            (
                "app_db_replica_up",
                "1 when the read replica answers and is a replica, else 0 (lagging counts as up).",
                "gauge",
                |r| Some(if r.state == "down" { 0.0 } else { 1.0 }),
            ),
            (
                "app_db_replica_lag_seconds",
                "Seconds the read replica is behind the primary (0 when it replayed all it received).",
                "gauge",
                |r| r.lag_seconds,
            ),
        ];
        for (name, help, kind, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for replica in &health {
                if let Some(value) = value(replica) {
                    let _ = writeln!(out, "{name}{{replica=\"{}\"}} {value}", replica.name);
                }
            }
        }
        let name = "app_db_reads_total";
        let _ = writeln!(
            out,
            "# HELP {name} Read-only requests by the database they read from.\n# TYPE {name} counter"
        );
        for (target, count) in [
            ("primary", &self.0.reads_primary),
            ("replica", &self.0.reads_replica),
        ] {
            let _ = writeln!(
                out,
                "{name}{{target=\"{target}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out
    }

    /// Closes the replicas' pools.
    pub async fn close(&self) {
        for replica in &self.0.replicas {
            replica.pool.close().await;
        }
    }
}

/// A replica's value in one metric family; `None` leaves the replica out of it.
type Sample = fn(&ReplicaHealth) -> Option<f64>;

/// `up`, `down` or `lagging`, from what the monitor saw.
fn state_of(seen: &Seen, max_lag: Duration) -> &'static str {
    match seen.lag_seconds {
        _ if !seen.up => "down",
        Some(lag) if lag <= max_lag.as_secs_f64() => "up",
        _ => "lagging",
    }
}

/// An LSN as PostgreSQL writes it: the high and low 32 bits in hex, `0/3000148`.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one attempt at a request knows about its reads.
#[derive(Debug, Default)]
struct Route {
    /// Read from the primary only (the attempt after a replica failed).
    primary_only: bool,
    /// The signed-in account's write position, once the account check read it.
    write_lsn: Option<i64>,
    /// The account that acted (signed in, or made by sign-up), for its write position.
    actor: Option<Uuid>,
    /// The replica the attempt read from, if any.
    replica: Option<usize>,
}

tokio::task_local! {
    static ROUTE: RefCell<Route>;
}

/// What [`route_reads`] learned of one attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Routed {
    /// The account that acted, whose write position a successful write records.
    pub actor: Option<Uuid>,
    /// The replica a read went to.
    pub replica: Option<usize>,
}

/// Runs one attempt at a request with its read routing: [`Replicas::reader`] inside it
/// chooses by the position [`note_account`] gave; `primary_only` keeps every read on the
/// primary.
pub async fn route_reads<F: Future>(primary_only: bool, work: F) -> (F::Output, Routed) {
    let route = RefCell::new(Route {
        primary_only,
        ..Route::default()
    });
    ROUTE
        .scope(route, async {
            let output = work.await;
            let routed = ROUTE.with(|route| {
                let route = route.borrow();
                Routed {
                    actor: route.actor,
                    replica: route.replica,
                }
            });
            (output, routed)
        })
        .await
}

/// The signed-in account of this request and its write position (from the account check).
pub fn note_account(user: Uuid, write_lsn: Option<i64>) {
    let _ = ROUTE.try_with(|route| {
        let mut route = route.borrow_mut();
        route.actor = Some(user);
        route.write_lsn = write_lsn;
    });
}

/// The account a request acted for when it was not signed in with a token (sign-up's new
/// account, sign-in's account).
pub fn note_actor(user: Uuid) {
    let _ = ROUTE.try_with(|route| route.borrow_mut().actor = Some(user));
}

/// Records how far the primary's write-ahead log has come as `user`'s write position, after
/// their write committed: replicas must replay this far before they serve the user's reads.
/// Nothing on SQLite.
///
/// The position is `pg_current_wal_insert_lsn()`, which is past the end of every record
/// inserted so far, the write's commit among them, whatever `synchronous_commit` the write
/// ran with. It is kept with `GREATEST`, so a slower request of the same user cannot move it
/// back. The statement commits with `synchronous_commit = off`: the account's row is locked
/// only for the statement, not for a WAL flush, so concurrent writes of one user do not queue
/// behind each other's flushes here. The price: a crash of the primary may lose the last
/// fraction of a second of positions (never the writes themselves), see the README.
pub async fn record_write_position(
    db: &impl ConnectionTrait,
    user: Uuid,
) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    // One round trip, in the simple protocol (so it works through a transaction pooler too):
    // two statements of one query string run in one implicit transaction, where SET LOCAL
    // holds. A Uuid's text is only hex digits and dashes.
    let sql = format!(
        "SET LOCAL synchronous_commit = off; \
         INSERT INTO write_position (id, lsn, created_at, updated_at) \
         VALUES ('{user}', (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, now(), now()) \
         ON CONFLICT (id) DO UPDATE SET lsn = GREATEST(write_position.lsn, EXCLUDED.lsn), \
         updated_at = EXCLUDED.updated_at"
    );
    db.execute_unprepared(&sql).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(up: bool, lag: Option<f64>) -> Seen {
        Seen {
            up,
            replay_lsn: Some(100),
            lag_seconds: lag,
            error: None,
        }
    }

    #[test]
    fn states_follow_reachability_and_lag() {
        let max = Duration::from_secs(5);
        assert_eq!(state_of(&seen(true, Some(0.0)), max), "up");
        assert_eq!(state_of(&seen(true, Some(5.0)), max), "up");
        assert_eq!(state_of(&seen(true, Some(5.1)), max), "lagging");
        assert_eq!(state_of(&seen(true, None), max), "lagging");
        assert_eq!(state_of(&seen(false, Some(0.0)), max), "down");
    }

    /// Replicas with the given states (never connected: choosing does no I/O) and a 5 s limit.
    fn replicas(states: Vec<Seen>) -> Replicas {
        let list = states
            .into_iter()
            .enumerate()
            .map(|(index, seen)| {
                let options = sqlx::postgres::PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(1)
                    .database(&format!("r{index}"));
                let pool: PgPool =
                    sqlx::pool::PoolOptions::new().connect_lazy_with(options.clone());
                Replica {
                    name: format!("r{index}"),
                    options,
                    conn: DbConn::new(
                        SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                        false,
                    ),
                    pool,
                    lost: Arc::default(),
                    seen: Mutex::new(seen),
                }
            })
            .collect();
        Replicas::from_list(list, Duration::from_secs(5))
    }

    fn replayed(lsn: u64, lag: f64) -> Seen {
        Seen {
            up: true,
            replay_lsn: Some(lsn),
            lag_seconds: Some(lag),
            error: None,
        }
    }

    #[tokio::test]
    async fn a_replica_serves_only_readers_whose_writes_it_has_replayed() {
        let set = replicas(vec![replayed(100, 0.0), replayed(200, 1.0)]);
        for _ in 0..4 {
            assert_eq!(set.eligible(Some(150)), Some(1), "only r1 has 150");
            assert_eq!(
                set.eligible(Some(200)),
                Some(1),
                "replayed up to and including"
            );
            assert_eq!(set.eligible(Some(201)), None, "none has it: the primary");
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            seen.insert(set.eligible(None));
            seen.insert(set.eligible(Some(100)));
        }
        assert_eq!(
            seen,
            [Some(0), Some(1)].into(),
            "readers without writes take turns"
        );
    }

    #[tokio::test]
    async fn lagging_down_and_unprobed_replicas_are_skipped() {
        let set = replicas(vec![
            replayed(500, 5.5),
            Seen {
                up: false,
                ..replayed(500, 0.0)
            },
            Seen::default(),
            replayed(500, 0.2),
        ]);
        for _ in 0..8 {
            assert_eq!(set.eligible(Some(1)), Some(3));
        }
        set.mark_down(3, "a read failed");
        assert_eq!(set.eligible(None), None);
        let states: Vec<&str> = set.health().iter().map(|r| r.state).collect();
        assert_eq!(states, ["lagging", "down", "down", "down"]);
    }

    #[tokio::test]
    async fn reads_outside_routing_or_after_a_replica_failed_go_to_the_primary() {
        let set = replicas(vec![replayed(500, 0.0)]);
        let primary = set.0.replicas[0].conn.clone();
        let _ = set.reader(&primary);
        let ((), routed) = route_reads(true, async {
            note_account(Uuid::nil(), None);
            let _ = set.reader(&primary);
        })
        .await;
        assert_eq!(routed.replica, None);
        assert_eq!(routed.actor, Some(Uuid::nil()));
        let ((), routed) = route_reads(false, async {
            note_account(Uuid::nil(), Some(400));
            let _ = set.reader(&primary);
        })
        .await;
        assert_eq!(routed.replica, Some(0));
        let text = set.render_metrics();
        assert!(
            text.contains("app_db_reads_total{target=\"primary\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("app_db_reads_total{target=\"replica\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("app_db_replica_up{replica=\"r0\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn lsns_are_written_as_postgresql_does() {
        assert_eq!(lsn_text(0x3000148), "0/3000148");
        assert_eq!(lsn_text((0x16 << 32) | 0xB374D848), "16/B374D848");
    }
}
