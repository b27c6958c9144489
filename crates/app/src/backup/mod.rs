//! `app database backup` and `app database restore`: PostgreSQL through `pg_dump`,
//! `pg_restore` and `psql` ([`postgres`]); SQLite through the online backup API and an atomic
//! file swap ([`sqlite`]).
//!
//! Every output is written under a temporary name in the destination folder and renamed into
//! place only when complete, so a failed backup or restore leaves no half-written file. While
//! they run, backup and restore report to a [`Progress`]: [`backup`] and [`restore`] stay quiet,
//! the CLI passes [`progress::on_terminal`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{DatabaseSettings, DatabaseUrl};

mod online;
mod postgres;
pub mod progress;
mod sqlite;

pub use progress::{Event, Progress, Quiet};

/// What a backup contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupFormat {
    /// PostgreSQL: pg_dump's custom archive (`-Fc`); SQLite: a database file.
    #[default]
    Custom,
    /// PostgreSQL: an SQL script (`-Fp`); SQLite: a database file.
    Plain,
    /// The CREATE statements only, as SQL text.
    Schema,
}

/// Why a backup or restore failed; the message is one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(String);

impl BackupError {
    fn new(message: impl Into<String>) -> Self {
        BackupError(one_line(&message.into()))
    }
}

impl From<crate::db::DbError> for BackupError {
    fn from(err: crate::db::DbError) -> Self {
        BackupError::new(err.to_string())
    }
}

/// A finished backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
}

/// A finished restore.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub from: PathBuf,
    /// The database restored into (password hidden).
    pub into: String,
    /// What kind of file it was.
    pub kind: &'static str,
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
const PG_CUSTOM_HEADER: &[u8; 5] = b"PGDMP";
const PG_PLAIN_MARKER: &str = "PostgreSQL database dump";

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `output`, or `backup-<name>-<UTC timestamp>.<ext>` in the working directory.
fn target_or_default(output: Option<PathBuf>, name: &str, ext: &str) -> PathBuf {
    output.unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from(format!("backup-{name}-{stamp}.{ext}"))
    })
}

/// `dir/.name.TAG-PID`: a name next to `target` (so the final rename stays on one filesystem)
/// that no other run uses. Also where `app database dump` writes before renaming.
pub(crate) fn temp_next_to(target: &Path, tag: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let file = format!(".{name}.{tag}-{}", std::process::id());
    match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Moves a finished temp file into place, removing it when that fails.
fn finish(temp: &Path, target: &Path) -> Result<(), BackupError> {
    std::fs::rename(temp, target).map_err(|err| {
        let _ = std::fs::remove_file(temp);
        BackupError::new(format!("cannot write {}: {err}", target.display()))
    })
}

/// Runs blocking work (a copy, an external tool) on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BackupError::new(format!("the backup thread failed: {err}")))?
}

/// Writes a backup of the database; `output` defaults to a timestamped name in the working
/// directory. Reports no progress.
pub async fn backup(
    settings: &DatabaseSettings,
    format: BackupFormat,
    output: Option<PathBuf>,
) -> Result<BackupReport, BackupError> {
    backup_with_progress(settings, format, output, Arc::new(Quiet)).await
}

/// [`backup`], reporting to `progress` while it runs (and calling its `finish` at the end).
pub async fn backup_with_progress(
    settings: &DatabaseSettings,
    format: BackupFormat,
    output: Option<PathBuf>,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport, BackupError> {
    let result = match &settings.url {
        DatabaseUrl::Postgres {
            options, password, ..
        } => postgres::backup(options, password.as_deref(), format, output, &progress).await,
        DatabaseUrl::Sqlite { path } => {
            sqlite::backup(settings, path.as_deref(), format, output, &progress).await
        }
    };
    progress.finish();
    result
}

/// Replaces the database's contents with those of a backup file. Reports no progress.
pub async fn restore(
    settings: &DatabaseSettings,
    file: &Path,
) -> Result<RestoreReport, BackupError> {
    restore_with_progress(settings, file, Arc::new(Quiet)).await
}

/// [`restore`], reporting to `progress` while it runs (and calling its `finish` at the end).
pub async fn restore_with_progress(
    settings: &DatabaseSettings,
    file: &Path,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport, BackupError> {
    let result = restore_inner(settings, file, &progress).await;
    progress.finish();
    result
}

async fn restore_inner(
    settings: &DatabaseSettings,
    file: &Path,
    progress: &Arc<dyn Progress>,
) -> Result<RestoreReport, BackupError> {
    let header = read_header(file)?;
    match &settings.url {
        DatabaseUrl::Postgres {
            options,
            password,
            display,
            ..
        } => {
            let custom = header.starts_with(PG_CUSTOM_HEADER);
            let kind = if custom {
                "pg_dump custom archive"
            } else if String::from_utf8_lossy(&header).contains(PG_PLAIN_MARKER) {
                "pg_dump SQL script"
            } else {
                return Err(BackupError::new(format!(
                    "{} is not a PostgreSQL backup (neither a pg_dump custom archive nor a pg_dump SQL script)",
                    file.display()
                )));
            };
            postgres::restore(options, password.as_deref(), file, custom, progress).await?;
            Ok(RestoreReport {
                from: file.to_path_buf(),
                into: display.clone(),
                kind,
            })
        }
        DatabaseUrl::Sqlite { path: None } => Err(BackupError::new(
            "cannot restore into an in-memory SQLite database; set DATABASE_URL to a database file",
        )),
        DatabaseUrl::Sqlite { path: Some(target) } => {
            if !header.starts_with(SQLITE_HEADER) {
                return Err(BackupError::new(format!(
                    "{} is not a SQLite database backup",
                    file.display()
                )));
            }
            sqlite::restore(file, target, progress).await?;
            Ok(RestoreReport {
                from: file.to_path_buf(),
                into: settings.url.to_string(),
                kind: "SQLite database",
            })
        }
    }
}

/// The first KiB of a file.
fn read_header(file: &Path) -> Result<Vec<u8>, BackupError> {
    let mut handle = std::fs::File::open(file)
        .map_err(|err| BackupError::new(format!("cannot read {}: {err}", file.display())))?;
    let mut header = Vec::with_capacity(1024);
    handle
        .by_ref()
        .take(1024)
        .read_to_end(&mut header)
        .map_err(|err| BackupError::new(format!("cannot read {}: {err}", file.display())))?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backup and restore can run on spawned tasks: their futures are `Send` (checked at
    /// compile time; never called).
    #[allow(dead_code)]
    fn futures_are_send(settings: &DatabaseSettings, file: &Path) {
        fn send<T: Send>(_: T) {}
        send(backup(settings, BackupFormat::Custom, None));
        send(restore(settings, file));
    }
}
