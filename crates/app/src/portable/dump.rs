//! Writing a dump: every table read in one consistent snapshot, streamed to its file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sea_orm::{AccessMode, ConnectionTrait, IsolationLevel, TransactionTrait};

use super::manifest::{self, ColumnEntry, Manifest, TableEntry};
use super::{PortableError, TableSummary, read_table, revision_and_schema, start_table};
use crate::config::{Backend, DatabaseSettings};
use crate::db::{Database, DbError};

/// A finished dump.
#[derive(Debug, Clone)]
pub struct DumpReport {
    pub path: PathBuf,
    pub revisions: Vec<String>,
    pub tables: Vec<TableSummary>,
}

/// Dumps every table of `db` into the directory `output`, which must not exist yet (or be
/// empty). The dump is written under a temporary name beside it and renamed when complete, so
/// a failed dump leaves nothing that looks like one.
pub async fn dump(
    db: &Database,
    settings: &DatabaseSettings,
    output: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<DumpReport, PortableError> {
    check_output(output)?;
    let temp = crate::backup::temp_next_to(output, "partial");
    std::fs::create_dir_all(&temp).map_err(|err| PortableError::io(&temp, err))?;
    let written = write_dump(db, settings, &temp, progress).await;
    let finished = written.and_then(|manifest| {
        if output.is_dir() {
            // An empty directory the user made for the dump: replaced by the finished one.
            std::fs::remove_dir(output).map_err(|err| PortableError::io(output, err))?;
        }
        std::fs::rename(&temp, output).map_err(|err| PortableError::io(output, err))?;
        Ok(manifest)
    });
    match finished {
        Ok(manifest) => Ok(DumpReport {
            path: output.to_path_buf(),
            revisions: manifest.revisions,
            tables: manifest
                .tables
                .into_iter()
                .map(|t| TableSummary {
                    table: t.name,
                    rows: t.rows,
                    sha256: t.sha256,
                })
                .collect(),
        }),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&temp);
            Err(err)
        }
    }
}

fn check_output(output: &Path) -> Result<(), PortableError> {
    if output.is_dir() {
        let mut entries =
            std::fs::read_dir(output).map_err(|err| PortableError::io(output, err))?;
        if entries.next().is_some() {
            return Err(PortableError::Refused(format!(
                "{} exists and is not empty; dump into a new directory",
                output.display()
            )));
        }
    } else if output.exists() {
        return Err(PortableError::Refused(format!(
            "{} exists and is a file; a dump is a directory",
            output.display()
        )));
    }
    match output.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.is_dir() => Err(PortableError::Refused(format!(
            "{} does not exist; create it first",
            parent.display()
        ))),
        _ => Ok(()),
    }
}

async fn write_dump(
    db: &Database,
    settings: &DatabaseSettings,
    dir: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Manifest, PortableError> {
    // One snapshot for the revision and every table: PostgreSQL's REPEATABLE READ, SQLite's
    // read transaction (WAL keeps it while the service writes).
    let txn = match db.backend() {
        Backend::Postgresql => {
            db.conn()
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await
        }
        Backend::Sqlite => db.conn().begin().await,
    }
    .map_err(|err| db.explain(err))?;
    let (revisions, schema) = revision_and_schema(&txn, settings, "source", &[]).await?;
    let mut tables = Vec::new();
    for name in schema.tables_in_dependency_order() {
        let table = &schema.tables[name];
        // The count costs a scan of the table: only for a bar that someone sees.
        let expected = if progress.is_hidden() {
            0
        } else {
            count_rows(&txn, name).await?
        };
        start_table(progress, "dumping", name, expected);
        let file_name = format!("{name}.jsonl");
        let path = dir.join(&file_name);
        let file = File::create(&path).map_err(|err| PortableError::io(&path, err))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let summary = read_table(&txn, table, |line| {
            progress.inc(1);
            out.write_all(line)
                .map_err(|err| PortableError::io(&path, err))
        })
        .await?;
        let file = out
            .into_inner()
            .map_err(|err| PortableError::io(&path, err.into_error()))?;
        file.sync_all()
            .map_err(|err| PortableError::io(&path, err))?;
        tracing::info!(table = name, rows = summary.rows, "dumped");
        tables.push(TableEntry {
            name: name.to_string(),
            file: file_name,
            columns: ColumnEntry::of(table),
            rows: summary.rows,
            sha256: summary.sha256,
        });
    }
    txn.rollback().await.map_err(|err| db.explain(err))?;
    let manifest = Manifest {
        format: manifest::FORMAT.to_string(),
        format_version: manifest::FORMAT_VERSION,
        app_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source_backend: db.backend().to_string(),
        revisions,
        tables,
    };
    manifest.write(dir)?;
    Ok(manifest)
}

/// The number of rows in `table`.
pub(super) async fn count_rows<C: ConnectionTrait>(
    conn: &C,
    table: &str,
) -> Result<u64, PortableError> {
    let sql = format!(
        "SELECT count(*) FROM {}",
        strata::render::quote_ident(table)
    );
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await
        .map_err(DbError::from_db_err)?;
    let count = row
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()
        .map_err(DbError::from_db_err)?
        .unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}
