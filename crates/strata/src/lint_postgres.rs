//! Lint findings about what PostgreSQL locks, and about SQL the lint cannot read.
//!
//! PostgreSQL takes an `ACCESS EXCLUSIVE` lock (no reads, no writes) for most `ALTER TABLE`s;
//! that is harmless when the statement is instant and an outage when it rewrites a large
//! table. What rewrites (PostgreSQL 11 and later):
//!
//! * a type change, unless the new type is binary-compatible with the old: `varchar(n)` to
//!   `varchar(m)` with `m >= n`, to unbounded `varchar` or to `text`, `text` to `varchar`, and
//!   `numeric(p, s)` to `numeric(q, s)` with `q >= p` do not rewrite; `integer` to `bigint`,
//!   `timestamp` to `timestamptz` (unless the session's TimeZone is UTC, PostgreSQL 12+) and
//!   every other change do, widening or not;
//! * `ADD COLUMN` with a volatile default (`random()`, `gen_random_uuid()`,
//!   `clock_timestamp()`, ...), which is evaluated per row; a constant or stable default
//!   (`now()`, `CURRENT_TIMESTAMP`) is stored once in the catalog and does not rewrite.
//!
//! `CREATE INDEX` blocks writes and `DROP INDEX` blocks reads and writes of the table unless
//! they run `CONCURRENTLY` (outside a transaction, see [`LintContext`]).

use crate::lint::{LintContext, Risk};
use crate::schema::ColumnType;
use crate::{Dialect, Operation, Schema};

/// Functions PostgreSQL marks volatile that a column default plausibly calls.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "setseed",
];

/// The findings for `op`, read against `before`, that [`crate::lint`] adds to its own.
pub(crate) fn warnings(
    op: &Operation,
    before: &Schema,
    dialect: Dialect,
    context: LintContext,
) -> Vec<(Risk, String)> {
    let mut out = Vec::new();
    if let Operation::RawSql { up, .. } = op {
        let sql = match dialect {
            Dialect::Postgres => &up.postgres,
            Dialect::Sqlite => &up.sqlite,
        };
        if !sql.trim().is_empty() {
            out.push((
                Risk::Unchecked,
                "cannot check raw SQL; review it by hand".to_string(),
            ));
        }
        return out;
    }
    if dialect != Dialect::Postgres {
        return out;
    }
    let Some(table) = op.table().and_then(|t| before.table(t)) else {
        return out;
    };
    let t = &table.name;
    const CONCURRENT_ADVICE: &str = "autogenerate puts index changes on existing tables in a \
        non-atomic migration, which builds and drops them CONCURRENTLY";
    match op {
        Operation::AlterColumn { to, .. } => {
            if let Some(from) = table.column(&to.name)
                && rewrites(&from.ty, &to.ty)
            {
                let utc =
                    if (&from.ty, &to.ty) == (&ColumnType::Timestamp, &ColumnType::TimestampTz) {
                        " (it skips the rewrite only when the session's TimeZone is UTC)"
                    } else {
                        ""
                    };
                out.push((
                    Risk::Locking,
                    format!(
                        "changes the type of column {t}.{} from {} to {}: PostgreSQL rewrites \
                         the whole table{utc} holding an ACCESS EXCLUSIVE lock, so nothing \
                         reads or writes {t} until it ends; for a large table add a new column, \
                         backfill it in batches and switch over",
                        to.name, from.ty, to.ty
                    ),
                ));
            }
        }
        Operation::AddColumn { column, .. } => {
            if let Some(crate::DefaultValue::Expr(expr)) = &column.default
                && let Some(function) = volatile_call(expr)
            {
                out.push((
                    Risk::Locking,
                    format!(
                        "adds column {t}.{} with the volatile default {expr} ({function}() \
                         gives each row its own value): PostgreSQL rewrites the whole table \
                         holding an ACCESS EXCLUSIVE lock; add the column without a default, \
                         set the default, then backfill the rows in batches",
                        column.name
                    ),
                ));
            }
        }
        Operation::CreateIndex { index, .. } if !context.concurrent_index_builds => out.push((
            Risk::Locking,
            format!(
                "builds index {} without CONCURRENTLY: blocks writes to {t} while it builds; \
                 {CONCURRENT_ADVICE}",
                index.name
            ),
        )),
        Operation::DropIndex { name, .. }
            if !context.concurrent_index_builds && table.indexes.contains_key(name) =>
        {
            out.push((
                Risk::Locking,
                format!(
                    "drops index {name} without CONCURRENTLY: takes an ACCESS EXCLUSIVE lock \
                     on {t}, so reads and writes of {t} wait for the queries using it; \
                     {CONCURRENT_ADVICE}"
                ),
            ))
        }
        _ => {}
    }
    out
}

/// True when PostgreSQL rewrites the table to change a column from `from` to `to`.
pub(crate) fn rewrites(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    match (from, to) {
        (a, b) if a == b => false,
        (String(Some(a)), String(Some(b))) => b < a,
        (String(_), String(None) | Text) => false,
        (Text, String(None)) => false,
        (Decimal(p1, s1), Decimal(p2, s2)) => !(s1 == s2 && p2 >= p1),
        _ => true,
    }
}

/// The volatile function a default expression calls, if any.
fn volatile_call(expr: &str) -> Option<&'static str> {
    // A function named inside a string literal is not called.
    let lower: String = expr
        .to_lowercase()
        .split('\'')
        .step_by(2)
        .collect::<Vec<_>>()
        .join("''");
    VOLATILE_FUNCTIONS.iter().copied().find(|f| {
        lower.match_indices(f).any(|(at, _)| {
            let before_ok = lower[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let after_ok = lower[at + f.len()..].trim_start().starts_with('(');
            before_ok && after_ok
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DialectSql;
    use crate::lint::{LintContext, Risk, lint, lint_with};
    use crate::schema::{Column, DefaultValue, Index, Table};

    fn schema() -> Schema {
        Schema::new().with_table(
            Table::new("event")
                .with_column(Column::new("id", ColumnType::Integer))
                .with_column(Column::new("name", ColumnType::String(Some(100))))
                .with_column(Column::new("at", ColumnType::Timestamp))
                .with_column(Column::new("price", ColumnType::Decimal(10, 2)))
                .with_primary_key(["id"])
                .with_index(Index {
                    name: "event_at_idx".into(),
                    columns: vec!["at".into()],
                    unique: false,
                }),
        )
    }

    fn alter(name: &str, ty: ColumnType) -> Operation {
        let mut to = schema()
            .table("event")
            .unwrap()
            .column(name)
            .unwrap()
            .clone();
        to.ty = ty;
        Operation::AlterColumn {
            table: "event".into(),
            to,
        }
    }

    fn locking(ops: &[Operation], dialect: Dialect, context: LintContext) -> Vec<String> {
        lint_with(ops, &schema(), dialect, context)
            .into_iter()
            .filter(|w| w.risk == Risk::Locking)
            .map(|w| w.message)
            .collect()
    }

    #[test]
    fn type_changes_that_rewrite_even_when_they_widen() {
        let pg = |op: Operation| locking(&[op], Dialect::Postgres, LintContext::default());
        let to_bigint = pg(alter("id", ColumnType::BigInteger));
        assert_eq!(to_bigint.len(), 1);
        assert!(
            to_bigint[0].starts_with(
                "changes the type of column event.id from Integer to BigInteger: PostgreSQL \
                 rewrites the whole table holding an ACCESS EXCLUSIVE lock"
            ),
            "{to_bigint:?}"
        );
        let to_tz = pg(alter("at", ColumnType::TimestampTz));
        assert!(to_tz[0].contains("only when the session's TimeZone is UTC"));
        assert_eq!(pg(alter("price", ColumnType::Decimal(12, 3))).len(), 1);
        // Binary-compatible changes are catalog-only.
        for ty in [
            ColumnType::String(Some(200)),
            ColumnType::String(None),
            ColumnType::Text,
        ] {
            assert!(pg(alter("name", ty.clone())).is_empty(), "{ty}");
        }
        assert!(pg(alter("price", ColumnType::Decimal(12, 2))).is_empty());
        // SQLite has no such lock (its rebuild warning is the base lint's).
        assert!(
            locking(
                &[alter("name", ColumnType::Text)],
                Dialect::Sqlite,
                LintContext::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn rewrite_rules() {
        use ColumnType::*;
        assert!(rewrites(&Integer, &BigInteger));
        assert!(rewrites(&SmallInteger, &Integer));
        assert!(rewrites(&Timestamp, &TimestampTz));
        assert!(rewrites(&String(Some(100)), &String(Some(50))));
        assert!(rewrites(&Text, &String(Some(50))));
        assert!(rewrites(&Decimal(10, 2), &Decimal(10, 3)));
        assert!(!rewrites(&String(Some(100)), &String(Some(100))));
        assert!(!rewrites(&String(Some(100)), &Text));
        assert!(!rewrites(&Text, &String(None)));
    }

    #[test]
    fn volatile_defaults_on_add_column() {
        let add = |expr: &str| Operation::AddColumn {
            table: "event".into(),
            column: Column::new("x", ColumnType::Uuid).default(DefaultValue::Expr(expr.into())),
        };
        let pg = |op: Operation| locking(&[op], Dialect::Postgres, LintContext::default());
        for expr in ["gen_random_uuid()", "random ()", "(CLOCK_TIMESTAMP())"] {
            let found = pg(add(expr));
            assert_eq!(found.len(), 1, "{expr}");
            assert!(
                found[0].starts_with(&format!(
                    "adds column event.x with the volatile default {expr}"
                )),
                "{found:?}"
            );
        }
        // Stable or constant: stored once, no rewrite.
        for expr in ["now()", "CURRENT_TIMESTAMP", "'random()'", "my_random()"] {
            assert!(pg(add(expr)).is_empty(), "{expr}");
        }
    }

    #[test]
    fn index_changes_without_concurrently() {
        let create = Operation::CreateIndex {
            table: "event".into(),
            index: Index {
                name: "event_name_idx".into(),
                columns: vec!["name".into()],
                unique: false,
            },
        };
        let drop = Operation::DropIndex {
            table: "event".into(),
            name: "event_at_idx".into(),
        };
        let found = locking(
            &[create.clone(), drop.clone()],
            Dialect::Postgres,
            LintContext::default(),
        );
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with("builds index event_name_idx without CONCURRENTLY"));
        assert!(found[1].starts_with(
            "drops index event_at_idx without CONCURRENTLY: takes an ACCESS EXCLUSIVE lock on \
             event"
        ));
        for message in &found {
            assert!(!message.contains("RawSql"), "{message}");
            assert!(message.ends_with(
                "autogenerate puts index changes on existing tables in a non-atomic migration, \
                 which builds and drops them CONCURRENTLY"
            ));
        }
        let concurrent = LintContext {
            concurrent_index_builds: true,
        };
        assert!(
            locking(
                &[create.clone(), drop.clone()],
                Dialect::Postgres,
                concurrent
            )
            .is_empty()
        );
        assert!(locking(&[create, drop], Dialect::Sqlite, LintContext::default()).is_empty());
    }

    #[test]
    fn raw_sql_is_reviewed_by_hand() {
        let raw = Operation::RawSql {
            up: DialectSql {
                postgres: "UPDATE event SET name = upper(name)".into(),
                sqlite: " ".into(),
            },
            down: None,
        };
        let pg = lint(std::slice::from_ref(&raw), &schema(), Dialect::Postgres);
        assert_eq!(pg.len(), 1);
        assert_eq!(pg[0].risk, Risk::Unchecked);
        assert_eq!(pg[0].message, "cannot check raw SQL; review it by hand");
        // Nothing runs on SQLite: nothing to review.
        assert!(lint(&[raw], &schema(), Dialect::Sqlite).is_empty());
    }
}
