//! `app database dump` and `app database load`: a portable, logical copy of every table that
//! either database can take back.
//!
//! A dump is a directory: one file of rows per table (JSON Lines, one array per row, sorted by
//! primary key, values in the canonical form of [`values`]) and `manifest.json` with the schema
//! revision, the columns, and each table's row count and SHA-256. Since the form does not depend
//! on the database, a table's checksum is the same on PostgreSQL and SQLite when its data is.
//!
//! Rows are streamed both ways, so memory stays flat whatever the size. A load checks everything
//! it can before writing (manifest, revision, columns, an empty target, every file's count and
//! checksum, every value), then inserts in batches inside one transaction, re-reads what it wrote
//! and compares counts and checksums before committing: a failure anywhere leaves the target as
//! it was.

mod dump;
mod load;
pub mod manifest;
pub mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, StreamTrait};
use sha2::{Digest, Sha256};
use strata::render::quote_ident;
use strata::schema::{Schema, Table};

use crate::config::DatabaseSettings;
use crate::db::DbError;
use crate::migrate::{self, MigrateError};

pub use dump::{DumpReport, dump};
pub use load::{LoadReport, load};

/// Why a dump or load failed; the message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PortableError {
    /// Checked before anything was written.
    #[error("{0}")]
    Refused(String),
    /// The load started and was rolled back.
    #[error("load failed and was rolled back; the target is as it was: {0}")]
    RolledBack(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(Box<MigrateError>),
}

impl PortableError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        PortableError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<MigrateError> for PortableError {
    fn from(err: MigrateError) -> Self {
        PortableError::Migrate(Box::new(err))
    }
}

/// One table's figures, as the manifest records them and as a load verifies them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableSummary {
    pub table: String,
    pub rows: u64,
    pub sha256: String,
}

/// The row count and SHA-256 of the canonical lines of a table, as they go by.
#[derive(Default)]
struct Fingerprint {
    rows: u64,
    hasher: Sha256,
}

impl Fingerprint {
    fn add(&mut self, line: &[u8]) {
        self.rows += 1;
        self.hasher.update(line);
    }

    fn finish(self, table: &str) -> TableSummary {
        TableSummary {
            table: table.to_string(),
            rows: self.rows,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

/// The schema revision(s) a database is at and the schema that gives, read through `conn` (inside
/// the caller's transaction, so it matches the rows read next). `role` names the database in
/// messages; `wanted` is the revision a load needs, for the hint when none is applied.
async fn revision_and_schema<C: ConnectionTrait>(
    conn: &C,
    settings: &DatabaseSettings,
    role: &str,
    wanted: &[String],
) -> Result<(Vec<String>, Schema), PortableError> {
    let migrator = migrate::migrator(settings)?;
    let history = migrator.history();
    let status = migrate::status_through(conn, &migrator)
        .await
        .map_err(DbError::from_db_err)?;
    if let Some(foreign) = status.foreign {
        return Err(MigrateError::NeedsAdoption(foreign).into());
    }
    if let Some(unknown) = status.unknown.first() {
        return Err(PortableError::Refused(format!(
            "the {role} database is at revision {unknown}, which this build of app does not know"
        )));
    }
    if status.applied.is_empty() {
        return Err(PortableError::Refused(format!(
            "the {role} database has no migrations applied; run `app database upgrade{}{}` on it first",
            if wanted.is_empty() { "" } else { " " },
            wanted.join(" ")
        )));
    }
    let applied: BTreeSet<String> = status.applied.iter().map(|a| a.revision.clone()).collect();
    let schema = history
        .schema_with(&applied)
        .map_err(|err| PortableError::Migrate(Box::new(err.into())))?;
    let mut current = status.current;
    current.sort();
    Ok((current, schema))
}

/// `SELECT` of every column of `table` in canonical order: by primary key (by every column when
/// there is none), so the same rows give the same lines on both databases.
fn select_sql(table: &Table) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| values::select_expr(&quote_ident(&c.name), &c.ty))
        .collect();
    let order: Vec<String> = if table.primary_key.is_empty() {
        table.columns.iter().map(|c| quote_ident(&c.name)).collect()
    } else {
        table.primary_key.iter().map(|c| quote_ident(c)).collect()
    };
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        quote_ident(&table.name),
        order.join(", ")
    )
}

/// Streams `table`'s rows as canonical lines (JSON array + `\n`) to `each`, and returns their
/// count and checksum.
async fn read_table<C: StreamTrait>(
    conn: &C,
    table: &Table,
    mut each: impl FnMut(&[u8]) -> Result<(), PortableError>,
) -> Result<TableSummary, PortableError> {
    let backend = conn.get_database_backend();
    let stream = conn
        .stream_raw(sea_orm::Statement::from_string(backend, select_sql(table)))
        .await
        .map_err(DbError::from_db_err)?;
    let mut stream = std::pin::pin!(stream);
    let mut fingerprint = Fingerprint::default();
    let mut line = Vec::with_capacity(256);
    let mut row_values = Vec::with_capacity(table.columns.len());
    while let Some(row) = stream.next().await {
        let row = row.map_err(DbError::from_db_err)?;
        row_values.clear();
        for (idx, column) in table.columns.iter().enumerate() {
            let value = values::read(&row, idx, &column.ty).map_err(|err| {
                PortableError::Refused(format!(
                    "table {}, row {}, column {}: {err}",
                    table.name,
                    fingerprint.rows + 1,
                    column.name
                ))
            })?;
            row_values.push(value);
        }
        line.clear();
        serde_json::to_writer(&mut line, &row_values)
            .map_err(|err| PortableError::Refused(format!("table {}: {err}", table.name)))?;
        line.push(b'\n');
        fingerprint.add(&line);
        each(&line)?;
    }
    Ok(fingerprint.finish(&table.name))
}

/// A progress bar for `len` items of `table` when one is shown.
fn start_table(bar: &indicatif::ProgressBar, verb: &str, table: &str, len: u64) {
    bar.set_position(0);
    bar.set_length(len);
    bar.set_message(format!("{verb} {table}"));
}
