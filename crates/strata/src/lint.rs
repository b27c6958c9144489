//! Warnings about operations that lose data, lock tables, may fail or break running code.
//!
//! [`lint`] reads each operation against the schema before it, as the renderer does, and
//! moves the schema forward by applying it. Operations on a table created earlier in the
//! same list draw no warning, as such a table has no rows and no code uses it yet; a raw SQL
//! or data step ends that, as it may fill the table.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::render::needs_sqlite_rebuild;
use crate::schema::ColumnType;
use crate::{Dialect, Operation, Schema};

/// One warning about one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// [`Operation::describe`] of the operation.
    pub operation: String,
    pub risk: Risk,
    /// Lowercase, without a final period; names the table and column.
    pub message: String,
}

/// What could go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Risk {
    /// Rows or values are lost.
    DataLoss,
    /// Readers or writers wait while the operation runs.
    Locking,
    /// The operation fails on some data.
    MayFail,
    /// Code running against the old schema breaks.
    Compatibility,
    /// The lint cannot read it (raw SQL): review it by hand.
    Unchecked,
}

/// What the lint must know of the migration beyond its operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LintContext {
    /// The migration runs outside a transaction and builds and drops its indexes with
    /// `CONCURRENTLY` (PostgreSQL): index changes then block no writes.
    pub concurrent_index_builds: bool,
}

/// Warnings for `ops` applied in order starting from `before` (apply each op to a clone to
/// move on).
pub fn lint(ops: &[Operation], before: &Schema, dialect: Dialect) -> Vec<Warning> {
    lint_with(ops, before, dialect, LintContext::default())
}

/// [`lint`] for a migration run as `context` says.
pub fn lint_with(
    ops: &[Operation],
    before: &Schema,
    dialect: Dialect,
    context: LintContext,
) -> Vec<Warning> {
    let mut schema = before.clone();
    // Tables created by `ops` so far: empty and unknown to running code.
    let mut fresh: BTreeSet<String> = BTreeSet::new();
    let mut warnings = Vec::new();
    for op in ops {
        let operation = op.describe();
        let mut warn = |risk: Risk, message: String| {
            warnings.push(Warning {
                operation: operation.clone(),
                risk,
                message,
            })
        };
        if !op.table().is_some_and(|t| fresh.contains(t)) {
            for (risk, message) in op_warnings(op, &schema, dialect) {
                warn(risk, message);
            }
            for (risk, message) in crate::lint_postgres::warnings(op, &schema, dialect, context) {
                warn(risk, message);
            }
        }
        if let Err(err) = op.apply(&mut schema) {
            warn(Risk::MayFail, format!("does not fit the schema: {err}"));
            continue;
        }
        match op {
            Operation::CreateTable(table) => {
                fresh.insert(table.name.clone());
            }
            Operation::DropTable { name } => {
                fresh.remove(name);
            }
            Operation::RenameTable { from, to } if fresh.remove(from) => {
                fresh.insert(to.clone());
            }
            Operation::RawSql { .. } | Operation::Data(_) => fresh.clear(),
            _ => {}
        }
    }
    warnings
}

/// A warning and the dialect it concerns: `None` when both dialects give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialectWarning {
    pub dialect: Option<Dialect>,
    #[serde(flatten)]
    pub warning: Warning,
}

/// [`lint_with`] for both dialects, as a migration written once runs on either: the warnings
/// both give once, then those only PostgreSQL gives, then those only SQLite gives.
pub fn lint_both(ops: &[Operation], before: &Schema, context: LintContext) -> Vec<DialectWarning> {
    let pg = lint_with(ops, before, Dialect::Postgres, context);
    let lite = lint_with(ops, before, Dialect::Sqlite, context);
    let label = |dialect: Option<Dialect>| {
        move |warning: &Warning| DialectWarning {
            dialect,
            warning: warning.clone(),
        }
    };
    let mut out: Vec<DialectWarning> = pg
        .iter()
        .filter(|w| lite.contains(w))
        .map(label(None))
        .collect();
    out.extend(
        pg.iter()
            .filter(|w| !lite.contains(w))
            .map(label(Some(Dialect::Postgres))),
    );
    out.extend(
        lite.iter()
            .filter(|w| !pg.contains(w))
            .map(label(Some(Dialect::Sqlite))),
    );
    out
}

/// The warnings for one operation read against `before`.
fn op_warnings(op: &Operation, before: &Schema, dialect: Dialect) -> Vec<(Risk, String)> {
    let pg = dialect == Dialect::Postgres;
    let exists = |table: &str| before.table(table).is_some();
    let mut out = Vec::new();
    match op {
        Operation::DropTable { name } => {
            out.push((
                Risk::DataLoss,
                format!("drops table {name} and every row in it"),
            ));
        }
        Operation::DropColumn { table, name } => out.push((
            Risk::DataLoss,
            format!("drops column {table}.{name} and every value in it"),
        )),
        Operation::AddColumn { table, column } if !column.nullable && column.default.is_none() => {
            out.push((
                Risk::MayFail,
                format!(
                    "adds column {table}.{} NOT NULL without a default: fails on a table \
                     that has rows; give it a default or add it nullable, backfill, then set \
                     NOT NULL",
                    column.name
                ),
            ));
        }
        Operation::AlterColumn { table, to } => {
            if let Some(from) = before.table(table).and_then(|t| t.column(&to.name)) {
                let column = format!("{table}.{}", to.name);
                if from.nullable && !to.nullable && to.default.is_none() {
                    out.push((
                        Risk::MayFail,
                        format!(
                            "sets column {column} NOT NULL without a default: fails if a row \
                             holds NULL; backfill it first or give it a default"
                        ),
                    ));
                }
                if !from.ty.widens_to(&to.ty) {
                    out.push(narrowing(&column, &from.ty, &to.ty, dialect));
                }
            }
        }
        Operation::AddUnique { table, unique } if pg && exists(table) => out.push((
            Risk::Locking,
            format!(
                "builds the index of unique constraint {} without CONCURRENTLY: blocks writes \
                 to {table} while it builds; for a large table create a unique index in a \
                 non-atomic migration (`.atomic(false)`, built CONCURRENTLY), then add the \
                 constraint with ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX",
                unique.name
            ),
        )),
        Operation::AddForeignKey { table, foreign_key } if pg && exists(table) => out.push((
            Risk::Locking,
            format!(
                "validates every row of {table} for foreign key {} while holding a lock that \
                 blocks writes to {table} and {}; for a large table add it NOT VALID and run \
                 VALIDATE CONSTRAINT in a later step",
                foreign_key.name, foreign_key.ref_table
            ),
        )),
        Operation::AddCheck { table, check } if pg && exists(table) => out.push((
            Risk::Locking,
            format!(
                "validates every row of {table} for check {} (added NOT VALID, then \
                 VALIDATE CONSTRAINT); inside the migration's transaction the lock of the add, \
                 which blocks reads and writes of {table}, is held until commit",
                check.name
            ),
        )),
        Operation::RenameTable { from, to } => out.push((
            Risk::Compatibility,
            format!("renames table {from} to {to}: running code that uses the old name breaks"),
        )),
        Operation::RenameColumn { table, from, to } => out.push((
            Risk::Compatibility,
            format!(
                "renames column {table}.{from} to {to}: running code that uses the old name \
                 breaks"
            ),
        )),
        _ => {}
    }
    if dialect == Dialect::Sqlite
        && needs_sqlite_rebuild(op, before)
        && let Some(table) = op.table().filter(|t| exists(t))
    {
        out.push((
            Risk::Locking,
            format!(
                "rebuilds table {table}: copies every row while holding the database write lock"
            ),
        ));
    }
    out
}

/// The warning for a type change that does not widen.
fn narrowing(column: &str, from: &ColumnType, to: &ColumnType, dialect: Dialect) -> (Risk, String) {
    let head = format!("column {column} narrows type from {from} to {to}");
    match dialect {
        Dialect::Sqlite => (
            Risk::MayFail,
            format!(
                "{head}: SQLite keeps the values that do not fit as they are, so reading them \
                 as {to} may fail"
            ),
        ),
        Dialect::Postgres if postgres_cast_loses(from, to) => (
            Risk::DataLoss,
            format!("{head}: values that do not fit are rounded or cut"),
        ),
        Dialect::Postgres => (
            Risk::MayFail,
            format!("{head}: fails if a stored value does not convert"),
        ),
    }
}

/// True when PostgreSQL's `USING "c"::<to>` cast succeeds but changes values: casts to a
/// bounded varchar cut, casts to integers and smaller numeric scales round, casts to floats
/// drop digits, and casts of timestamps drop the zone, the date or the time.
pub(crate) fn postgres_cast_loses(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    let integer = |t: &ColumnType| matches!(t, SmallInteger | Integer | BigInteger);
    match (from, to) {
        (_, String(Some(_))) => true,
        (Real | Double | Decimal(..), t) if integer(t) => true,
        (Decimal(_, s1), Decimal(_, s2)) => s2 < s1,
        (Double | Decimal(..) | Integer | BigInteger, Real) => true,
        (Decimal(..) | BigInteger, Double) => true,
        (TimestampTz, Timestamp) => true,
        (Timestamp | TimestampTz, Date | Time) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DialectSql;
    use crate::schema::{Check, Column, DefaultValue, ForeignKey, Index, Table, Unique};

    fn schema() -> Schema {
        Schema::new()
            .with_table(
                Table::new("author")
                    .with_column(Column::new("id", ColumnType::Integer))
                    .with_primary_key(["id"]),
            )
            .with_table(
                Table::new("book")
                    .with_column(Column::new("id", ColumnType::Integer))
                    .with_column(Column::new("author_id", ColumnType::Integer).nullable())
                    .with_column(Column::new("title", ColumnType::String(Some(100))))
                    .with_column(Column::new("note", ColumnType::Text).nullable())
                    .with_primary_key(["id"]),
            )
    }

    fn column(name: &str) -> Column {
        schema()
            .table("book")
            .unwrap()
            .column(name)
            .unwrap()
            .clone()
    }

    /// (risk, message) of every warning for `ops` on `dialect`.
    fn warnings(ops: &[Operation], dialect: Dialect) -> Vec<(Risk, String)> {
        lint(ops, &schema(), dialect)
            .into_iter()
            .map(|w| (w.risk, w.message))
            .collect()
    }

    fn on_both(ops: &[Operation]) -> [Vec<(Risk, String)>; 2] {
        [
            warnings(ops, Dialect::Postgres),
            warnings(ops, Dialect::Sqlite),
        ]
    }

    fn risks(ops: &[Operation], dialect: Dialect) -> Vec<Risk> {
        warnings(ops, dialect).into_iter().map(|(r, _)| r).collect()
    }

    fn fk() -> ForeignKey {
        ForeignKey {
            name: "book_author_fk".into(),
            columns: vec!["author_id".into()],
            ref_table: "author".into(),
            ref_columns: vec!["id".into()],
            on_delete: Default::default(),
            on_update: Default::default(),
        }
    }

    #[test]
    fn warning_carries_the_operation() {
        let op = Operation::DropTable {
            name: "book".into(),
        };
        assert_eq!(
            lint(std::slice::from_ref(&op), &schema(), Dialect::Postgres),
            [Warning {
                operation: "- drop table book".into(),
                risk: Risk::DataLoss,
                message: "drops table book and every row in it".into(),
            }]
        );
        let json = serde_json::to_value(&lint(&[op], &schema(), Dialect::Sqlite)[0]).unwrap();
        assert_eq!(json["risk"], "DataLoss");
    }

    #[test]
    fn drop_table_and_column_lose_data() {
        for w in on_both(&[Operation::DropTable {
            name: "book".into(),
        }]) {
            assert_eq!(
                w,
                [(
                    Risk::DataLoss,
                    "drops table book and every row in it".into()
                )]
            );
        }
        let op = Operation::DropColumn {
            table: "book".into(),
            name: "note".into(),
        };
        assert_eq!(
            warnings(std::slice::from_ref(&op), Dialect::Postgres),
            [(
                Risk::DataLoss,
                "drops column book.note and every value in it".into()
            )]
        );
        assert_eq!(
            risks(&[op], Dialect::Sqlite),
            [Risk::DataLoss, Risk::Locking]
        );
    }

    #[test]
    fn add_column_not_null_without_default_may_fail() {
        let op = Operation::AddColumn {
            table: "book".into(),
            column: Column::new("isbn", ColumnType::Text),
        };
        let w = warnings(std::slice::from_ref(&op), Dialect::Postgres);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, Risk::MayFail);
        assert!(
            w[0].1
                .starts_with("adds column book.isbn NOT NULL without a default: ")
        );
        assert!(w[0].1.contains(
            "fails on a table that has rows; give it a default or add it nullable, backfill, \
             then set NOT NULL"
        ));
        assert_eq!(
            risks(&[op], Dialect::Sqlite),
            [Risk::MayFail, Risk::Locking]
        );

        for column in [
            Column::new("isbn", ColumnType::Text).nullable(),
            Column::new("isbn", ColumnType::Text).default(DefaultValue::Str(String::new())),
        ] {
            let op = Operation::AddColumn {
                table: "book".into(),
                column,
            };
            assert_eq!(on_both(&[op]), [vec![], vec![]]);
        }
    }

    #[test]
    fn alter_column_to_not_null_without_default_may_fail() {
        let mut to = column("note");
        to.nullable = false;
        let op = Operation::AlterColumn {
            table: "book".into(),
            to: to.clone(),
        };
        assert_eq!(
            warnings(std::slice::from_ref(&op), Dialect::Postgres),
            [(
                Risk::MayFail,
                "sets column book.note NOT NULL without a default: fails if a row holds NULL; \
                 backfill it first or give it a default"
                    .into()
            )]
        );
        assert_eq!(
            risks(&[op], Dialect::Sqlite),
            [Risk::MayFail, Risk::Locking]
        );
        // With a default, the renderer fills the NULLs.
        let op = Operation::AlterColumn {
            table: "book".into(),
            to: to.default(DefaultValue::Str("-".into())),
        };
        assert!(warnings(&[op], Dialect::Postgres).is_empty());
    }

    #[test]
    fn alter_column_narrowing_type() {
        let alter = |ty: ColumnType| Operation::AlterColumn {
            table: "book".into(),
            to: Column::new("author_id", ty).nullable(),
        };
        // Widening loses nothing, but PostgreSQL rewrites the table for it.
        assert_eq!(
            risks(&[alter(ColumnType::BigInteger)], Dialect::Postgres),
            [Risk::Locking]
        );
        assert_eq!(
            warnings(&[alter(ColumnType::SmallInteger)], Dialect::Postgres)[0],
            (
                Risk::MayFail,
                "column book.author_id narrows type from Integer to SmallInteger: fails if a \
                 stored value does not convert"
                    .into()
            )
        );
        assert_eq!(
            warnings(&[alter(ColumnType::Real)], Dialect::Postgres)[0],
            (
                Risk::DataLoss,
                "column book.author_id narrows type from Integer to Real: values that do not \
                 fit are rounded or cut"
                    .into()
            )
        );
        let shorter = Operation::AlterColumn {
            table: "book".into(),
            to: Column::new("title", ColumnType::String(Some(10))),
        };
        assert_eq!(
            risks(std::slice::from_ref(&shorter), Dialect::Postgres),
            [Risk::DataLoss, Risk::Locking]
        );
        let lite = warnings(&[shorter], Dialect::Sqlite);
        assert_eq!(lite[0].0, Risk::MayFail);
        assert!(lite[0].1.starts_with(
            "column book.title narrows type from String(100) to String(10): SQLite keeps"
        ));
        // SQLite ignores lengths: no rebuild.
        assert_eq!(lite.len(), 1);
    }

    #[test]
    fn create_index_locks_on_postgres() {
        let op = Operation::CreateIndex {
            table: "book".into(),
            index: Index {
                name: "book_title_idx".into(),
                columns: vec!["title".into()],
                unique: false,
            },
        };
        assert_eq!(
            on_both(&[op]),
            [
                vec![(
                    Risk::Locking,
                    "builds index book_title_idx without CONCURRENTLY: blocks writes to book \
                     while it builds; autogenerate puts index changes on existing tables in a \
                     non-atomic migration, which builds and drops them CONCURRENTLY"
                        .into()
                )],
                vec![]
            ]
        );
    }

    #[test]
    fn foreign_keys_checks_and_uniques_lock_on_postgres_and_rebuild_on_sqlite() {
        let ops = [
            Operation::AddForeignKey {
                table: "book".into(),
                foreign_key: fk(),
            },
            Operation::AddCheck {
                table: "book".into(),
                check: Check {
                    name: "book_title_check".into(),
                    expr: "title <> ''".into(),
                },
            },
            Operation::AddUnique {
                table: "book".into(),
                unique: Unique {
                    name: "book_title_key".into(),
                    columns: vec!["title".into()],
                },
            },
        ];
        for op in &ops {
            let [pg, lite] = on_both(std::slice::from_ref(op));
            assert_eq!(pg.len(), 1, "{op}");
            assert_eq!(pg[0].0, Risk::Locking);
            assert_eq!(
                lite,
                [(
                    Risk::Locking,
                    "rebuilds table book: copies every row while holding the database write \
                     lock"
                        .into()
                )]
            );
        }
        let [pg, _] = on_both(&ops[..1]);
        assert!(pg[0].1.starts_with(
            "validates every row of book for foreign key book_author_fk while holding a lock"
        ));
        assert!(pg[0].1.contains("NOT VALID"));
    }

    #[test]
    fn renames_break_running_code() {
        let ops = [
            Operation::RenameColumn {
                table: "book".into(),
                from: "note".into(),
                to: "remark".into(),
            },
            Operation::RenameTable {
                from: "book".into(),
                to: "volume".into(),
            },
        ];
        let expected = vec![
            (
                Risk::Compatibility,
                "renames column book.note to remark: running code that uses the old name breaks"
                    .to_string(),
            ),
            (
                Risk::Compatibility,
                "renames table book to volume: running code that uses the old name breaks"
                    .to_string(),
            ),
        ];
        assert_eq!(on_both(&ops), [expected.clone(), expected]);
    }

    #[test]
    fn safe_operations_draw_nothing() {
        let ops = [
            Operation::AddColumn {
                table: "book".into(),
                column: Column::new("isbn", ColumnType::Text).nullable(),
            },
            Operation::AlterColumn {
                table: "book".into(),
                to: column("note").comment("free text"),
            },
            Operation::SetTableComment {
                table: "book".into(),
                comment: Some("books".into()),
            },
            Operation::DropIndex {
                table: "book".into(),
                name: "nope".into(),
            },
        ];
        let [pg, lite] = on_both(&ops[..3]);
        assert!(pg.is_empty() && lite.is_empty(), "{pg:?} {lite:?}");
        // An operation that does not fit is reported.
        assert_eq!(
            warnings(&ops[3..], Dialect::Postgres),
            [(
                Risk::MayFail,
                "does not fit the schema: index nope does not exist on table book".into()
            )]
        );
    }

    #[test]
    fn later_operations_read_the_schema_moved_forward() {
        // The column is NOT NULL after the first step, so the second one only narrows.
        let mut not_null = column("note");
        not_null.nullable = false;
        not_null.default = Some(DefaultValue::Str(String::new()));
        let ops = [
            Operation::AlterColumn {
                table: "book".into(),
                to: not_null.clone(),
            },
            Operation::RenameTable {
                from: "book".into(),
                to: "volume".into(),
            },
            Operation::AlterColumn {
                table: "volume".into(),
                to: Column {
                    ty: ColumnType::String(Some(5)),
                    ..not_null
                },
            },
        ];
        assert_eq!(
            risks(&ops, Dialect::Postgres),
            [Risk::Compatibility, Risk::DataLoss, Risk::Locking]
        );
    }

    #[test]
    fn tables_created_in_the_same_list_draw_nothing_until_a_raw_step() {
        let table = Table::new("tag")
            .with_column(Column::new("id", ColumnType::Integer))
            .with_column(Column::new("book_id", ColumnType::Integer).nullable());
        let index = Operation::CreateIndex {
            table: "label".into(),
            index: Index {
                name: "label_book_idx".into(),
                columns: vec!["book_id".into()],
                unique: false,
            },
        };
        let ops = vec![
            Operation::CreateTable(table),
            Operation::RenameTable {
                from: "tag".into(),
                to: "label".into(),
            },
            Operation::AddColumn {
                table: "label".into(),
                column: Column::new("name", ColumnType::Text),
            },
            Operation::AddForeignKey {
                table: "label".into(),
                foreign_key: ForeignKey {
                    name: "label_book_fk".into(),
                    columns: vec!["book_id".into()],
                    ref_table: "book".into(),
                    ref_columns: vec!["id".into()],
                    on_delete: Default::default(),
                    on_update: Default::default(),
                },
            },
            index.clone(),
        ];
        assert_eq!(on_both(&ops), [vec![], vec![]]);
        let mut ops = ops;
        ops.pop();
        ops.push(Operation::RawSql {
            up: DialectSql::both("INSERT INTO label (id, name) VALUES (1, 'x')"),
            down: None,
        });
        ops.push(index);
        assert_eq!(
            risks(&ops, Dialect::Postgres),
            [Risk::Unchecked, Risk::Locking]
        );
    }

    #[test]
    fn both_dialects_label_what_differs() {
        let ops = [
            Operation::DropColumn {
                table: "book".into(),
                name: "note".into(),
            },
            Operation::AlterColumn {
                table: "book".into(),
                to: Column::new("author_id", ColumnType::BigInteger).nullable(),
            },
        ];
        let found: Vec<(Option<Dialect>, Risk)> =
            lint_both(&ops, &schema(), LintContext::default())
                .into_iter()
                .map(|w| (w.dialect, w.warning.risk))
                .collect();
        assert_eq!(
            found,
            [
                (None, Risk::DataLoss),
                (Some(Dialect::Postgres), Risk::Locking),
                (Some(Dialect::Sqlite), Risk::Locking),
                (Some(Dialect::Sqlite), Risk::Locking),
            ]
        );
        let json =
            serde_json::to_value(&lint_both(&ops, &schema(), LintContext::default())[1]).unwrap();
        assert_eq!(json["dialect"], "postgres");
        assert_eq!(json["risk"], "Locking");
    }
}
