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

    #[error("database error: {0}")]
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
        DbError::Query(err)
    }

    /// True when the database could not be reached or opened at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Connect { .. }
                | DbError::PoolTimeout { .. }
                | DbError::MissingDirectory(_)
                | DbError::NotADatabase(_)
        ) || matches!(
            self,
            DbError::Query(sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_))
        )
    }
}

/// sqlx's message without the "error returned from database:" prefix noise, on one line.
fn sqlx_reason(err: &sqlx::Error) -> String {
    let text = match err {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    };
    text.lines().collect::<Vec<_>>().join(" ")
}
