//! `upgrade` on a busy PostgreSQL, through the real binary: a lock held by another session is
//! waited for under the lock timeout and retried, and named when the retries run out; an index
//! an interrupted concurrent build left INVALID is reported by `check` and `doctor`.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{Kind, TestDb, one_line_failure, pg_direct, run_app, succeeded};

/// The revision before the migration that adds a CHECK to `todo` (an ALTER TABLE that waits
/// for every lock on the table).
const BEFORE_TODO_CHECK: &str = "363878e3d4c3";

fn app(db: &TestDb, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = vec![("APP_ENV", "testing"), ("DATABASE_URL", db.url.as_str())];
    all.extend_from_slice(vars);
    run_app(dir.path(), args, &all)
}

/// A database one step before the CHECK on `todo`, and a session holding `todo` locked in an
/// open transaction, with its pid.
async fn todo_held_before_its_check() -> (TestDb, PgConnection, i32) {
    let db = TestDb::new(Kind::Postgres).await;
    succeeded(&app(
        &db,
        &["database", "downgrade", BEFORE_TODO_CHECK],
        &[],
    ));
    let mut holder = pg_direct(&db).await;
    // Its pid first: pg_stat_activity shows the session's last statement, the LOCK.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE todo IN ACCESS SHARE MODE")
        .await
        .unwrap();
    (db, holder, pid)
}

async fn current(db: &TestDb) -> String {
    let out = app(db, &["database", "current"], &[]);
    succeeded(&out)
}

#[tokio::test]
async fn upgrade_waits_out_a_lock_released_within_its_retries() {
    let (db, mut holder, _pid) = todo_held_before_its_check().await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.execute("COMMIT").await.unwrap();
        let _ = holder.close().await;
    });
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        run_app(
            dir.path(),
            &["database", "upgrade"],
            &[
                ("APP_ENV", "testing"),
                ("DATABASE_URL", &url),
                ("DATABASE_MIGRATION_LOCK_TIMEOUT", "0.3"),
                ("DATABASE_MIGRATION_LOCK_RETRIES", "6"),
            ],
        )
    })
    .await
    .unwrap();
    release.await.unwrap();
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lock timeout"),
        "each retry is logged: {stderr}"
    );
    assert!(current(&db).await.contains("(head)"));
}

#[tokio::test]
async fn upgrade_gives_up_naming_the_session_in_the_way() {
    let (db, _holder, pid) = todo_held_before_its_check().await;
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        run_app(
            dir.path(),
            &["database", "upgrade"],
            &[
                ("APP_ENV", "testing"),
                ("DATABASE_URL", &url),
                ("DATABASE_MIGRATION_LOCK_TIMEOUT", "0.2"),
                ("DATABASE_MIGRATION_LOCK_RETRIES", "1"),
            ],
        )
    })
    .await
    .unwrap();
    let line = one_line_failure(&out, 1);
    assert!(line.contains(&format!("pid {pid}")), "{line}");
    assert!(line.contains("idle in transaction"), "{line}");
    assert!(
        line.contains("LOCK TABLE todo IN ACCESS SHARE MODE"),
        "{line}"
    );
    assert!(line.contains("previous revision"), "{line}");
    let at = current(&db).await;
    assert!(at.starts_with(BEFORE_TODO_CHECK), "{at}");
}

/// A unique build over duplicate values fails and leaves its index INVALID.
#[tokio::test]
async fn check_and_doctor_report_an_index_left_invalid() {
    let db = TestDb::new(Kind::Postgres).await;
    let mut conn = pg_direct(&db).await;
    let failed = conn
        .execute("CREATE UNIQUE INDEX CONCURRENTLY ix_version_length ON ddl_version (length(version_num))")
        .await;
    assert!(failed.is_err(), "the revisions share a length");
    let _ = conn.close().await;

    let out = app(&db, &["database", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("index ix_version_length on ddl_version is INVALID"),
        "{stdout}"
    );
    assert!(stdout.contains("run `upgrade` again"), "{stdout}");

    let out = app(&db, &["database", "doctor"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("invalid indexes"), "{stdout}");
    assert!(
        stdout.contains("ix_version_length on ddl_version"),
        "{stdout}"
    );
}
