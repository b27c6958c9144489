//! No silent data loss when PostgreSQL narrows a column.
//!
//! The renderer changes a column's type with `ALTER .. TYPE <to> USING "c"::<to>`, and an
//! explicit cast cuts a `varchar`, rounds a `numeric` or drops a time of day without an
//! error. Before such a change ([`crate::lint::postgres_cast_loses`]) the renderer puts this
//! guard: a statement that fails, naming the table, the column, how many rows and the keys of
//! the first of them, when a stored value would not survive the cast unchanged. It runs in
//! the migration's transaction, so the migration rolls back and nothing is cut. To narrow
//! anyway, the migration says so: [`truncate_to_fit`] before the change casts the values that
//! do not fit (or the migration changes them itself first).
//!
//! SQLite needs no guard: it ignores declared lengths and keeps every value as stored.

use crate::render::{column_type_sql, quote_ident};
use crate::schema::{Column, ColumnType, Table};
use crate::{Dialect, lint};

/// How many keys of offending rows the error lists.
const KEYS_SHOWN: usize = 5;

/// The guard for changing `from` into `to` in `table` on PostgreSQL, if the cast can lose data.
pub(crate) fn postgres_guard(table: &Table, from: &Column, to: &Column) -> Option<String> {
    if from.ty.widens_to(&to.ty) || !lint::postgres_cast_loses(&from.ty, &to.ty) {
        return None;
    }
    // A timestamptz read as timestamp and back gives the same instant in the session's
    // zone: the loss (the zone) cannot be seen row by row; the lint warns of it instead.
    if (&from.ty, &to.ty) == (&ColumnType::TimestampTz, &ColumnType::Timestamp) {
        return None;
    }
    let pg = Dialect::Postgres;
    let column = quote_ident(&from.name);
    let (from_ty, to_ty) = (column_type_sql(&from.ty, pg), column_type_sql(&to.ty, pg));
    let condition = format!(
        "{column} IS NOT NULL AND CAST(CAST({column} AS {to_ty}) AS {from_ty}) IS DISTINCT FROM {column}"
    );
    let (key_label, key_sql) = match table.primary_key.as_slice() {
        [] => ("ctid".to_string(), "CAST(ctid AS text)".to_string()),
        [one] => (one.clone(), format!("CAST({} AS text)", quote_ident(one))),
        many => (
            format!("({})", many.join(", ")),
            format!(
                "'(' || concat_ws(', ', {}) || ')'",
                many.iter()
                    .map(|c| format!("CAST({} AS text)", quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    let name = quote_ident(&table.name);
    // The message is a literal inside the block: quotes doubled, `%` (RAISE's placeholder)
    // doubled.
    let literal = |text: &str| text.replace('\'', "''").replace('%', "%%");
    let message = format!(
        "cannot change column {}.{} from {from_ty} to {to_ty}: % row(s) hold values the change \
         would cut or round ({}: %); change those values first, or put truncate_to_fit before \
         this change to cut them",
        literal(&table.name),
        literal(&from.name),
        literal(&key_label)
    );
    Some(format!(
        "DO $strata$ DECLARE found bigint; keys text; BEGIN \
         SELECT count(*) INTO found FROM {name} WHERE {condition}; \
         IF found > 0 THEN \
         SELECT string_agg(k, ', ') INTO keys FROM (SELECT {key_sql} AS k FROM {name} \
         WHERE {condition} ORDER BY 1 LIMIT {KEYS_SHOWN}) AS offending; \
         RAISE EXCEPTION '{message}', found, keys USING ERRCODE = 'data_exception'; \
         END IF; END $strata$"
    ))
}

/// The explicit opt-in to lose data when narrowing: put it right before the `alter_column`
/// that narrows `table.to` (`to` as the column will be). On PostgreSQL it casts every value
/// that does not fit to the new type (cutting text, rounding numbers) so the guard then finds
/// nothing; on SQLite, which keeps values as stored, it does nothing. Undoing it does nothing:
/// what was cut stays cut.
///
/// ```
/// use strata::prelude::*;
/// let item = Column::new("item", ColumnType::String(Some(100)));
/// let ops = vec![truncate_to_fit("todo", &item), alter_column("todo", item)];
/// # assert_eq!(ops.len(), 2);
/// ```
pub fn truncate_to_fit(table: impl Into<String>, to: &Column) -> crate::Operation {
    let table = quote_ident(&table.into());
    let column = quote_ident(&to.name);
    let ty = column_type_sql(&to.ty, Dialect::Postgres);
    crate::Operation::RawSql {
        up: crate::DialectSql {
            postgres: format!(
                "UPDATE {table} SET {column} = CAST({column} AS {ty}) \
                 WHERE {column} IS DISTINCT FROM CAST({column} AS {ty})"
            ),
            sqlite: String::new(),
        },
        down: Some(crate::DialectSql::both("")),
    }
}
