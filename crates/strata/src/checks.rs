//! CHECK constraints: building the `column IN (...)` of an enum, telling which columns an
//! expression mentions, and comparing checks with a live database by expression, not by name.
//!
//! PostgreSQL rewrites a CHECK when it stores it (`importance IN ('a', 'b')` reads back as
//! `((importance)::text = ANY ((ARRAY['a'::character varying, ...])::text[]))`), so the text
//! the migrations hold cannot be compared with what introspection reads. Rather than imitate
//! the rewrite, [`live_drift`] asks PostgreSQL for it: the expected checks are created on
//! temporary tables of the same column types inside a transaction that is rolled back, and
//! `pg_get_constraintdef` gives their canonical text. SQLite keeps a CHECK's text as written,
//! so there the texts compare as they are.

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection};

use crate::Dialect;
use crate::autodetect::{self, Diff, DiffOptions, NoRenames};
use crate::introspect::{IntrospectError, check_body};
use crate::render::{column_type_sql, quote_ident};
use crate::runner::Conn;
use crate::schema::{Check, Schema, Table};

impl Check {
    /// `column IN ('a', 'b', ...)`: the expression of a check keeping a column to the values
    /// of an enum, in the order given, each quoted with `'` doubled.
    pub fn one_of_expr(column: &str, values: &[String]) -> String {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect();
        format!("{column} IN ({})", values.join(", "))
    }
}

/// True when the SQL expression `expr` names `column` as an identifier (bare or
/// double-quoted, any case for a bare word); text inside string literals does not count.
pub fn mentions_column(expr: &str, column: &str) -> bool {
    let mut chars = expr.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '\'' => {
                // A literal: skip to its end ('' is a quote inside it).
                while let Some((_, c)) = chars.next() {
                    if c == '\'' {
                        if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' => {
                let mut name = String::new();
                while let Some((_, c)) = chars.next() {
                    if c == '"' {
                        if chars.peek().is_some_and(|(_, n)| *n == '"') {
                            chars.next();
                            name.push('"');
                        } else {
                            break;
                        }
                    } else {
                        name.push(c);
                    }
                }
                if name == column {
                    return true;
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                if expr[start..end].eq_ignore_ascii_case(column) {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// The differences between the schema the migrations expect and the live database, CHECK
/// expressions included on both dialects (see the module docs). Comments are left out on
/// SQLite, which keeps none.
pub async fn live_drift(
    conn: &mut Conn,
    expected: &Schema,
    live: &Schema,
) -> Result<Diff, IntrospectError> {
    let (expected, live) = match conn {
        // SQLite ignores declared lengths, so a length change is not rebuilt and keeps the old
        // declaration: text types compare as one there.
        Conn::Sqlite(_) => (
            crate::sqlite_rebuilds::text_types_as_one(&expected.without_comments()),
            crate::sqlite_rebuilds::text_types_as_one(live),
        ),
        Conn::Postgres(pg) => canonical_postgres_checks(pg, expected, live).await?,
    };
    let options = DiffOptions {
        compare_check_expressions: true,
    };
    Ok(autodetect::diff_with(
        &expected,
        &live,
        &mut NoRenames,
        options,
    ))
}

/// How many times an expression is rewritten at most: PostgreSQL's printed form of a check
/// does not always parse back to itself (a restored dump prints `ARRAY[('a'::varchar)::text]`
/// where the original printed `(ARRAY['a'::varchar])::text[]`), but rewriting the printed form
/// again settles, in one more round in the cases seen.
const REWRITES: usize = 4;

/// `expected` and `live` with each check's expression as PostgreSQL prints it once rewriting
/// it changes nothing more, so a check compares equal however it reached the database (created
/// by a migration or restored from a dump). Each table's checks are rewritten on a temporary
/// table of its columns, inside a transaction that is rolled back.
///
/// A check PostgreSQL refuses on the temporary table (one calling a function the database
/// lacks), or every check when no temporary table can be made (a read-only session), cannot be
/// rewritten: the expected check then takes the live expression of the check of the same name,
/// so it compares by name alone rather than showing as drift that is not there.
pub async fn canonical_postgres_checks(
    conn: &mut PgConnection,
    expected: &Schema,
    live: &Schema,
) -> Result<(Schema, Schema), IntrospectError> {
    let mut canonical_expected = expected.clone();
    let mut canonical_live = live.clone();
    let mut unreadable: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tx = conn.begin().await?;
    let mut temp_tables = 0;
    for (schema, out, is_expected) in [
        (expected, &mut canonical_expected, true),
        (live, &mut canonical_live, false),
    ] {
        for table in schema.tables.values().filter(|t| !t.checks.is_empty()) {
            temp_tables += 1;
            let temp = quote_ident(&format!("_strata_check_{temp_tables}"));
            let rewritten = rewrite_checks(&mut tx, &temp, table).await?;
            for (name, expr) in rewritten {
                match expr {
                    Some(expr) => {
                        if let Some(c) =
                            (out.tables.get_mut(&table.name)).and_then(|t| t.checks.get_mut(&name))
                        {
                            c.expr = expr;
                        }
                    }
                    None if is_expected => {
                        unreadable.insert((table.name.clone(), name));
                    }
                    None => {}
                }
            }
        }
    }
    tx.rollback().await?;
    for (table, name) in unreadable {
        let live_expr = (canonical_live.tables.get(&table))
            .and_then(|t| t.checks.get(&name))
            .map(|c| c.expr.clone());
        if let (Some(expr), Some(c)) = (
            live_expr,
            (canonical_expected.tables.get_mut(&table)).and_then(|t| t.checks.get_mut(&name)),
        ) {
            c.expr = expr;
        }
    }
    Ok((canonical_expected, canonical_live))
}

/// Each check of `table` as PostgreSQL prints it once rewriting settles, by name; `None` for
/// one that could not be rewritten. Runs inside `tx`, on a temporary table named `temp`.
async fn rewrite_checks(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    temp: &str,
    table: &Table,
) -> Result<Vec<(String, Option<String>)>, IntrospectError> {
    let columns: Vec<String> = (table.columns.iter())
        .map(|c| {
            format!(
                "{} {}",
                quote_ident(&c.name),
                column_type_sql(&c.ty, Dialect::Postgres)
            )
        })
        .collect();
    let create = format!("CREATE TEMPORARY TABLE {temp} ({})", columns.join(", "));
    // A read-only session (a standby, `default_transaction_read_only`) makes no temporary
    // table: then no check of the table is rewritten.
    let mut made = tx.begin().await?;
    if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(create))
        .persistent(false)
        .execute(&mut *made)
        .await
    {
        tracing::info!(table = %table.name, error = %err, "no temporary table; checks compared by name");
        made.rollback().await?;
        return Ok((table.checks.keys())
            .map(|name| (name.clone(), None))
            .collect());
    }
    made.commit().await?;
    let mut out = Vec::new();
    for check in table.checks.values() {
        let mut expr = check.expr.clone();
        let mut settled = None;
        for _ in 0..REWRITES {
            match rewrite_once(tx, temp, &check.name, &expr).await? {
                Ok(next) if next == expr => {
                    settled = Some(next);
                    break;
                }
                Ok(next) => expr = next,
                Err(err) => {
                    tracing::info!(table = %table.name, check = %check.name, error = %err, "check expression not rewritten; compared by name");
                    break;
                }
            }
        }
        out.push((check.name.clone(), settled));
    }
    Ok(out)
}

/// `expr` as PostgreSQL prints it after adding it as check `name` of `temp` (in a savepoint
/// that is rolled back); the inner error when PostgreSQL refuses the expression.
async fn rewrite_once(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    temp: &str,
    name: &str,
    expr: &str,
) -> Result<Result<String, sqlx::Error>, IntrospectError> {
    let mut savepoint = tx.begin().await?;
    let add = format!(
        "ALTER TABLE {temp} ADD CONSTRAINT {} CHECK ({expr})",
        quote_ident(name)
    );
    let def: Result<String, sqlx::Error> = async {
        sqlx::query(sqlx::AssertSqlSafe(add))
            .persistent(false)
            .execute(&mut *savepoint)
            .await?;
        sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1::text::regclass AND conname = $2",
        )
        .bind(temp)
        .bind(name)
        .persistent(false)
        .fetch_one(&mut *savepoint)
        .await
    }
    .await;
    savepoint.rollback().await?;
    Ok(def.map(|def| check_body(&def)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_quotes_each_value_in_order() {
        let values = ["none".to_string(), "it's".to_string()];
        assert_eq!(
            Check::one_of_expr("importance", &values),
            "importance IN ('none', 'it''s')"
        );
    }

    #[test]
    fn mentions_identifiers_not_literals() {
        assert!(mentions_column("importance IN ('a')", "importance"));
        assert!(mentions_column("(\"rank\" >= 0)", "rank"));
        assert!(mentions_column("RANK >= 0", "rank"));
        assert!(!mentions_column("title <> 'rank'", "rank"));
        assert!(!mentions_column("ranking >= 0", "rank"));
        assert!(!mentions_column("x_rank >= 0", "rank"));
        assert!(mentions_column("a + \"we\"\"ird\" > 0", "we\"ird"));
        assert!(!mentions_column("'it''s rank' = b", "rank"));
    }
}
