//! PostgreSQL backup through `pg_dump`, restore through `psql` in one transaction that first
//! empties the current schema; the connection goes to the tools by environment.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use super::{
    BackupError, BackupFormat, BackupReport, Event, Progress, blocking, file_size, finish,
    target_or_default, temp_next_to,
};

const INSTALL_CLIENT: &str =
    "install the PostgreSQL client (e.g. `apt-get install postgresql-client`)";

/// The last line of every complete pg_dump SQL script (before psql's `\unrestrict`).
const PLAIN_END_MARKER: &str = "PostgreSQL database dump complete";

/// Runs first in the restore's transaction: drops every table, view, materialized view,
/// sequence, foreign table, type and routine of the current schema (not those of extensions,
/// nor the extensions), so the backup replaces the schema's contents entirely. Names are taken
/// as text up front: an object may already be gone, dropped by CASCADE with an earlier one.
const EMPTY_CURRENT_SCHEMA: &str = r#"
SET client_min_messages = warning;
DO $app_restore$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                   WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype IN ('e', 'i'))
        ORDER BY c.relkind IN ('r', 'p') DESC
    LOOP
        EXECUTE format('DROP %s IF EXISTS %s CASCADE', item.kind, item.name);
    END LOOP;
    FOR item IN
        SELECT format('%I.%I', n.nspname, t.typname) AS name
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE n.nspname = current_schema()
          AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                          AND d.objid = t.oid AND d.deptype IN ('e', 'i'))
    LOOP
        EXECUTE format('DROP TYPE IF EXISTS %s CASCADE', item.name);
    END LOOP;
    FOR item IN
        SELECT format('%I.%I(%s)', n.nspname, p.proname,
                      pg_get_function_identity_arguments(p.oid)) AS name
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema()
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
    LOOP
        EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', item.name);
    END LOOP;
END
$app_restore$;
RESET client_min_messages;
"#;

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
fn pg_command(tool: &Path, options: &PgConnectOptions, password: Option<&str>) -> Command {
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
    // The tool encrypts and verifies as the service does (sslmode, sslrootcert, ...).
    for (var, value) in crate::config::pg_tool_tls_env(options) {
        match value {
            Some(value) => cmd.env(var, value),
            None => cmd.env_remove(var),
        };
    }
    cmd
}

/// The line of a tool's stderr that says what went wrong: the first error line, else the
/// last line (with `--verbose` the first lines are progress).
fn failure_detail(stderr: &str) -> &str {
    let mut lines = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let last = lines.clone().next_back();
    lines
        .find(|line| line.contains("error:") || line.contains("ERROR:") || line.contains("FATAL:"))
        .or(last)
        .unwrap_or("no message")
}

fn tool_failed(name: &str, status: ExitStatus, stderr: &str) -> BackupError {
    BackupError::new(format!(
        "{name} failed ({status}): {}",
        failure_detail(stderr)
    ))
}

/// What a `--verbose` line of pg_dump or pg_restore says, for the progress display:
/// `pg_dump: dumping contents of table "public.todo"` -> `dumping contents of table public.todo`.
fn step_of<'a>(name: &str, line: &'a str) -> std::borrow::Cow<'a, str> {
    let line = line.trim();
    let line = line
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(line);
    if line.contains('"') {
        line.replace('"', "").into()
    } else {
        line.into()
    }
}

/// Reads a child's stderr on a thread of its own: every line is kept (for the error message)
/// and, while the receiver listens, sent on as it comes (for the progress display).
fn read_stderr(child: &mut Child) -> (std::thread::JoinHandle<String>, mpsc::Receiver<String>) {
    let stderr = child.stderr.take();
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let Some(stderr) = stderr else {
            return all;
        };
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line).into_owned();
            all.push_str(&text);
            let _ = lines_tx.send(text);
            line.clear();
        }
        all
    });
    (reader, lines_rx)
}

/// Runs a tool with `--verbose` output on stderr, showing its lines as steps and, with
/// `watch`, the size of the file it writes; fails with the tool's error line.
fn run_verbose(
    mut cmd: Command,
    name: &str,
    watch: Option<&Path>,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| BackupError::new(format!("cannot run {name}: {err}")))?;
    let (reader, lines) = read_stderr(&mut child);
    loop {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => progress.on(Event::Step(&step_of(name, &line))),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(path) = watch {
            progress.on(Event::Bytes {
                done: file_size(path),
                total: None,
            });
        }
    }
    let stderr = reader.join().unwrap_or_default();
    let status = child
        .wait()
        .map_err(|err| BackupError::new(format!("cannot run {name}: {err}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(tool_failed(name, status, &stderr))
    }
}

pub(super) async fn backup(
    options: &PgConnectOptions,
    password: Option<&str>,
    format: BackupFormat,
    output: Option<PathBuf>,
    progress: &Arc<dyn Progress>,
) -> Result<BackupReport, BackupError> {
    let pg_dump = find_tool("pg_dump")?;
    progress.on(Event::Step("connecting"));
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
    let target = target_or_default(output, dbname, ext);
    let temp = temp_next_to(&target, "tmp");
    let mut cmd = pg_command(&pg_dump, options, password);
    match format {
        BackupFormat::Custom => cmd.arg("-Fc"),
        BackupFormat::Plain => cmd.args(["-Fp", "--clean", "--if-exists", "--no-owner"]),
        BackupFormat::Schema => cmd.args(["--schema-only", "-Fp", "--no-owner"]),
    };
    cmd.arg("--verbose").arg("-f").arg(&temp);
    let (watched, progress) = (temp.clone(), progress.clone());
    let dumped = blocking(move || run_verbose(cmd, "pg_dump", Some(&watched), progress.as_ref()));
    if let Err(err) = dumped.await {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    finish(&temp, &target)?;
    Ok(BackupReport {
        bytes: file_size(&target),
        path: target,
    })
}

/// Replaces the contents of the database's current schema with the backup in `file`, in one
/// transaction: psql runs BEGIN, [`EMPTY_CURRENT_SCHEMA`], the backup's SQL (a custom archive
/// is turned into SQL by `pg_restore --file=-`, which needs no connection), and COMMIT, which
/// is sent only when the whole SQL was read. A tool failing, or an archive or script that is
/// cut short, leaves the database as it was.
pub(super) async fn restore(
    options: &PgConnectOptions,
    password: Option<&str>,
    file: &Path,
    custom: bool,
    progress: &Arc<dyn Progress>,
) -> Result<(), BackupError> {
    let psql = find_tool("psql")?;
    let pg_restore = if custom {
        Some(find_tool("pg_restore")?)
    } else {
        check_plain_is_complete(file)?;
        None
    };
    let psql = {
        let mut cmd = pg_command(&psql, options, password);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        cmd
    };
    progress.on(Event::Step(if custom {
        "reading the archive"
    } else {
        "running the script"
    }));
    let (file, progress) = (file.to_path_buf(), progress.clone());
    blocking(move || restore_through_psql(psql, pg_restore, &file, progress.as_ref())).await
}

/// A pg_dump SQL script ends with a "dump complete" comment; without it the file was cut short.
fn check_plain_is_complete(file: &Path) -> Result<(), BackupError> {
    use std::io::Seek;
    let cannot_read =
        |err: std::io::Error| BackupError::new(format!("cannot read {}: {err}", file.display()));
    let mut handle = std::fs::File::open(file).map_err(cannot_read)?;
    let len = handle.metadata().map_err(cannot_read)?.len();
    handle
        .seek(std::io::SeekFrom::Start(len.saturating_sub(4096)))
        .map_err(cannot_read)?;
    let mut tail = Vec::new();
    handle.read_to_end(&mut tail).map_err(cannot_read)?;
    if String::from_utf8_lossy(&tail).contains(PLAIN_END_MARKER) {
        Ok(())
    } else {
        Err(BackupError::new(format!(
            "{} is incomplete: it lacks pg_dump's closing line \"{PLAIN_END_MARKER}\"",
            file.display()
        )))
    }
}

/// Where the SQL for psql comes from.
enum Source {
    /// `pg_restore --file=-` converting a custom archive, with its stderr reader.
    Archive {
        child: Child,
        stderr: std::thread::JoinHandle<String>,
        steps: mpsc::Receiver<String>,
    },
    /// An SQL script, with its size.
    Script { file: std::fs::File, size: u64 },
}

fn restore_through_psql(
    mut psql: Command,
    pg_restore: Option<PathBuf>,
    file: &Path,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let mut source = match pg_restore {
        Some(tool) => {
            let mut child = Command::new(tool)
                .args(["--file=-", "--no-owner", "--verbose"])
                .arg(file)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|err| BackupError::new(format!("cannot run pg_restore: {err}")))?;
            let (stderr, steps) = read_stderr(&mut child);
            Source::Archive {
                child,
                stderr,
                steps,
            }
        }
        None => {
            let file = std::fs::File::open(file).map_err(|err| {
                BackupError::new(format!("cannot read {}: {err}", file.display()))
            })?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Source::Script { file, size }
        }
    };
    let mut psql = match psql
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            if let Source::Archive { child, .. } = &mut source {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(BackupError::new(format!("cannot run psql: {err}")));
        }
    };
    let (psql_stderr, _) = read_stderr(&mut psql);
    let stdin = psql.stdin.take();

    // Feed psql; COMMIT only when the source gave all of its SQL and psql took it.
    let fed = feed(stdin, &mut source, progress);
    let source_error = match source {
        Source::Archive {
            mut child, stderr, ..
        } => {
            if fed.is_err() {
                let _ = child.kill();
            }
            let status = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            match status {
                Ok(status) if status.success() => None,
                Ok(status) => Some(tool_failed("pg_restore", status, &stderr)),
                Err(err) => Some(BackupError::new(format!("cannot run pg_restore: {err}"))),
            }
        }
        Source::Script { .. } => None,
    };
    let psql_status = psql.wait();
    let psql_stderr = psql_stderr.join().unwrap_or_default();
    match psql_status {
        Ok(status) if !status.success() => return Err(tool_failed("psql", status, &psql_stderr)),
        Err(err) => return Err(BackupError::new(format!("cannot run psql: {err}"))),
        Ok(_) => {}
    }
    if let Some(err) = source_error {
        return Err(err);
    }
    fed.map_err(|FeedError(err)| err)
}

struct FeedError(BackupError);

/// Writes BEGIN, the prelude and the SQL of `source` to psql, then COMMIT when the SQL ended
/// well (for an archive: pg_restore exited 0). Closing stdin without COMMIT makes psql end
/// the session, which rolls the transaction back.
fn feed(
    stdin: Option<ChildStdin>,
    source: &mut Source,
    progress: &dyn Progress,
) -> Result<(), FeedError> {
    let psql_gone = |err: std::io::Error| {
        FeedError(BackupError::new(format!(
            "psql stopped reading the backup: {err}"
        )))
    };
    let mut stdin =
        stdin.ok_or_else(|| FeedError(BackupError::new("psql has no standard input")))?;
    stdin
        .write_all(b"BEGIN;\n")
        .and_then(|()| stdin.write_all(EMPTY_CURRENT_SCHEMA.as_bytes()))
        .map_err(psql_gone)?;
    let mut buffer = vec![0; 1 << 16];
    let mut done = 0;
    loop {
        let read = match source {
            Source::Archive { child, steps, .. } => {
                for line in steps.try_iter() {
                    progress.on(Event::Step(&step_of("pg_restore", &line)));
                }
                let out = child.stdout.as_mut().expect("stdout is piped");
                out.read(&mut buffer)
            }
            Source::Script { file, .. } => file.read(&mut buffer),
        };
        let read = match read {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(FeedError(BackupError::new(format!(
                    "cannot read the backup: {err}"
                ))));
            }
        };
        stdin.write_all(&buffer[..read]).map_err(psql_gone)?;
        done += read as u64;
        if let Source::Script { size, .. } = source {
            progress.on(Event::Bytes {
                done,
                total: Some(*size),
            });
        }
    }
    if let Source::Archive { child, .. } = source {
        // The whole SQL was read; it is complete only when pg_restore succeeded.
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        if !ok {
            return Ok(());
        }
    }
    progress.on(Event::Step("committing"));
    stdin.write_all(b"\nCOMMIT;\n").map_err(psql_gone)?;
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

    #[test]
    fn the_error_line_wins_over_verbose_lines() {
        let stderr = "pg_dump: last built-in OID is 16383\n\
                      pg_dump: dumping contents of table \"public.error_log\"\n\
                      pg_dump: error: query failed: ERROR:  permission denied\n\
                      pg_dump: detail: more\n";
        assert_eq!(
            failure_detail(stderr),
            "pg_dump: error: query failed: ERROR:  permission denied"
        );
        assert_eq!(failure_detail("one\nlast line\n\n"), "last line");
        assert_eq!(failure_detail(""), "no message");
    }

    #[test]
    fn verbose_lines_become_steps() {
        assert_eq!(
            step_of(
                "pg_dump",
                "pg_dump: dumping contents of table \"public.todo\"\n"
            ),
            "dumping contents of table public.todo"
        );
        assert_eq!(step_of("pg_restore", "something else"), "something else");
    }
}
