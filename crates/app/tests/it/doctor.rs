//! `app database doctor --format json`: findings with ok / warn / fail, exit 1 on any fail.

use std::process::Output;

use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::helpers::{Kind, TestDb, run_app_on};

/// Runs `app database doctor --format json` against `url` and parses the report.
pub(crate) fn doctor(url: &str) -> (Output, Value) {
    let out = run_app_on(url, &["database", "doctor", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "JSON ({err}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out, json)
}

pub(crate) fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("a {name} finding: {report:#}"))
}

fn failing(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["status"] == "fail")
        .collect()
}

async fn healthy_database_passes(kind: Kind) -> Value {
    let test_db = TestDb::new(kind).await;
    let (out, report) = doctor(&test_db.url);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(failing(&report).is_empty(), "{report:#}");
    assert_eq!(finding(&report, "connection")["status"], "ok");
    assert_eq!(finding(&report, "schema")["status"], "ok");
    assert_eq!(finding(&report, "schema drift")["status"], "ok");
    let pool = finding(&report, "pool");
    assert_eq!(pool["status"], "ok");
    for word in [
        "size", "overflow", "timeout", "recycle", "pre-ping", "disabled",
    ] {
        assert!(pool["detail"].as_str().unwrap().contains(word), "{pool}");
    }
    report
}

#[tokio::test]
async fn doctor_healthy_postgres() {
    let report = healthy_database_passes(Kind::Postgres).await;
    let unused = finding(&report, "unused indexes");
    assert_eq!(unused["status"], "warn", "{report:#}");
    // The first few by size then table name are named: which ones depends on the tables.
    assert!(
        unused["detail"].as_str().unwrap().contains(".ix_"),
        "{unused}"
    );
    let pk = unused["detail"].as_str().unwrap();
    assert!(!pk.contains("pkey"), "primary keys are not listed: {pk}");
    let slow = finding(&report, "slow statements");
    assert!(slow["status"] == "ok" || slow["status"] == "warn", "{slow}");
    if slow["status"] == "warn" {
        let hint = slow["hint"].as_str().unwrap();
        assert!(
            hint.contains("shared_preload_libraries") && hint.contains("CREATE EXTENSION"),
            "{hint}"
        );
    }
    assert_eq!(finding(&report, "sizes")["status"], "ok");
    assert!(
        finding(&report, "sizes")["detail"]
            .as_str()
            .unwrap()
            .contains("todo")
    );
    assert_eq!(finding(&report, "sessions")["status"], "ok");
}

#[tokio::test]
async fn doctor_healthy_sqlite() {
    let report = healthy_database_passes(Kind::Sqlite).await;
    assert_eq!(finding(&report, "integrity")["status"], "ok");
    assert_eq!(finding(&report, "foreign keys")["status"], "ok");
    assert_eq!(finding(&report, "journal mode")["status"], "ok");
}

async fn drift_fails(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    db.conn()
        .execute_raw(db.statement("ALTER TABLE todo ADD COLUMN x integer"))
        .await
        .expect("alter");
    db.close().await;
    let (out, report) = doctor(&test_db.url);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["status"], "fail");
    let drift = finding(&report, "schema drift");
    assert_eq!(drift["status"], "fail", "{report:#}");
    assert!(drift["detail"].as_str().unwrap().contains('x'), "{drift}");
    assert!(drift["hint"].is_string(), "{drift}");
}

#[tokio::test]
async fn doctor_drift_fails_postgres() {
    drift_fails(Kind::Postgres).await;
}

#[tokio::test]
async fn doctor_drift_fails_sqlite() {
    drift_fails(Kind::Sqlite).await;
}

async fn behind_head_warns(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let (out, report) = doctor(&test_db.url);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let schema = finding(&report, "schema");
    assert_eq!(schema["status"], "warn", "{report:#}");
    assert!(
        schema["detail"].as_str().unwrap().contains("behind"),
        "{schema}"
    );
    assert!(
        schema["hint"].as_str().unwrap().contains("upgrade"),
        "{schema}"
    );
    assert_eq!(report["status"], "warn");
}

#[tokio::test]
async fn doctor_behind_head_warns_postgres() {
    behind_head_warns(Kind::Postgres).await;
}

#[tokio::test]
async fn doctor_behind_head_warns_sqlite() {
    behind_head_warns(Kind::Sqlite).await;
}

/// Moves every page from the `-wal` file into the database file, so that damage done to the
/// file is what SQLite reads (pages still in the WAL would be read from there instead).
async fn checkpoint(test_db: &TestDb) {
    use sea_orm::ConnectionTrait;
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    db.conn()
        .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .expect("checkpoint");
    db.close().await;
}

/// Overwrites `len` bytes of the file at `offset` with garbage.
fn scribble(path: &str, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the database file");
    file.seek(SeekFrom::Start(offset)).unwrap();
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
    file.write_all(&garbage).unwrap();
}

fn assert_corrupt_report(out: &Output, report: &Value, path: &str) {
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let failing = failing(report);
    assert!(!failing.is_empty(), "{report:#}");
    let hint = failing
        .iter()
        .find_map(|f| f["hint"].as_str())
        .unwrap_or_else(|| panic!("a failing finding with a hint: {report:#}"));
    assert!(
        hint.contains(".recover") && hint.contains(path) && hint.contains("DATABASE_URL"),
        "{hint}"
    );
    assert!(hint.contains("backup"), "{hint}");
}

#[tokio::test]
async fn doctor_corrupt_sqlite_pages_fail_with_a_recovery_hint() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let path = test_db.url.strip_prefix("sqlite://").unwrap().to_string();
    checkpoint(&test_db).await;
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 8192, "the seeded file has several pages: {size}");
    // Keep page 1 (header and schema root); garble everything after it.
    scribble(&path, 4096, (size - 4096) as usize);
    let (out, report) = doctor(&test_db.url);
    assert_corrupt_report(&out, &report, &path);
}

#[tokio::test]
async fn doctor_sqlite_with_a_garbage_header_fails_at_connection() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let path = test_db.url.strip_prefix("sqlite://").unwrap().to_string();
    checkpoint(&test_db).await;
    scribble(&path, 0, 100);
    let (out, report) = doctor(&test_db.url);
    assert_corrupt_report(&out, &report, &path);
    let connection = finding(&report, "connection");
    assert_eq!(connection["status"], "fail", "{report:#}");
    assert!(connection["hint"].as_str().unwrap().contains(".recover"));
}
