//! SQLite columns the model cannot hold, refused by name rather than read as plain columns.
//!
//! `PRAGMA table_info` leaves generated columns out, and an `AUTOINCREMENT` key reads as a
//! plain integer key: read that way, the table would compare equal to the migrations and lose
//! the column or the behaviour in the next rebuild.

use sqlx::SqliteConnection;

use super::{IntrospectError, Kind, tokenize};

const GENERATED: &str =
    "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden IN (2, 3) ORDER BY cid";

/// An error naming the first generated or `AUTOINCREMENT` column of `table` (whose `CREATE
/// TABLE` text is `sql`), if there is one.
pub(super) async fn refuse_sqlite(
    conn: &mut SqliteConnection,
    table: &str,
    sql: &str,
) -> Result<(), IntrospectError> {
    let generated: Vec<String> = sqlx::query_scalar(GENERATED)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
    if let Some(column) = generated.first() {
        return Err(IntrospectError::Unsupported {
            table: table.to_string(),
            detail: format!(
                "column {table}.{column} is a generated column, which the engine cannot represent"
            ),
        });
    }
    let tokens = tokenize(sql);
    if let Some(at) = tokens
        .iter()
        .position(|t| t.kind == Kind::Word && t.value.eq_ignore_ascii_case("AUTOINCREMENT"))
    {
        // The column is the first word of its definition: after the last `(` or `,` before.
        let column = tokens[..at]
            .iter()
            .rposition(|t| matches!(t.kind, Kind::Open | Kind::Comma))
            .and_then(|start| tokens.get(start + 1))
            .and_then(|t| t.ident())
            .unwrap_or("?");
        return Err(IntrospectError::Unsupported {
            table: table.to_string(),
            detail: format!(
                "column {table}.{column} is AUTOINCREMENT (an identity column), which the engine cannot represent"
            ),
        });
    }
    Ok(())
}
