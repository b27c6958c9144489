//! The application's own migrations on real PostgreSQL and SQLite: the chain reaches the
//! models and goes up and down by introspection, `check` catches drift, `--sql` prints without
//! connecting, and make-migrations writes (or does not write) files. The engine's own runner
//! and operations are tested in the strata crate (`crates/strata/tests/engine`).

use std::collections::BTreeSet;

use app::db::Database;
use app::migrate;
use strata::migrator::Migrator;
use strata::runner::Conn;
use strata::state::Direction;
use strata::{Dialect, Schema};

use crate::helpers::{Kind, TestDb, run_app, run_app_on};

const VERSION_TABLE: &str = "ddl_version";

fn dialect(kind: Kind) -> Dialect {
    match kind {
        Kind::Postgres => Dialect::Postgres,
        Kind::Sqlite => Dialect::Sqlite,
    }
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

/// The revisions the migrator reads as applied.
async fn applied_set(migrator: &Migrator, conn: &mut Conn) -> BTreeSet<String> {
    migrator
        .applied(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.revision)
        .collect()
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
async fn assert_matches_history(migrator: &Migrator, conn: &mut Conn, context: &str) {
    let applied = applied_set(migrator, conn).await;
    let expected = migrator.history().schema_with(&applied).unwrap();
    let live = live_schema(conn).await;
    assert_no_drift(&expected, &live, conn.dialect(), context);
}

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
    // Through the application's migrator, as every command runs migrations.
    let migrator = migrate::migrator(&settings.database).unwrap();
    let mut snapshots = vec![live_schema(&mut conn).await];
    for _ in migrator.history().migrations() {
        migrator
            .run(&mut conn, Direction::Up, "+1", &mut |_| {})
            .await
            .unwrap();
        assert_matches_history(&migrator, &mut conn, "app upgrade").await;
        snapshots.push(live_schema(&mut conn).await);
    }
    let report = migrate::check(&db, &settings.database).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    snapshots.pop();
    while let Some(expected) = snapshots.pop() {
        migrator
            .run(&mut conn, Direction::Down, "-1", &mut |_| {})
            .await
            .unwrap();
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
