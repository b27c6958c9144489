//! The connection services use, [`DbConn`]: SeaORM's connection, and behind a transaction
//! pooler (`pgbouncer=true` in `DATABASE_URL`) only statements such a pooler can pass on.
//!
//! PgBouncer in `pool_mode = transaction` (1.18 keeps no prepared statements) gives a client a
//! server connection for one transaction, and outside a transaction for one Sync of the
//! protocol. sqlx prepares each statement with one Sync (Parse, Describe) and runs it with
//! another (Bind, Execute): outside a transaction the two may land on different server
//! connections, and the statement is missing on the second. sqlx also names its statements
//! (`sqlx_s_1`, `sqlx_s_2`, ... per client connection) even with its statement cache off, and
//! never closes them then, so a server connection keeps the names of whichever client used it
//! last: the next client's `sqlx_s_1` "already exists".
//!
//! So in pooler mode:
//! - every statement runs inside a transaction, where the server connection is the client's
//!   from BEGIN to COMMIT; a statement SeaORM would send on its own gets a transaction of its
//!   own (BEGIN, the statement, COMMIT);
//! - every transaction starts with `DEALLOCATE ALL` (simple protocol, inside the transaction,
//!   so on the server connection the transaction holds): whatever names an earlier client left
//!   there are gone before this one's statements are named;
//! - the statement cache is off (`statement_cache_capacity(0)`, set where the URL is parsed),
//!   as a cached name may be missing on the next server connection.
//!
//! The cost is two round trips per transaction (`DEALLOCATE ALL`, and the statement's own
//! Parse that the cache would have saved), and three more per statement run on its own (BEGIN,
//! DEALLOCATE ALL, COMMIT). Without `pgbouncer=true` nothing changes: [`DbConn`] hands every
//! call to SeaORM's connection.

use std::future::Future;
use std::pin::Pin;

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionTrait,
};

/// Sent first in every transaction in pooler mode: drops the prepared statements an earlier
/// client of the server connection left behind.
const CLEAN_SLATE: &str = "DEALLOCATE ALL";

/// SeaORM's connection, with the pooler rules of this module when `pooler` is set (PostgreSQL
/// behind `pgbouncer=true`). Used like a [`DatabaseConnection`]: `.one(db)`, `db.begin()`.
#[derive(Debug, Clone)]
pub struct DbConn {
    inner: DatabaseConnection,
    pooler: bool,
}

impl DbConn {
    pub(super) fn new(inner: DatabaseConnection, pooler: bool) -> Self {
        DbConn { inner, pooler }
    }

    /// SeaORM's connection underneath, for what needs its own type (the SQLite pool of the
    /// write queue). Statements sent on it directly skip the pooler rules.
    pub fn orm(&self) -> &DatabaseConnection {
        &self.inner
    }

    /// Whether the pooler rules apply (`pgbouncer=true`).
    pub fn pooler(&self) -> bool {
        self.pooler
    }

    /// Starts the transaction on a clean server connection in pooler mode.
    async fn opened(
        &self,
        started: Result<DatabaseTransaction, DbErr>,
    ) -> Result<DatabaseTransaction, DbErr> {
        let txn = started?;
        if self.pooler {
            txn.execute_unprepared(CLEAN_SLATE).await?;
        }
        Ok(txn)
    }

    /// Runs one statement in a transaction of its own (pooler mode).
    async fn alone<T, F>(&self, run: F) -> Result<T, DbErr>
    where
        F: for<'t> FnOnce(
                &'t DatabaseTransaction,
            )
                -> Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 't>>
            + Send,
        T: Send,
    {
        let txn = self.begin().await?;
        match run(&txn).await {
            Ok(value) => {
                txn.commit().await?;
                Ok(value)
            }
            Err(err) => {
                // The statement's error is the one to report; a failed rollback only means the
                // connection is gone, which the pool finds out by itself.
                let _ = txn.rollback().await;
                Err(err)
            }
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for DbConn {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        if !self.pooler {
            return self.inner.execute_raw(stmt).await;
        }
        self.alone(|txn| Box::pin(txn.execute_raw(stmt))).await
    }

    /// The simple query protocol: one message, one Sync, so a pooler passes it on whole.
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        if !self.pooler {
            return self.inner.query_one_raw(stmt).await;
        }
        self.alone(|txn| Box::pin(txn.query_one_raw(stmt))).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if !self.pooler {
            return self.inner.query_all_raw(stmt).await;
        }
        self.alone(|txn| Box::pin(txn.query_all_raw(stmt))).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.inner.is_mock_connection()
    }
}

#[async_trait::async_trait]
impl TransactionTrait for DbConn {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.opened(self.inner.begin().await).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.opened(
            self.inner
                .begin_with_config(isolation_level, access_mode)
                .await,
        )
        .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.opened(self.inner.begin_with_options(options).await)
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction_with_config(callback, None, None).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        match callback(&txn).await {
            Ok(value) => {
                txn.commit().await.map_err(TransactionError::Connection)?;
                Ok(value)
            }
            Err(err) => {
                let _ = txn.rollback().await;
                Err(TransactionError::Transaction(err))
            }
        }
    }
}
