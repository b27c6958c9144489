//! The migration engine on real PostgreSQL and SQLite: every operation up and down checked by
//! introspection, the SQLite rebuild, failures, concurrency, checksums, `--sql`, stamp, check
//! and merges; and the application's own chain.

use std::collections::BTreeSet;

use app::db::Database;
use app::migrate;
use strata::ops::DataFuture;
use strata::prelude::*;
use strata::runner::{self, Conn, DataContext, Event, Plan, RunError, Statement};
use strata::state::{Direction, History, HistoryError};
use strata::{Dialect, Schema};

use crate::helpers::{Kind, TestDb, run_app, run_app_on, scalar_i64};

const VERSION_TABLE: &str = "ddl_version";

fn dialect(kind: Kind) -> Dialect {
    match kind {
        Kind::Postgres => Dialect::Postgres,
        Kind::Sqlite => Dialect::Sqlite,
    }
}

async fn conn(test_db: &TestDb) -> (Database, Conn) {
    let db = test_db.connect(&[]).await;
    let conn = migrate::connection(&db)
        .await
        .expect("a dedicated connection");
    (db, conn)
}

async fn live_schema(conn: &mut Conn) -> Schema {
    match conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &[VERSION_TABLE])
            .await
            .unwrap(),
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &[VERSION_TABLE])
            .await
            .unwrap(),
    }
}

async fn applied_set(conn: &mut Conn) -> BTreeSet<String> {
    runner::applied(conn, VERSION_TABLE)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.revision)
        .collect()
}

async fn up(conn: &mut Conn, history: &History, target: &str) -> Result<Vec<String>, RunError> {
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

async fn down(conn: &mut Conn, history: &History, target: &str) -> Result<Vec<String>, RunError> {
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
fn assert_no_drift(expected: &Schema, live: &Schema, dialect: Dialect, context: &str) {
    let diff = strata::autodetect::live_drift(expected, live, dialect);
    assert!(
        diff.operations.is_empty(),
        "{context}: the live schema differs: {:#?}",
        strata::autodetect::describe_differences(&diff)
    );
}

/// Asserts the live schema is what the migrations say it should be at the applied revisions.
async fn assert_matches_history(conn: &mut Conn, history: &History, context: &str) {
    let applied = applied_set(conn).await;
    let expected = history.schema_with(&applied).unwrap();
    let live = live_schema(conn).await;
    assert_no_drift(&expected, &live, conn.dialect(), context);
}

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

/// A history that uses every kind of operation at least once.
fn every_operation() -> History {
    History::new(vec![
        Migration::new("e01", &[], "parent and child tables", "t").operations(vec![
            create_table(
                Table::new("author")
                    .with_column(col("id", ColumnType::Uuid))
                    .with_column(col("name", ColumnType::String(Some(100))))
                    .with_column(
                        col("active", ColumnType::Boolean).default(DefaultValue::Bool(true)),
                    )
                    .with_primary_key(["id"])
                    .with_unique(Unique::new("uq_author_name", &["name"])),
            ),
            create_table(
                Table::new("book")
                    .with_column(col("id", ColumnType::Uuid))
                    .with_column(col("title", ColumnType::String(Some(200))))
                    .with_column(col("pages", ColumnType::Integer).nullable())
                    .with_column(col("author_id", ColumnType::Uuid))
                    .with_column(col("created_at", ColumnType::TimestampTz))
                    .with_primary_key(["id"])
                    .with_foreign_key(
                        ForeignKey::new(
                            "fk_book_author_id_author",
                            &["author_id"],
                            "author",
                            &["id"],
                        )
                        .on_delete(ForeignKeyAction::Cascade),
                    )
                    .with_index(Index::new("ix_book_title", &["title"])),
            ),
        ]),
        Migration::new("e02", &["e01"], "columns", "t").operations(vec![
            add_column("book", col("isbn", ColumnType::String(Some(20))).nullable()),
            add_column(
                "book",
                col("rating", ColumnType::SmallInteger).default(DefaultValue::Int(0)),
            ),
            alter_column(
                "book",
                col("pages", ColumnType::BigInteger).default(DefaultValue::Int(1)),
            ),
            rename_column("book", "isbn", "isbn13"),
            drop_column("author", "active"),
        ]),
        Migration::new("e03", &["e02"], "indexes and constraints", "t").operations(vec![
            create_unique_index("book", "ix_book_isbn13", &["isbn13"]),
            create_index(
                "book",
                "ix_book_author_id_created_at",
                &["author_id", "created_at"],
            ),
            drop_index("book", "ix_book_title"),
            add_check("book", "ck_book_rating", "rating >= 0"),
            add_unique("book", "uq_book_title_author_id", &["title", "author_id"]),
            drop_unique("author", "uq_author_name"),
            drop_foreign_key("book", "fk_book_author_id_author"),
            add_foreign_key(
                "book",
                ForeignKey::new(
                    "fk_book_author_id_author_restrict",
                    &["author_id"],
                    "author",
                    &["id"],
                )
                .on_delete(ForeignKeyAction::Restrict),
            ),
            set_table_comment("book", Some("books we own")),
        ]),
        Migration::new("e04", &["e03"], "renames, raw SQL and drops", "t").operations(vec![
            rename_table("author", "writer"),
            drop_check("book", "ck_book_rating"),
            raw_sql_reversible(
                DialectSql::both("CREATE TABLE note (id integer PRIMARY KEY)"),
                DialectSql::both("DROP TABLE note"),
            ),
            raw_sql_reversible(
                DialectSql::both("DROP TABLE note"),
                DialectSql::both("CREATE TABLE note (id integer PRIMARY KEY)"),
            ),
            create_table(
                Table::new("shelf")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("label", ColumnType::Text).nullable())
                    .with_primary_key(["id"]),
            ),
            drop_table("shelf"),
        ]),
        Migration::new("e05", &["e04"], "a Rust data step", "t").operations(vec![
            add_column("writer", col("note", ColumnType::Text).nullable()),
            run_data(
                DataStep::new("add the first writer", add_first_writer)
                    .with_down(remove_first_writer),
            ),
        ]),
    ])
    .unwrap()
}

fn first_writer_id(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "'00000000-0000-7000-8000-000000000001'",
        Dialect::Sqlite => "x'00000000000070008000000000000001'",
    }
}

fn add_first_writer<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        let sql = format!(
            "INSERT INTO writer (id, name, note) VALUES ({}, 'First', 'added by a data step')",
            first_writer_id(cx.dialect())
        );
        cx.execute(&sql).await.map(|_| ())
    })
}

fn remove_first_writer<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        let sql = format!(
            "DELETE FROM writer WHERE id = {}",
            first_writer_id(cx.dialect())
        );
        cx.execute(&sql).await.map(|_| ())
    })
}

async fn every_operation_up_and_down(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let history = every_operation();
    let revisions: Vec<String> = history
        .migrations()
        .iter()
        .map(|m| m.revision.clone())
        .collect();
    for (i, rev) in revisions.iter().enumerate() {
        let done = up(&mut conn, &history, "+1")
            .await
            .unwrap_or_else(|e| panic!("up {rev}: {e}"));
        assert_eq!(done, std::slice::from_ref(rev));
        assert_matches_history(&mut conn, &history, &format!("after upgrade {i}")).await;
    }
    let notes = conn.fetch_text("SELECT note FROM writer").await.unwrap();
    assert_eq!(
        notes,
        vec![vec![Some("added by a data step".to_string())]],
        "the data step ran"
    );
    let at_head = live_schema(&mut conn).await;
    for rev in revisions.iter().rev() {
        let done = down(&mut conn, &history, "-1")
            .await
            .unwrap_or_else(|e| panic!("down {rev}: {e}"));
        assert_eq!(done, std::slice::from_ref(rev));
        assert_matches_history(&mut conn, &history, &format!("after downgrade {rev}")).await;
    }
    assert!(
        live_schema(&mut conn).await.tables.is_empty(),
        "downgrade to base leaves nothing"
    );
    // And back up again in one go.
    up(&mut conn, &history, "head").await.unwrap();
    let again = live_schema(&mut conn).await;
    assert_no_drift(&at_head, &again, dialect(kind), "upgrading again");
}

#[tokio::test]
async fn every_operation_up_and_down_postgres() {
    every_operation_up_and_down(Kind::Postgres).await;
}

#[tokio::test]
async fn every_operation_up_and_down_sqlite() {
    every_operation_up_and_down(Kind::Sqlite).await;
}

#[tokio::test]
async fn sqlite_rebuild_keeps_rows_indexes_and_keys() {
    let test_db = TestDb::empty(Kind::Sqlite).await;
    let (db, mut conn) = conn(&test_db).await;
    let history = every_operation();
    up(&mut conn, &history, "e01").await.unwrap();
    conn.execute(
        "INSERT INTO author (id, name) VALUES (x'01', 'Ann'), (x'02', 'Bob'); \
         INSERT INTO book (id, title, pages, author_id, created_at) VALUES \
         (x'11', 'One', 10, x'01', '2026-01-01T00:00:00Z'), (x'12', 'Two', NULL, x'02', '2026-01-02T00:00:00Z')",
    )
    .await
    .unwrap();
    // e02 alters book.pages (a rebuild) and drops author.active (a rebuild).
    up(&mut conn, &history, "e02").await.unwrap();
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM book").await, 2);
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM author").await, 2);
    assert_eq!(
        scalar_i64(&db, "SELECT pages FROM book WHERE title = 'One'").await,
        10
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pragma_index_list('book') WHERE name = 'ix_book_title'"
        )
        .await,
        1,
        "the index survives the rebuild"
    );
    // The foreign key still holds and still cascades.
    assert!(
        conn.execute("INSERT INTO book (id, title, author_id, created_at) VALUES (x'13', 'Orphan', x'99', 'x')")
            .await
            .is_err(),
        "the foreign key survives the rebuild"
    );
    conn.execute("DELETE FROM author WHERE name = 'Ann'")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM book").await,
        1,
        "ON DELETE CASCADE survives"
    );
    assert_eq!(
        scalar_i64(&db, "PRAGMA foreign_keys").await,
        1,
        "foreign keys are back on"
    );
    assert_matches_history(&mut conn, &history, "after rebuilds").await;
}

async fn a_failing_statement_keeps_the_previous_revision(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let history = History::new(vec![
        Migration::new("f01", &[], "good", "t").operations(vec![create_table(
            Table::new("kept")
                .with_column(col("id", ColumnType::Integer))
                .with_primary_key(["id"]),
        )]),
        Migration::new("f02", &["f01"], "bad", "t").operations(vec![
            create_table(
                Table::new("lost")
                    .with_column(col("id", ColumnType::Integer))
                    .with_primary_key(["id"]),
            ),
            raw_sql(DialectSql::both("INSERT INTO no_such_table VALUES (1)")),
        ]),
    ])
    .unwrap();
    let err = up(&mut conn, &history, "head")
        .await
        .expect_err("f02 fails");
    let text = err.to_string();
    assert!(
        text.contains("f02") && text.contains("bad"),
        "names the migration: {text}"
    );
    assert!(
        text.contains("INSERT INTO no_such_table"),
        "names the statement: {text}"
    );
    assert_eq!(
        applied_set(&mut conn).await,
        BTreeSet::from(["f01".to_string()])
    );
    let live = live_schema(&mut conn).await;
    assert!(live.table("kept").is_some());
    assert!(
        live.table("lost").is_none(),
        "the failed migration left nothing behind"
    );
}

#[tokio::test]
async fn a_failing_statement_keeps_the_previous_revision_postgres() {
    a_failing_statement_keeps_the_previous_revision(Kind::Postgres).await;
}

#[tokio::test]
async fn a_failing_statement_keeps_the_previous_revision_sqlite() {
    a_failing_statement_keeps_the_previous_revision(Kind::Sqlite).await;
}

async fn a_changed_applied_migration_is_refused(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let history = every_operation();
    up(&mut conn, &history, "e02").await.unwrap();
    let mut changed: Vec<Migration> = history.migrations().to_vec();
    changed[1].operations.push(add_column(
        "book",
        col("extra", ColumnType::Text).nullable(),
    ));
    let changed = History::new(changed).unwrap();
    let err = up(&mut conn, &changed, "head").await.expect_err("refused");
    assert!(
        matches!(err, RunError::ChecksumMismatch { ref revision, .. } if revision == "e02"),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
    // Cosmetic changes (message, creation time) are not changes.
    let mut cosmetic: Vec<Migration> = history.migrations().to_vec();
    cosmetic[0].message = "renamed message".into();
    cosmetic[0].created = "later".into();
    up(&mut conn, &History::new(cosmetic).unwrap(), "head")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused_postgres() {
    a_changed_applied_migration_is_refused(Kind::Postgres).await;
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused_sqlite() {
    a_changed_applied_migration_is_refused(Kind::Sqlite).await;
}

async fn offline_sql_equals_what_runs(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let history = every_operation();
    for direction in [Direction::Up, Direction::Down] {
        let start = applied_set(&mut conn).await;
        let target = if direction == Direction::Up {
            "head"
        } else {
            "base"
        };
        let plan = Plan::new(
            &history,
            &start,
            direction,
            target,
            dialect(kind),
            VERSION_TABLE,
        )
        .unwrap();
        let expected: Vec<String> = plan
            .migrations
            .iter()
            .flat_map(|m| plan.statements(m))
            .filter_map(|s| match s {
                Statement::Sql(sql) => Some(sql.to_string()),
                Statement::Data(_) => None,
            })
            .collect();
        let script = plan.to_sql();
        let step = if direction == Direction::Up {
            "add the first writer"
        } else {
            "undo add the first writer"
        };
        assert!(
            script.contains(&format!("-- Rust data step: {step}")),
            "{script}"
        );
        for sql in &expected {
            assert!(script.contains(sql.as_str()), "--sql shows {sql}");
        }
        let mut executed = Vec::new();
        runner::run(
            &mut conn,
            &history,
            VERSION_TABLE,
            direction,
            target,
            &mut |event| {
                if let Event::Statement { sql } = event {
                    executed.push(sql.to_string());
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(
            executed, expected,
            "{direction:?}: online ran exactly the offline script"
        );
    }
}

#[tokio::test]
async fn offline_sql_equals_what_runs_postgres() {
    offline_sql_equals_what_runs(Kind::Postgres).await;
}

#[tokio::test]
async fn offline_sql_equals_what_runs_sqlite() {
    offline_sql_equals_what_runs(Kind::Sqlite).await;
}

async fn stamp_sets_the_revision_without_running(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let history = every_operation();
    runner::stamp(&mut conn, &history, VERSION_TABLE, "e02")
        .await
        .unwrap();
    assert_eq!(
        applied_set(&mut conn).await,
        BTreeSet::from(["e01".into(), "e02".into()])
    );
    assert!(
        live_schema(&mut conn).await.tables.is_empty(),
        "nothing ran"
    );
    runner::stamp(&mut conn, &history, VERSION_TABLE, "head")
        .await
        .unwrap();
    assert_eq!(applied_set(&mut conn).await.len(), 5);
    runner::stamp(&mut conn, &history, VERSION_TABLE, "base")
        .await
        .unwrap();
    assert!(applied_set(&mut conn).await.is_empty());
    assert!(matches!(
        runner::stamp(&mut conn, &history, VERSION_TABLE, "nope").await,
        Err(RunError::History(HistoryError::UnknownRevision(_)))
    ));
}

#[tokio::test]
async fn stamp_sets_the_revision_without_running_postgres() {
    stamp_sets_the_revision_without_running(Kind::Postgres).await;
}

#[tokio::test]
async fn stamp_sets_the_revision_without_running_sqlite() {
    stamp_sets_the_revision_without_running(Kind::Sqlite).await;
}

async fn branches_must_be_merged(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (_db, mut conn) = conn(&test_db).await;
    let base = Migration::new("b01", &[], "base", "t").operations(vec![create_table(
        Table::new("a")
            .with_column(col("id", ColumnType::Integer))
            .with_primary_key(["id"]),
    )]);
    let left = Migration::new("b02", &["b01"], "left", "t")
        .operations(vec![add_column("a", col("l", ColumnType::Text).nullable())]);
    let right = Migration::new("b03", &["b01"], "right", "t")
        .operations(vec![add_column("a", col("r", ColumnType::Text).nullable())]);
    let branched = History::new(vec![base.clone(), left.clone(), right.clone()]).unwrap();
    assert_eq!(branched.heads(), ["b02", "b03"]);
    let err = up(&mut conn, &branched, "head")
        .await
        .expect_err("two heads");
    assert!(err.to_string().contains("merge"), "{err}");
    let merge = Migration::new("b04", &["b02", "b03"], "merge", "t");
    let merged = History::new(vec![base, left, right, merge]).unwrap();
    assert_eq!(up(&mut conn, &merged, "head").await.unwrap().len(), 4);
    let live = live_schema(&mut conn).await;
    let a = live.table("a").unwrap();
    assert!(a.column("l").is_some() && a.column("r").is_some());
    assert_eq!(down(&mut conn, &merged, "b01").await.unwrap().len(), 3);
    assert_matches_history(&mut conn, &merged, "after downgrading the merge").await;
}

#[tokio::test]
async fn branches_must_be_merged_postgres() {
    branches_must_be_merged(Kind::Postgres).await;
}

#[tokio::test]
async fn branches_must_be_merged_sqlite() {
    branches_must_be_merged(Kind::Sqlite).await;
}

// --- the application's own migrations -------------------------------------------------------

#[test]
fn the_app_has_a_chain_of_at_least_three_migrations_reaching_the_models() {
    let history = migrate::history().unwrap();
    assert!(history.migrations().len() >= 3);
    assert_eq!(history.heads().len(), 1);
    let head = history.head_schema().unwrap();
    let diff = strata::autodetect::diff(
        &head,
        &app::models::schema::target(),
        &mut strata::autodetect::NoRenames,
    );
    assert!(
        diff.operations.is_empty(),
        "make-migrations would write: {:?}",
        strata::autodetect::describe_differences(&diff)
    );
    for table in head.tables.values() {
        assert_eq!(
            table.columns.first().map(|c| c.name.as_str()),
            Some("id"),
            "{}",
            table.name
        );
        let n = table.columns.len();
        assert_eq!(
            [
                table.columns[n - 2].name.as_str(),
                table.columns[n - 1].name.as_str()
            ],
            ["created_at", "updated_at"],
            "{}",
            table.name
        );
    }
}

async fn app_chain_up_and_down_by_introspection(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let settings = test_db.settings(&[]);
    let db = Database::connect(&settings.database).await.unwrap();
    let mut conn = migrate::connection(&db).await.unwrap();
    let history = migrate::history().unwrap();
    let mut snapshots = vec![live_schema(&mut conn).await];
    for _ in history.migrations() {
        up(&mut conn, &history, "+1").await.unwrap();
        assert_matches_history(&mut conn, &history, "app upgrade").await;
        snapshots.push(live_schema(&mut conn).await);
    }
    let report = migrate::check(&db, &settings.database).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    snapshots.pop();
    while let Some(expected) = snapshots.pop() {
        down(&mut conn, &history, "-1").await.unwrap();
        let live = live_schema(&mut conn).await;
        assert_no_drift(&expected, &live, dialect(kind), "downgrade restores");
    }
}

#[tokio::test]
async fn app_chain_up_and_down_by_introspection_postgres() {
    app_chain_up_and_down_by_introspection(Kind::Postgres).await;
}

#[tokio::test]
async fn app_chain_up_and_down_by_introspection_sqlite() {
    app_chain_up_and_down_by_introspection(Kind::Sqlite).await;
}

async fn check_catches_hand_made_drift(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let clean = run_app_on(&test_db.url, &["database", "check"]);
    assert!(
        clean.status.success(),
        "{}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );
    let db = test_db.connect(&[]).await;
    use sea_orm::ConnectionTrait;
    db.conn()
        .execute_unprepared("ALTER TABLE todo ADD COLUMN sneaky integer")
        .await
        .unwrap();
    db.conn()
        .execute_unprepared("CREATE INDEX ix_hand_made ON tag (color)")
        .await
        .unwrap();
    let out = run_app_on(&test_db.url, &["database", "check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift = report["databaseDrift"].to_string();
    assert!(drift.contains("todo.sneaky"), "{drift}");
    assert!(drift.contains("ix_hand_made"), "{drift}");
}

#[tokio::test]
async fn check_catches_hand_made_drift_postgres() {
    check_catches_hand_made_drift(Kind::Postgres).await;
}

#[tokio::test]
async fn check_catches_hand_made_drift_sqlite() {
    check_catches_hand_made_drift(Kind::Sqlite).await;
}

async fn eight_concurrent_upgraders_apply_once(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    // Eight processes at once: each thread starts one and waits for it.
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| run_app_on(&test_db.url, &["database", "upgrade"])))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let mut ran = 0;
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.contains("upgraded") {
            ran += stdout.matches(',').count() + 1;
        }
    }
    let history = migrate::history().unwrap();
    assert_eq!(
        ran,
        history.migrations().len(),
        "each revision applied exactly once"
    );
    let db = test_db.connect(&[]).await;
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM ddl_version").await,
        history.migrations().len() as i64
    );
}

#[tokio::test]
async fn eight_concurrent_upgraders_apply_once_postgres() {
    eight_concurrent_upgraders_apply_once(Kind::Postgres).await;
}

#[tokio::test]
async fn eight_concurrent_upgraders_apply_once_sqlite() {
    eight_concurrent_upgraders_apply_once(Kind::Sqlite).await;
}

#[test]
fn upgrade_sql_prints_without_connecting() {
    for (url, needle) in [
        (
            "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none",
            "timestamptz",
        ),
        (
            "sqlite+aiosqlite:////nonexistent/dir/app.db",
            "BEGIN IMMEDIATE",
        ),
    ] {
        let out = run_app_on(url, &["database", "upgrade", "--sql"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sql = String::from_utf8_lossy(&out.stdout);
        assert!(sql.contains("CREATE TABLE \"user_account\""), "{sql}");
        assert!(sql.contains(needle), "{url}: {sql}");
        assert!(sql.contains("INSERT INTO \"ddl_version\""), "{sql}");
        let out = run_app_on(url, &["database", "downgrade", "--sql"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("DELETE FROM \"ddl_version\""));
    }
}

#[test]
fn make_migrations_with_no_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations");
    // A copy of the registry, so the test cannot touch the real folder.
    for entry in std::fs::read_dir(&registry).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let migration_path = dir.path().to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = run_app(
        cwd.path(),
        &["database", "make-migrations", "-m", "nothing"],
        &[
            ("DATABASE_MIGRATION_PATH", migration_path),
            ("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before.len());

    let out = run_app(
        cwd.path(),
        &["database", "make-migrations", "--merge", "-m", "merge"],
        &[("DATABASE_MIGRATION_PATH", migration_path)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to merge"));
}

#[test]
fn make_migrations_empty_writes_a_listed_file() {
    let dir = tempfile::tempdir().unwrap();
    let registry = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations");
    for entry in std::fs::read_dir(&registry).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let cwd = tempfile::tempdir().unwrap();
    let out = run_app(
        cwd.path(),
        &["database", "revision", "-m", "Backfill the colours!"],
        &[("DATABASE_MIGRATION_PATH", dir.path().to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("backfill_the_colours"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let registry_text = std::fs::read_to_string(dir.path().join("mod.rs")).unwrap();
    assert!(registry_text.contains(&written[0]));
    let head = migrate::history()
        .unwrap()
        .head()
        .unwrap()
        .unwrap()
        .to_string();
    let file = std::fs::read_to_string(dir.path().join(&written[0])).unwrap();
    assert!(
        file.contains(&head),
        "the new migration's parent is the head"
    );
}
