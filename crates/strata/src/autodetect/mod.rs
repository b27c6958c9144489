//! The autodetector: compares two schemas and writes the operations that turn one into the
//! other.
//!
//! The work runs in phases, one module each:
//!
//! 1. [`renames`] pairs tables and columns that disappeared with ones of the same shape that
//!    appeared and asks a [`RenamePolicy`] whether each pair is a rename;
//! 2. [`constraints`] finds foreign keys, uniques, checks and indexes that went away or
//!    changed, and later the ones that are new or changed;
//! 3. [`tables`] drops whole tables (children first) and creates new ones (parents first);
//! 4. [`columns`] adds, alters and drops columns and sets table comments.
//!
//! Every phase after the renames compares `to` with `from` *as the accepted renames leave it*,
//! so from then on tables, columns and constraints are matched by name alone. All walks are
//! over `BTreeMap`s or column lists, so the same inputs always give the same output.

use std::fmt;

use crate::Dialect;
use crate::ops::Operation;
use crate::schema::Schema;

mod columns;
mod constraints;
mod renames;
mod tables;

/// A rename the detector could propose: a table or column that disappeared while one of the
/// same shape appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenameCandidate {
    Table {
        from: String,
        to: String,
    },
    Column {
        table: String,
        from: String,
        to: String,
    },
}

impl fmt::Display for RenameCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenameCandidate::Table { from, to } => write!(f, "table {from} renamed to {to}"),
            RenameCandidate::Column { table, from, to } => {
                write!(f, "column {table}.{from} renamed to {table}.{to}")
            }
        }
    }
}

/// Decides proposed renames: `Some(true)` accept, `Some(false)` refuse (drop + add), `None`
/// no one to ask (drop + add, with a warning in [`Diff::warnings`]).
pub trait RenamePolicy {
    fn confirm(&mut self, candidate: &RenameCandidate) -> Option<bool>;
}

/// Any `FnMut(&RenameCandidate) -> Option<bool>` is a policy, such as a prompt on a terminal.
impl<F> RenamePolicy for F
where
    F: FnMut(&RenameCandidate) -> Option<bool>,
{
    fn confirm(&mut self, candidate: &RenameCandidate) -> Option<bool> {
        self(candidate)
    }
}

/// No one to ask: every candidate is written as drop + add, with a warning.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRenames;

impl RenamePolicy for NoRenames {
    fn confirm(&mut self, _candidate: &RenameCandidate) -> Option<bool> {
        None
    }
}

/// Accepts every candidate (for tests and non-interactive runs that trust the detector).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptRenames;

impl RenamePolicy for AcceptRenames {
    fn confirm(&mut self, _candidate: &RenameCandidate) -> Option<bool> {
        Some(true)
    }
}

/// How strictly two schemas are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffOptions {
    /// Compare check constraints by expression as well as by name. PostgreSQL rewrites check
    /// expressions, so a caller comparing with a live PostgreSQL passes `false`.
    pub compare_check_expressions: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            compare_check_expressions: true,
        }
    }
}

/// The operations that turn one schema into another, and what the user should know about them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub operations: Vec<Operation>,
    pub warnings: Vec<String>,
}

impl Diff {
    /// True when there is neither an operation nor a warning.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty() && self.warnings.is_empty()
    }
}

/// Operations that turn `from` into `to`, in an order that can be applied: first renames, then
/// dropped foreign keys/uniques/checks/indexes (before the columns/tables they use go), dropped
/// tables (children first), created tables (parents first), added/altered/dropped columns,
/// then added indexes/uniques/checks/foreign keys (after their columns exist). A table created
/// in this diff carries its own indexes, keys and checks inside [`Operation::CreateTable`].
pub fn diff(from: &Schema, to: &Schema, renames: &mut dyn RenamePolicy) -> Diff {
    diff_with(from, to, renames, DiffOptions::default())
}

/// [`diff`] with options.
pub fn diff_with(
    from: &Schema,
    to: &Schema,
    renames: &mut dyn RenamePolicy,
    options: DiffOptions,
) -> Diff {
    let mut warnings = Vec::new();
    let renamed = renames::detect(from, to, renames, options, &mut warnings);
    let current = &renamed.schema;

    let dropped_constraints = constraints::dropped(current, to, options);
    let dropped_tables = tables::dropped(current, to);
    let created_tables = tables::created(current, to);
    let column_changes = columns::changes(current, to, &mut warnings);
    let added_constraints = constraints::added(current, to, options);

    let mut operations = renamed.operations;
    operations.extend(dropped_constraints.foreign_keys);
    operations.extend(dropped_tables.unlinks);
    operations.extend(dropped_constraints.others);
    operations.extend(dropped_tables.drops);
    operations.extend(created_tables.creates);
    operations.extend(column_changes);
    operations.extend(added_constraints);
    operations.extend(created_tables.deferred_foreign_keys);
    Diff {
        operations,
        warnings,
    }
}

/// The differences between the schema the migrations expect and one introspected from a live
/// database of `dialect`, leaving out what that dialect cannot keep: SQLite stores no comments,
/// and PostgreSQL rewrites CHECK expressions (so there checks compare by name). `check` uses
/// [`crate::checks::live_drift`] instead, which asks PostgreSQL to rewrite the expected checks
/// and so compares their expressions too.
pub fn live_drift(expected: &Schema, live: &Schema, dialect: Dialect) -> Diff {
    // SQLite ignores declared lengths, so a length change is not rebuilt and keeps the old
    // declaration: text types compare as one there.
    let (expected, live) = match dialect {
        Dialect::Sqlite => (
            crate::sqlite_rebuilds::text_types_as_one(&expected.without_comments()),
            crate::sqlite_rebuilds::text_types_as_one(live),
        ),
        Dialect::Postgres => (expected.clone(), live.clone()),
    };
    let options = DiffOptions {
        compare_check_expressions: dialect == Dialect::Sqlite,
    };
    diff_with(&expected, &live, &mut NoRenames, options)
}

/// Each operation's [`Operation::describe`] line, in order (what `check` lists as drift).
pub fn describe_differences(diff: &Diff) -> Vec<String> {
    diff.operations.iter().map(Operation::describe).collect()
}

/// True when `a` and `b` are equal but for the order of columns in their tables.
pub fn same_shape(a: &Schema, b: &Schema) -> bool {
    normalized(a) == normalized(b)
}

/// `schema` with every table's columns sorted by name.
fn normalized(schema: &Schema) -> Schema {
    let mut schema = schema.clone();
    for table in schema.tables.values_mut() {
        table.columns.sort_by(|a, b| a.name.cmp(&b.name));
    }
    schema
}

/// Records a warning for the caller to show; logged at info only, since the caller shows it
/// to the user (a second copy at warn level would print it twice).
fn warn(warnings: &mut Vec<String>, message: String) {
    tracing::info!("{message}");
    warnings.push(message);
}

/// Builders and checks shared by the tests of every phase.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::schema::{
        Check, Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Index, Table, Unique,
    };

    pub fn id() -> Column {
        Column::new("id", ColumnType::BigInteger)
    }

    pub fn fk(name: &str, column: &str, ref_table: &str, ref_column: &str) -> ForeignKey {
        ForeignKey {
            name: name.to_string(),
            columns: vec![column.to_string()],
            ref_table: ref_table.to_string(),
            ref_columns: vec![ref_column.to_string()],
            on_delete: ForeignKeyAction::NoAction,
            on_update: ForeignKeyAction::NoAction,
        }
    }

    pub fn index(name: &str, columns: &[&str]) -> Index {
        Index {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique: false,
        }
    }

    pub fn unique(name: &str, columns: &[&str]) -> Unique {
        Unique {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    pub fn check(name: &str, expr: &str) -> Check {
        Check {
            name: name.to_string(),
            expr: expr.to_string(),
        }
    }

    /// The parent: users with a unique email.
    pub fn users() -> Table {
        Table::new("users")
            .with_column(id())
            .with_column(Column::new("email", ColumnType::String(Some(255))))
            .with_column(Column::new("name", ColumnType::Text).nullable())
            .with_primary_key(["id"])
            .with_unique(unique("users_email_key", &["email"]))
    }

    /// The child: todo items pointing at their owner.
    pub fn todo() -> Table {
        Table::new("todo")
            .with_column(id())
            .with_column(Column::new("title", ColumnType::Text))
            .with_column(Column::new("owner_id", ColumnType::BigInteger))
            .with_column(
                Column::new("done", ColumnType::Boolean).default(DefaultValue::Bool(false)),
            )
            .with_primary_key(["id"])
            .with_foreign_key(fk("todo_owner_id_fkey", "owner_id", "users", "id"))
            .with_index(index("ix_todo_owner_id", &["owner_id"]))
            .with_check(check("todo_title_not_empty", "title <> ''"))
    }

    pub fn base() -> Schema {
        Schema::new().with_table(users()).with_table(todo())
    }

    /// Diffs, applies the operations to `from` and checks that the result has `to`'s shape.
    pub fn applied(from: &Schema, to: &Schema, policy: &mut dyn RenamePolicy) -> Diff {
        applied_with(from, to, policy, DiffOptions::default())
    }

    pub fn applied_with(
        from: &Schema,
        to: &Schema,
        policy: &mut dyn RenamePolicy,
        options: DiffOptions,
    ) -> Diff {
        let diff = diff_with(from, to, policy, options);
        let mut state = from.clone();
        for op in &diff.operations {
            if let Err(err) = op.apply(&mut state) {
                panic!("{} does not apply: {err}\nall: {:#?}", op.describe(), diff);
            }
        }
        // Without expressions compared, only check names count.
        let loose = |schema: &Schema| {
            let mut schema = schema.clone();
            if !options.compare_check_expressions {
                for table in schema.tables.values_mut() {
                    table.checks.values_mut().for_each(|c| c.expr.clear());
                }
            }
            schema
        };
        assert!(
            same_shape(&loose(&state), &loose(to)),
            "applying {:#?}\ngives {state:#?}\nnot {to:#?}",
            describe_differences(&diff)
        );
        diff
    }

    /// The describe lines of a diff, to compare with a literal list.
    pub fn lines(diff: &Diff) -> Vec<String> {
        describe_differences(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::schema::{Column, ColumnType, DefaultValue, Table};

    #[test]
    fn identical_schemas_give_nothing() {
        let diff = applied(&base(), &base(), &mut NoRenames);
        assert!(diff.is_empty(), "{diff:#?}");
        assert!(
            diff_with(
                &Schema::new(),
                &Schema::new(),
                &mut NoRenames,
                DiffOptions::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn column_order_alone_is_no_change() {
        let mut to = base();
        to.tables.get_mut("todo").unwrap().columns.reverse();
        to.tables.get_mut("users").unwrap().columns.rotate_left(1);
        assert_ne!(base(), to);
        assert!(same_shape(&base(), &to));
        assert!(diff(&base(), &to, &mut AcceptRenames).is_empty());
    }

    #[test]
    fn same_shape_ignores_only_column_order() {
        let mut other = base();
        other.tables.get_mut("todo").unwrap().columns[1].nullable = true;
        assert!(!same_shape(&base(), &other));
        let mut commented = base();
        commented.tables.get_mut("todo").unwrap().comment = Some("items".into());
        assert!(!same_shape(&base(), &commented));
        assert!(same_shape(&Schema::new(), &Schema::new()));
    }

    #[test]
    fn describe_differences_lists_each_operation() {
        let to = base().with_table(Table::new("tags").with_column(id()));
        let diff = diff(&base(), &to, &mut NoRenames);
        assert_eq!(describe_differences(&diff), vec!["+ create table tags"]);
    }

    #[test]
    fn phases_come_in_order() {
        // Every phase at once: a rename, a dropped index, a dropped table, a created table,
        // an added column and an added foreign key.
        let from = base()
            .with_table(Table::new("audit").with_column(id()))
            .with_table(
                Table::new("labels")
                    .with_column(id())
                    .with_column(Column::new("text", ColumnType::Text)),
            );
        let mut todo = todo()
            .with_column(Column::new("label_id", ColumnType::BigInteger).nullable())
            .with_foreign_key(fk("todo_label_id_fkey", "label_id", "tags", "id"));
        todo.indexes.clear();
        let to = Schema::new()
            .with_table(users())
            .with_table(todo)
            .with_table(
                Table::new("tags")
                    .with_column(id())
                    .with_column(Column::new("text", ColumnType::Text)),
            )
            .with_table(
                Table::new("projects")
                    .with_column(id())
                    .with_column(Column::new("name", ColumnType::Text)),
            );
        let diff = applied(&from, &to, &mut AcceptRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename table labels to tags",
                "- drop index ix_todo_owner_id on todo",
                "- drop table audit",
                "+ create table projects",
                "+ add column todo.label_id BigInteger",
                "+ add foreign key todo_label_id_fkey on todo (label_id) -> tags (id)",
            ]
        );
    }

    /// Pairs whose diff, applied to the first, must give the second (both ways round); the
    /// flag is false when only renames can do it (a renamed primary key column has no
    /// drop + add form, since no operation changes a primary key).
    fn pairs() -> Vec<(Schema, Schema, bool)> {
        let mut renamed_column = base();
        {
            let todo = renamed_column.tables.get_mut("todo").unwrap();
            todo.columns[1].name = "summary".into();
            todo.checks.clear();
            todo.checks.insert(
                "todo_title_not_empty".into(),
                check("todo_title_not_empty", "summary <> ''"),
            );
        }
        let mut renamed_key = base();
        {
            let users = renamed_key.tables.get_mut("users").unwrap();
            users.columns[0].name = "user_id".into();
            users.primary_key = vec!["user_id".into()];
            let todo = renamed_key.tables.get_mut("todo").unwrap();
            todo.foreign_keys
                .get_mut("todo_owner_id_fkey")
                .unwrap()
                .ref_columns = vec!["user_id".into()];
        }
        let mut renamed_table = Schema::new().with_table(users());
        {
            let mut tasks = todo();
            tasks.name = "tasks".into();
            tasks.indexes.clear();
            tasks = tasks.with_index(index("ix_tasks_owner_id", &["owner_id"]));
            renamed_table = renamed_table.with_table(tasks);
        }
        let mut reshaped = base();
        {
            let todo = reshaped.tables.get_mut("todo").unwrap();
            todo.columns.retain(|c| c.name != "done");
            todo.columns
                .push(Column::new("due", ColumnType::TimestampTz).nullable());
            todo.columns[1].ty = ColumnType::String(Some(200));
            todo.columns[2].nullable = true;
            todo.foreign_keys
                .get_mut("todo_owner_id_fkey")
                .unwrap()
                .on_delete = crate::schema::ForeignKeyAction::Cascade;
            todo.indexes
                .insert("ix_todo_due".into(), index("ix_todo_due", &["due"]));
            todo.comment = Some("things to do".into());
            let users = reshaped.tables.get_mut("users").unwrap();
            users.uniques.clear();
            users.columns[2].default = Some(DefaultValue::Str("anonymous".into()));
        }
        let chain = Schema::new()
            .with_table(Table::new("a").with_column(id()).with_primary_key(["id"]))
            .with_table(
                Table::new("b")
                    .with_column(id())
                    .with_column(Column::new("a_id", ColumnType::BigInteger))
                    .with_primary_key(["id"])
                    .with_foreign_key(fk("b_a_fkey", "a_id", "a", "id")),
            )
            .with_table(
                Table::new("c")
                    .with_column(id())
                    .with_column(Column::new("b_id", ColumnType::BigInteger))
                    .with_foreign_key(fk("c_b_fkey", "b_id", "b", "id")),
            );
        vec![
            (base(), renamed_column, true),
            (base(), renamed_key, false),
            (base(), renamed_table, true),
            (base(), reshaped, true),
            (base(), Schema::new(), true),
            (base(), chain.clone(), true),
            (chain, Schema::new().with_table(users()), true),
        ]
    }

    #[test]
    fn applying_the_diff_gives_the_target() {
        for (a, b, without_renames) in pairs() {
            for (from, to) in [(&a, &b), (&b, &a)] {
                applied(from, to, &mut AcceptRenames);
                if without_renames {
                    applied(from, to, &mut NoRenames);
                    applied(from, to, &mut |_: &RenameCandidate| Some(false));
                } else {
                    let diff = diff(from, to, &mut NoRenames);
                    assert!(diff.warnings.iter().any(|w| w.contains("primary key")));
                }
                applied_with(
                    from,
                    to,
                    &mut AcceptRenames,
                    DiffOptions {
                        compare_check_expressions: false,
                    },
                );
            }
        }
    }

    #[test]
    fn renames_keep_the_diff_small() {
        let (from, to, _) = pairs().swap_remove(0);
        let diff = applied(&from, &to, &mut AcceptRenames);
        assert_eq!(
            lines(&diff),
            vec![
                "~ rename column todo.title to summary",
                "- drop check constraint todo_title_not_empty on todo",
                "+ add check constraint todo_title_not_empty on todo (summary <> '')",
            ]
        );
    }

    #[test]
    fn same_inputs_give_identical_output() {
        for (from, to, _) in pairs() {
            let first = diff(&from, &to, &mut NoRenames);
            let second = diff(&from, &to, &mut NoRenames);
            assert_eq!(first, second);
            assert_eq!(format!("{first:?}"), format!("{second:?}"));
            let first = diff(&from, &to, &mut AcceptRenames);
            let second = diff(&from.clone(), &to.clone(), &mut AcceptRenames);
            assert_eq!(format!("{first:?}"), format!("{second:?}"));
        }
    }

    #[test]
    fn candidates_read_well() {
        let table = RenameCandidate::Table {
            from: "todo".into(),
            to: "tasks".into(),
        };
        assert_eq!(table.to_string(), "table todo renamed to tasks");
        let column = RenameCandidate::Column {
            table: "todo".into(),
            from: "title".into(),
            to: "summary".into(),
        };
        assert_eq!(
            column.to_string(),
            "column todo.title renamed to todo.summary"
        );
    }
}
