//! Whole tables: the ones `to` lacks are dropped, children first; the ones `from` lacks are
//! created, parents first, each carrying its own columns, keys, indexes and checks.
//!
//! A dropped table takes its constraints with it, so none is dropped on its own, with one
//! exception: a foreign key that would still hold another table up when that table goes.
//! That happens in a cycle of dropped tables, and when the key points at a kept table whose
//! unique key for it is dropped earlier in the diff; such a key is "unlinked" (dropped)
//! first. Foreign keys of kept tables that point at a dropped table are gone from `to`, so
//! [`super::constraints`] drops them.
//!
//! Likewise a created table's foreign key is left out of [`Operation::CreateTable`] and added
//! at the end when what it points at is not there yet at creation: a table created later (a
//! cycle), or columns or a unique key of a kept table that this diff adds.

use std::collections::BTreeMap;

use crate::ops::Operation;
use crate::schema::{ForeignKey, Schema, Table};

pub(super) struct Dropped {
    /// Foreign keys of dropped tables that must go before other tables do.
    pub unlinks: Vec<Operation>,
    /// The drops, children first.
    pub drops: Vec<Operation>,
}

pub(super) struct Created {
    /// The creates, parents first.
    pub creates: Vec<Operation>,
    /// Foreign keys of created tables that must wait until the end.
    pub deferred_foreign_keys: Vec<Operation>,
}

/// The tables of `current` that `to` lacks, as drops.
pub(super) fn dropped(current: &Schema, to: &Schema) -> Dropped {
    let gone = Schema {
        tables: (current.tables.iter())
            .filter(|(name, _)| !to.tables.contains_key(*name))
            .map(|(name, table)| (name.clone(), table.clone()))
            .collect(),
    };
    let mut order = gone.tables_in_dependency_order();
    order.reverse();

    let mut dropped = Dropped {
        unlinks: Vec::new(),
        drops: Vec::new(),
    };
    for (position, name) in order.iter().enumerate() {
        for fk in gone.tables[*name].foreign_keys.values() {
            let holds_up = match order.iter().position(|other| *other == fk.ref_table) {
                // A table dropped before this one: only in a cycle.
                Some(target) => target < position,
                None => match (
                    current.tables.get(&fk.ref_table),
                    to.tables.get(&fk.ref_table),
                ) {
                    (Some(old), Some(new)) => keys_on(old, &fk.ref_columns)
                        .iter()
                        .any(|key| !key.stays(new)),
                    _ => false,
                },
            };
            if holds_up {
                tracing::info!(table = %name, foreign_key = %fk.name, references = %fk.ref_table, "dropping foreign key of a dropped table first");
                dropped.unlinks.push(Operation::DropForeignKey {
                    table: name.to_string(),
                    name: fk.name.clone(),
                });
            }
        }
        tracing::info!(table = %name, "detected dropped table");
        dropped.drops.push(Operation::DropTable {
            name: name.to_string(),
        });
    }
    dropped
}

/// The tables of `to` that `current` lacks, as creates.
pub(super) fn created(current: &Schema, to: &Schema) -> Created {
    let order: Vec<&str> = (to.tables_in_dependency_order().into_iter())
        .filter(|name| !current.tables.contains_key(*name))
        .collect();
    let mut created = Created {
        creates: Vec::new(),
        deferred_foreign_keys: Vec::new(),
    };
    for (position, name) in order.iter().enumerate() {
        let mut table = to.tables[*name].clone();
        let later = &order[position + 1..];
        let (wait, now): (BTreeMap<String, ForeignKey>, _) =
            std::mem::take(&mut table.foreign_keys)
                .into_iter()
                .partition(|(_, fk)| must_wait(fk, name, later, current, to));
        table.foreign_keys = now;
        tracing::info!(table = %name, "detected created table");
        created.creates.push(Operation::CreateTable(table));
        for fk in wait.into_values() {
            tracing::info!(table = %name, foreign_key = %fk.name, references = %fk.ref_table, "adding foreign key of a created table last");
            created
                .deferred_foreign_keys
                .push(Operation::AddForeignKey {
                    table: name.to_string(),
                    foreign_key: fk,
                });
        }
    }
    created
}

/// True when foreign key `fk` of new table `table` cannot be created with it.
fn must_wait(fk: &ForeignKey, table: &str, later: &[&str], current: &Schema, to: &Schema) -> bool {
    if fk.ref_table == table {
        return false;
    }
    if later.contains(&fk.ref_table.as_str()) {
        return true;
    }
    match (
        current.tables.get(&fk.ref_table),
        to.tables.get(&fk.ref_table),
    ) {
        (Some(old), Some(new)) => {
            let columns_exist = fk.ref_columns.iter().all(|c| old.column(c).is_some());
            let key_ready = keys_on(old, &fk.ref_columns)
                .iter()
                .any(|key| key.stays(new));
            !columns_exist || (!key_ready && !keys_on(new, &fk.ref_columns).is_empty())
        }
        _ => false,
    }
}

/// A key that makes a set of columns unique, so that foreign keys can point at them.
enum Key<'a> {
    Primary,
    Unique(&'a crate::schema::Unique),
    Index(&'a crate::schema::Index),
}

impl Key<'_> {
    /// True when the key is in `new` unchanged (no operation changes a primary key).
    fn stays(&self, new: &Table) -> bool {
        match self {
            Key::Primary => true,
            Key::Unique(unique) => new.uniques.get(&unique.name) == Some(*unique),
            Key::Index(index) => new.indexes.get(&index.name) == Some(*index),
        }
    }
}

/// The keys of `table` on exactly `columns`, in any order.
fn keys_on<'a>(table: &'a Table, columns: &[String]) -> Vec<Key<'a>> {
    let sorted = |columns: &[String]| {
        let mut sorted = columns.to_vec();
        sorted.sort();
        sorted
    };
    let wanted = sorted(columns);
    let mut keys = Vec::new();
    if !table.primary_key.is_empty() && sorted(&table.primary_key) == wanted {
        keys.push(Key::Primary);
    }
    keys.extend(
        (table.uniques.values())
            .filter(|u| sorted(&u.columns) == wanted)
            .map(Key::Unique),
    );
    keys.extend(
        (table.indexes.values())
            .filter(|i| i.unique && sorted(&i.columns) == wanted)
            .map(Key::Index),
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use crate::schema::{Column, ColumnType, Table};

    /// Parent `authors` and child `books`: name order is dependency order.
    fn library() -> Schema {
        Schema::new()
            .with_table(
                Table::new("authors")
                    .with_column(id())
                    .with_column(Column::new("name", ColumnType::Text))
                    .with_primary_key(["id"])
                    .with_index(index("ix_authors_name", &["name"])),
            )
            .with_table(
                Table::new("books")
                    .with_column(id())
                    .with_column(Column::new("author_id", ColumnType::BigInteger))
                    .with_primary_key(["id"])
                    .with_foreign_key(fk("books_author_id_fkey", "author_id", "authors", "id"))
                    .with_index(index("ix_books_author_id", &["author_id"])),
            )
    }

    #[test]
    fn created_tables_come_parents_first_with_their_constraints() {
        // Name order would put todo before users.
        let diff = applied(&Schema::new(), &base(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ create table users", "+ create table todo"]
        );
        assert_eq!(diff.operations[1], Operation::CreateTable(todo()));
        assert_eq!(diff.operations[0], Operation::CreateTable(users()));

        let diff = applied(&Schema::new(), &library(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["+ create table authors", "+ create table books"]
        );
    }

    #[test]
    fn dropped_tables_go_children_first_with_their_constraints() {
        // Name order would drop authors before books.
        let diff = applied(&library(), &Schema::new(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["- drop table books", "- drop table authors"]
        );
        let diff = applied(&base(), &Schema::new(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec!["- drop table todo", "- drop table users"]
        );
    }

    #[test]
    fn keys_of_kept_tables_on_a_dropped_table_go_first() {
        let with_projects = base()
            .with_table(
                Table::new("projects")
                    .with_column(id())
                    .with_column(Column::new("title", ColumnType::Text))
                    .with_primary_key(["id"]),
            )
            .with_table(
                todo()
                    .with_column(Column::new("project_id", ColumnType::BigInteger).nullable())
                    .with_foreign_key(fk("todo_project_id_fkey", "project_id", "projects", "id")),
            );
        let diff = applied(&with_projects, &base(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key todo_project_id_fkey on todo",
                "- drop table projects",
                "- drop column todo.project_id",
            ]
        );
        let diff = applied(&base(), &with_projects, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "+ create table projects",
                "+ add column todo.project_id BigInteger",
                "+ add foreign key todo_project_id_fkey on todo (project_id) -> projects (id)",
            ]
        );
    }

    fn cycle() -> Schema {
        Schema::new()
            .with_table(
                Table::new("a")
                    .with_column(id())
                    .with_column(Column::new("b_id", ColumnType::BigInteger).nullable())
                    .with_primary_key(["id"])
                    .with_foreign_key(fk("a_b_fkey", "b_id", "b", "id")),
            )
            .with_table(
                Table::new("b")
                    .with_column(id())
                    .with_column(Column::new("a_id", ColumnType::BigInteger).nullable())
                    .with_primary_key(["id"])
                    .with_foreign_key(fk("b_a_fkey", "a_id", "a", "id")),
            )
    }

    #[test]
    fn a_cycle_of_new_tables_adds_one_key_last() {
        let diff = applied(&Schema::new(), &cycle(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "+ create table a",
                "+ create table b",
                "+ add foreign key a_b_fkey on a (b_id) -> b (id)",
            ]
        );
        match &diff.operations[0] {
            Operation::CreateTable(a) => assert!(a.foreign_keys.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cycle_of_dropped_tables_is_unlinked_first() {
        let diff = applied(&cycle(), &Schema::new(), &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key a_b_fkey on a",
                "- drop table b",
                "- drop table a",
            ]
        );
    }

    #[test]
    fn a_new_table_waits_for_the_key_it_points_at() {
        // profiles points at users.handle, which this diff adds with its unique.
        let profiles = Table::new("profiles")
            .with_column(id())
            .with_column(Column::new("handle", ColumnType::String(Some(40))))
            .with_foreign_key(fk("profiles_handle_fkey", "handle", "users", "handle"));
        let to = base().with_table(profiles).with_table(
            users()
                .with_column(Column::new("handle", ColumnType::String(Some(40))))
                .with_unique(unique("users_handle_key", &["handle"])),
        );
        let diff = applied(&base(), &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "+ create table profiles",
                "+ add column users.handle String(40)",
                "+ add unique constraint users_handle_key on users (handle)",
                "+ add foreign key profiles_handle_fkey on profiles (handle) -> users (handle)",
            ]
        );

        // Pointing at a key that is already there, it is created with the table.
        let sessions = Table::new("sessions")
            .with_column(id())
            .with_column(Column::new("email", ColumnType::String(Some(255))))
            .with_foreign_key(fk("sessions_email_fkey", "email", "users", "email"));
        let diff = applied(
            &base(),
            &base().with_table(sessions.clone()),
            &mut NoRenames,
        );
        assert_eq!(diff.operations, vec![Operation::CreateTable(sessions)]);
    }

    #[test]
    fn a_dropped_table_lets_go_of_a_key_that_goes_first() {
        // sessions points at users.email, whose unique goes in the same diff.
        let sessions = Table::new("sessions")
            .with_column(id())
            .with_column(Column::new("email", ColumnType::String(Some(255))))
            .with_foreign_key(fk("sessions_email_fkey", "email", "users", "email"));
        let from = base().with_table(sessions);
        let mut to = base();
        to.tables.get_mut("users").unwrap().uniques.clear();
        let diff = applied(&from, &to, &mut NoRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "- drop foreign key sessions_email_fkey on sessions",
                "- drop unique constraint users_email_key on users",
                "- drop table sessions",
            ]
        );
        // With the unique kept, the key goes with its table.
        let diff = applied(
            &base().with_table(from.tables["sessions"].clone()),
            &base(),
            &mut NoRenames,
        );
        assert_eq!(lines(&diff), vec!["- drop table sessions"]);
    }
}
