//! One SQLite rebuild per table per migration.
//!
//! Each operation SQLite cannot do in place rebuilds its table (see [`crate::render`]). A
//! migration that changes a CHECK (drop, then add) or alters two columns of one table would
//! copy the table once per operation; this planner holds the rebuilds of a table back and
//! rebuilds it once, from its definition before the first of them to its definition when it
//! must be real: before an operation that needs the table as it is in the database (an index,
//! a rename, raw SQL, a data step) and at the end of the migration. Each rebuild is wrapped in
//! the steps that keep the views, triggers and indexes the schema does not describe
//! ([`crate::sqlite_dependents`]).

use crate::render::{needs_sqlite_rebuild, sqlite_rebuild};
use crate::runner::Step;
use crate::schema::{ColumnType, Table};
use crate::sqlite_dependents::{DependentsStep, Phase};
use crate::{Operation, Schema};

/// Rebuilds held back, in the order their tables were first touched.
#[derive(Debug, Default)]
pub(crate) struct RebuildPlanner {
    /// Each table with its definition before the first held rebuild.
    pending: Vec<(String, Table)>,
    /// True once any rebuild was written.
    pub rebuilt: bool,
}

/// What to do with one operation.
pub(crate) struct Decision {
    /// Steps to run before the operation (rebuilds that must happen first).
    pub before: Vec<Step>,
    /// True when the operation's SQL is a held rebuild: render nothing for it.
    pub absorbed: bool,
}

impl RebuildPlanner {
    /// Decides for `op`, read against `state` (the schema before `op`).
    pub fn decide(&mut self, op: &Operation, state: &Schema) -> Decision {
        let mut before = Vec::new();
        if matches!(op, Operation::RawSql { .. } | Operation::Data(_)) {
            // Hand-written SQL and Rust code see the database as it is: rebuild first.
            before.extend(self.flush_all(state));
            return Decision {
                before,
                absorbed: false,
            };
        }
        let Some(table) = op.table() else {
            return Decision {
                before,
                absorbed: false,
            };
        };
        let held = self.pending.iter().position(|(t, _)| t == table);
        if needs_sqlite_rebuild(op, state)
            && let Some(current) = state.table(table)
        {
            // A column dropped and added again under its name must not get the old values
            // back from the copy: rebuild what is held first.
            if let (Some(i), Operation::AddColumn { column, .. }) = (held, op)
                && self.pending[i].1.column(&column.name).is_some()
            {
                before.extend(self.flush(i, state));
                self.pending.push((table.to_string(), current.clone()));
            } else if held.is_none() {
                self.pending.push((table.to_string(), current.clone()));
            }
            return Decision {
                before,
                absorbed: true,
            };
        }
        // What SQLite does not store (comments, text lengths) renders nothing: no reason
        // to rebuild before it.
        let renders_nothing = crate::render::render(op, state, crate::Dialect::Sqlite)
            .is_ok_and(|sql| sql.is_empty());
        if let Some(i) = held.filter(|_| !renders_nothing) {
            if matches!(op, Operation::DropTable { .. }) {
                // The table goes: nothing to rebuild.
                self.pending.remove(i);
            } else {
                before.extend(self.flush(i, state));
            }
        }
        Decision {
            before,
            absorbed: false,
        }
    }

    /// Every held rebuild, for the end of the migration.
    pub fn flush_all(&mut self, state: &Schema) -> Vec<Step> {
        let mut steps = Vec::new();
        while !self.pending.is_empty() {
            steps.extend(self.flush(0, state));
        }
        steps
    }

    fn flush(&mut self, i: usize, state: &Schema) -> Vec<Step> {
        let (name, from) = self.pending.remove(i);
        let Some(to) = state.table(&name) else {
            return Vec::new();
        };
        self.rebuilt = true;
        let dropped_columns: Vec<String> = from
            .columns
            .iter()
            .filter(|c| to.column(&c.name).is_none())
            .map(|c| c.name.clone())
            .collect();
        let mut model_indexes: Vec<String> = from.indexes.keys().cloned().collect();
        model_indexes.extend(to.indexes.keys().cloned());
        let side = |phase| {
            Step::Dependents(DependentsStep {
                table: name.clone(),
                phase,
                dropped_columns: dropped_columns.clone(),
                model_indexes: model_indexes.clone(),
            })
        };
        let mut steps = vec![side(Phase::Save)];
        steps.extend(
            sqlite_rebuild(&from, to, &Default::default())
                .into_iter()
                .map(Step::Sql),
        );
        steps.push(side(Phase::Restore));
        steps
    }
}

/// True when SQLite stores values of the two types alike: the same type, or two text types
/// (SQLite ignores declared lengths, so `varchar(100)`, `varchar(200)` and `text` all hold any
/// text and changing between them needs no rebuild).
pub(crate) fn same_storage(a: &ColumnType, b: &ColumnType) -> bool {
    a == b || (is_text(a) && is_text(b))
}

fn is_text(ty: &ColumnType) -> bool {
    matches!(ty, ColumnType::String(_) | ColumnType::Text)
}

/// `schema` with every text column typed `text`: how the drift check compares SQLite tables,
/// whose declared text type stays as created when only its length changes.
pub(crate) fn text_types_as_one(schema: &Schema) -> Schema {
    let mut schema = schema.clone();
    for table in schema.tables.values_mut() {
        for column in &mut table.columns {
            if is_text(&column.ty) {
                column.ty = ColumnType::Text;
            }
        }
    }
    schema
}
