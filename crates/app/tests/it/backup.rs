//! `app database backup` and `app database restore` as a user runs them, on both databases.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sea_orm::ConnectionTrait;

use crate::api::PASSWORD;
use crate::helpers::{Kind, TestDb, fixture_dir, on_both_databases, scalar_i64};

const COUNT_USERS: &str = "SELECT COUNT(*) FROM user_account WHERE email LIKE '%@backup.test'";

/// Runs `app` in `dir` with only the test variables and PATH (to find pg_dump and friends).
fn app_in(dir: &Path, args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_app"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("APP_ENV", "testing")
        .env("DATABASE_URL", database_url)
        .env("DATABASE_FIXTURE_PATH", fixture_dir())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("app runs")
}

fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts exit 1 with exactly one line on stderr, and returns it.
fn one_line_failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

async fn count_users(test_db: &TestDb) -> i64 {
    let db = test_db.connect(&[]).await;
    let count = scalar_i64(&db, COUNT_USERS).await;
    db.close().await;
    count
}

async fn delete_users(test_db: &TestDb) {
    let db = test_db.connect(&[]).await;
    for sql in [
        "DELETE FROM user_account_role WHERE user_id IN \
         (SELECT id FROM user_account WHERE email LIKE '%@backup.test')",
        "DELETE FROM user_account WHERE email LIKE '%@backup.test'",
    ] {
        db.conn().execute_raw(db.statement(sql)).await.unwrap();
    }
    db.close().await;
}

fn create_users(dir: &Path, url: &str) {
    for email in ["ann@backup.test", "bob@backup.test"] {
        succeeded(&app_in(
            dir,
            &["user", "create", "--email", email, "--password", PASSWORD],
            url,
        ));
    }
}

async fn backup_and_restore_bring_rows_back(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    assert_eq!(count_users(&test_db).await, 2);

    for format in ["custom", "plain"] {
        let file = dir.path().join(format!("out-{format}.bak"));
        let file_arg = file.to_str().unwrap();
        let out = app_in(
            dir.path(),
            &[
                "database", "backup", "--format", format, "--output", file_arg,
            ],
            &test_db.url,
        );
        let stdout = succeeded(&out);
        assert!(
            stdout.contains(file_arg) && stdout.contains("bytes"),
            "{stdout}"
        );
        assert!(file.is_file());

        delete_users(&test_db).await;
        assert_eq!(count_users(&test_db).await, 0);

        let out = app_in(dir.path(), &["database", "restore", file_arg], &test_db.url);
        let stdout = succeeded(&out);
        assert!(stdout.contains("Restored"), "{stdout}");
        assert_eq!(count_users(&test_db).await, 2, "{format}");
        succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
    }
    // Only the two backups are left: no temp files.
    let mut names = entries(dir.path());
    names.retain(|n| !n.starts_with("test.sqlite3"));
    names.sort();
    assert_eq!(names, ["out-custom.bak", "out-plain.bak"]);
}

async fn default_name_in_working_directory(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    succeeded(&app_in(dir.path(), &["database", "backup"], &test_db.url));
    let names = entries(dir.path());
    let expected_ext = match kind {
        Kind::Postgres => ".dump",
        Kind::Sqlite => ".sqlite3",
    };
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("backup-") && names[0].ends_with(expected_ext),
        "{names:?}"
    );
}

async fn schema_format_has_create_table(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let out = app_in(
        dir.path(),
        &[
            "database",
            "backup",
            "--format",
            "schema",
            "--output",
            "schema.sql",
        ],
        &test_db.url,
    );
    succeeded(&out);
    let text = std::fs::read_to_string(dir.path().join("schema.sql")).unwrap();
    assert!(text.contains("CREATE TABLE"), "{text}");
    assert!(text.contains("user_account"), "{text}");
}

async fn failing_backup_leaves_no_file(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("out.bak");
    let out = app_in(
        dir.path(),
        &["database", "backup", "--output", missing.to_str().unwrap()],
        &test_db.url,
    );
    one_line_failure(&out);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    if kind == Kind::Postgres {
        let out = app_in(
            dir.path(),
            &["database", "backup", "--output", "out.dump"],
            "postgres://postgres:s3cret@127.0.0.1:1/nothing",
        );
        let line = one_line_failure(&out);
        assert!(!line.contains("s3cret"), "{line}");
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
}

async fn restoring_a_non_backup_changes_nothing(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    let bogus = dir.path().join("notes.txt");
    std::fs::write(&bogus, "hello, not a backup\n").unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", bogus.to_str().unwrap()],
        &test_db.url,
    );
    let line = one_line_failure(&out);
    assert!(line.contains("not a"), "{line}");
    assert_eq!(count_users(&test_db).await, 2);

    // A SQLite header over garbage: caught by the checks, not half restored.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend(std::iter::repeat_n(0xAB_u8, 8192));
    let fake_path = dir.path().join("fake.sqlite3");
    std::fs::write(&fake_path, fake).unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", fake_path.to_str().unwrap()],
        &test_db.url,
    );
    one_line_failure(&out);
    assert_eq!(count_users(&test_db).await, 2);
    succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
}

/// `upgrade --backup` writes a restorable backup of the database as it was, names it, then
/// upgrades.
async fn upgrade_takes_a_backup_first(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeeded(&app_in(
        dir.path(),
        &["database", "upgrade", "--backup"],
        &test_db.url,
    ));
    let files = entries(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("backup-"), "{files:?}");
    assert!(stdout.contains(&files[0]), "the file is named: {stdout}");
    assert!(stdout.contains("upgraded"), "{stdout}");
    let db = test_db.connect(&[]).await;
    let applied = scalar_i64(&db, "SELECT count(*) FROM ddl_version").await;
    assert_eq!(applied as usize, app::migrations::all().len());
    db.close().await;
    // The backup holds the database from before the upgrade: restored into a fresh database,
    // it has no app tables.
    let backup = dir.path().join(&files[0]);
    let fresh = TestDb::empty(kind).await;
    succeeded(&app_in(
        dir.path(),
        &["database", "restore", backup.to_str().unwrap()],
        &fresh.url,
    ));
    let db = fresh.connect(&[]).await;
    let tables = app::models::schema::existing_tables(db.conn())
        .await
        .unwrap();
    assert!(
        !tables.iter().any(|t| t == "todo"),
        "restored to before the upgrade: {tables:?}"
    );
    db.close().await;
}

on_both_databases!(
    upgrade_takes_a_backup_first,
    backup_and_restore_bring_rows_back,
    default_name_in_working_directory,
    schema_format_has_create_table,
    failing_backup_leaves_no_file,
    restoring_a_non_backup_changes_nothing,
);

#[test]
fn backup_restore_into_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.sqlite3");
    std::fs::write(&file, b"SQLite format 3\0").unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", file.to_str().unwrap()],
        "sqlite::memory:",
    );
    let line = one_line_failure(&out);
    assert!(line.contains("in-memory"), "{line}");
}

#[tokio::test]
async fn backup_without_pg_dump_says_what_to_install() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_app"))
        .args(["database", "backup"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", dir.path())
        .env("APP_ENV", "testing")
        .env("DATABASE_URL", &test_db.url)
        .env("DATABASE_FIXTURE_PATH", fixture_dir())
        .stdin(Stdio::null())
        .output()
        .expect("app runs");
    let line = one_line_failure(&out);
    assert!(
        line.contains("pg_dump") && line.contains("postgresql-client"),
        "{line}"
    );
    assert!(entries(dir.path()).is_empty());
}
