//! Renaming indexes and constraints, and following a table rename with them.
//!
//! Names carry their table's name by convention (`ix_<table>_<columns>`, `uq_`, `ck_`,
//! `fk_<table>_<columns>_<referred table>`). When a table is renamed its objects keep their old
//! names in the database, so the models (named after the new table) would differ from the
//! migrations forever, and the next autogenerate would drop and re-create every one of them.
//! [`follow_table_renames`] writes a rename of each instead: [`Operation::RenameIndex`] and
//! [`Operation::RenameConstraint`] (PostgreSQL `ALTER INDEX .. RENAME TO` / `ALTER TABLE ..
//! RENAME CONSTRAINT`; SQLite makes the index again, and rebuilds the table for constraints,
//! whose names live in its CREATE TABLE text).

use std::collections::{BTreeMap, BTreeSet};

use crate::ops::{Operation, StateError};
use crate::schema::{Schema, Table};

/// Renames the unique, check or foreign key constraint `from` of `table` to `to`.
pub(crate) fn rename_constraint(table: &mut Table, from: &str, to: &str) -> Result<(), StateError> {
    let taken = table.uniques.contains_key(to)
        || table.checks.contains_key(to)
        || table.foreign_keys.contains_key(to);
    if taken {
        return Err(StateError::ConstraintExists {
            kind: "constraint",
            table: table.name.clone(),
            name: to.to_string(),
        });
    }
    if let Some(mut unique) = table.uniques.remove(from) {
        unique.name = to.to_string();
        table.uniques.insert(to.to_string(), unique);
    } else if let Some(mut check) = table.checks.remove(from) {
        check.name = to.to_string();
        table.checks.insert(to.to_string(), check);
    } else if let Some(mut fk) = table.foreign_keys.remove(from) {
        fk.name = to.to_string();
        table.foreign_keys.insert(to.to_string(), fk);
    } else {
        return Err(StateError::NoConstraint {
            kind: "constraint",
            table: table.name.clone(),
            name: from.to_string(),
        });
    }
    Ok(())
}

/// The names `name` may have after table `old` became `new`: each single occurrence of `old`
/// replaced, then every occurrence (`ix_tag_tag_id` has two, only one of them the table's).
fn renamed_names(name: &str, old: &str, new: &str) -> Vec<String> {
    let mut names: Vec<String> = name
        .match_indices(old)
        .map(|(at, _)| format!("{}{new}{}", &name[..at], &name[at + old.len()..]))
        .collect();
    names.push(name.replace(old, new));
    names.dedup();
    names
}

/// Pairs the entries of `current` that `to` lacks with entries that `to` has and `current`
/// lacks, under a name the table renames give and with the same definition but for the name.
fn pairs<V>(
    current: &BTreeMap<String, V>,
    to: &BTreeMap<String, V>,
    renames: &[(String, String)],
    same: impl Fn(&V, &V) -> bool,
) -> Vec<(String, String)> {
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for (name, old) in current.iter().filter(|(n, _)| !to.contains_key(*n)) {
        let candidate = (renames.iter())
            .flat_map(|(from, into)| renamed_names(name, from, into))
            .find_map(|candidate| {
                let (key, new) = to.get_key_value(&candidate)?;
                let free = !current.contains_key(key) && !taken.contains(key.as_str());
                (free && same(old, new)).then_some(key)
            });
        if let Some(key) = candidate {
            taken.insert(key);
            found.push((name.clone(), key.clone()));
        }
    }
    found
}

/// After the table renames `renames` (old, new) were applied to `schema`, the operations that
/// rename each index and constraint still named after an old table to its name in `to`, on
/// every table (a child's foreign key names its parent), applied to `schema` as they are
/// written. An object whose definition changed as well is left to the later phases.
pub(crate) fn follow_table_renames(
    schema: &mut Schema,
    to: &Schema,
    renames: &[(String, String)],
) -> Vec<Operation> {
    if renames.is_empty() {
        return Vec::new();
    }
    let mut ops = Vec::new();
    for (name, target) in &to.tables {
        let Some(current) = schema.tables.get(name) else {
            continue;
        };
        let indexes = pairs(&current.indexes, &target.indexes, renames, |a, b| {
            a.columns == b.columns && a.unique == b.unique
        });
        let mut constraints = pairs(&current.uniques, &target.uniques, renames, |a, b| {
            a.columns == b.columns
        });
        constraints.extend(pairs(&current.checks, &target.checks, renames, |a, b| {
            a.expr == b.expr
        }));
        constraints.extend(pairs(
            &current.foreign_keys,
            &target.foreign_keys,
            renames,
            |a, b| {
                a.columns == b.columns
                    && a.ref_table == b.ref_table
                    && a.ref_columns == b.ref_columns
                    && a.on_delete == b.on_delete
                    && a.on_update == b.on_update
            },
        ));
        let table = || name.clone();
        let renamed = (indexes.into_iter())
            .map(|(from, to)| Operation::RenameIndex {
                table: table(),
                from,
                to,
            })
            .chain(
                constraints
                    .into_iter()
                    .map(|(from, to)| Operation::RenameConstraint {
                        table: table(),
                        from,
                        to,
                    }),
            );
        for op in renamed {
            match op.apply(schema) {
                Ok(()) => {
                    tracing::info!("detected {}", op.describe());
                    ops.push(op);
                }
                // A clash within the table: left to drop + add.
                Err(err) => tracing::info!(error = %err, "{} left to drop + add", op.describe()),
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;
    use crate::schema::{Check, Column, ColumnType, Index};

    fn todo() -> Schema {
        Schema::new().with_table(
            Table::new("todo")
                .with_column(Column::new("rank", ColumnType::Integer))
                .with_index(Index {
                    name: "ix_todo_rank".into(),
                    columns: vec!["rank".into()],
                    unique: false,
                })
                .with_check(Check {
                    name: "ck_todo_rank".into(),
                    expr: "rank >= 0".into(),
                }),
        )
    }

    #[test]
    fn renames_apply_reverse_and_refuse_clashes() {
        let before = todo();
        let index = Operation::RenameIndex {
            table: "todo".into(),
            from: "ix_todo_rank".into(),
            to: "ix_rank".into(),
        };
        let check = Operation::RenameConstraint {
            table: "todo".into(),
            from: "ck_todo_rank".into(),
            to: "ck_rank".into(),
        };
        let mut after = before.clone();
        index.apply(&mut after).unwrap();
        check.apply(&mut after).unwrap();
        let t = after.table("todo").unwrap();
        assert_eq!(t.indexes["ix_rank"].name, "ix_rank");
        assert_eq!(t.checks["ck_rank"].name, "ck_rank");
        for op in [&check, &index] {
            op.reverse(&before).unwrap().apply(&mut after).unwrap();
        }
        assert_eq!(after, before);
        // Renaming onto a name in use, or a name that is not there, is refused.
        let mut clash = before.clone();
        clash.tables.get_mut("todo").unwrap().checks.insert(
            "ck_rank".into(),
            Check {
                name: "ck_rank".into(),
                expr: "true".into(),
            },
        );
        assert!(check.apply(&mut clash).is_err());
        assert!(check.apply(&mut after.clone()).is_ok());
        let mut missing = before.clone();
        assert!(
            Operation::RenameConstraint {
                table: "todo".into(),
                from: "nope".into(),
                to: "x".into(),
            }
            .apply(&mut missing)
            .is_err()
        );
    }

    #[test]
    fn renames_lint_as_what_they_cost() {
        let ops = [
            Operation::RenameIndex {
                table: "todo".into(),
                from: "ix_todo_rank".into(),
                to: "ix_rank".into(),
            },
            Operation::RenameConstraint {
                table: "todo".into(),
                from: "ck_todo_rank".into(),
                to: "ck_rank".into(),
            },
        ];
        // PostgreSQL renames in the catalog; SQLite rebuilds the table for a constraint.
        assert!(crate::lint::lint(&ops, &todo(), Dialect::Postgres).is_empty());
        let lite = crate::lint::lint(&ops, &todo(), Dialect::Sqlite);
        assert_eq!(lite.len(), 1, "{lite:?}");
        assert!(lite[0].message.contains("rebuilds table todo"), "{lite:?}");
        assert_eq!(
            crate::render::render(&ops[0], &todo(), Dialect::Sqlite).unwrap(),
            [
                "DROP INDEX \"ix_todo_rank\"",
                "CREATE INDEX \"ix_rank\" ON \"todo\" (\"rank\")"
            ]
        );
    }

    #[test]
    fn names_after_a_table_rename() {
        assert_eq!(
            renamed_names("ix_tag_tag_id", "tag", "label"),
            ["ix_label_tag_id", "ix_tag_label_id", "ix_label_label_id"]
        );
        assert_eq!(renamed_names("ix_todo_x", "todo", "task"), ["ix_task_x"]);
        assert!(renamed_names("ix_other", "todo", "task") == ["ix_other"]);
    }
}
