//! Each pool setting's behaviour on a real server.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use app::db::{Database, DbError};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use sqlx::{Connection, Executor};

use crate::helpers::{Kind, TestDb, pg_direct, scalar_i64};

/// Holds `n` connections by opening a transaction on each.
async fn hold(db: &Database, n: usize) -> Vec<DatabaseTransaction> {
    let mut held = Vec::new();
    for _ in 0..n {
        let txn = db.conn().begin().await.expect("checkout");
        held.push(txn);
    }
    held
}

/// Waits until the pool has `open` connections (checkin closes them in the background).
async fn wait_for_open(db: &Database, open: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while db.pool_status().open != open && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.pool_status().open, open, "{:?}", db.pool_status());
}

async fn timeout_fires_on_time(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_MAX_POOL_OVERFLOW", "0"),
            ("DATABASE_POOL_TIMEOUT", "1"),
        ])
        .await;
    let _held = hold(&db, 1).await;
    let started = Instant::now();
    let err = db
        .conn()
        .execute_raw(db.statement("SELECT 1"))
        .await
        .expect_err("no connection is free");
    let waited = started.elapsed();
    let err = db.explain(err);
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100),
        "timeout after {waited:?}, expected 1s +-10%"
    );
    match &err {
        DbError::PoolTimeout {
            size,
            overflow,
            in_use,
            ..
        } => assert_eq!((*size, *overflow, *in_use), (1, 0, 1)),
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("pool timeout"), "{text}");
    assert!(text.contains("pool size 1, overflow 0, 1 in use"), "{text}");
}

#[tokio::test]
async fn timeout_fires_on_time_postgres() {
    timeout_fires_on_time(Kind::Postgres).await;
}

#[tokio::test]
async fn timeout_fires_on_time_sqlite() {
    timeout_fires_on_time(Kind::Sqlite).await;
}

async fn overflow_opens_under_load_and_closes_when_idle(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "2"),
            ("DATABASE_MAX_POOL_OVERFLOW", "2"),
            ("DATABASE_POOL_TIMEOUT", "0.5"),
        ])
        .await;
    wait_for_open(&db, 2).await;
    let held = hold(&db, 4).await;
    assert_eq!(db.pool_status().open, 4);
    assert_eq!(db.pool_status().in_use, 4);
    // Size plus overflow is the ceiling.
    let err = db.conn().begin().await.expect_err("the pool is exhausted");
    assert!(matches!(db.explain(err), DbError::PoolTimeout { .. }));
    drop(held);
    wait_for_open(&db, 2).await;
    assert_eq!(db.pool_status().idle, 2, "the kept connections stay open");
}

#[tokio::test]
async fn overflow_opens_under_load_and_closes_when_idle_postgres() {
    overflow_opens_under_load_and_closes_when_idle(Kind::Postgres).await;
}

#[tokio::test]
async fn overflow_opens_under_load_and_closes_when_idle_sqlite() {
    overflow_opens_under_load_and_closes_when_idle(Kind::Sqlite).await;
}

async fn backend_pid(db: &Database) -> i64 {
    scalar_i64(db, "SELECT pg_backend_pid()").await
}

#[tokio::test]
async fn disabled_pool_opens_a_new_connection_per_checkout() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db.connect(&[("DATABASE_POOL_DISABLED", "true")]).await;
    let mut pids = HashSet::new();
    for _ in 0..4 {
        pids.insert(backend_pid(&db).await);
    }
    assert_eq!(pids.len(), 4, "every checkout got a new backend: {pids:?}");
    wait_for_open(&db, 0).await;
}

#[tokio::test]
async fn disabled_pool_keeps_nothing_open_on_sqlite() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let db = test_db.connect(&[("DATABASE_POOL_DISABLED", "true")]).await;
    for _ in 0..3 {
        scalar_i64(&db, "SELECT 1").await;
    }
    wait_for_open(&db, 0).await;
}

#[tokio::test]
async fn enabled_pool_reuses_connections() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ])
        .await;
    let first = backend_pid(&db).await;
    for _ in 0..5 {
        assert_eq!(backend_pid(&db).await, first);
    }
}

#[tokio::test]
async fn sequential_load_returns_to_the_pool_size() {
    // sqlx checks a connection in asynchronously (it pings it first), so a query right after
    // another may open an overflow connection; the trimmer closes those once idle.
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "2")]).await;
    let mut pids = HashSet::new();
    for _ in 0..20 {
        pids.insert(backend_pid(&db).await);
    }
    assert!(
        pids.len() <= 12,
        "never more than size + overflow: {}",
        pids.len()
    );
    wait_for_open(&db, 2).await;
}

#[tokio::test]
async fn recycle_bounds_a_connections_life() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_MAX_POOL_OVERFLOW", "0"),
            ("DATABASE_POOL_RECYCLE", "1"),
        ])
        .await;
    let first = backend_pid(&db).await;
    assert_eq!(
        backend_pid(&db).await,
        first,
        "young connections are reused"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_ne!(
        backend_pid(&db).await,
        first,
        "an old connection is replaced"
    );
}

/// Ends every backend of the test database from outside, as a DBA or failover would.
async fn terminate_backends(test_db: &TestDb) -> u64 {
    let mut admin = pg_direct(test_db).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(test_db.pg_name())
    .fetch_one(&mut admin)
    .await
    .expect("terminate backends");
    let _ = admin.close().await;
    // Give the server a moment to finish the terminations.
    tokio::time::sleep(Duration::from_millis(200)).await;
    u64::try_from(killed).unwrap_or(0)
}

#[tokio::test]
async fn pre_ping_hides_terminated_backends() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "3"),
            ("DATABASE_PRE_POOL_PING", "true"),
        ])
        .await;
    wait_for_open(&db, 3).await;
    let before = backend_pid(&db).await;
    assert!(terminate_backends(&test_db).await >= 3);
    for _ in 0..5 {
        let pid = backend_pid(&db).await;
        assert_ne!(pid, before, "a live backend answered");
    }
}

#[tokio::test]
async fn without_pre_ping_a_terminated_backend_reaches_the_caller() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    wait_for_open(&db, 1).await;
    backend_pid(&db).await;
    assert!(terminate_backends(&test_db).await >= 1);
    let result = db.conn().execute_raw(db.statement("SELECT 1")).await;
    let err = result.expect_err("the dead connection was handed out unchecked");
    assert!(app::db::is_connection_lost(&err), "{err:?}");
    let err = db.explain(err);
    assert!(err.is_connection_lost() && err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the connection to the database was lost: "),
        "{err}"
    );
}

#[tokio::test]
async fn one_lost_connection_flushes_the_dead_ones_without_pre_ping() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "4"),
            ("DATABASE_PRE_POOL_PING", "false"),
        ])
        .await;
    wait_for_open(&db, 4).await;
    let before = backend_pid(&db).await;
    assert!(terminate_backends(&test_db).await >= 4);
    let err = db
        .conn()
        .execute_raw(db.statement("SELECT 1"))
        .await
        .expect_err("a dead connection is handed out first");
    // Noted by `explain` (as the HTTP layer notes what it sees): the other dead ones are found
    // at their next checkout, not by failing a query each.
    assert!(db.explain(err).is_connection_lost());
    for _ in 0..8 {
        let pid = backend_pid(&db).await;
        assert_ne!(pid, before, "a live backend answered");
    }
}

#[tokio::test]
async fn without_a_loss_noted_idle_connections_are_not_pinged() {
    // The flush costs nothing until a loss is seen: connections are reused as they are, so
    // each dead one still fails once.
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db
        .connect(&[
            ("DATABASE_POOL_SIZE", "2"),
            ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ])
        .await;
    wait_for_open(&db, 2).await;
    assert!(terminate_backends(&test_db).await >= 2);
    let mut failures = 0;
    for _ in 0..4 {
        if db
            .conn()
            .execute_raw(db.statement("SELECT 1"))
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert_eq!(failures, 2, "each dead connection failed once");
}

#[tokio::test]
async fn sqlite_connections_use_wal_foreign_keys_and_normal_sync() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let db = test_db.connect(&[]).await;
    let row = db
        .conn()
        .query_one_raw(db.statement("PRAGMA journal_mode"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
    assert_eq!(scalar_i64(&db, "PRAGMA foreign_keys").await, 1);
    assert_eq!(scalar_i64(&db, "PRAGMA synchronous").await, 1, "NORMAL");
    assert_eq!(scalar_i64(&db, "PRAGMA busy_timeout").await, 5000);
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_across_checkouts() {
    let db = Database::connect(
        &crate::helpers::settings_with(&[("DATABASE_URL", "sqlite+aiosqlite:///:memory:")])
            .database,
    )
    .await
    .unwrap();
    db.conn()
        .execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(scalar_i64(&db, "SELECT count(*) FROM t").await, 1);
    }
}

#[tokio::test]
async fn pool_events_are_counted_by_the_server() {
    // The kept connections are open on the server right after connecting.
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "3")]).await;
    wait_for_open(&db, 3).await;
    let mut admin = pg_direct(&test_db).await;
    let on_server: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(test_db.pg_name())
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(on_server, 3);
    admin.execute("SELECT 1").await.unwrap();
}

/// A failed statement reads as the server said it, with its code and detail, on both
/// databases; never with sqlx's "at line N" (a line of PostgreSQL's own C source).
#[tokio::test]
async fn database_errors_show_the_server_message_code_and_detail() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let test_db = TestDb::new(kind).await;
        let db = test_db.connect(&[]).await;
        let conn = db.conn();
        conn.execute_unprepared("CREATE TABLE marked (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        conn.execute_unprepared("INSERT INTO marked (id) VALUES (1)")
            .await
            .unwrap();
        let err = conn
            .execute_unprepared("INSERT INTO marked (id) VALUES (1)")
            .await
            .unwrap_err();
        let shown = app::db::describe(&err);
        assert!(!shown.contains(" at line "), "{kind:?}: {shown}");
        assert!(!shown.contains("error returned from database"), "{shown}");
        match kind {
            Kind::Postgres => assert_eq!(
                shown,
                "duplicate key value violates unique constraint \"marked_pkey\" \
                 (SQLSTATE 23505): Key (id)=(1) already exists."
            ),
            Kind::Sqlite => assert_eq!(
                shown,
                "UNIQUE constraint failed: marked.id (SQLite code 1555)"
            ),
        }
    }
}
