//! What the database tests share: a fresh database of either dialect as the runner's
//! [`Conn`], runs up and down, introspection, and the drift assertions.

use std::collections::{BTreeMap, BTreeSet};

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
/// `name::sqlite`. Attributes written before a name go on both (`#[ignore = "why"] name`).
macro_rules! on_both_dialects {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            $(#[$attr])*
            async fn postgres() {
                super::$name(strata::Dialect::Postgres).await;
            }

            #[tokio::test]
            $(#[$attr])*
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

/// Upgrades to head with `options` (timeouts, retries); returns the revisions applied.
pub async fn up_with(
    conn: &mut Conn,
    history: &History,
    options: &runner::RunOptions,
) -> Result<Vec<String>, RunError> {
    runner::run_with(
        conn,
        history,
        VERSION_TABLE,
        Direction::Up,
        "head",
        options,
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

/// The rows of `sql`, one line each, cells joined by ` | ` and NULL shown as `NULL`; every
/// column must read as text (cast the others with `CAST(.. AS text)`).
pub async fn text_lines(conn: &mut Conn, sql: &str) -> Vec<String> {
    let rows = conn
        .fetch_text(sql)
        .await
        .unwrap_or_else(|err| panic!("rows of `{sql}`: {err}"));
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| cell.unwrap_or_else(|| "NULL".to_string()))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// Everything a test compares to show that nothing changed: every table as introspected
/// (the version table included), what the catalog says of every table, column, constraint
/// and index (so a leftover `_strata_*` table or a renamed constraint shows too), and every
/// row of every table.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub schema: Schema,
    pub catalog: Vec<String>,
    pub rows: BTreeMap<String, Vec<String>>,
}

/// The database as it is now; see [`Snapshot`].
pub async fn snapshot(conn: &mut Conn) -> Snapshot {
    let schema = match conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &[]).await.unwrap(),
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &[]).await.unwrap(),
    };
    let catalog_queries: &[&str] = match conn.dialect() {
        Dialect::Postgres => &[
            "SELECT CAST(relname AS text), CAST(relkind AS text) FROM pg_class \
             WHERE relnamespace = CAST(current_schema() AS regnamespace) ORDER BY 1",
            "SELECT CAST(c.relname AS text), CAST(a.attnum AS text), CAST(a.attname AS text), \
             format_type(a.atttypid, a.atttypmod), CAST(a.attnotnull AS text), \
             pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE c.relnamespace = CAST(current_schema() AS regnamespace) AND c.relkind = 'r' \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, a.attnum",
            "SELECT CAST(CAST(conrelid AS regclass) AS text), CAST(conname AS text), \
             pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE connamespace = CAST(current_schema() AS regnamespace) ORDER BY 1, 2",
            "SELECT CAST(indexname AS text), indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() ORDER BY 1",
        ],
        Dialect::Sqlite => {
            &["SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"]
        }
    };
    let mut catalog = Vec::new();
    for sql in catalog_queries {
        catalog.extend(text_lines(conn, sql).await);
    }
    let mut rows = BTreeMap::new();
    for table in schema.tables.values() {
        let cells: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("CAST({} AS text)", strata::render::quote_ident(&c.name)))
            .collect();
        let order: Vec<String> = (1..=cells.len()).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            cells.join(", "),
            strata::render::quote_ident(&table.name),
            order.join(", ")
        );
        rows.insert(table.name.clone(), text_lines(conn, &sql).await);
    }
    Snapshot {
        schema,
        catalog,
        rows,
    }
}
