//! Whether the session to PostgreSQL is encrypted, as the server sees it (`pg_stat_ssl`), for
//! `app database ping` and `doctor`: a URL that merely allows TLS (`sslmode=prefer`, the
//! default) says nothing about whether the server offered it.

use sea_orm::{ConnectionTrait, Statement};

use super::Database;

const SQL: &str = "SELECT CASE WHEN ssl THEN version || ' (' || cipher || ')' ELSE 'none' END \
                   FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

impl Database {
    /// `TLSv1.3 (TLS_AES_256_GCM_SHA384)`, or `none`; `None` on SQLite. Through a pooler it
    /// is the pooler's own session to the server. A failed look-up is `unknown`: the ping it
    /// belongs to has already shown the server answers.
    pub(super) async fn encryption(&self) -> Option<String> {
        if self.backend != crate::config::Backend::Postgresql {
            return None;
        }
        let statement = Statement::from_string(self.conn.get_database_backend(), SQL);
        let found = match self.conn.query_one_raw(statement).await {
            Ok(Some(row)) => row.try_get_by_index::<String>(0).ok(),
            _ => None,
        };
        Some(found.unwrap_or_else(|| "unknown".to_string()))
    }
}
