//! What a busy production PostgreSQL needs of the runner, on real databases: index builds
//! outside a transaction (CONCURRENTLY) that writers do not wait for, the rebuild of an index
//! an interrupted build left INVALID, lock timeouts retried and, when they run out, the session
//! in the way named; and no advisory lock left behind.

use std::time::{Duration, Instant};

use strata::concurrent::invalid_indexes;
use strata::prelude::*;
use strata::runner::{self, Conn, Event, Plan, RunError, RunOptions, Statement};
use strata::state::{Direction, History};

use crate::support::{TestDb, VERSION_TABLE, applied_set, down, scalar_i64, up, up_with};

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

/// A table, then a non-atomic migration that builds an index on it and one that drops it.
fn history_with_index_migration(unique: bool) -> History {
    let build = if unique {
        create_unique_index("item", "ix_item_code", &["code"])
    } else {
        create_index("item", "ix_item_code", &["code"])
    };
    History::new(vec![
        Migration::new("p01", &[], "items", "t").operations(vec![create_table(
            Table::new("item")
                .with_column(col("id", ColumnType::BigInteger))
                .with_column(col("code", ColumnType::Text))
                .with_column(col("note", ColumnType::Text).nullable())
                .with_primary_key(["id"]),
        )]),
        Migration::new("p02", &["p01"], "items (indexes)", "t")
            .atomic(false)
            .operations(vec![build]),
    ])
    .unwrap()
}

fn sql_of(plan: &Plan) -> Vec<String> {
    plan.migrations
        .iter()
        .flat_map(|m| plan.statements(m))
        .filter_map(|s| match s {
            Statement::Sql(sql) => Some(sql.to_string()),
            _ => None,
        })
        .collect()
}

async fn text(conn: &mut Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    conn.fetch_text(sql).await.unwrap()
}

async fn advisory_locks(conn: &mut Conn) -> i64 {
    scalar_i64(
        conn,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
}

#[tokio::test]
async fn a_non_atomic_migration_builds_and_drops_indexes_concurrently_outside_a_transaction() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_with_index_migration(false);
    up(&mut conn, &history, "p01").await.unwrap();
    let plan = Plan::new(
        &history,
        &applied_set(&mut conn).await,
        Direction::Up,
        "head",
        Dialect::Postgres,
        VERSION_TABLE,
    )
    .unwrap();
    let statements = sql_of(&plan);
    assert_eq!(
        statements[..3],
        [
            "DROP INDEX CONCURRENTLY IF EXISTS \"ix_item_code\"",
            "CREATE INDEX CONCURRENTLY \"ix_item_code\" ON \"item\" (\"code\")",
            "BEGIN",
        ],
        "the build comes before the transaction that records it"
    );
    assert!(statements[3].starts_with("INSERT INTO \"ddl_version\""));
    assert_eq!(statements[4], "COMMIT");
    let script = plan.to_sql();
    let build = script.find("CREATE INDEX CONCURRENTLY").unwrap();
    assert!(
        !script[..build].contains("BEGIN"),
        "--sql shows the build outside BEGIN/COMMIT: {script}"
    );

    let mut executed = Vec::new();
    runner::run(
        &mut conn,
        &history,
        VERSION_TABLE,
        Direction::Up,
        "head",
        &mut |event| {
            if let Event::Statement { sql } = event {
                executed.push(sql.to_string());
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        executed, statements,
        "online ran exactly the offline script"
    );
    assert_eq!(applied_set(&mut conn).await.len(), 2);
    assert_eq!(
        text(
            &mut conn,
            "SELECT CAST(indisvalid AS text) FROM pg_index WHERE indexrelid = to_regclass('ix_item_code')"
        )
        .await,
        [[Some("true".to_string())]]
    );
    assert_eq!(advisory_locks(&mut conn).await, 0, "no advisory lock left");

    let plan = Plan::new(
        &history,
        &applied_set(&mut conn).await,
        Direction::Down,
        "p01",
        Dialect::Postgres,
        VERSION_TABLE,
    )
    .unwrap();
    assert_eq!(
        sql_of(&plan)[0],
        "DROP INDEX CONCURRENTLY IF EXISTS \"ix_item_code\""
    );
    down(&mut conn, &history, "p01").await.unwrap();
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE relname = 'ix_item_code'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_non_atomic_migration_runs_in_one_transaction_on_sqlite() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let history = history_with_index_migration(false);
    let plan = Plan::new(
        &history,
        &Default::default(),
        Direction::Up,
        "head",
        Dialect::Sqlite,
        VERSION_TABLE,
    )
    .unwrap();
    let m = &plan.migrations[1];
    let statements: Vec<String> = plan
        .statements(m)
        .into_iter()
        .filter_map(|s| match s {
            Statement::Sql(sql) => Some(sql.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(statements[0], "BEGIN IMMEDIATE");
    assert!(
        statements[1].starts_with("CREATE INDEX \"ix_item_code\""),
        "{statements:?}"
    );
    up(&mut conn, &history, "head").await.unwrap();
    assert_eq!(applied_set(&mut conn).await.len(), 2);
}

/// A unique build over duplicates fails half way and leaves an INVALID index; once the
/// duplicates are gone, running the migration again rebuilds it.
#[tokio::test]
async fn running_again_rebuilds_an_index_an_interrupted_build_left_invalid() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_with_index_migration(true);
    up(&mut conn, &history, "p01").await.unwrap();
    conn.execute("INSERT INTO item (id, code) VALUES (1, 'a'), (2, 'a'), (3, 'b')")
        .await
        .unwrap();
    let err = up(&mut conn, &history, "head").await.unwrap_err();
    assert!(matches!(err, RunError::Statement { .. }), "{err}");
    assert_eq!(
        applied_set(&mut conn).await.len(),
        1,
        "the failed build is not recorded"
    );
    let invalid = invalid_indexes(&mut conn).await.unwrap();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(
        (invalid[0].table.as_str(), invalid[0].index.as_str()),
        ("item", "ix_item_code")
    );
    assert!(invalid[0].to_string().contains("upgrade"));

    conn.execute("DELETE FROM item WHERE id = 2").await.unwrap();
    assert_eq!(up(&mut conn, &history, "head").await.unwrap(), ["p02"]);
    assert!(invalid_indexes(&mut conn).await.unwrap().is_empty());
    assert_eq!(advisory_locks(&mut conn).await, 0);
}

/// A history whose second migration alters `item`, which another session may hold locked.
fn history_altering_item() -> History {
    History::new(vec![
        Migration::new("l01", &[], "items", "t").operations(vec![create_table(
            Table::new("item")
                .with_column(col("id", ColumnType::BigInteger))
                .with_primary_key(["id"]),
        )]),
        Migration::new("l02", &["l01"], "item notes", "t").operations(vec![add_column(
            "item",
            col("note", ColumnType::Text).nullable(),
        )]),
    ])
    .unwrap()
}

fn quick_retries(retries: u32) -> RunOptions {
    RunOptions {
        lock_timeout: Some(Duration::from_millis(300)),
        statement_timeout: Some(Duration::from_secs(30)),
        lock_retries: retries,
        retry_delay: Duration::from_millis(200),
        guard_connection: None,
    }
}

/// Another session holding `LOCK TABLE item IN ACCESS SHARE MODE` in an open transaction;
/// returns it and its backend pid.
async fn hold_item(db: &TestDb) -> (Conn, String) {
    let mut holder = db.connect().await;
    // Its pid first: pg_stat_activity shows the session's last statement, the LOCK.
    let pid = text(&mut holder, "SELECT CAST(pg_backend_pid() AS text)").await[0][0]
        .clone()
        .unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE item IN ACCESS SHARE MODE")
        .await
        .unwrap();
    (holder, pid)
}

#[tokio::test]
async fn a_lock_released_within_the_retries_lets_the_migration_through() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_altering_item();
    up(&mut conn, &history, "l01").await.unwrap();
    let (mut holder, pid) = hold_item(&db).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        holder.execute("COMMIT").await.unwrap();
    });
    let mut retries = Vec::new();
    let done = runner::run_with(
        &mut conn,
        &history,
        VERSION_TABLE,
        Direction::Up,
        "head",
        &quick_retries(8),
        &mut |event| {
            if let Event::Retrying {
                attempt, blocker, ..
            } = event
            {
                retries.push((attempt, blocker.map(str::to_string)));
            }
        },
    )
    .await
    .unwrap();
    release.await.unwrap();
    assert_eq!(done, ["l02"]);
    assert!(!retries.is_empty(), "it waited for the lock at least once");
    let (_, blocker) = &retries[0];
    let blocker = blocker.as_deref().unwrap_or_default();
    assert!(blocker.contains(&format!("pid {pid}")), "{blocker}");
    assert!(blocker.contains("LOCK TABLE item"), "{blocker}");
    assert_eq!(advisory_locks(&mut conn).await, 0);
}

#[tokio::test]
async fn a_lock_never_released_fails_naming_the_holder_at_the_previous_revision() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_altering_item();
    up(&mut conn, &history, "l01").await.unwrap();
    let (_holder, pid) = hold_item(&db).await;
    let started = Instant::now();
    let err = up_with(&mut conn, &history, &quick_retries(2))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RunError::LockTimeout { attempts: 3, .. }),
        "{message}"
    );
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(message.contains("idle in transaction"), "{message}");
    assert!(
        message.contains("LOCK TABLE item IN ACCESS SHARE MODE"),
        "{message}"
    );
    assert!(message.contains("previous revision"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        applied_set(&mut conn).await,
        ["l01".to_string()].into(),
        "still at the previous revision"
    );
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'item' AND column_name = 'note'"
        )
        .await,
        0,
        "rolled back"
    );
    assert_eq!(advisory_locks(&mut conn).await, 0);
}

/// A non-atomic migration's statements run without timeouts (outside a transaction there is no
/// `SET LOCAL`); a probe under the lock timeout stands in for them and is retried like one.
#[tokio::test]
async fn a_concurrent_build_waits_for_its_table_under_the_lock_timeout_too() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_with_index_migration(false);
    up(&mut conn, &history, "p01").await.unwrap();
    let mut holder = db.connect().await;
    let pid = text(&mut holder, "SELECT CAST(pg_backend_pid() AS text)").await[0][0]
        .clone()
        .unwrap();
    holder.execute("BEGIN").await.unwrap();
    // SHARE conflicts with the SHARE UPDATE EXCLUSIVE of a concurrent build.
    holder
        .execute("LOCK TABLE item IN SHARE MODE")
        .await
        .unwrap();
    let err = up_with(&mut conn, &history, &quick_retries(1))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RunError::LockTimeout { attempts: 2, .. }),
        "{message}"
    );
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(
        message.contains("LOCK TABLE item IN SHARE MODE"),
        "{message}"
    );
    assert_eq!(applied_set(&mut conn).await.len(), 1);
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE relname = 'ix_item_code'"
        )
        .await,
        0,
        "the build did not start"
    );

    holder.execute("COMMIT").await.unwrap();
    let done = up_with(&mut conn, &history, &quick_retries(1))
        .await
        .unwrap();
    assert_eq!(done, ["p02"]);
}

/// The time writes waited at most while `build` (an index build on 200,000 rows) ran through
/// the runner, with another connection inserting and updating rows all along.
async fn longest_write_wait_during(db: &TestDb, history: &History) -> (Duration, usize) {
    let mut conn = db.connect().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writer = db.connect().await;
    let writing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut longest = Duration::ZERO;
            let mut writes = 0usize;
            let mut id = 1_000_000i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                let started = Instant::now();
                writer
                    .execute(&format!(
                        "INSERT INTO item (id, code, note) VALUES ({id}, md5('{id}'), 'new'); \
                         UPDATE item SET note = 'seen' WHERE id = {}",
                        id % 200_000 + 1
                    ))
                    .await
                    .unwrap();
                longest = longest.max(started.elapsed());
                writes += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (longest, writes)
        }
    });
    // Writes run before the build starts, during it and a little after.
    tokio::time::sleep(Duration::from_millis(200)).await;
    up(&mut conn, history, "head").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.await.unwrap()
}

/// 200,000 rows, an index built CONCURRENTLY by a non-atomic migration while another
/// connection keeps inserting and updating: no write waits a second. The keys are long (512
/// characters) so that a plain build takes longer than that (about 3 s here, all of it a wait
/// for the writer: with `.atomic(true)` this test fails).
#[tokio::test]
async fn a_concurrent_index_build_on_200k_rows_does_not_hold_up_writes() {
    let db = TestDb::fresh(Dialect::Postgres).await;
    let mut conn = db.connect().await;
    let history = history_with_index_migration(false);
    up(&mut conn, &history, "p01").await.unwrap();
    conn.execute(
        "INSERT INTO item (id, code, note) \
         SELECT i, repeat(md5(CAST(i AS text)), 16), NULL FROM generate_series(1, 200000) AS i",
    )
    .await
    .unwrap();
    let (longest, writes) = longest_write_wait_during(&db, &history).await;
    assert!(writes > 10, "the writer kept writing ({writes} writes)");
    assert!(
        longest < Duration::from_secs(1),
        "a write waited {longest:?} during the concurrent build"
    );
    assert!(invalid_indexes(&mut conn).await.unwrap().is_empty());
    assert_eq!(applied_set(&mut conn).await.len(), 2);
}

#[test]
fn only_a_non_atomic_migration_changes_its_checksum() {
    let m = Migration::new("c01", &[], "m", "t").operations(vec![create_index(
        "item",
        "ix",
        &["code"],
    )]);
    assert_eq!(m.clone().atomic(true).checksum(), m.checksum());
    assert_ne!(m.clone().atomic(false).checksum(), m.checksum());
}
