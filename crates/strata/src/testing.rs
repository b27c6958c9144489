//! Fresh databases for the engine's own tests: an empty PostgreSQL database of its own on the
//! server `TEST_DATABASE_URL` names (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped again when the value is, or a SQLite file in a temp folder that goes with it.
//!
//! One file, compiled into two test crates and into nothing else: the library declares it as
//! `#[cfg(test)] pub mod testing` for its unit tests, and the integration-test binary
//! (`tests/engine`) includes the same file with `#[path]`. A `testing` feature turned on
//! through a dev-dependency of the crate on itself would also work, but a workspace-wide test
//! run would then build the application against a second variant of this crate (features
//! unify across the workspace), relinking it whenever a run switches between `-p app` and
//! `--workspace`; compiling it always would ship test code and move `tokio` and `tempfile` from
//! dev- to normal dependencies. So the file speaks only sqlx, tokio and tempfile, which both
//! test crates have, and no `crate::` path: each test crate maps it to its own types.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

/// The server the PostgreSQL tests use when `TEST_DATABASE_URL` is not set.
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long a SQLite connection waits for another's write lock before "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `TEST_DATABASE_URL`, or the default: a connection with the right to create databases.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

fn admin_options() -> PgConnectOptions {
    let url = admin_url();
    PgConnectOptions::from_str(&url)
        .unwrap_or_else(|err| panic!("TEST_DATABASE_URL={url:?} is not a PostgreSQL URL: {err}"))
}

/// Connects to the server, or fails the test saying how to get one.
async fn admin_connection() -> PgConnection {
    match admin_options().connect().await {
        Ok(conn) => conn,
        Err(err) => panic!(
            "PostgreSQL does not answer at {} ({err}); `make test` starts the local cluster, \
             or start one with `make start-infra` and set \
             TEST_DATABASE_URL=postgres://app:app@127.0.0.1:15432/app",
            admin_url()
        ),
    }
}

/// A database name no other test of this or a concurrent run uses: the process, a counter
/// within it, and the clock (a pid can come back after a crashed run left its databases).
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "strata_test_{}_{}_{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos as u64
    )
}

/// An empty PostgreSQL database that exists as long as this value: dropping the value drops
/// the database, also when the test panics.
pub struct PostgresDatabase {
    name: String,
}

impl PostgresDatabase {
    /// Creates the database on the server at `TEST_DATABASE_URL`.
    ///
    /// Panics, saying how to start a server, when none answers there.
    pub async fn create() -> PostgresDatabase {
        let name = unique_name();
        let mut admin = admin_connection().await;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        let _ = admin.close().await;
        PostgresDatabase { name }
    }

    /// A new connection to the database; the caller may hold several.
    pub async fn connect(&self) -> PgConnection {
        admin_options()
            .database(&self.name)
            .connect()
            .await
            .unwrap_or_else(|err| panic!("cannot connect to test database {}: {err}", self.name))
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Drop runs on the test's runtime, which cannot block on a future of its own: a
        // thread with a runtime of its own drops the database while this one waits.
        // WITH (FORCE) ends connections the test still holds.
        let dropped = std::thread::spawn({
            let name = name.clone();
            move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| err.to_string())?;
                runtime.block_on(async {
                    let mut admin = admin_options()
                        .connect()
                        .await
                        .map_err(|err| err.to_string())?;
                    admin
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await
                        .map_err(|err| err.to_string())?;
                    let _ = admin.close().await;
                    Ok(())
                })
            }
        })
        .join()
        .unwrap_or_else(|_| Err("the cleanup thread panicked".to_string()));
        // No panic here: the test may be unwinding already, and a panic in drop would abort.
        if let Err(err) = dropped {
            eprintln!("warning: test database {name} was not dropped ({err}); drop it by hand");
        }
    }
}

/// A SQLite database file in a temp folder of its own, deleted with this value (the folder
/// also takes the `-wal` and `-shm` files).
pub struct SqliteDatabase {
    dir: tempfile::TempDir,
}

impl SqliteDatabase {
    /// A new folder; the file appears there at the first connection.
    pub fn create() -> SqliteDatabase {
        let dir = tempfile::tempdir().expect("a temp folder for a SQLite test database");
        SqliteDatabase { dir }
    }

    /// A new connection to the file; the caller may hold several. Each has the settings a
    /// service runs SQLite with: WAL, foreign keys on, synchronous=NORMAL, and a busy timeout
    /// so that concurrent writers wait for each other.
    pub async fn connect(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(self.dir.path().join("test.sqlite3"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .connect()
            .await
            .expect("connect to the SQLite test database")
    }
}
