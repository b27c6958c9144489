//! Everything a migration file needs, with one short constructor per [`Operation`].
//!
//! Migration files start with `use strata::prelude::*;` and read like this:
//!
//! ```
//! use strata::prelude::*;
//!
//! pub fn migration() -> Migration {
//!     Migration::new("1a2b3c4d5e6f", &[], "todo alarms", "2026-11-27T21:00:00Z").operations(vec![
//!         add_column(
//!             "todo",
//!             Column::new("alarm_time", ColumnType::TimestampTz).nullable(),
//!         ),
//!         create_index("todo", "ix_todo_alarm_time", &["alarm_time"]),
//!     ])
//! }
//! # assert_eq!(migration().operations.len(), 2);
//! ```
//!
//! Foreign keys, indexes, uniques, checks and per-dialect SQL are built with the inherent
//! methods [`ForeignKey::new`] (with `.on_delete(..)` / `.on_update(..)`), [`Index::new`]
//! (with `.unique()`), [`Unique::new`], [`Check::new`] and [`DialectSql::new`].

pub use crate::Dialect;
pub use crate::migration::Migration;
pub use crate::narrowing_guard::truncate_to_fit;
pub use crate::ops::{DataFn, DataFuture, DataStep, DialectSql, Operation};
pub use crate::runner::DataContext;
pub use crate::schema::{
    Check, Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Index, Schema, Table,
    Unique,
};

fn strings(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| (*c).to_string()).collect()
}

/// Creates `table` with its columns, keys, constraints, indexes and comment.
pub fn create_table(table: Table) -> Operation {
    Operation::CreateTable(table)
}

pub fn drop_table(name: impl Into<String>) -> Operation {
    Operation::DropTable { name: name.into() }
}

pub fn rename_table(from: impl Into<String>, to: impl Into<String>) -> Operation {
    Operation::RenameTable {
        from: from.into(),
        to: to.into(),
    }
}

pub fn add_column(table: impl Into<String>, column: Column) -> Operation {
    Operation::AddColumn {
        table: table.into(),
        column,
    }
}

pub fn drop_column(table: impl Into<String>, name: impl Into<String>) -> Operation {
    Operation::DropColumn {
        table: table.into(),
        name: name.into(),
    }
}

/// Changes the column named `to.name` into `to` (type, nullability, default, comment).
pub fn alter_column(table: impl Into<String>, to: Column) -> Operation {
    Operation::AlterColumn {
        table: table.into(),
        to,
    }
}

pub fn rename_column(
    table: impl Into<String>,
    from: impl Into<String>,
    to: impl Into<String>,
) -> Operation {
    Operation::RenameColumn {
        table: table.into(),
        from: from.into(),
        to: to.into(),
    }
}

pub fn create_index(
    table: impl Into<String>,
    name: impl Into<String>,
    columns: &[&str],
) -> Operation {
    Operation::CreateIndex {
        table: table.into(),
        index: Index {
            name: name.into(),
            columns: strings(columns),
            unique: false,
        },
    }
}

pub fn create_unique_index(
    table: impl Into<String>,
    name: impl Into<String>,
    columns: &[&str],
) -> Operation {
    Operation::CreateIndex {
        table: table.into(),
        index: Index {
            name: name.into(),
            columns: strings(columns),
            unique: true,
        },
    }
}

pub fn drop_index(table: impl Into<String>, name: impl Into<String>) -> Operation {
    Operation::DropIndex {
        table: table.into(),
        name: name.into(),
    }
}

pub fn add_foreign_key(table: impl Into<String>, foreign_key: ForeignKey) -> Operation {
    Operation::AddForeignKey {
        table: table.into(),
        foreign_key,
    }
}

pub fn drop_foreign_key(table: impl Into<String>, name: impl Into<String>) -> Operation {
    Operation::DropForeignKey {
        table: table.into(),
        name: name.into(),
    }
}

pub fn add_unique(
    table: impl Into<String>,
    name: impl Into<String>,
    columns: &[&str],
) -> Operation {
    Operation::AddUnique {
        table: table.into(),
        unique: Unique {
            name: name.into(),
            columns: strings(columns),
        },
    }
}

pub fn drop_unique(table: impl Into<String>, name: impl Into<String>) -> Operation {
    Operation::DropUnique {
        table: table.into(),
        name: name.into(),
    }
}

/// Adds a CHECK constraint; `expr` is SQL valid on both dialects.
pub fn add_check(
    table: impl Into<String>,
    name: impl Into<String>,
    expr: impl Into<String>,
) -> Operation {
    Operation::AddCheck {
        table: table.into(),
        check: Check {
            name: name.into(),
            expr: expr.into(),
        },
    }
}

pub fn drop_check(table: impl Into<String>, name: impl Into<String>) -> Operation {
    Operation::DropCheck {
        table: table.into(),
        name: name.into(),
    }
}

/// Renames an index of `table`.
pub fn rename_index(
    table: impl Into<String>,
    from: impl Into<String>,
    to: impl Into<String>,
) -> Operation {
    Operation::RenameIndex {
        table: table.into(),
        from: from.into(),
        to: to.into(),
    }
}

/// Renames a unique, check or foreign key constraint of `table`.
pub fn rename_constraint(
    table: impl Into<String>,
    from: impl Into<String>,
    to: impl Into<String>,
) -> Operation {
    Operation::RenameConstraint {
        table: table.into(),
        from: from.into(),
        to: to.into(),
    }
}

/// Sets the table's comment, or removes it with `None`.
pub fn set_table_comment(table: impl Into<String>, comment: Option<&str>) -> Operation {
    Operation::SetTableComment {
        table: table.into(),
        comment: comment.map(str::to_string),
    }
}

/// Hand-written SQL without an inverse: the migration cannot be downgraded past it unless it
/// has a hand-written downgrade.
pub fn raw_sql(up: DialectSql) -> Operation {
    Operation::RawSql { up, down: None }
}

/// Hand-written SQL and the SQL that undoes it.
pub fn raw_sql_reversible(up: DialectSql, down: DialectSql) -> Operation {
    Operation::RawSql {
        up,
        down: Some(down),
    }
}

/// A Rust data step, run inside the migration's transaction.
pub fn run_data(step: DataStep) -> Operation {
    Operation::Data(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up<'a>(_: &'a mut DataContext<'_>) -> DataFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    #[test]
    fn constructors_build_their_operation() {
        let cols = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let table = Table::new("t").with_column(Column::new("a", ColumnType::Text));
        let column = Column::new("a", ColumnType::Integer).nullable();
        let fk = ForeignKey::new("fk", &["a"], "u", &["id"]);
        let cases = vec![
            (create_table(table.clone()), Operation::CreateTable(table)),
            (drop_table("t"), Operation::DropTable { name: "t".into() }),
            (
                rename_table("a", "b"),
                Operation::RenameTable {
                    from: "a".into(),
                    to: "b".into(),
                },
            ),
            (
                add_column("t", column.clone()),
                Operation::AddColumn {
                    table: "t".into(),
                    column: column.clone(),
                },
            ),
            (
                drop_column("t", "a"),
                Operation::DropColumn {
                    table: "t".into(),
                    name: "a".into(),
                },
            ),
            (
                alter_column("t", column.clone()),
                Operation::AlterColumn {
                    table: "t".into(),
                    to: column,
                },
            ),
            (
                rename_column("t", "a", "b"),
                Operation::RenameColumn {
                    table: "t".into(),
                    from: "a".into(),
                    to: "b".into(),
                },
            ),
            (
                create_index("t", "ix", &["a", "b"]),
                Operation::CreateIndex {
                    table: "t".into(),
                    index: Index {
                        name: "ix".into(),
                        columns: cols(&["a", "b"]),
                        unique: false,
                    },
                },
            ),
            (
                create_unique_index("t", "ix", &["a"]),
                Operation::CreateIndex {
                    table: "t".into(),
                    index: Index::new("ix", &["a"]).unique(),
                },
            ),
            (
                drop_index("t", "ix"),
                Operation::DropIndex {
                    table: "t".into(),
                    name: "ix".into(),
                },
            ),
            (
                add_foreign_key("t", fk.clone()),
                Operation::AddForeignKey {
                    table: "t".into(),
                    foreign_key: fk,
                },
            ),
            (
                drop_foreign_key("t", "fk"),
                Operation::DropForeignKey {
                    table: "t".into(),
                    name: "fk".into(),
                },
            ),
            (
                add_unique("t", "uq", &["a"]),
                Operation::AddUnique {
                    table: "t".into(),
                    unique: Unique {
                        name: "uq".into(),
                        columns: cols(&["a"]),
                    },
                },
            ),
            (
                drop_unique("t", "uq"),
                Operation::DropUnique {
                    table: "t".into(),
                    name: "uq".into(),
                },
            ),
            (
                add_check("t", "ck", "a > 0"),
                Operation::AddCheck {
                    table: "t".into(),
                    check: Check {
                        name: "ck".into(),
                        expr: "a > 0".into(),
                    },
                },
            ),
            (
                drop_check("t", "ck"),
                Operation::DropCheck {
                    table: "t".into(),
                    name: "ck".into(),
                },
            ),
            (
                rename_index("t", "ix_a", "ix_b"),
                Operation::RenameIndex {
                    table: "t".into(),
                    from: "ix_a".into(),
                    to: "ix_b".into(),
                },
            ),
            (
                rename_constraint("t", "ck_a", "ck_b"),
                Operation::RenameConstraint {
                    table: "t".into(),
                    from: "ck_a".into(),
                    to: "ck_b".into(),
                },
            ),
            (
                set_table_comment("t", Some("c")),
                Operation::SetTableComment {
                    table: "t".into(),
                    comment: Some("c".into()),
                },
            ),
            (
                set_table_comment("t", None),
                Operation::SetTableComment {
                    table: "t".into(),
                    comment: None,
                },
            ),
            (
                raw_sql(DialectSql::both("SELECT 1")),
                Operation::RawSql {
                    up: DialectSql::both("SELECT 1"),
                    down: None,
                },
            ),
            (
                raw_sql_reversible(DialectSql::both("a"), DialectSql::new("b", "c")),
                Operation::RawSql {
                    up: DialectSql::both("a"),
                    down: Some(DialectSql {
                        postgres: "b".into(),
                        sqlite: "c".into(),
                    }),
                },
            ),
            (
                run_data(DataStep::new("fill", up)),
                Operation::Data(DataStep::new("fill", up)),
            ),
        ];
        for (built, expected) in cases {
            assert_eq!(built, expected);
        }
    }

    #[test]
    fn builders_fill_every_field() {
        let fk = ForeignKey::new("fk_todo_owner", &["owner_id"], "users", &["id"])
            .on_delete(ForeignKeyAction::Cascade)
            .on_update(ForeignKeyAction::SetNull);
        assert_eq!(
            fk,
            ForeignKey {
                name: "fk_todo_owner".into(),
                columns: vec!["owner_id".into()],
                ref_table: "users".into(),
                ref_columns: vec!["id".into()],
                on_delete: ForeignKeyAction::Cascade,
                on_update: ForeignKeyAction::SetNull,
            }
        );
        let plain = ForeignKey::new("fk", &[], "u", &[]);
        assert_eq!(plain.on_delete, ForeignKeyAction::NoAction);
        assert_eq!(plain.on_update, ForeignKeyAction::NoAction);

        let index = Index::new("ix_todo_a_b", &["a", "b"]);
        assert!(!index.unique);
        assert_eq!(index.columns, vec!["a".to_string(), "b".to_string()]);
        assert!(index.unique().unique);
        assert_eq!(Unique::new("uq", &["a"]).columns, vec!["a".to_string()]);
        assert_eq!(Check::new("ck", "a > 0").expr, "a > 0");
        let sql = DialectSql::new("SELECT 1", "SELECT 2");
        assert_eq!(
            (sql.postgres.as_str(), sql.sqlite.as_str()),
            ("SELECT 1", "SELECT 2")
        );
    }
}
