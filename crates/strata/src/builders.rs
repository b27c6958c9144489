//! Builders for the parts of the schema model that have none in [`crate::schema`], so that
//! migration files (see [`crate::prelude`]) read as short chains of calls.

use crate::ops::DialectSql;
use crate::schema::{Check, ForeignKey, ForeignKeyAction, Index, Unique};

fn strings(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| (*c).to_string()).collect()
}

impl ForeignKey {
    /// A foreign key from `columns` to `ref_columns` of `ref_table`, with `NO ACTION` on
    /// delete and update.
    pub fn new(
        name: impl Into<String>,
        columns: &[&str],
        ref_table: impl Into<String>,
        ref_columns: &[&str],
    ) -> Self {
        ForeignKey {
            name: name.into(),
            columns: strings(columns),
            ref_table: ref_table.into(),
            ref_columns: strings(ref_columns),
            on_delete: ForeignKeyAction::NoAction,
            on_update: ForeignKeyAction::NoAction,
        }
    }

    /// Builder: what happens when the referenced row is deleted.
    pub fn on_delete(mut self, action: ForeignKeyAction) -> Self {
        self.on_delete = action;
        self
    }

    /// Builder: what happens when the referenced key is updated.
    pub fn on_update(mut self, action: ForeignKeyAction) -> Self {
        self.on_update = action;
        self
    }
}

impl Index {
    /// A non-unique index on `columns`, in order.
    pub fn new(name: impl Into<String>, columns: &[&str]) -> Self {
        Index {
            name: name.into(),
            columns: strings(columns),
            unique: false,
        }
    }

    /// Builder: makes the index unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
}

impl Unique {
    /// A unique constraint on `columns`, in order.
    pub fn new(name: impl Into<String>, columns: &[&str]) -> Self {
        Unique {
            name: name.into(),
            columns: strings(columns),
        }
    }
}

impl Check {
    /// A CHECK constraint; `expr` is SQL valid on both dialects.
    pub fn new(name: impl Into<String>, expr: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            expr: expr.into(),
        }
    }
}

impl DialectSql {
    /// Different SQL for each dialect; [`DialectSql::both`] when it is the same.
    pub fn new(postgres: impl Into<String>, sqlite: impl Into<String>) -> Self {
        DialectSql {
            postgres: postgres.into(),
            sqlite: sqlite.into(),
        }
    }
}
