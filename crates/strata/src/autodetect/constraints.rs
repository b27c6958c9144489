//! Foreign keys, uniques, checks and indexes of the tables that both schemas have (under the
//! same name, or after a rename), matched by name.
//!
//! One that is gone, or changed (same name, another definition), is dropped early, before the
//! columns and tables it uses go; one that is new, or changed, is added last, after its
//! columns exist. Foreign keys are dropped before the uniques and indexes they may rely on,
//! and added after them. Checks compare name and expression, or the name alone when
//! [`DiffOptions::compare_check_expressions`] is off. Tables created or dropped in the diff
//! are not visited: their constraints come and go with them (see [`super::tables`]).

use std::collections::BTreeMap;

use super::DiffOptions;
use crate::ops::Operation;
use crate::schema::{Check, Schema, Table};

/// Drops, in the order they must run: foreign keys first, then the rest.
pub(super) struct Dropped {
    pub foreign_keys: Vec<Operation>,
    /// Uniques, then checks, then indexes.
    pub others: Vec<Operation>,
}

/// The tables both schemas have, as (name, in `current`, in `to`), in name order.
fn kept<'a>(
    current: &'a Schema,
    to: &'a Schema,
) -> impl Iterator<Item = (&'a str, &'a Table, &'a Table)> {
    (to.tables.iter()).filter_map(|(name, new)| {
        current
            .tables
            .get(name)
            .map(|old| (name.as_str(), old, new))
    })
}

/// Entries of `old` that are gone from `new` or changed there, with which of the two.
fn going<'a, V>(
    old: &'a BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<(&'a str, &'static str)> {
    (old.iter())
        .filter_map(|(name, a)| match new.get(name) {
            None => Some((name.as_str(), "dropped")),
            Some(b) if !same(a, b) => Some((name.as_str(), "changed")),
            Some(_) => None,
        })
        .collect()
}

/// Entries of `new` that `old` lacks or has otherwise, with which of the two.
fn coming<'a, V>(
    old: &BTreeMap<String, V>,
    new: &'a BTreeMap<String, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<(&'a V, &'static str)> {
    (new.iter())
        .filter_map(|(name, b)| match old.get(name) {
            None => Some((b, "added")),
            Some(a) if !same(a, b) => Some((b, "changed")),
            Some(_) => None,
        })
        .collect()
}

fn checks_same(options: DiffOptions) -> impl Fn(&Check, &Check) -> bool {
    move |a, b| a.name == b.name && (!options.compare_check_expressions || a.expr == b.expr)
}

/// Constraints of kept tables that are gone or changed, as drops.
pub(super) fn dropped(current: &Schema, to: &Schema, options: DiffOptions) -> Dropped {
    let mut foreign_keys = Vec::new();
    for (table, old, new) in kept(current, to) {
        for (name, what) in going(&old.foreign_keys, &new.foreign_keys, PartialEq::eq) {
            let target = &old.foreign_keys[name].ref_table;
            if current.tables.contains_key(target) && !to.tables.contains_key(target) {
                tracing::info!(table = %table, foreign_key = %name, references = %target, "detected foreign key to a dropped table");
            } else {
                tracing::info!(table = %table, foreign_key = %name, "detected {what} foreign key");
            }
            foreign_keys.push(Operation::DropForeignKey {
                table: table.to_string(),
                name: name.to_string(),
            });
        }
    }
    let mut others = Vec::new();
    for (table, old, new) in kept(current, to) {
        for (name, what) in going(&old.uniques, &new.uniques, PartialEq::eq) {
            tracing::info!(table = %table, unique = %name, "detected {what} unique constraint");
            others.push(Operation::DropUnique {
                table: table.to_string(),
                name: name.to_string(),
            });
        }
    }
    for (table, old, new) in kept(current, to) {
        for (name, what) in going(&old.checks, &new.checks, checks_same(options)) {
            tracing::info!(table = %table, check = %name, "detected {what} check constraint");
            others.push(Operation::DropCheck {
                table: table.to_string(),
                name: name.to_string(),
            });
        }
    }
    for (table, old, new) in kept(current, to) {
        for (name, what) in going(&old.indexes, &new.indexes, PartialEq::eq) {
            tracing::info!(table = %table, index = %name, "detected {what} index");
            others.push(Operation::DropIndex {
                table: table.to_string(),
                name: name.to_string(),
            });
        }
    }
    Dropped {
        foreign_keys,
        others,
    }
}

/// Constraints of kept tables that are new or changed, as additions: indexes, uniques,
/// checks, then foreign keys.
pub(super) fn added(current: &Schema, to: &Schema, options: DiffOptions) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (table, old, new) in kept(current, to) {
        for (index, what) in coming(&old.indexes, &new.indexes, PartialEq::eq) {
            if what == "added" {
                tracing::info!(table = %table, index = %index.name, "detected added index");
            }
            ops.push(Operation::CreateIndex {
                table: table.to_string(),
                index: index.clone(),
            });
        }
    }
    for (table, old, new) in kept(current, to) {
        for (unique, what) in coming(&old.uniques, &new.uniques, PartialEq::eq) {
            if what == "added" {
                tracing::info!(table = %table, unique = %unique.name, "detected added unique constraint");
            }
            ops.push(Operation::AddUnique {
                table: table.to_string(),
                unique: unique.clone(),
            });
        }
    }
    for (table, old, new) in kept(current, to) {
        for (check, what) in coming(&old.checks, &new.checks, checks_same(options)) {
            if what == "added" {
                tracing::info!(table = %table, check = %check.name, "detected added check constraint");
            }
            ops.push(Operation::AddCheck {
                table: table.to_string(),
                check: check.clone(),
            });
        }
    }
    for (table, old, new) in kept(current, to) {
        for (foreign_key, what) in coming(&old.foreign_keys, &new.foreign_keys, PartialEq::eq) {
            if what == "added" {
                tracing::info!(table = %table, foreign_key = %foreign_key.name, "detected added foreign key");
            }
            ops.push(Operation::AddForeignKey {
                table: table.to_string(),
                foreign_key: foreign_key.clone(),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::schema::{Column, ColumnType, ForeignKeyAction};

    /// `base()` changed by `change`.
    fn changed(change: impl FnOnce(&mut Schema)) -> Schema {
        let mut schema = base();
        change(&mut schema);
        schema
    }

    fn todo_of(schema: &mut Schema) -> &mut crate::schema::Table {
        schema.tables.get_mut("todo").unwrap()
    }

    #[test]
    fn index_added_dropped_and_changed() {
        let with_title = changed(|s| {
            let todo = todo_of(s);
            todo.indexes
                .insert("ix_todo_title".into(), index("ix_todo_title", &["title"]));
        });
        let diff = applied(&base(), &with_title, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ create index ix_todo_title on todo (title)"]
        );
        let diff = applied(&with_title, &base(), &mut NoRenames);
        assert_eq!(lines(&diff), vec!["- drop index ix_todo_title on todo"]);

        let made_unique = changed(|s| {
            todo_of(s)
                .indexes
                .get_mut("ix_todo_owner_id")
                .unwrap()
                .unique = true;
        });
        let diff = applied(&base(), &made_unique, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop index ix_todo_owner_id on todo",
                "+ create unique index ix_todo_owner_id on todo (owner_id)",
            ]
        );
    }

    #[test]
    fn unique_added_dropped_and_changed() {
        let with_title = changed(|s| {
            todo_of(s).uniques.insert(
                "todo_owner_title_key".into(),
                unique("todo_owner_title_key", &["owner_id", "title"]),
            );
        });
        let diff = applied(&base(), &with_title, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ add unique constraint todo_owner_title_key on todo (owner_id, title)"]
        );
        let diff = applied(&with_title, &base(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["- drop unique constraint todo_owner_title_key on todo"]
        );

        let widened = changed(|s| {
            let users = s.tables.get_mut("users").unwrap();
            users.uniques.get_mut("users_email_key").unwrap().columns =
                vec!["email".into(), "name".into()];
        });
        let diff = applied(&base(), &widened, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop unique constraint users_email_key on users",
                "+ add unique constraint users_email_key on users (email, name)",
            ]
        );
    }

    #[test]
    fn check_added_dropped_and_changed() {
        let with_done = changed(|s| {
            todo_of(s).checks.insert(
                "todo_done_bool".into(),
                check("todo_done_bool", "done IN (0, 1)"),
            );
        });
        let diff = applied(&base(), &with_done, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ add check constraint todo_done_bool on todo (done IN (0, 1))"]
        );
        let diff = applied(&with_done, &base(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["- drop check constraint todo_done_bool on todo"]
        );

        let rewritten = changed(|s| {
            todo_of(s)
                .checks
                .get_mut("todo_title_not_empty")
                .unwrap()
                .expr = "(title <> ''::text)".into();
        });
        let diff = applied(&base(), &rewritten, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop check constraint todo_title_not_empty on todo",
                "+ add check constraint todo_title_not_empty on todo ((title <> ''::text))",
            ]
        );
        // As PostgreSQL reports it: the names match, so nothing changed.
        let loose = DiffOptions {
            compare_check_expressions: false,
        };
        assert!(diff_with(&base(), &rewritten, &mut NoRenames, loose).is_empty());
        // A check of another name is still a change.
        let renamed = changed(|s| {
            let todo = todo_of(s);
            todo.checks.clear();
            todo.checks.insert(
                "todo_title_check".into(),
                check("todo_title_check", "title <> ''"),
            );
        });
        let diff = applied_with(&base(), &renamed, &mut NoRenames, loose);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop check constraint todo_title_not_empty on todo",
                "+ add check constraint todo_title_check on todo (title <> '')",
            ]
        );
    }

    #[test]
    fn foreign_key_added_dropped_and_changed() {
        let without = changed(|s| {
            todo_of(s).foreign_keys.clear();
        });
        let diff = applied(&base(), &without, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["- drop foreign key todo_owner_id_fkey on todo"]
        );
        let diff = applied(&without, &base(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ add foreign key todo_owner_id_fkey on todo (owner_id) -> users (id)"]
        );

        let cascading = changed(|s| {
            todo_of(s)
                .foreign_keys
                .get_mut("todo_owner_id_fkey")
                .unwrap()
                .on_delete = ForeignKeyAction::Cascade;
        });
        let diff = applied(&base(), &cascading, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key todo_owner_id_fkey on todo",
                "+ add foreign key todo_owner_id_fkey on todo (owner_id) -> users (id)",
            ]
        );
        assert!(matches!(
            &diff.operations[1],
            Operation::AddForeignKey { foreign_key, .. }
                if foreign_key.on_delete == ForeignKeyAction::Cascade
        ));
    }

    #[test]
    fn keys_drop_first_and_add_last() {
        // todo's key moves from users.id to users.email, whose unique is rebuilt; a new
        // column gets an index.
        let to = changed(|s| {
            let users = s.tables.get_mut("users").unwrap();
            users.uniques.clear();
            users.uniques.insert(
                "users_email_uq".into(),
                unique("users_email_uq", &["email"]),
            );
            let todo = todo_of(s);
            todo.columns
                .push(Column::new("owner_email", ColumnType::String(Some(255))));
            todo.foreign_keys.clear();
            todo.foreign_keys.insert(
                "todo_owner_email_fkey".into(),
                fk("todo_owner_email_fkey", "owner_email", "users", "email"),
            );
            todo.indexes.insert(
                "ix_todo_owner_email".into(),
                index("ix_todo_owner_email", &["owner_email"]),
            );
        });
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key todo_owner_id_fkey on todo",
                "- drop unique constraint users_email_key on users",
                "+ add column todo.owner_email String(255)",
                "+ create index ix_todo_owner_email on todo (owner_email)",
                "+ add unique constraint users_email_uq on users (email)",
                "+ add foreign key todo_owner_email_fkey on todo (owner_email) -> users (email)",
            ]
        );
    }
}
