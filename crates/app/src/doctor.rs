//! `app database doctor`: a list of health findings about the database, each `ok`, `warn` or
//! `fail` with a one-line detail and, where there is something to do, a hint.
//!
//! Every check reports instead of stopping the run: a database that cannot be reached is a
//! failing `connection` finding, and a check whose query fails is a finding of its own.

mod pooler;

use std::path::Path;

use serde::Serialize;
use strata::runner::Conn;

use crate::config::{DatabaseSettings, DatabaseUrl};
use crate::db::{Database, DbError};
use crate::migrate;

/// How many items a one-line detail lists before "and N more".
const LIST_LIMIT: usize = 5;

/// How a finding came out; ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One thing the doctor looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: String,
    pub status: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    fn new(name: &str, status: Level, detail: impl Into<String>) -> Self {
        Finding {
            name: name.to_string(),
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Level::Ok, detail)
    }

    fn warn(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Level::Warn, detail)
    }

    fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Level::Fail, detail)
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst status of the findings.
    pub status: Level,
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(findings: Vec<Finding>) -> Self {
        let status = findings.iter().map(|f| f.status).max().unwrap_or(Level::Ok);
        Report { status, findings }
    }

    /// How many findings have `level`.
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.status == level).count()
    }
}

/// Runs every check that applies to the database of `settings`, connecting with `connect`.
pub async fn diagnose<F, Fut>(settings: &DatabaseSettings, connect: F) -> Report
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Database, DbError>>,
{
    let mut findings = Vec::new();
    let db = match connect().await {
        Ok(db) => db,
        Err(err) => {
            findings.push(unreachable(settings, &err));
            findings.push(pool(settings));
            return Report::new(findings);
        }
    };
    // Asked first, with statements any pooler passes on: a pooler the URL does not declare
    // may make the ping below fail, and this says why.
    let pooler = match settings.url.backend() {
        crate::config::Backend::Postgresql => Some(pooler::finding(&db, settings).await),
        crate::config::Backend::Sqlite => None,
    };
    match db.ping().await {
        Ok(ping) => findings.push(Finding::ok(
            "connection",
            format!(
                "{} {}, round trip {:.2} ms{}",
                ping.backend,
                ping.server_version,
                ping.round_trip.as_secs_f64() * 1000.0,
                ping.encryption
                    .map(|tls| format!(", encryption {tls}"))
                    .unwrap_or_default()
            ),
        )),
        Err(err) => {
            findings.push(unreachable(settings, &err));
            findings.extend(pooler);
            findings.push(pool(settings));
            db.close().await;
            return Report::new(findings);
        }
    }
    findings.extend(pooler);
    findings.push(pool(settings));
    findings.extend(schema(&db, settings).await);
    match db.dedicated_connection().await {
        Ok(mut conn) => match &mut conn {
            Conn::Sqlite(_) => findings.extend(sqlite_checks(&mut conn, settings).await),
            Conn::Postgres(_) => findings.extend(postgres_checks(&mut conn, settings).await),
        },
        Err(err) => findings.push(
            Finding::fail("connection", format!("a second connection failed: {err}"))
                .hint("the server may be at its connection limit; see max_connections"),
        ),
    }
    db.close().await;
    Report::new(findings)
}

/// The failing `connection` finding for a database that could not be reached or opened.
fn unreachable(settings: &DatabaseSettings, err: &DbError) -> Finding {
    let finding = Finding::fail("connection", err.to_string());
    match &settings.url {
        DatabaseUrl::Sqlite { path: Some(path) } if looks_corrupt(err) => {
            finding.hint(recovery_hint(path))
        }
        DatabaseUrl::Sqlite { .. } => {
            finding.hint("check DATABASE_URL and that the file and its folder are writable")
        }
        DatabaseUrl::Postgres { .. } => finding.hint(
            "check DATABASE_URL (host, port, user, password, database) and that PostgreSQL runs; \
             `app database ping` shows the same error",
        ),
    }
}

fn looks_corrupt(err: &DbError) -> bool {
    if matches!(err, DbError::NotADatabase(_)) {
        return true;
    }
    corrupt_text(&err.to_string())
}

fn corrupt_text(text: &str) -> bool {
    text.contains("malformed") || text.contains("not a database") || text.contains("corrupt")
}

fn recovery_hint(path: &Path) -> String {
    let file = path.display();
    format!(
        "restore {file} from a backup, or salvage what is readable: \
         `sqlite3 {file} \".recover\" | sqlite3 {file}.recovered`, \
         then point DATABASE_URL at the new file (sqlite://{file}.recovered)"
    )
}

/// The hint for a failing SQLite check, when the text says the file is damaged.
fn sqlite_hint(settings: &DatabaseSettings, text: &str) -> Option<String> {
    match &settings.url {
        DatabaseUrl::Sqlite { path: Some(path) } if corrupt_text(text) => Some(recovery_hint(path)),
        _ => None,
    }
}

/// The pool settings in effect for the service (the doctor itself uses one connection).
fn pool(settings: &DatabaseSettings) -> Finding {
    let recycle = match settings.pool_recycle {
        Some(d) => format!("{}s", d.as_secs()),
        None => "never".to_string(),
    };
    Finding::ok(
        "pool",
        format!(
            "size {}, overflow {}, timeout {}s, recycle {recycle}, pre-ping {}, disabled {}",
            settings.pool_size,
            settings.max_overflow,
            settings.pool_timeout.as_secs_f64(),
            if settings.pre_ping { "on" } else { "off" },
            if settings.pool_disabled { "yes" } else { "no" },
        ),
    )
}

/// The revision against head, and the live schema against the migrations and the models.
async fn schema(db: &Database, settings: &DatabaseSettings) -> Vec<Finding> {
    let mut findings = Vec::new();
    let status = match migrate::status(db, settings).await {
        Ok(status) => status,
        Err(err) => {
            let text = err.to_string();
            let mut finding = Finding::fail("schema", format!("cannot read the revision: {text}"));
            finding.hint = sqlite_hint(settings, &text);
            return vec![finding];
        }
    };
    if let Some(foreign) = &status.foreign {
        findings.push(
            Finding::fail("schema", crate::legacy::explain(foreign))
                .hint("see README, \"Switching from the Python service\""),
        );
        return findings;
    }
    if !status.unknown.is_empty() {
        findings.push(
            Finding::fail(
                "schema",
                format!(
                    "the database is at revision(s) unknown to this binary: {}",
                    list(&status.unknown)
                ),
            )
            .hint("run the binary built with those migrations, or downgrade with it first"),
        );
        // `check` refuses a database at an unknown revision; there is nothing to compare.
        return findings;
    }
    if status.pending.is_empty() {
        findings.push(Finding::ok(
            "schema",
            format!("at head {}", status.heads.join(", ")),
        ));
    } else {
        let at = if status.current.is_empty() {
            "base".to_string()
        } else {
            status.current.join(", ")
        };
        findings.push(
            Finding::warn(
                "schema",
                format!(
                    "at {at}, {} migration(s) behind head: {}",
                    status.pending.len(),
                    list(&status.pending)
                ),
            )
            .hint("run `app database upgrade`"),
        );
    }
    match migrate::check(db, settings).await {
        Ok(report) => {
            let mut differences = report.database_drift.clone();
            differences.extend(report.model_drift.iter().cloned());
            if differences.is_empty() {
                findings.push(Finding::ok(
                    "schema drift",
                    "the database matches its migrations and the models match head",
                ));
            } else {
                findings.push(
                    Finding::fail(
                        "schema drift",
                        format!(
                            "{} difference(s): {}",
                            differences.len(),
                            list(&differences)
                        ),
                    )
                    .hint(
                        "`app database check` lists them all; undo manual changes, or make a \
                         migration for them (`app database make-migrations`)",
                    ),
                );
            }
            if !report.invalid_indexes.is_empty() {
                let names: Vec<String> = report
                    .invalid_indexes
                    .iter()
                    .map(|i| format!("{} on {}", i.index, i.table))
                    .collect();
                findings.push(
                    Finding::fail(
                        "invalid indexes",
                        format!(
                            "{} index(es) left INVALID by an interrupted concurrent build: {}",
                            names.len(),
                            list(&names)
                        ),
                    )
                    .hint("run `app database upgrade` again: it drops and rebuilds them"),
                );
            }
        }
        Err(err) => {
            let text = err.to_string();
            let mut finding =
                Finding::fail("schema drift", format!("cannot compare the schema: {text}"));
            finding.hint = sqlite_hint(settings, &text);
            findings.push(finding);
        }
    }
    findings
}

/// Up to [`LIST_LIMIT`] items joined, with how many more there are.
fn list(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(LIST_LIMIT)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > LIST_LIMIT {
        text.push_str(&format!("; and {} more", items.len() - LIST_LIMIT));
    }
    text
}

fn cell(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

async fn sqlite_checks(conn: &mut Conn, settings: &DatabaseSettings) -> Vec<Finding> {
    let mut findings = Vec::new();

    findings.push(match conn.fetch_text("PRAGMA integrity_check(20)").await {
        Ok(rows) => {
            let lines: Vec<String> = rows.iter().map(|r| cell(r, 0)).collect();
            if lines.len() == 1 && lines[0] == "ok" {
                Finding::ok("integrity", "PRAGMA integrity_check: ok")
            } else {
                Finding::fail(
                    "integrity",
                    format!("PRAGMA integrity_check: {}", list(&lines)),
                )
                .hint(recovery_hint_for(settings))
            }
        }
        Err(err) => Finding::fail("integrity", format!("PRAGMA integrity_check failed: {err}"))
            .hint(recovery_hint_for(settings)),
    });

    let fk_sql = "SELECT \"table\", CAST(rowid AS TEXT), parent FROM pragma_foreign_key_check";
    findings.push(match conn.fetch_text(fk_sql).await {
        Ok(rows) if rows.is_empty() => Finding::ok("foreign keys", "PRAGMA foreign_key_check: ok"),
        Ok(rows) => {
            let mut tables: Vec<String> = rows
                .iter()
                .map(|r| format!("{} -> {}", cell(r, 0), cell(r, 2)))
                .collect();
            tables.sort();
            tables.dedup();
            Finding::fail(
                "foreign keys",
                format!(
                    "{} row(s) point at missing parents: {}",
                    rows.len(),
                    list(&tables)
                ),
            )
            .hint(
                "list them with `PRAGMA foreign_key_check;` in sqlite3, then delete the rows or \
                 restore their parents",
            )
        }
        Err(err) => {
            let text = err.to_string();
            let mut finding = Finding::fail(
                "foreign keys",
                format!("PRAGMA foreign_key_check failed: {text}"),
            );
            finding.hint = sqlite_hint(settings, &text);
            finding
        }
    });

    findings.push(match conn.fetch_text("PRAGMA journal_mode").await {
        Ok(rows) => {
            let mode = rows.first().map(|r| cell(r, 0)).unwrap_or_default();
            if mode.eq_ignore_ascii_case("wal") {
                Finding::ok("journal mode", "wal")
            } else {
                Finding::warn(
                    "journal mode",
                    format!("{mode} (not wal: readers and the writer block each other)"),
                )
                .hint("use a database file: the service switches files to WAL when it opens them")
            }
        }
        Err(err) => Finding::warn("journal mode", format!("PRAGMA journal_mode failed: {err}")),
    });
    findings
}

fn recovery_hint_for(settings: &DatabaseSettings) -> String {
    match &settings.url {
        DatabaseUrl::Sqlite { path: Some(path) } => recovery_hint(path),
        _ => "the in-memory database is gone when the process ends; nothing to recover".into(),
    }
}

async fn postgres_checks(conn: &mut Conn, settings: &DatabaseSettings) -> Vec<Finding> {
    vec![
        table_sizes(conn, settings).await,
        unused_indexes(conn).await,
        slow_statements(conn).await,
        long_sessions(conn).await,
    ]
}

/// A failed query in an optional PostgreSQL check: worth a look, not a failure.
fn query_failed(name: &str, what: &str, err: sqlx::Error) -> Finding {
    Finding::warn(name, format!("cannot read {what}: {err}"))
        .hint("the role may lack the pg_read_all_stats privilege")
}

async fn table_sizes(conn: &mut Conn, settings: &DatabaseSettings) -> Finding {
    let sql = "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)), \
               pg_size_pretty(pg_relation_size(c.oid)), pg_size_pretty(pg_indexes_size(c.oid)) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() \
               ORDER BY pg_total_relation_size(c.oid) DESC, c.relname";
    let rows = match conn.fetch_text(sql).await {
        Ok(rows) => rows,
        Err(err) => return query_failed("sizes", "table sizes", err),
    };
    let mut app_tables: Vec<String> = crate::models::schema::target()
        .tables
        .keys()
        .cloned()
        .collect();
    app_tables.push(settings.version_table.clone());
    let sizes: Vec<String> = rows
        .iter()
        .filter(|r| app_tables.contains(&cell(r, 0)))
        .map(|r| {
            format!(
                "{} {} (table {}, indexes {})",
                cell(r, 0),
                cell(r, 1),
                cell(r, 2),
                cell(r, 3)
            )
        })
        .collect();
    if sizes.is_empty() {
        Finding::ok("sizes", "none of the app's tables exist yet")
    } else {
        Finding::ok("sizes", sizes.join("; "))
    }
}

async fn unused_indexes(conn: &mut Conn) -> Finding {
    let sql = "SELECT s.relname, s.indexrelname, pg_size_pretty(pg_relation_size(s.indexrelid)) \
               FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
               WHERE s.idx_scan = 0 AND NOT i.indisprimary AND NOT i.indisunique \
               AND s.schemaname = current_schema() \
               ORDER BY pg_relation_size(s.indexrelid) DESC, s.relname, s.indexrelname";
    match conn.fetch_text(sql).await {
        Ok(rows) if rows.is_empty() => Finding::ok(
            "unused indexes",
            "every index other than primary keys and unique ones has been scanned",
        ),
        Ok(rows) => {
            let names: Vec<String> = rows
                .iter()
                .map(|r| format!("{}.{} ({})", cell(r, 0), cell(r, 1), cell(r, 2)))
                .collect();
            Finding::warn(
                "unused indexes",
                format!(
                    "{} index(es) never scanned since the statistics were reset: {}",
                    names.len(),
                    list(&names)
                ),
            )
            .hint(
                "an index no query uses only slows writes; after a representative period (and \
                 checking replicas) drop it with a migration",
            )
        }
        Err(err) => query_failed("unused indexes", "pg_stat_user_indexes", err),
    }
}

const PG_STAT_STATEMENTS_HINT: &str = "add shared_preload_libraries = 'pg_stat_statements' to \
     postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this \
     database";

async fn slow_statements(conn: &mut Conn) -> Finding {
    const NAME: &str = "slow statements";
    let installed = conn
        .fetch_text("SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'")
        .await;
    match installed {
        Ok(rows) if rows.is_empty() => {
            return Finding::warn(NAME, "pg_stat_statements is not installed in this database")
                .hint(PG_STAT_STATEMENTS_HINT);
        }
        Ok(_) => {}
        Err(err) => return query_failed(NAME, "pg_extension", err),
    }
    let sql = "SELECT round(mean_exec_time::numeric, 2)::text, calls::text, \
               left(regexp_replace(query, '\\s+', ' ', 'g'), 80) \
               FROM pg_stat_statements \
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               ORDER BY mean_exec_time DESC LIMIT 5";
    match conn.fetch_text(sql).await {
        Ok(rows) if rows.is_empty() => Finding::ok(NAME, "no statements recorded yet"),
        Ok(rows) => {
            let top: Vec<String> = rows
                .iter()
                .map(|r| format!("{} ms mean x{}: {}", cell(r, 0), cell(r, 1), cell(r, 2)))
                .collect();
            Finding::ok(
                NAME,
                format!("top {} by mean time: {}", top.len(), top.join("; ")),
            )
        }
        Err(err) => Finding::warn(
            NAME,
            format!("pg_stat_statements is installed but cannot be read: {err}"),
        )
        .hint(PG_STAT_STATEMENTS_HINT),
    }
}

async fn long_sessions(conn: &mut Conn) -> Finding {
    const NAME: &str = "sessions";
    let sql = "SELECT pid::text, state, \
               floor(extract(epoch FROM now() - CASE WHEN state = 'active' THEN query_start \
               ELSE state_change END))::bigint::text \
               FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND ((state = 'idle in transaction' AND now() - state_change > interval '60 seconds') \
               OR (state = 'active' AND now() - query_start > interval '5 minutes')) \
               ORDER BY 3 DESC";
    match conn.fetch_text(sql).await {
        Ok(rows) if rows.is_empty() => Finding::ok(
            NAME,
            "no session idle in transaction over 60 s or active over 5 min",
        ),
        Ok(rows) => {
            let sessions: Vec<String> = rows
                .iter()
                .map(|r| format!("pid {} {} for {} s", cell(r, 0), cell(r, 1), cell(r, 2)))
                .collect();
            Finding::warn(
                NAME,
                format!("{} long session(s): {}", sessions.len(), list(&sessions)),
            )
            .hint(
                "find the client holding it; SELECT pg_terminate_backend(PID) ends one, and \
                 idle_in_transaction_session_timeout / statement_timeout stop it recurring",
            )
        }
        Err(err) => query_failed(NAME, "pg_stat_activity", err),
    }
}
