//! Columns and comments of the tables both schemas have (under the same name, or after a
//! rename), table by table in name order: the table comment, then added columns (in `to`'s
//! column order), altered columns (a different type, nullability, default or comment), then
//! dropped columns (in `from`'s order). Column order alone is not a change.
//!
//! No operation changes a primary key, so a changed primary key is left alone with a warning.

use super::warn;
use crate::ops::Operation;
use crate::schema::Schema;

pub(super) fn changes(current: &Schema, to: &Schema, warnings: &mut Vec<String>) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (table, new) in &to.tables {
        let Some(old) = current.tables.get(table) else {
            continue;
        };
        if old.comment != new.comment {
            tracing::info!(table = %table, "detected changed table comment");
            ops.push(Operation::SetTableComment {
                table: table.clone(),
                comment: new.comment.clone(),
            });
        }
        for column in &new.columns {
            if old.column(&column.name).is_none() {
                tracing::info!(table = %table, column = %column.name, "detected added column");
                ops.push(Operation::AddColumn {
                    table: table.clone(),
                    column: column.clone(),
                });
            }
        }
        for column in &new.columns {
            match old.column(&column.name) {
                // Defaults compare as stored (`true` on an integer column is `1`).
                Some(before) if !crate::defaults::same_column(before, column) => {
                    tracing::info!(table = %table, column = %column.name, "detected altered column");
                    ops.push(Operation::AlterColumn {
                        table: table.clone(),
                        to: column.clone(),
                    });
                }
                _ => {}
            }
        }
        for column in &old.columns {
            if new.column(&column.name).is_none() {
                tracing::info!(table = %table, column = %column.name, "detected dropped column");
                ops.push(Operation::DropColumn {
                    table: table.clone(),
                    name: column.name.clone(),
                });
            }
        }
        if old.primary_key != new.primary_key {
            tracing::info!(table = %table, "detected changed primary key");
            warn(
                warnings,
                format!(
                    "primary key of table {table} changes from ({}) to ({}); no operation \
                     changes a primary key, so write this change by hand",
                    old.primary_key.join(", "),
                    new.primary_key.join(", ")
                ),
            );
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::schema::{Column, ColumnType, DefaultValue, Table};

    fn todo_with(change: impl FnOnce(&mut Table)) -> Schema {
        let mut schema = base();
        change(schema.tables.get_mut("todo").unwrap());
        schema
    }

    #[test]
    fn added_columns_come_in_table_order() {
        let to = todo_with(|t| {
            t.columns
                .push(Column::new("zone", ColumnType::Text).nullable());
            t.columns
                .push(Column::new("alarm", ColumnType::TimestampTz).nullable());
        });
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "+ add column todo.zone Text",
                "+ add column todo.alarm TimestampTz",
            ]
        );
        assert!(diff.warnings.is_empty());
    }

    #[test]
    fn dropped_columns_are_dropped() {
        let to = todo_with(|t| t.columns.retain(|c| c.name != "done"));
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(lines(&diff), vec!["- drop column todo.done"]);
    }

    #[test]
    fn a_dropped_column_loses_its_keys_first() {
        let to = todo_with(|t| {
            t.columns.retain(|c| c.name != "owner_id");
            t.foreign_keys.clear();
            t.indexes.clear();
        });
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key todo_owner_id_fkey on todo",
                "- drop index ix_todo_owner_id on todo",
                "- drop column todo.owner_id",
            ]
        );
    }

    #[test]
    fn altered_columns_carry_their_new_definition() {
        let changes: [fn(&mut Column); 4] = [
            |c| c.ty = ColumnType::String(Some(200)),
            |c| c.nullable = true,
            |c| c.default = Some(DefaultValue::Str("untitled".into())),
            |c| c.comment = Some("what to do".into()),
        ];
        for change in changes {
            let to = todo_with(|t| change(t.column_mut("title").unwrap()));
            let diff = applied(&base(), &to, &mut AcceptRenames);
            let title = to.tables["todo"].column("title").unwrap().clone();
            assert_eq!(
                diff.operations,
                vec![Operation::AlterColumn {
                    table: "todo".into(),
                    to: title,
                }]
            );
        }
    }

    #[test]
    fn table_comments_are_set_and_removed() {
        let commented = todo_with(|t| t.comment = Some("things to do".into()));
        let diff = applied(&base(), &commented, &mut NoRenames);
        assert_eq!(
            diff.operations,
            vec![Operation::SetTableComment {
                table: "todo".into(),
                comment: Some("things to do".into()),
            }]
        );
        let diff = applied(&commented, &base(), &mut NoRenames);
        assert_eq!(lines(&diff), vec!["~ remove comment on table todo"]);
    }

    #[test]
    fn a_changed_primary_key_is_a_warning() {
        let to = todo_with(|t| t.primary_key = vec!["id".into(), "owner_id".into()]);
        let diff = diff(&base(), &to, &mut NoRenames);
        assert!(diff.operations.is_empty());
        assert_eq!(
            diff.warnings,
            vec![
                "primary key of table todo changes from (id) to (id, owner_id); no operation \
                 changes a primary key, so write this change by hand"
            ]
        );
    }

    #[test]
    fn adds_alters_and_drops_together() {
        let to = todo_with(|t| {
            t.columns.retain(|c| c.name != "done");
            t.columns.insert(
                1,
                Column::new("priority", ColumnType::SmallInteger).nullable(),
            );
            t.column_mut("title").unwrap().nullable = true;
        });
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "+ add column todo.priority SmallInteger",
                "~ alter column todo.title to Text NULL",
                "- drop column todo.done",
            ]
        );
    }
}
