//! One SQLite write transaction at a time per database file, in arrival order.
//!
//! SQLite lets one connection write at a time. Without a queue, the writers that find the write
//! lock taken sleep in SQLite's busy handler, which polls with growing sleeps (up to 100 ms):
//! a writer that wakes just after the lock was taken again sleeps longer still, while later
//! arrivals may win. Under 32 writers the median stayed low but the slowest requests waited
//! over a second and some gave up at the busy timeout. So a write transaction
//! ([`begin_write`](super::begin_write)) first waits for its turn here, on a tokio mutex, which
//! serves waiters first come, first served, and only then checks out a connection and runs
//! `BEGIN IMMEDIATE`; a waiter holds no connection meanwhile. Reads never come here: in WAL
//! mode they run beside the one writer.
//!
//! The queue is per database file and shared by every pool of this process on that file (an
//! in-memory database has a name of its own, hence a queue of its own). Other processes on the
//! same file still meet in SQLite's busy handler, as before. A turn is waited for as long as a
//! connection checkout is (`DATABASE_POOL_TIMEOUT`) and a wait that long fails the same way,
//! as a pool timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use tokio::sync::OwnedMutexGuard;

/// The queue of each database file this process writes to.
static QUEUES: LazyLock<Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// The queue of the SQLite database at `filename`: the same for every spelling of one file.
fn queue_of(filename: &Path) -> Arc<tokio::sync::Mutex<()>> {
    // A name that is no file (an in-memory database's) is its own key.
    let key = std::fs::canonicalize(filename).unwrap_or_else(|_| filename.to_path_buf());
    let mut queues = QUEUES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(queue) = queues.get(&key).and_then(Weak::upgrade) {
        return queue;
    }
    // Forget the queues of databases no pool writes to any more before adding one.
    queues.retain(|_, queue| queue.strong_count() > 0);
    let queue = Arc::new(tokio::sync::Mutex::new(()));
    queues.insert(key, Arc::downgrade(&queue));
    queue
}

/// A write transaction that holds this process's write turn on its SQLite database until it
/// ends (commit, rollback or drop); on PostgreSQL it is a plain transaction and holds none.
/// It is used like the [`DatabaseTransaction`] it wraps.
pub struct WriteTransaction {
    /// Taken out when the transaction ends; present until then.
    txn: Option<DatabaseTransaction>,
    turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    /// Waits for the write turn (SQLite), then begins the transaction with `options`.
    pub(super) async fn begin(
        db: &super::DbConn,
        options: sea_orm::TransactionOptions,
    ) -> Result<Self, DbErr> {
        let turn = match db.get_database_backend() {
            DbBackend::Sqlite => Some(take_turn(db.orm().get_sqlite_connection_pool()).await?),
            _ => None,
        };
        let txn = db.begin_with_options(options).await?;
        Ok(WriteTransaction {
            txn: Some(txn),
            turn,
        })
    }

    /// Commits, then passes the write turn on.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        match self.txn.take() {
            Some(txn) => txn.commit().await,
            None => Ok(()),
        }
    }

    /// Rolls back, then passes the write turn on.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        match self.txn.take() {
            Some(txn) => txn.rollback().await,
            None => Ok(()),
        }
    }

    fn txn(&self) -> &DatabaseTransaction {
        // Only `commit`, `rollback` and `drop` take it, and they consume `self`.
        self.txn
            .as_ref()
            .expect("a write transaction is open until it ends")
    }
}

/// A transaction dropped open (an early return on an error) only has its rollback started by
/// SeaORM, without waiting for it: the turn would pass on while SQLite's write lock may still
/// be held, and the next writer would sleep in the busy handler. So the rollback is run here,
/// in a task, and the turn passes on when it is done.
impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let (Some(txn), Some(turn)) = (self.txn.take(), self.turn.take()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = txn.rollback().await;
                    drop(turn);
                });
            }
            // No runtime left (the process is ending): SeaORM's own drop rolls back.
            Err(_) => drop((txn, turn)),
        }
    }
}

/// Waits for the write turn on the pool's database, as long as a checkout may wait.
async fn take_turn(pool: &sqlx::SqlitePool) -> Result<OwnedMutexGuard<()>, DbErr> {
    let queue = queue_of(pool.connect_options().get_filename());
    let patience = pool.options().get_acquire_timeout();
    tokio::time::timeout(patience, queue.lock_owned())
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))
}

impl std::fmt::Debug for WriteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTransaction")
            .field("queued", &self.turn.is_some())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        self.txn()
    }
}

// Statements run on the wrapped transaction, so `&WriteTransaction` goes wherever a
// connection does (`.one(&txn)`, `row.insert(&txn)`, `impl ConnectionTrait` arguments).
#[async_trait::async_trait]
impl ConnectionTrait for WriteTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn().get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn().execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn().execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn().query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn().query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn().support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.txn().is_mock_connection()
    }
}
