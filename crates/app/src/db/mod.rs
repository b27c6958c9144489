//! Connecting to PostgreSQL or SQLite, the pool behind the connection, and its health.
//!
//! The sqlx pool is built here (see [`pool`]) and handed to SeaORM, so every SeaORM query goes
//! through the pool settings; [`Database`] keeps both the SeaORM connection and the pool.
//!
//! A lost connection (the server restarted or ended the session) is an error of its own,
//! [`DbError::ConnectionLost`] ([`is_connection_lost`]); [`Database::note_connection_lost`]
//! makes the pool flush the connections that may have died with it, and [`track_writes`] tells
//! whether work that failed so could have changed anything, so it can be run again.

mod echo;
mod encryption;
mod error;
pub use echo::{capture_statements, count_statements};
mod memory;
pub mod pool;
mod pooler;
mod replica_monitor;
pub mod replicas;
mod write_queue;
pub use pooler::DbConn;
pub use replicas::Replicas;
pub use write_queue::WriteTransaction;

use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, SqlxPostgresConnector, SqlxSqliteConnector, Statement};
use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use crate::config::{Backend, DatabaseSettings, DatabaseUrl};
use crate::metrics::Metrics;
pub use error::{DbError, describe, is_connection_lost};
use pool::{LostConnections, OwnedPool, PoolShape};

/// How long a SQLite connection waits for a lock held by another before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The sqlx pool under the SeaORM connection; closed when the last `Database` clone drops.
#[derive(Debug, Clone)]
enum Pool {
    Postgres(Arc<OwnedPool<sqlx::Postgres>>),
    Sqlite(Arc<OwnedPool<sqlx::Sqlite>>),
}

/// A connected database: the SeaORM connection for queries and the pool for its figures.
#[derive(Debug, Clone)]
pub struct Database {
    conn: DbConn,
    pool: Pool,
    backend: Backend,
    shape: PoolShape,
    pool_size: u32,
    max_overflow: u32,
    pool_timeout: Duration,
    metrics: Arc<Metrics>,
    lost: Arc<LostConnections>,
}

/// The pool's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Connections kept open (`DATABASE_POOL_SIZE`; 0 when pooling is disabled).
    pub size: u32,
    /// Extra connections allowed under load.
    pub overflow: u32,
    /// Connections open now.
    pub open: u32,
    pub idle: u32,
    pub in_use: u32,
}

/// What `ping` learns about the server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PingReport {
    pub backend: Backend,
    pub server_version: String,
    pub round_trip: Duration,
    /// PostgreSQL only: the session's TLS version and cipher, or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

impl Database {
    /// Opens the pool and checks that one connection works.
    #[tracing::instrument(skip_all, fields(backend = %settings.url.backend()))]
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let lost = Arc::new(LostConnections::default());
        let (conn, pool, shape) = match &settings.url {
            DatabaseUrl::Postgres {
                options, display, ..
            } => {
                let options = &with_slow_statement_warning((**options).clone(), settings);
                // One direct attempt first: the pool would retry a refused or failing connect
                // until POOL_TIMEOUT and then report only a timeout; this names the cause now.
                {
                    use sqlx::{ConnectOptions, Connection};
                    let first = options
                        .connect()
                        .await
                        .map_err(|err| DbError::connect(display, err))?;
                    let _ = first.close().await;
                }
                let shape = PoolShape::from_settings(settings, false);
                let pool: PgPool = pool::options(settings, shape, Arc::clone(&lost))
                    .connect_with(options.clone())
                    .await
                    .map_err(|err| DbError::connect(display, err))?;
                let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
                let owned = Arc::new(OwnedPool(pool));
                pool::spawn_overflow_trimmer(&owned, shape, settings.echo_pool);
                (conn, Pool::Postgres(owned), shape)
            }
            DatabaseUrl::Sqlite { path } => {
                let options = with_slow_statement_warning(
                    memory::sqlite(sqlite_options(path.as_deref())?),
                    settings,
                );
                if path.is_some() {
                    // Switching a new file to WAL takes an exclusive lock, and SQLite may answer
                    // "database is locked" at once (no busy wait) when several connections try
                    // it together; one connection does it first, the rest find WAL set. Other
                    // processes may race too, so a locked answer is retried within the busy
                    // timeout.
                    open_first_sqlite_connection(&options, path.as_deref()).await?;
                }
                let shape = PoolShape::from_settings(settings, path.is_none());
                let pool: SqlitePool = pool::options(settings, shape, Arc::clone(&lost))
                    .connect_with(options)
                    .await
                    .map_err(|err| DbError::sqlite_open(path.as_deref(), err))?;
                let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
                let owned = Arc::new(OwnedPool(pool));
                pool::spawn_overflow_trimmer(&owned, shape, settings.echo_pool);
                (conn, Pool::Sqlite(owned), shape)
            }
        };
        let mut conn = conn;
        let echo = settings.echo;
        let metrics = Arc::new(Metrics::new());
        let recorder = Arc::clone(&metrics);
        conn.set_metric_callback(move |info| {
            echo::on_statement(info, echo, &recorder);
            note_write(&info.statement.sql);
        });
        let db = Database {
            conn: DbConn::new(conn, settings.url.pgbouncer()),
            pool,
            backend: settings.url.backend(),
            shape,
            pool_size: settings.pool_size,
            max_overflow: settings.max_overflow,
            pool_timeout: settings.pool_timeout,
            metrics,
            lost,
        };
        // A file that is not a database opens fine; the first query tells.
        db.first_query().await?;
        tracing::debug!(pool = ?db.pool_status(), "database connected");
        Ok(db)
    }

    /// The connection for queries: SeaORM's, used as it is, with the pooler rules applied
    /// behind `pgbouncer=true` (see [`DbConn`]).
    pub fn conn(&self) -> &DbConn {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This database's metrics (and the app's: the HTTP layer records into them too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Open, idle and in-use connections now.
    pub fn pool_status(&self) -> PoolStatus {
        let (open, idle) = match &self.pool {
            Pool::Postgres(pool) => (pool.0.size(), pool.0.num_idle()),
            Pool::Sqlite(pool) => (pool.0.size(), pool.0.num_idle()),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        PoolStatus {
            size: self.shape.kept,
            overflow: self.shape.max.saturating_sub(self.shape.kept),
            open,
            idle,
            in_use: open.saturating_sub(idle),
        }
    }

    /// How long a checkout waits before it gives up (`DATABASE_POOL_TIMEOUT`).
    pub fn pool_timeout(&self) -> Duration {
        self.pool_timeout
    }

    /// Remembers that a connection of this pool was found lost (see [`is_connection_lost`]):
    /// from now on each connection that went idle before this moment is pinged at its next
    /// checkout and closed when dead, so one failure flushes a pool of connections a server
    /// restart ended. With `DATABASE_PRE_POOL_PING` every checkout pings anyway.
    pub fn note_connection_lost(&self) {
        self.lost.note();
    }

    /// Turns a SeaORM error into ours: a pool timeout gets the pool's figures, and is counted
    /// in `app_db_pool_acquire_timeouts_total` and, as a wait of `DATABASE_POOL_TIMEOUT`, in
    /// `app_db_pool_acquire_wait_seconds`; a lost connection is noted
    /// ([`note_connection_lost`](Self::note_connection_lost)).
    pub fn explain(&self, err: sea_orm::DbErr) -> DbError {
        match err {
            sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout) => {
                self.metrics.pool_timeout(self.pool_timeout);
                let status = self.pool_status();
                DbError::PoolTimeout {
                    waited: self.pool_timeout,
                    size: self.pool_size,
                    overflow: self.max_overflow,
                    in_use: status.in_use,
                }
            }
            other => {
                let err = DbError::from_db_err(other);
                if err.is_connection_lost() {
                    self.note_connection_lost();
                }
                err
            }
        }
    }

    /// Checks a connection out of the pool and gives it straight back; returns how long the
    /// checkout took. It lands in `app_db_pool_acquire_wait_seconds` like any other checkout
    /// (sqlx reports it; a timeout is recorded by [`explain`](Self::explain)).
    pub async fn probe_checkout(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        let checked_out = match &self.pool {
            Pool::Postgres(pool) => pool.0.acquire().await.map(drop),
            Pool::Sqlite(pool) => pool.0.acquire().await.map(drop),
        };
        match checked_out {
            Ok(()) => Ok(started.elapsed()),
            Err(sqlx::Error::PoolTimedOut) => Err(self.explain(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout,
            ))),
            Err(err) => Err(DbError::connect("the database pool", err)),
        }
    }

    /// Runs a trivial query and reports the server version and the round-trip time.
    #[tracing::instrument(skip_all)]
    pub async fn ping(&self) -> Result<PingReport, DbError> {
        let version_sql = match self.backend {
            Backend::Postgresql => "SHOW server_version",
            Backend::Sqlite => "SELECT sqlite_version()",
        };
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                version_sql,
            ))
            .await
            .map_err(|err| self.explain(err))?
            .ok_or_else(|| DbError::Unexpected("the server returned no version".into()))?;
        let server_version: String = row.try_get_by_index(0).map_err(|err| self.explain(err))?;
        let started = Instant::now();
        self.select_one().await?;
        let round_trip = started.elapsed();
        Ok(PingReport {
            backend: self.backend,
            server_version,
            round_trip,
            encryption: self.encryption().await,
        })
    }

    /// A plain statement without parameters for this backend.
    pub fn statement(&self, sql: &str) -> Statement {
        Statement::from_string(self.conn.get_database_backend(), sql)
    }

    /// `SELECT 1` with the simple query protocol: no prepared statement, so it also works
    /// through a transaction pooler (PgBouncer before 1.21 keeps none), which the tooling
    /// commands (`upgrade` above all) may be pointed at.
    async fn first_query(&self) -> Result<(), DbError> {
        let Pool::Postgres(pool) = &self.pool else {
            return self.select_one().await;
        };
        match sqlx::raw_sql("SELECT 1").execute(&pool.0).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::PoolTimedOut) => Err(self.explain(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout,
            ))),
            Err(err) => Err(
                self.explain(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
                    Arc::new(err),
                ))),
            ),
        }
    }

    async fn select_one(&self) -> Result<(), DbError> {
        self.conn
            .execute_raw(self.statement("SELECT 1"))
            .await
            .map_err(|err| self.explain(err))?;
        Ok(())
    }

    /// A connection outside the pool, made with the pool's options (for the migration
    /// runner, which holds locks and transactions of its own).
    pub async fn dedicated_connection(&self) -> Result<strata::runner::Conn, DbError> {
        use sqlx::ConnectOptions;
        match &self.pool {
            // No statement cache: the runner sends everything with the simple query protocol,
            // and what else runs on it (introspection) then uses unnamed statements, which a
            // transaction pooler does not mix up between clients as it does `sqlx_s_1`.
            Pool::Postgres(pool) => (*pool.0.connect_options())
                .clone()
                .statement_cache_capacity(0)
                .connect()
                .await
                .map(strata::runner::Conn::Postgres)
                .map_err(|err| DbError::connect("the migration connection", err)),
            Pool::Sqlite(pool) => pool
                .0
                .connect_options()
                .connect()
                .await
                .map(strata::runner::Conn::Sqlite)
                .map_err(|err| DbError::connect("the migration connection", err)),
        }
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.0.close().await,
            Pool::Sqlite(pool) => pool.0.close().await,
        }
    }
}

tokio::task_local! {
    /// Statements that may have changed data, sent by the task running [`track_writes`].
    static WRITES: Cell<usize>;
}

/// Runs `work` and returns how many statements it sent that may change data: every statement
/// SeaORM ran, failed or not, except those that only read (`SELECT`, `SHOW`). SeaORM does not
/// report BEGIN, COMMIT and ROLLBACK, but a COMMIT changes data only after a statement that
/// counts, so 0 means nothing `work` did changed the database: work that failed with 0 can be
/// run again. Statements of tasks that `work` spawns are not seen; work that writes from
/// another task must not be run again on this count.
pub async fn track_writes<F: Future>(work: F) -> (F::Output, usize) {
    WRITES
        .scope(Cell::new(0), async {
            let output = work.await;
            (output, WRITES.with(Cell::get))
        })
        .await
}

/// Counts `sql` for [`track_writes`] unless it only reads. The app's SELECTs call no function
/// that writes; anything else (INSERT, UPDATE, DELETE, WITH, PRAGMA, ...) counts.
fn note_write(sql: &str) {
    let _ = WRITES.try_with(|count| {
        if !only_reads(sql) {
            count.set(count.get() + 1);
        }
    });
}

fn only_reads(sql: &str) -> bool {
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("show")
}

/// sqlx's warning for slow statements, at the threshold the settings give, or off.
fn with_slow_statement_warning<O: sqlx::ConnectOptions>(
    options: O,
    settings: &DatabaseSettings,
) -> O {
    match settings.slow_statement_warning {
        Some(threshold) => options.log_slow_statements(log::LevelFilter::Warn, threshold),
        None => options.log_slow_statements(log::LevelFilter::Off, Duration::ZERO),
    }
}

/// Opens and closes one connection, retrying "database is locked" until the busy timeout.
async fn open_first_sqlite_connection(
    options: &SqliteConnectOptions,
    path: Option<&Path>,
) -> Result<(), DbError> {
    use sqlx::{ConnectOptions, Connection};
    let deadline = Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        match options.connect().await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(err)
                if err.to_string().contains("database is locked") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => return Err(DbError::sqlite_open(path, err)),
        }
    }
}

/// A transaction for a read-then-write: on SQLite it waits for this process's write turn on
/// the database (first come, first served; see [`WriteTransaction`]), then takes the write
/// lock at BEGIN (`BEGIN IMMEDIATE`), so it neither fails a lock upgrade with "database is
/// locked" nor sleeps in SQLite's busy handler behind the process's other writers; on
/// PostgreSQL a plain BEGIN.
pub async fn begin_write(db: &DbConn) -> Result<WriteTransaction, sea_orm::DbErr> {
    WriteTransaction::begin(
        db,
        sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        },
    )
    .await
}

/// WAL, foreign keys, a busy timeout and synchronous=NORMAL: the settings a service wants,
/// where sqlx would default to a rollback journal and synchronous=FULL.
fn sqlite_options(path: Option<&Path>) -> Result<SqliteConnectOptions, DbError> {
    let Some(path) = path else {
        // A named shared-cache database: every connection made from these options (the
        // pool's and the migration runner's) sees the same data.
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|err| DbError::sqlite_open(None, err))?;
        return Ok(options
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal));
    };
    let options = SqliteConnectOptions::new()
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Normal);
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(DbError::MissingDirectory(dir.to_path_buf()));
    }
    if path.is_dir() {
        return Err(DbError::NotADatabase(path.to_path_buf()));
    }
    Ok(options
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sea_orm::ConnectionTrait;

    use super::*;

    #[test]
    fn only_selects_and_shows_count_as_reads() {
        for sql in [
            "SELECT 1",
            "  select \"todo\".\"id\" FROM \"todo\" FOR UPDATE",
            "SHOW server_version",
        ] {
            assert!(only_reads(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET x = 1",
            "DELETE FROM t",
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone",
            "PRAGMA journal_mode = WAL",
            "SELECTED",
            "",
        ] {
            assert!(!only_reads(sql), "{sql}");
        }
    }

    #[tokio::test]
    async fn track_writes_counts_what_may_have_changed_data() {
        let vars = HashMap::from([
            ("APP_ENV".to_string(), "testing".to_string()),
            ("DATABASE_URL".to_string(), "sqlite::memory:".to_string()),
        ]);
        let settings = crate::config::Settings::from_vars(&vars).unwrap();
        let db = Database::connect(&settings.database).await.unwrap();
        let run = |sql: &'static str| {
            let db = db.clone();
            async move { db.conn().execute_raw(db.statement(sql)).await }
        };
        let (_, writes) = track_writes(async {
            run("SELECT 1").await.unwrap();
            run("SELECT nothing FROM nowhere").await.unwrap_err();
        })
        .await;
        assert_eq!(writes, 0, "reads, failed or not, change nothing");
        let (_, writes) = track_writes(async {
            run("CREATE TABLE t (x INTEGER)").await.unwrap();
            run("INSERT INTO t VALUES (1)").await.unwrap();
            run("INSERT INTO missing VALUES (1)").await.unwrap_err();
            run("SELECT x FROM t").await.unwrap();
        })
        .await;
        assert_eq!(writes, 3, "a failed write may have been done too");
        let (_, writes) = track_writes(run("DELETE FROM t")).await;
        assert_eq!(writes, 1, "each tracked task counts its own");
    }
}
