//! Strata: a schema migration engine for PostgreSQL and SQLite.
//!
//! Data flows like this: migrations are lists of declarative [`Operation`]s; replaying them
//! gives the [`Schema`] at any revision without a database ([`state`]); the autodetector diffs
//! two schemas into new operations ([`autodetect`]) and the writer turns those into a migration
//! file ([`writer`]); the renderer turns operations into each dialect's SQL ([`render`]), and
//! the runner applies them with a version table, checksums and a lock ([`runner`]).
//! Introspection reads a live database back into a [`Schema`] ([`introspect`]) so `check` can
//! compare it with what the migrations expect.
//!
//! The engine knows nothing of any application: the application hands it a list of
//! migrations and a target schema.

pub mod adopt;
pub mod autodetect;
mod builders;
pub mod checks;
pub mod checksum;
pub mod concurrent;
pub mod defaults;
pub mod introspect;
pub mod lint;
mod lint_postgres;
pub mod migration;
pub mod migrator;
pub mod names;
mod narrowing_guard;
mod non_atomic_guard;
pub mod ops;
pub mod prelude;
mod rename_objects;
pub mod render;
mod reverse;
pub mod runner;
pub mod schema;
pub mod server_error;
pub mod sqlite_dependents;
mod sqlite_rebuilds;
pub mod squash;
pub mod state;
pub mod stored;
#[cfg(test)]
pub mod testing;
pub mod timeouts;
pub mod writer;

pub use migration::Migration;
pub use ops::{DataStep, DialectSql, Irreversible, Operation, StateError};
pub use schema::{
    Check, Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Index, Schema, Table,
    Unique,
};

/// The SQL dialects the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "postgresql",
            Dialect::Sqlite => "sqlite",
        })
    }
}
