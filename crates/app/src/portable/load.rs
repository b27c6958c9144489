//! Loading a dump: check everything, insert in batches in one transaction, verify, commit.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};
use serde_json::Value as Json;
use strata::render::quote_ident;
use strata::schema::{Schema, Table};

use super::dump::count_rows;
use super::manifest::{ColumnEntry, Manifest, TableEntry};
use super::{PortableError, TableSummary, read_table, revision_and_schema, start_table, values};
use crate::config::DatabaseSettings;
use crate::db::{Database, DbError};

/// Rows per INSERT, below both databases' limit on bound parameters (SQLite 32766).
const MAX_ROWS_PER_INSERT: usize = 1000;
const MAX_PARAMETERS_PER_INSERT: usize = 30_000;

/// A finished load.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub from: PathBuf,
    pub source_backend: String,
    pub revisions: Vec<String>,
    /// Counts and checksums read back from the target, equal to the manifest's.
    pub tables: Vec<TableSummary>,
}

/// Loads the dump in `dir` into `db`, which must be at the dump's revision with every table
/// empty.
pub async fn load(
    db: &Database,
    settings: &DatabaseSettings,
    dir: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<LoadReport, PortableError> {
    let manifest = Manifest::read(dir)?;
    let (revisions, schema) =
        revision_and_schema(db.conn(), settings, "target", &manifest.revisions).await?;
    check_fits(&manifest, &revisions, &schema)?;
    check_empty(db.conn(), &schema).await?;
    for entry in &manifest.tables {
        check_file(dir, entry, &schema.tables[&entry.name], progress)?;
    }

    let txn = crate::db::begin_write(db.conn())
        .await
        .map_err(|err| db.explain(err))?;
    match write_and_verify(&txn, settings, dir, &manifest, progress).await {
        Ok(tables) => {
            txn.commit().await.map_err(|err| {
                PortableError::RolledBack(format!("the commit failed: {}", db.explain(err)))
            })?;
            analyze(db, &manifest).await;
            Ok(LoadReport {
                from: dir.to_path_buf(),
                source_backend: manifest.source_backend,
                revisions: manifest.revisions,
                tables,
            })
        }
        Err(err) => {
            let _ = txn.rollback().await;
            Err(match err {
                said @ (PortableError::Refused(_) | PortableError::RolledBack(_)) => said,
                other => PortableError::RolledBack(other.to_string()),
            })
        }
    }
}

/// The dump must be for this revision and these exact tables and columns.
fn check_fits(
    manifest: &Manifest,
    revisions: &[String],
    schema: &Schema,
) -> Result<(), PortableError> {
    let mut dumped = manifest.revisions.clone();
    dumped.sort();
    if dumped != revisions {
        return Err(PortableError::Refused(format!(
            "the dump is at revision {} and the target at {}; upgrade or downgrade the target to {} first",
            dumped.join("+"),
            revisions.join("+"),
            dumped.join(" ")
        )));
    }
    for entry in &manifest.tables {
        let Some(table) = schema.table(&entry.name) else {
            return Err(PortableError::Refused(format!(
                "the dump has table {}, which the target's schema does not",
                entry.name
            )));
        };
        if ColumnEntry::of(table) != entry.columns {
            return Err(PortableError::Refused(format!(
                "table {}: the dump's columns differ from the target's",
                entry.name
            )));
        }
    }
    if let Some(missing) = schema
        .tables
        .keys()
        .find(|name| !manifest.tables.iter().any(|t| &t.name == *name))
    {
        return Err(PortableError::Refused(format!(
            "the dump has no file for table {missing}"
        )));
    }
    Ok(())
}

async fn check_empty<C: ConnectionTrait>(conn: &C, schema: &Schema) -> Result<(), PortableError> {
    for name in schema.tables.keys() {
        let rows = count_rows(conn, name).await?;
        if rows > 0 {
            return Err(PortableError::Refused(format!(
                "the target is not empty: table {name} has {rows} row(s); load into a new database \
                 upgraded to the dump's revision"
            )));
        }
    }
    Ok(())
}

/// Reads one rows file through: its count and checksum must be the manifest's, and every value
/// must fit its column, before anything is written.
fn check_file(
    dir: &Path,
    entry: &TableEntry,
    table: &Table,
    progress: &indicatif::ProgressBar,
) -> Result<(), PortableError> {
    start_table(progress, "checking", &entry.name, entry.rows);
    let path = dir.join(&entry.file);
    let mut rows = RowReader::open(&path, table)?;
    let mut fingerprint = super::Fingerprint::default();
    while rows.next_row().map_err(PortableError::Refused)?.is_some() {
        fingerprint.add(rows.line());
        progress.inc(1);
    }
    let found = fingerprint.finish(&entry.name);
    if found.rows != entry.rows || found.sha256 != entry.sha256 {
        return Err(PortableError::Refused(format!(
            "{}: {} row(s) with SHA-256 {}, but the manifest says {} row(s) with {}; the dump is damaged",
            path.display(),
            found.rows,
            short(&found.sha256),
            entry.rows,
            short(&entry.sha256)
        )));
    }
    Ok(())
}

async fn write_and_verify(
    txn: &DatabaseTransaction,
    settings: &DatabaseSettings,
    dir: &Path,
    manifest: &Manifest,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<TableSummary>, PortableError> {
    let backend = txn.get_database_backend();
    // Checked again under the write lock: nothing may have changed since.
    let (revisions, schema) =
        revision_and_schema(txn, settings, "target", &manifest.revisions).await?;
    check_fits(manifest, &revisions, &schema)?;
    if backend == DbBackend::Postgres {
        // Readers go on; writers wait until the load commits or rolls back.
        let names: Vec<String> = schema.tables.keys().map(|n| quote_ident(n)).collect();
        execute(
            txn,
            &format!("LOCK TABLE {} IN EXCLUSIVE MODE", names.join(", ")),
        )
        .await?;
    } else {
        // Foreign keys are checked at commit, so a table that points at itself loads in any order.
        execute(txn, "PRAGMA defer_foreign_keys = ON").await?;
    }
    check_empty(txn, &schema).await?;

    for entry in &manifest.tables {
        let table = &schema.tables[&entry.name];
        start_table(progress, "loading", &entry.name, entry.rows);
        insert_rows(txn, table, &dir.join(&entry.file), progress).await?;
    }
    let mut verified = Vec::new();
    for entry in &manifest.tables {
        start_table(progress, "verifying", &entry.name, entry.rows);
        let found = read_table(txn, &schema.tables[&entry.name], |_| {
            progress.inc(1);
            Ok(())
        })
        .await?;
        if found.rows != entry.rows || found.sha256 != entry.sha256 {
            return Err(PortableError::RolledBack(format!(
                "table {} reads back {} row(s) with SHA-256 {}, not the dump's {} row(s) with {}",
                entry.name,
                found.rows,
                short(&found.sha256),
                entry.rows,
                short(&entry.sha256)
            )));
        }
        verified.push(found);
    }
    Ok(verified)
}

/// Inserts a rows file in batches of bound parameters; one batch is held at a time.
async fn insert_rows(
    txn: &DatabaseTransaction,
    table: &Table,
    path: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<(), PortableError> {
    let per_insert =
        (MAX_PARAMETERS_PER_INSERT / table.columns.len().max(1)).clamp(1, MAX_ROWS_PER_INSERT);
    let columns: Vec<Alias> = table.columns.iter().map(|c| Alias::new(&c.name)).collect();
    let mut rows = RowReader::open(path, table)?;
    loop {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(&table.name))
            .columns(columns.clone());
        let mut in_batch = 0;
        while in_batch < per_insert {
            let Some(values) = rows.next_row().map_err(PortableError::RolledBack)? else {
                break;
            };
            insert
                .values(values)
                .map_err(|err| PortableError::RolledBack(format!("table {}: {err}", table.name)))?;
            in_batch += 1;
        }
        if in_batch == 0 {
            return Ok(());
        }
        txn.execute(&insert).await.map_err(|err| {
            PortableError::RolledBack(format!(
                "table {}: {}",
                table.name,
                DbError::from_db_err(err)
            ))
        })?;
        progress.inc(in_batch as u64);
    }
}

/// Reads a rows file a line at a time and turns each into insert expressions.
struct RowReader<'a> {
    reader: BufReader<File>,
    table: &'a Table,
    path: &'a Path,
    line: Vec<u8>,
    number: u64,
}

impl<'a> RowReader<'a> {
    fn open(path: &'a Path, table: &'a Table) -> Result<Self, PortableError> {
        let file = File::open(path).map_err(|err| PortableError::io(path, err))?;
        Ok(RowReader {
            reader: BufReader::with_capacity(256 * 1024, file),
            table,
            path,
            line: Vec::with_capacity(256),
            number: 0,
        })
    }

    /// The next row's values, `None` at the end, or a message naming the file and line.
    fn next_row(&mut self) -> Result<Option<Vec<Expr>>, String> {
        self.line.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|err| format!("{}: {err}", self.path.display()))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        row_exprs(&self.line, self.table)
            .map(Some)
            .map_err(|what| format!("{} line {}: {what}", self.path.display(), self.number))
    }

    /// The bytes of the row last read, with its newline.
    fn line(&self) -> &[u8] {
        &self.line
    }
}

/// One line's values as insert expressions, or why they do not fit the table.
fn row_exprs(line: &[u8], table: &Table) -> Result<Vec<Expr>, String> {
    if line.last() != Some(&b'\n') {
        return Err("the last line is cut off; the dump is damaged".into());
    }
    let row: Vec<Json> =
        serde_json::from_slice(line).map_err(|err| format!("not a JSON array: {err}"))?;
    if row.len() != table.columns.len() {
        return Err(format!(
            "{} value(s) for {} column(s)",
            row.len(),
            table.columns.len()
        ));
    }
    row.iter()
        .zip(&table.columns)
        .map(|(value, column)| {
            if value.is_null() && !column.nullable {
                return Err(format!("column {} cannot be null", column.name));
            }
            values::to_expr(value, &column.ty).map_err(|expected| {
                format!("column {} needs {expected}, found {value}", column.name)
            })
        })
        .collect()
}

async fn execute<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<(), PortableError> {
    conn.execute_unprepared(sql)
        .await
        .map_err(DbError::from_db_err)?;
    Ok(())
}

/// Fresh planner statistics for PostgreSQL after a bulk load; a failure only costs speed.
async fn analyze(db: &Database, manifest: &Manifest) {
    if db.backend() != crate::config::Backend::Postgresql {
        return;
    }
    for entry in &manifest.tables {
        let sql = format!("ANALYZE {}", quote_ident(&entry.name));
        if let Err(err) = db.conn().execute_unprepared(&sql).await {
            tracing::warn!(table = %entry.name, error = %err, "ANALYZE after load failed");
        }
    }
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}
