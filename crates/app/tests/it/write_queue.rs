//! SQLite write transactions of one process take turns, first come first served, instead of
//! sleeping in SQLite's busy handler; reads do not wait for them; a turn is waited for no
//! longer than a connection checkout.

use std::time::{Duration, Instant};

use app::db::{Database, DbError};
use app::domain::accounts;
use app::domain::todos::{self, NewTodo, TodoError, TodoQuery};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::helpers::{Kind, TestDb};

/// Time for a spawned writer to reach the queue before the next one is spawned.
const ARRIVAL_GAP: Duration = Duration::from_millis(40);

async fn sqlite_with_user(vars: &[(&str, &str)]) -> (TestDb, Database, Uuid) {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let db = test_db.connect(vars).await;
    let user = accounts::signup(db.conn(), "writer@example.com", None, "writer-password")
        .await
        .expect("sign up");
    (test_db, db, user.id)
}

fn todo(item: String) -> NewTodo {
    NewTodo {
        item,
        tags: vec!["queued".into(), "shared".into()],
        ..NewTodo::default()
    }
}

/// Spawns `todos::create` of `item` for `user`.
fn spawn_writer(
    db: &Database,
    user: Uuid,
    item: String,
) -> tokio::task::JoinHandle<Result<Duration, TodoError>> {
    let db = db.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        todos::create(db.conn(), user, todo(item)).await?;
        Ok(started.elapsed())
    })
}

/// The user's todo items in the order SQLite stored them.
async fn items_in_insert_order(db: &Database, user: Uuid) -> Vec<String> {
    let rows = db
        .conn()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "SELECT item FROM todo WHERE user_id = ? ORDER BY rowid",
            [user.into()],
        ))
        .await
        .expect("read the todos back");
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("item"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_writers_commit_in_arrival_order() {
    let (_test_db, db, user) = sqlite_with_user(&[
        ("DATABASE_POOL_SIZE", "4"),
        ("DATABASE_MAX_POOL_OVERFLOW", "28"),
    ])
    .await;
    // Hold the write turn, so every writer below arrives while it is taken.
    let holder = app::db::begin_write(db.conn())
        .await
        .expect("take the turn");
    let mut writers = Vec::new();
    for i in 0..24 {
        writers.push(spawn_writer(&db, user, format!("writer {i:02}")));
        tokio::time::sleep(ARRIVAL_GAP).await;
    }
    assert!(
        writers.iter().all(|writer| !writer.is_finished()),
        "no writer gets past a held turn"
    );
    holder.commit().await.expect("pass the turn on");
    for writer in writers {
        let waited = writer
            .await
            .expect("writer task")
            .expect("every writer succeeds");
        assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    }
    let expected: Vec<String> = (0..24).map(|i| format!("writer {i:02}")).collect();
    assert_eq!(
        items_in_insert_order(&db, user).await,
        expected,
        "writers take their turns in the order they came"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_all_succeed() {
    let (_test_db, db, user) = sqlite_with_user(&[
        ("DATABASE_POOL_SIZE", "8"),
        ("DATABASE_MAX_POOL_OVERFLOW", "8"),
    ])
    .await;
    let writers: Vec<_> = (0..64)
        .map(|i| spawn_writer(&db, user, format!("burst {i:02}")))
        .collect();
    let mut slowest = Duration::ZERO;
    for writer in writers {
        match writer.await.expect("writer task") {
            Ok(waited) => slowest = slowest.max(waited),
            Err(err) => panic!("a writer failed: {err}"),
        }
    }
    assert_eq!(items_in_insert_order(&db, user).await.len(), 64);
    // Each waits for those before it only, never for a busy timeout.
    assert!(
        slowest < Duration::from_secs(5),
        "slowest writer {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_do_not_wait_for_the_write_queue() {
    let (_test_db, db, user) = sqlite_with_user(&[]).await;
    let made = todos::create(db.conn(), user, todo("committed".into()))
        .await
        .expect("a todo to read");
    // A write transaction with an uncommitted change holds the turn; a writer queues behind it.
    let holder = app::db::begin_write(db.conn())
        .await
        .expect("take the turn");
    holder
        .execute_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "UPDATE todo SET item = 'uncommitted'",
        ))
        .await
        .expect("write inside the turn");
    let writer = spawn_writer(&db, user, "queued".into());
    tokio::time::sleep(ARRIVAL_GAP).await;

    let reads = async {
        let one = todos::get(db.conn(), user, made.todo.id).await?;
        let list = todos::list(db.conn(), user, &TodoQuery::default()).await?;
        Ok::<_, TodoError>((one, list.items, list.total.count))
    };
    let (one, page, total) = tokio::time::timeout(Duration::from_secs(2), reads)
        .await
        .expect("reads answer while a write transaction is open and a writer waits")
        .expect("reads succeed");
    assert_eq!(one.todo.item, "committed", "the open write is not seen");
    assert_eq!((page.len(), total), (1, 1));
    assert!(!writer.is_finished(), "the writer still waits for its turn");

    holder.commit().await.expect("pass the turn on");
    writer
        .await
        .expect("writer task")
        .expect("the queued writer succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_is_waited_for_as_long_as_a_checkout() {
    let (_test_db, db, user) = sqlite_with_user(&[("DATABASE_POOL_TIMEOUT", "1")]).await;
    let holder = app::db::begin_write(db.conn())
        .await
        .expect("take the turn");
    let started = Instant::now();
    let err = todos::create(db.conn(), user, todo("too late".into()))
        .await
        .expect_err("no turn within the pool timeout");
    let waited = started.elapsed();
    let TodoError::Db(err) = err else {
        panic!("expected a database error, got {err}");
    };
    assert!(
        matches!(db.explain(err), DbError::PoolTimeout { .. }),
        "a pool timeout, not `database is locked`"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
    holder.rollback().await.expect("give the turn back");
    todos::create(db.conn(), user, todo("in time".into()))
        .await
        .expect("the turn is free again");
}
