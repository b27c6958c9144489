//! Errors of the connection layer, each one line a person can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },

    #[error(
        "SQLite directory {} does not exist; create it or point DATABASE_URL at another path",
        .0.display()
    )]
    MissingDirectory(PathBuf),

    #[error(
        "{} is not a SQLite database; point DATABASE_URL at a database file or a new path",
        .0.display()
    )]
    NotADatabase(PathBuf),

    #[error(
        "pool timeout: no connection free after {:.1}s (pool size {size}, overflow {overflow}, {in_use} in use); \
         raise DATABASE_POOL_SIZE, DATABASE_MAX_POOL_OVERFLOW or DATABASE_POOL_TIMEOUT, or find what holds connections",
        waited.as_secs_f64()
    )]
    PoolTimeout {
        waited: Duration,
        size: u32,
        overflow: u32,
        in_use: u32,
    },

    /// The connection broke under a statement: the server ended it (restart, failover,
    /// `pg_terminate_backend`, an idle timeout) or the network dropped it. See
    /// [`is_connection_lost`].
    #[error("the connection to the database was lost: {}", describe(.0))]
    ConnectionLost(#[source] sea_orm::DbErr),

    #[error("database error: {}", describe(.0))]
    Query(#[source] sea_orm::DbErr),

    #[error("unexpected answer from the database: {0}")]
    Unexpected(String),
}

impl DbError {
    pub(crate) fn connect(url: &str, err: sqlx::Error) -> Self {
        DbError::Connect {
            url: url.to_string(),
            reason: sqlx_reason(&err),
        }
    }

    pub(crate) fn sqlite_open(path: Option<&Path>, err: sqlx::Error) -> Self {
        let reason = sqlx_reason(&err);
        match path {
            Some(path) if reason.contains("not a database") || reason.contains("malformed") => {
                DbError::NotADatabase(path.to_path_buf())
            }
            Some(path) => DbError::Connect {
                url: format!("sqlite://{}", path.display()),
                reason,
            },
            None => DbError::Connect {
                url: "sqlite::memory:".into(),
                reason,
            },
        }
    }

    pub(crate) fn from_db_err(err: sea_orm::DbErr) -> Self {
        if is_connection_lost(&err) {
            DbError::ConnectionLost(err)
        } else {
            DbError::Query(err)
        }
    }

    /// True when the connection broke under a statement ([`is_connection_lost`]).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, DbError::ConnectionLost(_))
    }

    /// True when the database could not be reached or opened at all, or the connection broke.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Connect { .. }
                | DbError::PoolTimeout { .. }
                | DbError::ConnectionLost(_)
                | DbError::MissingDirectory(_)
                | DbError::NotADatabase(_)
        ) || matches!(
            self,
            DbError::Query(sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_))
        )
    }
}

/// SQLSTATEs with which PostgreSQL ends a session: `57P01` admin_shutdown (fast or smart
/// shutdown, `pg_terminate_backend`), `57P02` crash_shutdown, `57P03` cannot_connect_now
/// (starting up or shutting down), `57P05` idle_session_timeout, and class `08`
/// connection_exception.
const SESSION_ENDED: &[&str] = &["57P01", "57P02", "57P03", "57P05"];

/// Whether `err` means the connection is gone rather than that the statement was wrong: an I/O
/// error on the socket (reset, broken pipe, end of stream) or PostgreSQL ending the session
/// (see [`SESSION_ENDED`]). A pool timeout or a closed pool is not a lost connection.
///
/// What such an error says about the work: a statement that failed this way did not finish,
/// and an open transaction on that connection is rolled back by the server; a write that was
/// not in a transaction, or a COMMIT, may or may not have taken effect.
pub fn is_connection_lost(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(err))
        | DbErr::Exec(RuntimeErr::SqlxError(err))
        | DbErr::Query(RuntimeErr::SqlxError(err)) => sqlx_connection_lost(err),
        _ => false,
    }
}

/// `err` on one line as a person should read it: for an error the server returned, its
/// message, code, detail and hint (see [`strata::server_error`]), not sqlx's text, which ends
/// PostgreSQL's errors with a line number of PostgreSQL's own source.
pub fn describe(err: &sea_orm::DbErr) -> String {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(err))
        | DbErr::Exec(RuntimeErr::SqlxError(err))
        | DbErr::Query(RuntimeErr::SqlxError(err)) => strata::server_error::describe(err),
        other => other.to_string(),
    }
}

/// [`is_connection_lost`] for a sqlx error.
pub fn sqlx_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| SESSION_ENDED.contains(&&*code) || code.starts_with("08")),
        _ => false,
    }
}

/// Why a connection could not be made, on one line.
fn sqlx_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        other => strata::server_error::describe(other),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::*;

    /// A server error with a SQLSTATE, as the PostgreSQL driver reports one.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn query(err: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
    }

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    #[test]
    fn lost_connections_are_told_from_failed_statements() {
        let lost = [
            query(io(std::io::ErrorKind::ConnectionReset)),
            DbErr::Exec(RuntimeErr::SqlxError(Arc::new(io(
                std::io::ErrorKind::UnexpectedEof,
            )))),
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(io(
                std::io::ErrorKind::BrokenPipe,
            )))),
            query(sqlx::Error::database(ServerError("57P01"))),
            query(sqlx::Error::database(ServerError("57P02"))),
            query(sqlx::Error::database(ServerError("57P03"))),
            query(sqlx::Error::database(ServerError("57P05"))),
            query(sqlx::Error::database(ServerError("08006"))),
        ];
        for err in lost {
            assert!(is_connection_lost(&err), "{err:?}");
            let err = DbError::from_db_err(err);
            assert!(err.is_connection_lost() && err.is_unavailable(), "{err:?}");
        }
        let not_lost = [
            query(sqlx::Error::database(ServerError("23505"))),
            query(sqlx::Error::database(ServerError("40001"))),
            query(sqlx::Error::database(ServerError("57014"))),
            query(sqlx::Error::RowNotFound),
            query(sqlx::Error::Protocol("odd".into())),
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            DbErr::Custom("no".into()),
        ];
        for err in not_lost {
            assert!(!is_connection_lost(&err), "{err:?}");
            assert!(!DbError::from_db_err(err).is_connection_lost());
        }
    }
}
