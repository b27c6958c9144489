//! Migration operations: declarative steps that move a [`Schema`] forward, and their inverses.
//!
//! An operation knows three things: how it changes the in-memory schema ([`Operation::apply`]),
//! its inverse computed from the schema before it ([`Operation::reverse`]), and a one-line
//! description. SQL comes from [`crate::render`], read against the schema before.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Serialize, Serializer};

use crate::schema::{Check, Column, ForeignKey, Index, Schema, Table, Unique};

/// SQL written by hand for each dialect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialectSql {
    pub postgres: String,
    pub sqlite: String,
}

impl DialectSql {
    /// The same SQL on both dialects.
    pub fn both(sql: impl Into<String>) -> Self {
        let sql = sql.into();
        DialectSql {
            postgres: sql.clone(),
            sqlite: sql,
        }
    }
}

/// The future a data step returns.
pub type DataFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A Rust function run inside the migration's transaction (the reference's `data_upgrades`).
pub type DataFn = for<'a> fn(&'a mut crate::runner::DataContext<'_>) -> DataFuture<'a>;

/// A named Rust data step with an optional inverse.
#[derive(Clone)]
pub struct DataStep {
    pub name: String,
    pub up: DataFn,
    pub down: Option<DataFn>,
}

impl DataStep {
    pub fn new(name: impl Into<String>, up: DataFn) -> Self {
        DataStep {
            name: name.into(),
            up,
            down: None,
        }
    }

    pub fn with_down(mut self, down: DataFn) -> Self {
        self.down = Some(down);
        self
    }
}

impl fmt::Debug for DataStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataStep")
            .field("name", &self.name)
            .field("reversible", &self.down.is_some())
            .finish()
    }
}

impl PartialEq for DataStep {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.down.is_some() == other.down.is_some()
    }
}

impl Serialize for DataStep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Functions have no stable form; the checksum covers the name and reversibility.
        serializer.serialize_str(&format!(
            "{}{}",
            self.name,
            if self.down.is_some() {
                " (reversible)"
            } else {
                ""
            }
        ))
    }
}

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Operation {
    CreateTable(Table),
    DropTable {
        name: String,
    },
    RenameTable {
        from: String,
        to: String,
    },
    AddColumn {
        table: String,
        column: Column,
    },
    DropColumn {
        table: String,
        name: String,
    },
    /// Changes type, nullability, default or comment; `to.name` is the column's name.
    AlterColumn {
        table: String,
        to: Column,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    CreateIndex {
        table: String,
        index: Index,
    },
    DropIndex {
        table: String,
        name: String,
    },
    AddForeignKey {
        table: String,
        foreign_key: ForeignKey,
    },
    DropForeignKey {
        table: String,
        name: String,
    },
    AddUnique {
        table: String,
        unique: Unique,
    },
    DropUnique {
        table: String,
        name: String,
    },
    AddCheck {
        table: String,
        check: Check,
    },
    DropCheck {
        table: String,
        name: String,
    },
    /// Renames an index of `table` (one named after a renamed table, say).
    RenameIndex {
        table: String,
        from: String,
        to: String,
    },
    /// Renames a unique, check or foreign key constraint of `table`.
    RenameConstraint {
        table: String,
        from: String,
        to: String,
    },
    SetTableComment {
        table: String,
        comment: Option<String>,
    },
    /// SQL per dialect; `down` makes it reversible.
    RawSql {
        up: DialectSql,
        down: Option<DialectSql>,
    },
    /// A Rust data step.
    Data(DataStep),
}

/// An operation that does not fit the schema it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("table {0} does not exist")]
    NoTable(String),
    #[error("table {0} already exists")]
    TableExists(String),
    #[error("column {0}.{1} does not exist")]
    NoColumn(String, String),
    #[error("column {0}.{1} already exists")]
    ColumnExists(String, String),
    #[error("{kind} {name} does not exist on table {table}")]
    NoConstraint {
        kind: &'static str,
        table: String,
        name: String,
    },
    #[error("{kind} {name} already exists on table {table}")]
    ConstraintExists {
        kind: &'static str,
        table: String,
        name: String,
    },
}

/// An operation with no inverse (a raw SQL or data step without `down`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be reversed; write its downgrade by hand")]
pub struct Irreversible(pub String);

fn table_mut<'a>(schema: &'a mut Schema, name: &str) -> Result<&'a mut Table, StateError> {
    schema
        .tables
        .get_mut(name)
        .ok_or_else(|| StateError::NoTable(name.to_string()))
}

fn table_ref<'a>(schema: &'a Schema, name: &str) -> Result<&'a Table, StateError> {
    schema
        .tables
        .get(name)
        .ok_or_else(|| StateError::NoTable(name.to_string()))
}

/// Inserts `value` under `name` unless the map has it already.
fn insert_new<V>(
    map: &mut std::collections::BTreeMap<String, V>,
    kind: &'static str,
    table: &str,
    name: &str,
    value: V,
) -> Result<(), StateError> {
    if map.contains_key(name) {
        return Err(StateError::ConstraintExists {
            kind,
            table: table.to_string(),
            name: name.to_string(),
        });
    }
    map.insert(name.to_string(), value);
    Ok(())
}

/// Removes and returns `name` from the map.
fn remove_existing<V>(
    map: &mut std::collections::BTreeMap<String, V>,
    kind: &'static str,
    table: &str,
    name: &str,
) -> Result<V, StateError> {
    map.remove(name).ok_or_else(|| StateError::NoConstraint {
        kind,
        table: table.to_string(),
        name: name.to_string(),
    })
}

fn get_existing<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    kind: &'static str,
    table: &str,
    name: &str,
) -> Result<&'a V, StateError> {
    map.get(name).ok_or_else(|| StateError::NoConstraint {
        kind,
        table: table.to_string(),
        name: name.to_string(),
    })
}

fn rename_in(columns: &mut [String], from: &str, to: &str) {
    for column in columns.iter_mut().filter(|c| *c == from) {
        *column = to.to_string();
    }
}

impl Operation {
    /// Moves the in-memory schema forward; touches no database.
    pub fn apply(&self, schema: &mut Schema) -> Result<(), StateError> {
        match self {
            Operation::CreateTable(table) => {
                if schema.tables.contains_key(&table.name) {
                    return Err(StateError::TableExists(table.name.clone()));
                }
                schema.tables.insert(table.name.clone(), table.clone());
            }
            Operation::DropTable { name } => {
                schema
                    .tables
                    .remove(name)
                    .ok_or_else(|| StateError::NoTable(name.clone()))?;
            }
            Operation::RenameTable { from, to } => {
                if schema.tables.contains_key(to) {
                    return Err(StateError::TableExists(to.clone()));
                }
                let mut table = schema
                    .tables
                    .remove(from)
                    .ok_or_else(|| StateError::NoTable(from.clone()))?;
                table.name = to.clone();
                schema.tables.insert(to.clone(), table);
                for other in schema.tables.values_mut() {
                    for fk in other.foreign_keys.values_mut() {
                        if fk.ref_table == *from {
                            fk.ref_table = to.clone();
                        }
                    }
                }
            }
            Operation::AddColumn { table, column } => {
                let t = table_mut(schema, table)?;
                if t.column(&column.name).is_some() {
                    return Err(StateError::ColumnExists(table.clone(), column.name.clone()));
                }
                t.columns.push(column.clone());
            }
            Operation::DropColumn { table, name } => {
                let t = table_mut(schema, table)?;
                let before = t.columns.len();
                t.columns.retain(|c| c.name != *name);
                if t.columns.len() == before {
                    return Err(StateError::NoColumn(table.clone(), name.clone()));
                }
                // Indexes and keys on the column go with it, as the databases do.
                t.indexes.retain(|_, i| !i.columns.contains(name));
                t.uniques.retain(|_, u| !u.columns.contains(name));
                t.foreign_keys.retain(|_, fk| !fk.columns.contains(name));
                t.checks
                    .retain(|_, c| !crate::checks::mentions_column(&c.expr, name));
            }
            Operation::AlterColumn { table, to } => {
                let t = table_mut(schema, table)?;
                let column = t
                    .column_mut(&to.name)
                    .ok_or_else(|| StateError::NoColumn(table.clone(), to.name.clone()))?;
                *column = to.clone();
            }
            Operation::RenameColumn { table, from, to } => {
                let t = table_mut(schema, table)?;
                if t.column(to).is_some() {
                    return Err(StateError::ColumnExists(table.clone(), to.clone()));
                }
                let column = t
                    .column_mut(from)
                    .ok_or_else(|| StateError::NoColumn(table.clone(), from.clone()))?;
                column.name = to.clone();
                rename_in(&mut t.primary_key, from, to);
                for index in t.indexes.values_mut() {
                    rename_in(&mut index.columns, from, to);
                }
                for unique in t.uniques.values_mut() {
                    rename_in(&mut unique.columns, from, to);
                }
                for fk in t.foreign_keys.values_mut() {
                    rename_in(&mut fk.columns, from, to);
                }
                let table_name = table.clone();
                for other in schema.tables.values_mut() {
                    for fk in other.foreign_keys.values_mut() {
                        if fk.ref_table == table_name {
                            rename_in(&mut fk.ref_columns, from, to);
                        }
                    }
                }
            }
            Operation::CreateIndex { table, index } => {
                let t = table_mut(schema, table)?;
                insert_new(&mut t.indexes, "index", table, &index.name, index.clone())?;
            }
            Operation::DropIndex { table, name } => {
                let t = table_mut(schema, table)?;
                remove_existing(&mut t.indexes, "index", table, name)?;
            }
            Operation::AddForeignKey { table, foreign_key } => {
                let t = table_mut(schema, table)?;
                insert_new(
                    &mut t.foreign_keys,
                    "foreign key",
                    table,
                    &foreign_key.name,
                    foreign_key.clone(),
                )?;
            }
            Operation::DropForeignKey { table, name } => {
                let t = table_mut(schema, table)?;
                remove_existing(&mut t.foreign_keys, "foreign key", table, name)?;
            }
            Operation::AddUnique { table, unique } => {
                let t = table_mut(schema, table)?;
                insert_new(
                    &mut t.uniques,
                    "unique constraint",
                    table,
                    &unique.name,
                    unique.clone(),
                )?;
            }
            Operation::DropUnique { table, name } => {
                let t = table_mut(schema, table)?;
                remove_existing(&mut t.uniques, "unique constraint", table, name)?;
            }
            Operation::AddCheck { table, check } => {
                let t = table_mut(schema, table)?;
                insert_new(
                    &mut t.checks,
                    "check constraint",
                    table,
                    &check.name,
                    check.clone(),
                )?;
            }
            Operation::DropCheck { table, name } => {
                let t = table_mut(schema, table)?;
                remove_existing(&mut t.checks, "check constraint", table, name)?;
            }
            Operation::RenameIndex { table, from, to } => {
                let t = table_mut(schema, table)?;
                let mut index = remove_existing(&mut t.indexes, "index", table, from)?;
                index.name = to.clone();
                if let Err(err) = insert_new(&mut t.indexes, "index", table, to, index.clone()) {
                    index.name = from.clone();
                    t.indexes.insert(from.clone(), index);
                    return Err(err);
                }
            }
            Operation::RenameConstraint { table, from, to } => {
                crate::rename_objects::rename_constraint(table_mut(schema, table)?, from, to)?;
            }
            Operation::SetTableComment { table, comment } => {
                table_mut(schema, table)?.comment = comment.clone();
            }
            Operation::RawSql { .. } | Operation::Data(_) => {}
        }
        Ok(())
    }

    /// The operation that undoes this one, read from the schema before it ran.
    pub fn reverse(&self, before: &Schema) -> Result<Operation, Irreversible> {
        let state = |err: StateError| Irreversible(format!("{} ({err})", self.describe()));
        Ok(match self {
            Operation::CreateTable(table) => Operation::DropTable {
                name: table.name.clone(),
            },
            Operation::DropTable { name } => {
                Operation::CreateTable(table_ref(before, name).map_err(state)?.clone())
            }
            Operation::RenameTable { from, to } => Operation::RenameTable {
                from: to.clone(),
                to: from.clone(),
            },
            Operation::AddColumn { table, column } => Operation::DropColumn {
                table: table.clone(),
                name: column.name.clone(),
            },
            Operation::DropColumn { table, name } => {
                let t = table_ref(before, table).map_err(state)?;
                let column = t
                    .column(name)
                    .ok_or_else(|| state(StateError::NoColumn(table.clone(), name.clone())))?;
                Operation::AddColumn {
                    table: table.clone(),
                    column: column.clone(),
                }
            }
            Operation::AlterColumn { table, to } => {
                let t = table_ref(before, table).map_err(state)?;
                let column = t
                    .column(&to.name)
                    .ok_or_else(|| state(StateError::NoColumn(table.clone(), to.name.clone())))?;
                Operation::AlterColumn {
                    table: table.clone(),
                    to: column.clone(),
                }
            }
            Operation::RenameColumn { table, from, to } => Operation::RenameColumn {
                table: table.clone(),
                from: to.clone(),
                to: from.clone(),
            },
            Operation::CreateIndex { table, index } => Operation::DropIndex {
                table: table.clone(),
                name: index.name.clone(),
            },
            Operation::DropIndex { table, name } => {
                let t = table_ref(before, table).map_err(state)?;
                Operation::CreateIndex {
                    table: table.clone(),
                    index: get_existing(&t.indexes, "index", table, name)
                        .map_err(state)?
                        .clone(),
                }
            }
            Operation::AddForeignKey { table, foreign_key } => Operation::DropForeignKey {
                table: table.clone(),
                name: foreign_key.name.clone(),
            },
            Operation::DropForeignKey { table, name } => {
                let t = table_ref(before, table).map_err(state)?;
                Operation::AddForeignKey {
                    table: table.clone(),
                    foreign_key: get_existing(&t.foreign_keys, "foreign key", table, name)
                        .map_err(state)?
                        .clone(),
                }
            }
            Operation::AddUnique { table, unique } => Operation::DropUnique {
                table: table.clone(),
                name: unique.name.clone(),
            },
            Operation::DropUnique { table, name } => {
                let t = table_ref(before, table).map_err(state)?;
                Operation::AddUnique {
                    table: table.clone(),
                    unique: get_existing(&t.uniques, "unique constraint", table, name)
                        .map_err(state)?
                        .clone(),
                }
            }
            Operation::AddCheck { table, check } => Operation::DropCheck {
                table: table.clone(),
                name: check.name.clone(),
            },
            Operation::DropCheck { table, name } => {
                let t = table_ref(before, table).map_err(state)?;
                Operation::AddCheck {
                    table: table.clone(),
                    check: get_existing(&t.checks, "check constraint", table, name)
                        .map_err(state)?
                        .clone(),
                }
            }
            Operation::RenameIndex { table, from, to } => Operation::RenameIndex {
                table: table.clone(),
                from: to.clone(),
                to: from.clone(),
            },
            Operation::RenameConstraint { table, from, to } => Operation::RenameConstraint {
                table: table.clone(),
                from: to.clone(),
                to: from.clone(),
            },
            Operation::SetTableComment { table, .. } => Operation::SetTableComment {
                table: table.clone(),
                comment: table_ref(before, table).map_err(state)?.comment.clone(),
            },
            Operation::RawSql { up, down } => match down {
                Some(down) => Operation::RawSql {
                    up: down.clone(),
                    down: Some(up.clone()),
                },
                None => return Err(Irreversible(self.describe())),
            },
            Operation::Data(step) => match step.down {
                Some(down) => Operation::Data(DataStep {
                    name: format!("undo {}", step.name),
                    up: down,
                    down: Some(step.up),
                }),
                None => return Err(Irreversible(self.describe())),
            },
        })
    }

    /// One line for logs and listings, such as `+ add column todo.alarm_time`.
    pub fn describe(&self) -> String {
        match self {
            Operation::CreateTable(t) => format!("+ create table {}", t.name),
            Operation::DropTable { name } => format!("- drop table {name}"),
            Operation::RenameTable { from, to } => format!("~ rename table {from} to {to}"),
            Operation::AddColumn { table, column } => {
                format!("+ add column {table}.{} {}", column.name, column.ty)
            }
            Operation::DropColumn { table, name } => format!("- drop column {table}.{name}"),
            Operation::AlterColumn { table, to } => format!(
                "~ alter column {table}.{} to {}{}{}",
                to.name,
                to.ty,
                if to.nullable { " NULL" } else { " NOT NULL" },
                to.default
                    .as_ref()
                    .map(|d| format!(" DEFAULT {d}"))
                    .unwrap_or_default()
            ),
            Operation::RenameColumn { table, from, to } => {
                format!("~ rename column {table}.{from} to {to}")
            }
            Operation::CreateIndex { table, index } => format!(
                "+ create {}index {} on {table} ({})",
                if index.unique { "unique " } else { "" },
                index.name,
                index.columns.join(", ")
            ),
            Operation::DropIndex { table, name } => format!("- drop index {name} on {table}"),
            Operation::AddForeignKey { table, foreign_key } => format!(
                "+ add foreign key {} on {table} ({}) -> {} ({})",
                foreign_key.name,
                foreign_key.columns.join(", "),
                foreign_key.ref_table,
                foreign_key.ref_columns.join(", ")
            ),
            Operation::DropForeignKey { table, name } => {
                format!("- drop foreign key {name} on {table}")
            }
            Operation::AddUnique { table, unique } => format!(
                "+ add unique constraint {} on {table} ({})",
                unique.name,
                unique.columns.join(", ")
            ),
            Operation::DropUnique { table, name } => {
                format!("- drop unique constraint {name} on {table}")
            }
            Operation::AddCheck { table, check } => {
                format!(
                    "+ add check constraint {} on {table} ({})",
                    check.name, check.expr
                )
            }
            Operation::DropCheck { table, name } => {
                format!("- drop check constraint {name} on {table}")
            }
            Operation::RenameIndex { table, from, to } => {
                format!("~ rename index {from} on {table} to {to}")
            }
            Operation::RenameConstraint { table, from, to } => {
                format!("~ rename constraint {from} on {table} to {to}")
            }
            Operation::SetTableComment { table, comment } => match comment {
                Some(_) => format!("~ set comment on table {table}"),
                None => format!("~ remove comment on table {table}"),
            },
            Operation::RawSql { up, .. } => {
                let first = up.postgres.lines().next().unwrap_or_default();
                format!("! run SQL: {first}")
            }
            Operation::Data(step) => format!("! run data step {}", step.name),
        }
    }

    /// The table the operation changes, if one.
    pub fn table(&self) -> Option<&str> {
        match self {
            Operation::CreateTable(t) => Some(&t.name),
            Operation::DropTable { name } => Some(name),
            Operation::RenameTable { from, .. } => Some(from),
            Operation::AddColumn { table, .. }
            | Operation::DropColumn { table, .. }
            | Operation::AlterColumn { table, .. }
            | Operation::RenameColumn { table, .. }
            | Operation::CreateIndex { table, .. }
            | Operation::DropIndex { table, .. }
            | Operation::AddForeignKey { table, .. }
            | Operation::DropForeignKey { table, .. }
            | Operation::AddUnique { table, .. }
            | Operation::DropUnique { table, .. }
            | Operation::AddCheck { table, .. }
            | Operation::DropCheck { table, .. }
            | Operation::RenameIndex { table, .. }
            | Operation::RenameConstraint { table, .. }
            | Operation::SetTableComment { table, .. } => Some(table),
            Operation::RawSql { .. } | Operation::Data(_) => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
