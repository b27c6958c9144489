//! Phase 1: renames. A table or column that disappeared while one of the same shape appeared
//! may have been renamed; the [`RenamePolicy`] decides.
//!
//! Columns come first: a disappeared and an appeared column of a table kept under its name
//! are alike when type, nullability, default and comment are equal. Tables follow, parents
//! before children: a disappeared and an appeared table are alike when everything but the
//! name is equal (columns in any order, primary key, comment, and foreign keys, uniques,
//! checks and indexes, whose names may differ only by the table's name and whose foreign keys
//! may point at the table itself). Each accepted rename is applied to the working schema at
//! once, so later comparisons see it: a child's foreign keys already name the parent's new
//! name, and a table's foreign keys already name renamed columns.
//!
//! Each disappeared and each appeared name is renamed at most once, and each pair is offered
//! at most once. A pair that was declined (refused or unanswered) gives a warning when
//! neither side was renamed otherwise, one per disappeared name.

use std::collections::{BTreeMap, BTreeSet};

use super::{DiffOptions, RenameCandidate, RenamePolicy, warn};
use crate::ops::Operation;
use crate::schema::{Column, Schema, Table};

/// The accepted renames and the schema they lead to.
pub(super) struct Renamed {
    /// In the order they were applied: column renames, then table renames.
    pub operations: Vec<Operation>,
    /// `from` with the renames applied: what every later phase compares with `to`.
    pub schema: Schema,
}

pub(super) fn detect(
    from: &Schema,
    to: &Schema,
    policy: &mut dyn RenamePolicy,
    options: DiffOptions,
    warnings: &mut Vec<String>,
) -> Renamed {
    let mut renamed = Renamed {
        operations: Vec::new(),
        schema: from.clone(),
    };
    column_renames(&mut renamed, to, policy, warnings);
    table_renames(&mut renamed, to, policy, options, warnings);
    // Indexes and constraints named after a renamed table follow it.
    let tables: Vec<(String, String)> = (renamed.operations.iter())
        .filter_map(|op| match op {
            Operation::RenameTable { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    let follow = crate::rename_objects::follow_table_renames(&mut renamed.schema, to, &tables);
    renamed.operations.extend(follow);
    renamed
}

/// What became of offering one pair.
enum Offer {
    /// Not the same shape: nothing was asked.
    NotAlike,
    /// The policy's answer; `Some(true)` means the rename was applied.
    Answer(Option<bool>),
}

/// Offers each pair of a `gone` and an `appeared` name (in the order given) to `offer`,
/// skipping names already renamed. Returns the declined pairs worth a warning.
fn pair_up(
    gone: &[String],
    appeared: &[String],
    mut offer: impl FnMut(&str, &str) -> Offer,
) -> Vec<(String, String)> {
    let mut taken_old: BTreeSet<&str> = BTreeSet::new();
    let mut taken_new: BTreeSet<&str> = BTreeSet::new();
    let mut declined: Vec<(&str, &str)> = Vec::new();
    for old in gone {
        for new in appeared {
            if taken_new.contains(new.as_str()) {
                continue;
            }
            match offer(old, new) {
                Offer::NotAlike => {}
                Offer::Answer(Some(true)) => {
                    taken_old.insert(old);
                    taken_new.insert(new);
                    break;
                }
                Offer::Answer(_) => declined.push((old, new)),
            }
        }
    }
    // One warning per disappeared name left alone, naming a partner left alone too, and a
    // partner not named yet when there is one.
    declined.retain(|(old, new)| !taken_old.contains(old) && !taken_new.contains(new));
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut warnings = Vec::new();
    for old in gone {
        let partners: Vec<&str> = (declined.iter())
            .filter(|(o, _)| o == old)
            .map(|(_, new)| *new)
            .collect();
        let partner = (partners.iter())
            .find(|new| !named.contains(*new))
            .or(partners.first());
        if let Some(new) = partner {
            named.insert(new);
            warnings.push((old.clone(), new.to_string()));
        }
    }
    warnings
}

/// Asks the policy about one candidate, logging the question and the answer.
fn ask(policy: &mut dyn RenamePolicy, candidate: &RenameCandidate) -> Option<bool> {
    tracing::info!(candidate = %candidate, "proposing rename");
    let answer = policy.confirm(candidate);
    match answer {
        Some(true) => tracing::info!(candidate = %candidate, "rename accepted"),
        Some(false) => tracing::info!(candidate = %candidate, "rename refused"),
        None => tracing::info!(candidate = %candidate, "rename unanswered"),
    }
    answer
}

/// Applies an accepted rename to the working schema and records it; false when it does not
/// apply (a malformed schema), in which case it is written as drop + add.
fn accept(renamed: &mut Renamed, op: Operation) -> bool {
    match op.apply(&mut renamed.schema) {
        Ok(()) => {
            renamed.operations.push(op);
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "{} does not apply; written as drop + add", op.describe());
            false
        }
    }
}

fn columns_alike(a: &Column, b: &Column) -> bool {
    a.ty == b.ty
        && a.nullable == b.nullable
        && crate::defaults::same_default(a.default.as_ref(), b.default.as_ref(), &a.ty)
        && a.comment == b.comment
}

fn column_renames(
    renamed: &mut Renamed,
    to: &Schema,
    policy: &mut dyn RenamePolicy,
    warnings: &mut Vec<String>,
) {
    for (table, new) in &to.tables {
        let Some(old) = renamed.schema.tables.get(table) else {
            continue;
        };
        let gone: Vec<String> = (old.columns.iter())
            .filter(|c| new.column(&c.name).is_none())
            .map(|c| c.name.clone())
            .collect();
        let appeared: Vec<String> = (new.columns.iter())
            .filter(|c| old.column(&c.name).is_none())
            .map(|c| c.name.clone())
            .collect();
        if gone.is_empty() || appeared.is_empty() {
            continue;
        }
        let declined = pair_up(&gone, &appeared, |from, to_name| {
            let old = &renamed.schema.tables[table];
            let alike = match (old.column(from), new.column(to_name)) {
                (Some(a), Some(b)) => columns_alike(a, b),
                _ => false,
            };
            if !alike {
                return Offer::NotAlike;
            }
            let candidate = RenameCandidate::Column {
                table: table.clone(),
                from: from.to_string(),
                to: to_name.to_string(),
            };
            let answer = ask(policy, &candidate);
            if answer == Some(true) {
                let op = Operation::RenameColumn {
                    table: table.clone(),
                    from: from.to_string(),
                    to: to_name.to_string(),
                };
                if !accept(renamed, op) {
                    return Offer::NotAlike;
                }
                tracing::info!(table = %table, from = %from, to = %to_name, "detected renamed column");
            }
            Offer::Answer(answer)
        });
        for (from, to_name) in declined {
            warn(
                warnings,
                format!(
                    "column {table}.{from} and {table}.{to_name} look like a rename; \
                     written as drop + add (data in {table}.{from} is lost)"
                ),
            );
        }
    }
}

fn table_renames(
    renamed: &mut Renamed,
    to: &Schema,
    policy: &mut dyn RenamePolicy,
    options: DiffOptions,
    warnings: &mut Vec<String>,
) {
    // Parents first, so that a child is compared after its parent's rename was applied.
    let gone: Vec<String> = (renamed.schema.tables_in_dependency_order().into_iter())
        .filter(|name| !to.tables.contains_key(*name))
        .map(str::to_string)
        .collect();
    let appeared: Vec<String> = (to.tables.keys())
        .filter(|name| !renamed.schema.tables.contains_key(*name))
        .cloned()
        .collect();
    if gone.is_empty() || appeared.is_empty() {
        return;
    }
    let declined = pair_up(&gone, &appeared, |from, to_name| {
        if !tables_alike(
            from,
            &renamed.schema.tables[from],
            to_name,
            &to.tables[to_name],
            options,
        ) {
            return Offer::NotAlike;
        }
        let candidate = RenameCandidate::Table {
            from: from.to_string(),
            to: to_name.to_string(),
        };
        let answer = ask(policy, &candidate);
        if answer == Some(true) {
            let op = Operation::RenameTable {
                from: from.to_string(),
                to: to_name.to_string(),
            };
            if !accept(renamed, op) {
                return Offer::NotAlike;
            }
            tracing::info!(from = %from, to = %to_name, "detected renamed table");
        }
        Offer::Answer(answer)
    });
    for (from, to_name) in declined {
        warn(
            warnings,
            format!(
                "table {from} and {to_name} look like a rename; \
                 written as drop + add (data in {from} is lost)"
            ),
        );
    }
}

/// True when table `old` (named `old_name`) equals `new` (named `new_name`) but for the name.
fn tables_alike(
    old_name: &str,
    old: &Table,
    new_name: &str,
    new: &Table,
    options: DiffOptions,
) -> bool {
    let by_name = |columns: &[Column]| {
        let mut sorted: Vec<&Column> = columns.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.into_iter().cloned().collect::<Vec<Column>>()
    };
    // A constraint name may carry the table's name (`ix_todo_title` for `ix_tasks_title`).
    let renamed = |name: &str| {
        if old_name.is_empty() {
            name.to_string()
        } else {
            name.replace(old_name, new_name)
        }
    };
    let points_alike = |a: &str, b: &str| a == b || (a == old_name && b == new_name);
    by_name(&old.columns) == by_name(&new.columns)
        && old.primary_key == new.primary_key
        && old.comment == new.comment
        && maps_alike(&old.foreign_keys, &new.foreign_keys, &renamed, |a, b| {
            a.columns == b.columns
                && a.ref_columns == b.ref_columns
                && a.on_delete == b.on_delete
                && a.on_update == b.on_update
                && points_alike(&a.ref_table, &b.ref_table)
        })
        && maps_alike(&old.uniques, &new.uniques, &renamed, |a, b| {
            a.columns == b.columns
        })
        && maps_alike(&old.indexes, &new.indexes, &renamed, |a, b| {
            a.columns == b.columns && a.unique == b.unique
        })
        && maps_alike(&old.checks, &new.checks, &renamed, |a, b| {
            !options.compare_check_expressions || a.expr == b.expr
        })
}

/// True when the entries of `old` and `new` pair up one to one, each with the same name or
/// the name `renamed` gives, and each pair `alike`.
fn maps_alike<V>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    renamed: &dyn Fn(&str) -> String,
    alike: impl Fn(&V, &V) -> bool,
) -> bool {
    if old.len() != new.len() {
        return false;
    }
    let mut used: BTreeSet<&str> = BTreeSet::new();
    old.iter().all(|(name, a)| {
        let other = renamed(name);
        let found = [name.as_str(), other.as_str()]
            .into_iter()
            .find_map(|candidate| {
                let (key, b) = new.get_key_value(candidate)?;
                (!used.contains(key.as_str()) && alike(a, b)).then_some(key.as_str())
            });
        found.is_some_and(|key| used.insert(key))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::schema::{Column, ColumnType, Table};

    /// `base()` with todo.title renamed to `summary`; its check says `summary` too, but under
    /// its old name (see `accepted_column_rename_is_a_rename`).
    fn title_renamed() -> Schema {
        let mut to = base();
        let todo = to.tables.get_mut("todo").unwrap();
        todo.columns[1].name = "summary".into();
        todo.checks.clear();
        todo.checks.insert(
            "todo_title_not_empty".into(),
            check("todo_title_not_empty", "summary <> ''"),
        );
        to
    }

    /// `base()` with todo renamed to tasks (its index renamed along).
    fn todo_renamed() -> Schema {
        let mut tasks = todo();
        tasks.name = "tasks".into();
        tasks.indexes.clear();
        let tasks = tasks.with_index(index("ix_tasks_owner_id", &["owner_id"]));
        Schema::new().with_table(users()).with_table(tasks)
    }

    /// A policy that records what it was asked and gives the same answer each time.
    struct Recorder {
        answer: Option<bool>,
        asked: Vec<RenameCandidate>,
    }

    impl RenamePolicy for Recorder {
        fn confirm(&mut self, candidate: &RenameCandidate) -> Option<bool> {
            self.asked.push(candidate.clone());
            self.answer
        }
    }

    fn recorder(answer: Option<bool>) -> Recorder {
        Recorder {
            answer,
            asked: Vec::new(),
        }
    }

    #[test]
    fn accepted_column_rename_is_a_rename() {
        let mut policy = recorder(Some(true));
        let diff = applied(&base(), &title_renamed(), &mut policy);
        // The check's text names the column, so it is written again.
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename column todo.title to summary",
                "- drop check constraint todo_title_not_empty on todo",
                "+ add check constraint todo_title_not_empty on todo (summary <> '')",
            ]
        );
        assert!(diff.warnings.is_empty());
        assert_eq!(
            policy.asked,
            vec![RenameCandidate::Column {
                table: "todo".into(),
                from: "title".into(),
                to: "summary".into(),
            }]
        );
    }

    #[test]
    fn refused_column_rename_is_drop_and_add_with_a_warning() {
        let mut policy = recorder(Some(false));
        let diff = applied(&base(), &title_renamed(), &mut policy);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop check constraint todo_title_not_empty on todo",
                "+ add column todo.summary Text",
                "- drop column todo.title",
                "+ add check constraint todo_title_not_empty on todo (summary <> '')",
            ]
        );
        assert_eq!(
            diff.warnings,
            vec![
                "column todo.title and todo.summary look like a rename; \
                 written as drop + add (data in todo.title is lost)"
            ]
        );
        assert_eq!(policy.asked.len(), 1);
    }

    #[test]
    fn unanswered_column_rename_is_drop_and_add_with_a_warning() {
        let diff = applied(&base(), &title_renamed(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop check constraint todo_title_not_empty on todo",
                "+ add column todo.summary Text",
                "- drop column todo.title",
                "+ add check constraint todo_title_not_empty on todo (summary <> '')",
            ]
        );
        assert_eq!(diff.warnings.len(), 1);
        assert!(diff.warnings[0].contains("data in todo.title is lost"));
    }

    #[test]
    fn columns_of_another_shape_are_not_proposed() {
        for change in [
            |c: &mut Column| c.ty = ColumnType::String(None),
            |c: &mut Column| c.nullable = true,
            |c: &mut Column| c.comment = Some("what to do".into()),
            |c: &mut Column| c.default = Some(crate::schema::DefaultValue::Str("x".into())),
        ] {
            let mut to = title_renamed();
            change(&mut to.tables.get_mut("todo").unwrap().columns[1]);
            let mut policy = recorder(Some(true));
            let diff = applied(&base(), &to, &mut policy);
            assert!(policy.asked.is_empty(), "{:?}", policy.asked);
            assert!(diff.warnings.is_empty());
            // Add, drop, and the check written again.
            assert_eq!(diff.operations.len(), 4, "{diff:#?}");
        }
    }

    #[test]
    fn renamed_column_carries_its_keys_and_references() {
        // users.id becomes users.user_id: the primary key and todo's foreign key follow.
        let mut to = base();
        let users = to.tables.get_mut("users").unwrap();
        users.columns[0].name = "user_id".into();
        users.primary_key = vec!["user_id".into()];
        let todo = to.tables.get_mut("todo").unwrap();
        todo.foreign_keys
            .get_mut("todo_owner_id_fkey")
            .unwrap()
            .ref_columns = vec!["user_id".into()];
        let diff = applied(&base(), &to, &mut AcceptRenames);
        assert_eq!(lines(&diff), vec!["~ rename column users.id to user_id"]);
    }

    #[test]
    fn each_column_is_renamed_at_most_once() {
        // Two text columns go and two appear: every pair is alike.
        let from = Schema::new().with_table(
            Table::new("notes")
                .with_column(id())
                .with_column(Column::new("a", ColumnType::Text))
                .with_column(Column::new("b", ColumnType::Text)),
        );
        let to = Schema::new().with_table(
            Table::new("notes")
                .with_column(id())
                .with_column(Column::new("x", ColumnType::Text))
                .with_column(Column::new("y", ColumnType::Text)),
        );
        let diff = applied(&from, &to, &mut AcceptRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename column notes.a to x",
                "~ rename column notes.b to y"
            ]
        );

        // Refusing a -> x offers a -> y next; b is then offered x only.
        let mut asked = Vec::new();
        let mut policy = |c: &RenameCandidate| {
            asked.push(c.to_string());
            Some(!matches!(c, RenameCandidate::Column { from, to, .. } if from == "a" && to == "x"))
        };
        let diff = applied(&from, &to, &mut policy);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename column notes.a to y",
                "~ rename column notes.b to x"
            ]
        );
        assert!(diff.warnings.is_empty(), "{:?}", diff.warnings);
        assert_eq!(
            asked,
            vec![
                "column notes.a renamed to notes.x",
                "column notes.a renamed to notes.y",
                "column notes.b renamed to notes.x",
            ]
        );

        // Unanswered: one warning per disappeared column.
        let diff = applied(&from, &to, &mut NoRenames);
        assert_eq!(diff.warnings.len(), 2, "{:?}", diff.warnings);
        assert!(diff.warnings[0].starts_with("column notes.a and notes.x"));
        assert!(diff.warnings[1].starts_with("column notes.b and notes.y"));
    }

    #[test]
    fn accepted_table_rename_is_a_rename() {
        let mut policy = recorder(Some(true));
        let diff = applied(&base(), &todo_renamed(), &mut policy);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename table todo to tasks",
                // The index named after the table follows it rather than being made again.
                "~ rename index ix_todo_owner_id on tasks to ix_tasks_owner_id",
            ]
        );
        assert_eq!(
            policy.asked,
            vec![RenameCandidate::Table {
                from: "todo".into(),
                to: "tasks".into(),
            }]
        );
    }

    #[test]
    fn refused_or_unanswered_table_rename_is_drop_and_create() {
        for answer in [Some(false), None] {
            let mut policy = recorder(answer);
            let diff = applied(&base(), &todo_renamed(), &mut policy);
            assert_eq!(
                lines(&diff),
                vec!["- drop table todo", "+ create table tasks"]
            );
            assert_eq!(
                diff.warnings,
                vec![
                    "table todo and tasks look like a rename; \
                     written as drop + add (data in todo is lost)"
                ]
            );
            assert_eq!(policy.asked.len(), 1);
        }
    }

    #[test]
    fn tables_of_another_shape_are_not_proposed() {
        let mut to = todo_renamed();
        let tasks = to.tables.get_mut("tasks").unwrap();
        tasks.checks.clear();
        let mut policy = recorder(Some(true));
        let diff = applied(&base(), &to, &mut policy);
        assert!(policy.asked.is_empty());
        assert_eq!(
            lines(&diff),
            vec!["- drop table todo", "+ create table tasks"]
        );
        assert!(diff.warnings.is_empty());
    }

    #[test]
    fn renamed_parent_and_child_follow_each_other() {
        // Both tables are renamed; the child's key names the parent's new name.
        let mut accounts = users();
        accounts.name = "accounts".into();
        let mut tasks = todo();
        tasks.name = "tasks".into();
        tasks
            .foreign_keys
            .get_mut("todo_owner_id_fkey")
            .unwrap()
            .ref_table = "accounts".into();
        let to = Schema::new().with_table(accounts).with_table(tasks);
        let mut policy = recorder(Some(true));
        let diff = applied(&base(), &to, &mut policy);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename table users to accounts",
                "~ rename table todo to tasks"
            ]
        );
        assert_eq!(policy.asked.len(), 2);
    }

    #[test]
    fn self_referencing_table_is_renamed() {
        let tree = |name: &str| {
            Table::new(name)
                .with_column(id())
                .with_column(Column::new("parent_id", ColumnType::BigInteger).nullable())
                .with_primary_key(["id"])
                .with_foreign_key(fk("parent_fkey", "parent_id", name, "id"))
        };
        let from = Schema::new().with_table(tree("folders"));
        let to = Schema::new().with_table(tree("dirs"));
        let diff = applied(&from, &to, &mut AcceptRenames);
        assert_eq!(lines(&diff), vec!["~ rename table folders to dirs"]);
    }

    #[test]
    fn each_table_is_renamed_at_most_once() {
        let plain = |name: &str| Table::new(name).with_column(id());
        let from = Schema::new().with_table(plain("a")).with_table(plain("b"));
        let to = Schema::new().with_table(plain("x")).with_table(plain("y"));
        let diff = applied(&from, &to, &mut AcceptRenames);
        assert_eq!(
            lines(&diff),
            vec!["~ rename table a to x", "~ rename table b to y"]
        );
    }

    #[test]
    fn check_expressions_count_unless_told_otherwise() {
        let mut to = todo_renamed();
        to.tables.get_mut("tasks").unwrap().checks.insert(
            "todo_title_not_empty".into(),
            check("todo_title_not_empty", "(title <> ''::text)"),
        );
        let mut policy = recorder(Some(true));
        applied(&base(), &to, &mut policy);
        assert!(policy.asked.is_empty());

        let loose = DiffOptions {
            compare_check_expressions: false,
        };
        let mut policy = recorder(Some(true));
        let diff = applied_with(&base(), &to, &mut policy, loose);
        assert_eq!(policy.asked.len(), 1);
        assert_eq!(
            diff.operations[0].describe(),
            "~ rename table todo to tasks"
        );
    }
}
