//! SQLite backup through the online backup API, and restore through an integrity-checked,
//! atomic file swap.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};

use super::{
    BackupError, BackupFormat, BackupReport, Event, Progress, blocking, file_size, finish, online,
    target_or_default, temp_next_to,
};
use crate::config::DatabaseSettings;

/// Pages per step of the online backup (1 MiB with 4 KiB pages): small enough for a lively
/// progress display, large enough that stepping costs nothing.
const PAGES_PER_STEP: i32 = 256;

/// How long a step may keep finding the database busy or locked before the backup gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Chunks of the restore copy.
const COPY_CHUNK: usize = 1 << 20;

pub(super) async fn backup(
    settings: &DatabaseSettings,
    path: Option<&Path>,
    format: BackupFormat,
    output: Option<PathBuf>,
    progress: &Arc<dyn Progress>,
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
    let target = target_or_default(output, &stem, ext);
    let temp = temp_next_to(&target, "tmp");
    remove_database_files(&temp);
    let db = crate::cli::connect_for_tooling(settings).await?;
    let source = db.dedicated_connection().await;
    db.close().await;
    let strata::runner::Conn::Sqlite(source) = source? else {
        return Err(BackupError::new("expected a SQLite connection"));
    };
    let result = match format {
        BackupFormat::Schema => write_schema(source, &temp).await,
        BackupFormat::Custom | BackupFormat::Plain => {
            copy_online(source, &temp, progress.clone()).await
        }
    };
    if let Err(err) = result {
        remove_database_files(&temp);
        return Err(err);
    }
    finish(&temp, &target)?;
    Ok(BackupReport {
        bytes: file_size(&target),
        path: target,
    })
}

/// The CREATE statements of the database, as SQL text.
async fn write_schema(mut source: SqliteConnection, temp: &Path) -> Result<(), BackupError> {
    let rows = sqlx::query(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL \
         AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )
    .fetch_all(&mut source)
    .await
    .map_err(|err| BackupError::new(format!("cannot read the schema: {err}")));
    let _ = source.close().await;
    let mut text = String::from("-- SQLite schema written by app database backup\n");
    for row in rows? {
        let sql: String = row.try_get(0).unwrap_or_default();
        text.push_str(&sql);
        text.push_str(";\n");
    }
    std::fs::write(temp, text)
        .map_err(|err| BackupError::new(format!("cannot write {}: {err}", temp.display())))
}

/// Copies the database into a new file at `temp` with the online backup API, from one read
/// transaction: the copy is the database as of its start, whatever is written meanwhile (in
/// WAL mode writers go on; with a rollback journal they wait for the copy). The result is a
/// self-contained rollback-journal database file.
async fn copy_online(
    mut source: SqliteConnection,
    temp: &Path,
    progress: Arc<dyn Progress>,
) -> Result<(), BackupError> {
    let cannot_write = |err: &dyn std::fmt::Display| {
        BackupError::new(format!("cannot write {}: {err}", temp.display()))
    };
    let dest = SqliteConnectOptions::new()
        .filename(temp)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await;
    let mut dest = match dest {
        Ok(dest) => dest,
        Err(err) => {
            let _ = source.close().await;
            return Err(cannot_write(&err));
        }
    };
    // A deferred BEGIN takes its snapshot at the first read.
    let snapshot = sqlx::raw_sql("BEGIN; SELECT count(*) FROM sqlite_master;")
        .execute(&mut source)
        .await
        .map_err(|err| BackupError::new(format!("cannot read the database: {err}")));
    if let Err(err) = snapshot {
        let _ = source.close().await;
        let _ = dest.close().await;
        return Err(err);
    }

    progress.on(Event::Step("copying"));
    let (mut source, mut dest, copied) = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let copied = runtime.block_on(source.lock_handle()).and_then(|mut from| {
            let mut to = runtime.block_on(dest.lock_handle())?;
            Ok(online::copy_database(
                &mut from,
                &mut to,
                PAGES_PER_STEP,
                BUSY_TIMEOUT,
                |copied, total| progress.on(Event::Pages { copied, total }),
            ))
        });
        (source, dest, copied)
    })
    .await
    .map_err(|err| BackupError::new(format!("the backup thread failed: {err}")))?;
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut source).await;
    let _ = source.close().await;

    let result = match copied {
        Err(err) => Err(cannot_write(&err)),
        Ok(Err(message)) => Err(cannot_write(&message)),
        // The copy carries the source's header, which says WAL when the source is in WAL mode;
        // switching back checkpoints and removes the copy's -wal and -shm files.
        Ok(Ok(())) => sqlx::raw_sql("PRAGMA journal_mode = DELETE")
            .execute(&mut dest)
            .await
            .map(drop)
            .map_err(|err| cannot_write(&err)),
    };
    let closed = dest.close().await.map_err(|err| cannot_write(&err));
    result.and(closed)
}

/// Removes a database file and the journal, WAL and shared-memory files next to it.
fn remove_database_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) async fn restore(
    file: &Path,
    target: &Path,
    progress: &Arc<dyn Progress>,
) -> Result<(), BackupError> {
    progress.on(Event::Step("checking integrity"));
    let options = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        // Checking a big file takes seconds; that is the work, not a slow query to warn about.
        .log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO);
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
    progress.on(Event::Step("copying"));
    let temp = temp_next_to(target, "restore");
    let (from, to) = (file.to_path_buf(), temp.clone());
    let progress = progress.clone();
    let copied = blocking(move || {
        copy_file(&from, &to, progress.as_ref()).map_err(|err| {
            let _ = std::fs::remove_file(&to);
            BackupError::new(format!(
                "cannot copy {} next to {}: {err}",
                from.display(),
                to.display()
            ))
        })
    })
    .await;
    copied?;
    finish(&temp, target)?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(target, suffix));
    }
    Ok(())
}

/// Copies `from` to a new file `to` and syncs it, reporting bytes.
fn copy_file(from: &Path, to: &Path, progress: &dyn Progress) -> std::io::Result<()> {
    let mut input = std::fs::File::open(from)?;
    let total = input.metadata()?.len();
    let mut output = std::fs::File::create(to)?;
    let mut buffer = vec![0; COPY_CHUNK];
    let mut done = 0;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        output.write_all(&buffer[..read])?;
        done += read as u64;
        progress.on(Event::Bytes {
            done,
            total: Some(total),
        });
    }
    output.sync_all()
}
