//! `app database backup` and `app database restore`: PostgreSQL through `pg_dump`,
//! `pg_restore` and `psql`; SQLite through `VACUUM INTO` and an atomic file swap.
//!
//! Every output is written under a temporary name in the destination folder and renamed into
//! place only when complete, so a failed backup or restore leaves no half-written file.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{ConnectOptions, Connection, Row};

use crate::config::{DatabaseSettings, DatabaseUrl};
use crate::db::Database;

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

fn timestamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// `dir/.name.tmp-PID`: a name next to `target` that no other run uses.
fn temp_next_to(target: &Path, tag: &str) -> PathBuf {
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

/// Writes a backup of the database; `output` defaults to a timestamped name in the working
/// directory.
pub async fn backup(
    settings: &DatabaseSettings,
    format: BackupFormat,
    output: Option<PathBuf>,
) -> Result<BackupReport, BackupError> {
    match &settings.url {
        DatabaseUrl::Postgres {
            options, password, ..
        } => pg_backup(options, password.as_deref(), format, output).await,
        DatabaseUrl::Sqlite { path } => {
            sqlite_backup(settings, path.as_deref(), format, output).await
        }
    }
}

/// Replaces the database's contents with those of a backup file.
pub async fn restore(
    settings: &DatabaseSettings,
    file: &Path,
) -> Result<RestoreReport, BackupError> {
    let header = read_header(file)?;
    match &settings.url {
        DatabaseUrl::Postgres {
            options,
            password,
            display,
        } => {
            let kind = if header.starts_with(PG_CUSTOM_HEADER) {
                "pg_dump custom archive"
            } else if String::from_utf8_lossy(&header).contains(PG_PLAIN_MARKER) {
                "pg_dump SQL script"
            } else {
                return Err(BackupError::new(format!(
                    "{} is not a PostgreSQL backup (neither a pg_dump custom archive nor a pg_dump SQL script)",
                    file.display()
                )));
            };
            pg_restore(
                options,
                password.as_deref(),
                file,
                header.starts_with(PG_CUSTOM_HEADER),
            )?;
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
            sqlite_restore(file, target).await?;
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

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const INSTALL_CLIENT: &str =
    "install the PostgreSQL client (e.g. `apt-get install postgresql-client`)";

/// `name` on PATH.
fn find_tool(name: &str) -> Result<PathBuf, BackupError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| BackupError::new(format!("{name} is not on PATH; {INSTALL_CLIENT}")))
}

/// The major version in `pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)`.
fn tool_major(version_line: &str) -> Option<u32> {
    let after = version_line
        .split_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or(version_line);
    after
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
}

/// A command for a PostgreSQL tool with the connection given by environment.
fn pg_command(
    tool: &Path,
    options: &sqlx::postgres::PgConnectOptions,
    password: Option<&str>,
) -> Command {
    let mut cmd = Command::new(tool);
    for var in ["PGSERVICE", "PGPASSFILE", "PGOPTIONS"] {
        cmd.env_remove(var);
    }
    let host: OsString = match options.get_socket() {
        Some(socket) => socket.as_os_str().to_owned(),
        None => options.get_host().into(),
    };
    cmd.env("PGHOST", host)
        .env("PGPORT", options.get_port().to_string())
        .env("PGUSER", options.get_username())
        .env(
            "PGDATABASE",
            options.get_database().unwrap_or(options.get_username()),
        );
    match password {
        Some(password) => cmd.env("PGPASSWORD", password),
        None => cmd.env_remove("PGPASSWORD"),
    };
    cmd
}

fn run_tool(mut cmd: Command, name: &str) -> Result<(), BackupError> {
    let out = cmd
        .output()
        .map_err(|err| BackupError::new(format!("cannot run {name}: {err}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = stderr
        .lines()
        .find(|line| line.contains("error") || line.contains("ERROR") || line.contains("FATAL"))
        .or_else(|| stderr.lines().find(|line| !line.trim().is_empty()))
        .unwrap_or("no message");
    Err(BackupError::new(format!(
        "{name} failed ({}): {}",
        out.status,
        detail.trim()
    )))
}

async fn pg_backup(
    options: &sqlx::postgres::PgConnectOptions,
    password: Option<&str>,
    format: BackupFormat,
    output: Option<PathBuf>,
) -> Result<BackupReport, BackupError> {
    let pg_dump = find_tool("pg_dump")?;
    let mut conn = options
        .connect()
        .await
        .map_err(|err| BackupError::new(format!("cannot connect to PostgreSQL: {err}")))?;
    let server_num: String = sqlx::query("SHOW server_version_num")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|err| BackupError::new(format!("cannot read the server version: {err}")))?;
    let _ = conn.close().await;
    let server_major = server_num.trim().parse::<u32>().unwrap_or(0) / 10_000;

    let version = Command::new(&pg_dump)
        .arg("--version")
        .output()
        .map_err(|err| BackupError::new(format!("cannot run pg_dump: {err}")))?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let client_major = tool_major(&version).unwrap_or(0);
    if client_major < server_major {
        return Err(BackupError::new(format!(
            "pg_dump {client_major} is older than server {server_major}; install the PostgreSQL {server_major} client (e.g. `apt-get install postgresql-client-{server_major}`)"
        )));
    }

    let dbname = options.get_database().unwrap_or(options.get_username());
    let ext = if format == BackupFormat::Custom {
        "dump"
    } else {
        "sql"
    };
    let target =
        output.unwrap_or_else(|| PathBuf::from(format!("backup-{dbname}-{}.{ext}", timestamp())));
    let temp = temp_next_to(&target, "tmp");
    let mut cmd = pg_command(&pg_dump, options, password);
    match format {
        BackupFormat::Custom => cmd.arg("-Fc"),
        BackupFormat::Plain => cmd.args(["-Fp", "--clean", "--if-exists", "--no-owner"]),
        BackupFormat::Schema => cmd.args(["--schema-only", "-Fp", "--no-owner"]),
    };
    cmd.arg("-f").arg(&temp);
    if let Err(err) = run_tool(cmd, "pg_dump") {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    finish(&temp, &target)?;
    Ok(BackupReport {
        bytes: file_size(&target),
        path: target,
    })
}

fn pg_restore(
    options: &sqlx::postgres::PgConnectOptions,
    password: Option<&str>,
    file: &Path,
    custom: bool,
) -> Result<(), BackupError> {
    let dbname = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_string();
    if custom {
        let tool = find_tool("pg_restore")?;
        let mut cmd = pg_command(&tool, options, password);
        cmd.args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "-d",
        ])
        .arg(&dbname)
        .arg(file);
        run_tool(cmd, "pg_restore")
    } else {
        let tool = find_tool("psql")?;
        let mut cmd = pg_command(&tool, options, password);
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-f",
        ])
        .arg(file);
        run_tool(cmd, "psql")
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn sqlite_backup(
    settings: &DatabaseSettings,
    path: Option<&Path>,
    format: BackupFormat,
    output: Option<PathBuf>,
) -> Result<BackupReport, BackupError> {
    let stem = path
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "memory".into());
    let ext = if format == BackupFormat::Schema {
        "sql"
    } else {
        "sqlite3"
    };
    let target =
        output.unwrap_or_else(|| PathBuf::from(format!("backup-{stem}-{}.{ext}", timestamp())));
    let temp = temp_next_to(&target, "tmp");
    let db = crate::cli::connect_for_tooling(settings).await?;
    let result = sqlite_write(&db, format, &temp).await;
    db.close().await;
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    finish(&temp, &target)?;
    Ok(BackupReport {
        bytes: file_size(&target),
        path: target,
    })
}

async fn sqlite_write(db: &Database, format: BackupFormat, temp: &Path) -> Result<(), BackupError> {
    let strata::runner::Conn::Sqlite(mut conn) = db.dedicated_connection().await? else {
        return Err(BackupError::new("expected a SQLite connection"));
    };
    let result = async {
        if format == BackupFormat::Schema {
            let rows = sqlx::query(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL \
                 AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )
            .fetch_all(&mut conn)
            .await
            .map_err(|err| BackupError::new(format!("cannot read the schema: {err}")))?;
            let mut text = String::from("-- SQLite schema written by app database backup\n");
            for row in rows {
                let sql: String = row.try_get(0).unwrap_or_default();
                text.push_str(&sql);
                text.push_str(";\n");
            }
            std::fs::write(temp, text)
                .map_err(|err| BackupError::new(format!("cannot write {}: {err}", temp.display())))
        } else {
            let temp_str = temp.to_str().ok_or_else(|| {
                BackupError::new(format!("{} is not a UTF-8 path", temp.display()))
            })?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM INTO {}",
                sql_string(temp_str)
            )))
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(|err| BackupError::new(format!("cannot write {}: {err}", temp.display())))
        }
    }
    .await;
    let _ = conn.close().await;
    result
}

async fn sqlite_restore(file: &Path, target: &Path) -> Result<(), BackupError> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true);
    let mut conn = options
        .connect()
        .await
        .map_err(|err| BackupError::new(format!("cannot open {}: {err}", file.display())))?;
    let checked: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await;
    let _ = conn.close().await;
    match checked {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {}
        Ok(lines) => {
            return Err(BackupError::new(format!(
                "{} fails the integrity check: {}",
                file.display(),
                lines.join("; ")
            )));
        }
        Err(err) => {
            return Err(BackupError::new(format!(
                "{} is not a usable SQLite database: {err}",
                file.display()
            )));
        }
    }
    let temp = temp_next_to(target, "restore");
    let copied = std::fs::copy(file, &temp).and_then(|_| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&temp)?
            .sync_all()
    });
    if let Err(err) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(BackupError::new(format!(
            "cannot copy {} next to {}: {err}",
            file.display(),
            target.display()
        )));
    }
    finish(&temp, target)?;
    for suffix in ["-wal", "-shm"] {
        let mut stale = target.as_os_str().to_owned();
        stale.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(stale));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_major_version_of_pg_dump() {
        assert_eq!(
            tool_major("pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)"),
            Some(15)
        );
        assert_eq!(tool_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(tool_major("nonsense"), None);
    }
}
