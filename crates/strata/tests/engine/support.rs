//! What the database tests share: a fresh database of either dialect as the runner's
//! [`Conn`], runs up and down, introspection, and the drift assertions.

use std::collections::BTreeSet;

use strata::runner::{self, Conn, RunError};
use strata::state::{Direction, History};
use strata::{Dialect, Schema};

/// The databases themselves, shared with the unit tests; see the file for why it is included.
#[path = "../../src/testing.rs"]
mod testing;

use testing::{PostgresDatabase, SqliteDatabase};

/// The version table every test migrates with.
pub const VERSION_TABLE: &str = "ddl_version";

/// An empty database that exists for one test: dropped from the server (PostgreSQL) or deleted
/// (SQLite) with this value, so hold it for as long as the test uses a connection to it.
pub enum TestDb {
    Postgres(PostgresDatabase),
    Sqlite(SqliteDatabase),
}

impl TestDb {
    /// A fresh database of `dialect`; PostgreSQL's is made on the server `TEST_DATABASE_URL`
    /// names (default `postgres://postgres@127.0.0.1:5432/postgres`).
    pub async fn fresh(dialect: Dialect) -> TestDb {
        match dialect {
            Dialect::Postgres => TestDb::Postgres(PostgresDatabase::create().await),
            Dialect::Sqlite => TestDb::Sqlite(SqliteDatabase::create()),
        }
    }

    /// A new connection, as the runner takes it.
    pub async fn connect(&self) -> Conn {
        match self {
            TestDb::Postgres(db) => Conn::Postgres(db.connect().await),
            TestDb::Sqlite(db) => Conn::Sqlite(db.connect().await),
        }
    }
}

/// Runs each `async fn name(dialect: Dialect)` as two tests, `name::postgres` and
/// `name::sqlite`.
macro_rules! on_both_dialects {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name(strata::Dialect::Postgres).await;
            }

            #[tokio::test]
            async fn sqlite() {
                super::$name(strata::Dialect::Sqlite).await;
            }
        }
    )*};
}

pub(crate) use on_both_dialects;

/// The first column of the first row of `sql`, an integer.
pub async fn scalar_i64(conn: &mut Conn, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    let value = match conn {
        Conn::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
    };
    value.unwrap_or_else(|err| panic!("an integer from the query: {err}"))
}

/// The live schema, without the version table.
pub async fn live_schema(conn: &mut Conn) -> Schema {
    match conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &[VERSION_TABLE])
            .await
            .unwrap(),
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &[VERSION_TABLE])
            .await
            .unwrap(),
    }
}

/// The revisions the version table records.
pub async fn applied_set(conn: &mut Conn) -> BTreeSet<String> {
    runner::applied(conn, VERSION_TABLE)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.revision)
        .collect()
}

/// Upgrades to `target`; returns the revisions applied.
pub async fn up(conn: &mut Conn, history: &History, target: &str) -> Result<Vec<String>, RunError> {
    runner::run(
        conn,
        history,
        VERSION_TABLE,
        Direction::Up,
        target,
        &mut |_| {},
    )
    .await
}

/// Downgrades to `target`; returns the revisions undone.
pub async fn down(
    conn: &mut Conn,
    history: &History,
    target: &str,
) -> Result<Vec<String>, RunError> {
    runner::run(
        conn,
        history,
        VERSION_TABLE,
        Direction::Down,
        target,
        &mut |_| {},
    )
    .await
}

/// Asserts that a live schema of `dialect` has no drift from `expected`.
pub fn assert_no_drift(expected: &Schema, live: &Schema, dialect: Dialect, context: &str) {
    let diff = strata::autodetect::live_drift(expected, live, dialect);
    assert!(
        diff.operations.is_empty(),
        "{context}: the live schema differs: {:#?}",
        strata::autodetect::describe_differences(&diff)
    );
}

/// Asserts the live schema is what the migrations say it should be at the applied revisions.
pub async fn assert_matches_history(conn: &mut Conn, history: &History, context: &str) {
    let applied = applied_set(conn).await;
    let expected = history.schema_with(&applied).unwrap();
    let live = live_schema(conn).await;
    assert_no_drift(&expected, &live, conn.dialect(), context);
}
