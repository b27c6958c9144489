//! Applying migrations to a live database: version table, checksums, locking, transactions.

use crate::Dialect;

/// A connection to the database being migrated.
pub enum Conn {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// What a Rust data step can do: run SQL inside the migration's transaction.
pub struct DataContext<'c> {
    pub(crate) conn: &'c mut Conn,
}

impl DataContext<'_> {
    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, String> {
        use sqlx::Executor;
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.conn {
            Conn::Postgres(c) => c.execute(sql).await.map(|r| r.rows_affected()),
            Conn::Sqlite(c) => c.execute(sql).await.map(|r| r.rows_affected()),
        }
        .map_err(|e| e.to_string())
    }
}
