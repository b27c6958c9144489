//! The application's side of migrations: its migration list, its target schema, and the
//! commands behind `app database upgrade|downgrade|current|history|heads|show|stamp|check|
//! make-migrations`, built on the `strata` engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata::autodetect::{self, RenamePolicy};
use strata::runner::{self, AppliedRevision, Conn, Event, Plan, RunError};
use strata::state::{Direction, History, HistoryError};
use strata::{Dialect, Migration, lint};

use crate::config::{Backend, DatabaseSettings};
use crate::db::{Database, DbError};
use crate::models::schema::target;

/// Why a migration command failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot read the live schema: {0}")]
    Introspect(#[from] strata::introspect::IntrospectError),
    #[error("cannot write the migration: {0}")]
    Write(#[from] strata::writer::WriteError),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the migration files in {} list revision {revision}, which this binary does not contain; rebuild (cargo build) and run the command again",
        path.display()
    )]
    StaleBinary { path: PathBuf, revision: String },
    #[error("{0}")]
    Refused(String),
}

/// The application's migrations, checked and ordered.
pub fn history() -> Result<History, MigrateError> {
    Ok(History::new(crate::migrations::all())?)
}

/// The engine's dialect for a backend.
pub fn dialect(backend: Backend) -> Dialect {
    match backend {
        Backend::Postgresql => Dialect::Postgres,
        Backend::Sqlite => Dialect::Sqlite,
    }
}

/// A connection of its own for the runner, outside the pool.
pub async fn connection(db: &Database) -> Result<Conn, DbError> {
    db.dedicated_connection().await
}

/// The revisions recorded in the version table, oldest first.
pub async fn applied(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<Vec<AppliedRevision>, MigrateError> {
    let mut conn = connection(db).await?;
    Ok(runner::applied(&mut conn, &settings.version_table)
        .await
        .map_err(RunError::from)?)
}

/// Runs migrations online in `direction` to `target`; `on_event` sees progress.
pub async fn run(
    db: &Database,
    settings: &DatabaseSettings,
    direction: Direction,
    target: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, MigrateError> {
    let history = history()?;
    let mut conn = connection(db).await?;
    Ok(runner::run(
        &mut conn,
        &history,
        &settings.version_table,
        direction,
        target,
        on_event,
    )
    .await?)
}

/// The SQL an upgrade or downgrade would run, without connecting.
///
/// `range` is `TARGET` or `FROM:TARGET`. An upgrade starts from `FROM` (default: an empty
/// database); a downgrade from `FROM` (default: head).
pub fn offline_sql(
    settings: &DatabaseSettings,
    direction: Direction,
    range: &str,
) -> Result<String, MigrateError> {
    let history = history()?;
    let dialect = dialect(settings.url.backend());
    let (from, target) = match range.split_once(':') {
        Some((from, target)) => (Some(from), target),
        None => (None, range),
    };
    let start: BTreeSet<String> = match (from, direction) {
        (Some("base"), _) => BTreeSet::new(),
        (Some(from), _) => history.ancestors(from)?,
        (None, Direction::Up) => BTreeSet::new(),
        (None, Direction::Down) => match history.head()? {
            Some(head) => history.ancestors(head)?,
            None => BTreeSet::new(),
        },
    };
    let plan = Plan::new(
        &history,
        &start,
        direction,
        target,
        dialect,
        &settings.version_table,
    )?;
    Ok(plan.to_sql())
}

/// Where the database stands against the migrations.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub applied: Vec<AppliedRevision>,
    /// Applied revisions that are heads of the applied set (what `current` shows).
    pub current: Vec<String>,
    pub heads: Vec<String>,
    pub pending: Vec<String>,
    /// Applied revisions no migration file knows.
    pub unknown: Vec<String>,
}

impl Status {
    pub fn at_head(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Compares the version table with the migrations.
pub fn status_of(history: &History, applied: Vec<AppliedRevision>) -> Status {
    let applied_set: BTreeSet<String> = applied.iter().map(|a| a.revision.clone()).collect();
    let unknown = applied_set
        .iter()
        .filter(|r| history.get(r).map(|m| &m.revision != *r).unwrap_or(true))
        .cloned()
        .collect();
    let known: Vec<&Migration> = history
        .migrations()
        .iter()
        .filter(|m| applied_set.contains(&m.revision))
        .collect();
    let current = known
        .iter()
        .filter(|m| {
            !known
                .iter()
                .any(|other| other.parents.iter().any(|p| p == &m.revision))
        })
        .map(|m| m.revision.clone())
        .collect();
    let pending = history
        .migrations()
        .iter()
        .filter(|m| !applied_set.contains(&m.revision))
        .map(|m| m.revision.clone())
        .collect();
    Status {
        applied,
        current,
        heads: history.heads().iter().map(|h| (*h).to_string()).collect(),
        pending,
        unknown,
    }
}

/// The database's status.
pub async fn status(db: &Database, settings: &DatabaseSettings) -> Result<Status, MigrateError> {
    let history = history()?;
    Ok(status_of(&history, applied(db, settings).await?))
}

/// The database's status read through the pool (for `/health`, which must not open
/// connections of its own).
pub async fn pooled_status(db: &Database, settings: &DatabaseSettings) -> Result<Status, DbError> {
    let history = History::new(crate::migrations::all())
        .map_err(|err| DbError::Unexpected(err.to_string()))?;
    let applied = applied_through(db.conn(), &settings.version_table)
        .await
        .map_err(|err| db.explain(err))?;
    Ok(status_of(&history, applied))
}

/// The rows of the version table read through a SeaORM connection or transaction (none when
/// the table does not exist), for callers that must stay on it: `/health` on the pool, dump and
/// load inside their transaction.
pub async fn applied_through<C: sea_orm::ConnectionTrait>(
    conn: &C,
    version_table: &str,
) -> Result<Vec<AppliedRevision>, sea_orm::DbErr> {
    let tables = crate::models::schema::existing_tables(conn).await?;
    if !tables.iter().any(|t| t == version_table) {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT version_num, checksum FROM {}",
        strata::render::quote_ident(version_table)
    );
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AppliedRevision {
                revision: row.try_get_by_index(0)?,
                checksum: row.try_get_by_index(1)?,
                applied_at: String::new(),
            })
        })
        .collect()
}

/// What `check` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub revision: Vec<String>,
    /// Differences between the live database and the schema its revision should have.
    pub database_drift: Vec<String>,
    /// Differences between the models and the head of the migrations (a migration to make).
    pub model_drift: Vec<String>,
    /// Migrations not yet applied (not drift, but reported).
    pub pending: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.database_drift.is_empty() && self.model_drift.is_empty()
    }
}

/// Introspects the database and compares it with the migrations and the models.
pub async fn check(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<CheckReport, MigrateError> {
    let history = history()?;
    let mut conn = connection(db).await?;
    let applied_rows = runner::applied(&mut conn, &settings.version_table)
        .await
        .map_err(RunError::from)?;
    let status = status_of(&history, applied_rows.clone());
    if let Some(unknown) = status.unknown.first() {
        return Err(HistoryError::UnknownApplied(unknown.clone()).into());
    }
    let applied_set: BTreeSet<String> = applied_rows.iter().map(|a| a.revision.clone()).collect();
    let expected = history.schema_with(&applied_set)?;
    let exclude = [settings.version_table.as_str()];
    let live = match &mut conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &exclude).await?,
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &exclude).await?,
    };
    let database = autodetect::live_drift(&expected, &live, conn.dialect());
    let head = history.head_schema()?;
    let models = autodetect::diff(&head, &target(), &mut autodetect::NoRenames);
    // Differences no operation can express (a changed primary key) arrive as warnings.
    let describe = |diff: &autodetect::Diff| {
        let mut lines = autodetect::describe_differences(diff);
        lines.extend(diff.warnings.iter().cloned());
        lines
    };
    Ok(CheckReport {
        revision: status.current,
        database_drift: describe(&database),
        model_drift: describe(&models),
        pending: status.pending,
    })
}

/// What `make-migrations` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub revision: String,
    pub path: PathBuf,
    pub operations: Vec<String>,
    pub warnings: Vec<String>,
    pub lint: Vec<lint::Warning>,
}

/// How `make-migrations` should build the next migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MakeKind {
    /// Diff the models against head.
    Autogenerate,
    /// No operations: for hand-written steps.
    Empty,
    /// Join all heads.
    Merge,
}

/// Writes the next migration file and lists it in the registry; `None` when there is
/// nothing to write.
pub fn make_migration(
    settings: &DatabaseSettings,
    message: &str,
    kind: MakeKind,
    renames: &mut dyn RenamePolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Written>, MigrateError> {
    let history = history()?;
    let dir = &settings.migration_path;
    let registry_path = dir.join("mod.rs");
    let registry = read_optional(&registry_path)?;
    if let Some(text) = &registry {
        ensure_binary_is_current(&history, text, &registry_path)?;
    }
    let heads: Vec<String> = history.heads().iter().map(|h| (*h).to_string()).collect();
    let (parents, operations, warnings) = match kind {
        MakeKind::Merge => {
            if heads.len() < 2 {
                return Err(MigrateError::Refused(format!(
                    "there is nothing to merge: {} head(s)",
                    heads.len()
                )));
            }
            (heads, Vec::new(), Vec::new())
        }
        MakeKind::Empty => {
            history.head()?;
            (heads, Vec::new(), Vec::new())
        }
        MakeKind::Autogenerate => {
            history.head()?;
            let diff = autodetect::diff(&history.head_schema()?, &target(), renames);
            if diff.operations.is_empty() {
                return Ok(None);
            }
            (heads, diff.operations, diff.warnings)
        }
    };
    let head_schema = history.head_schema()?;
    let lint = lint::lint(&operations, &head_schema, dialect(settings.url.backend()));
    let revision = strata::writer::new_revision();
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file_name =
        strata::writer::file_name(&now.format("%Y-%m-%d").to_string(), message, &revision);
    let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
    let source =
        strata::writer::render_migration(&revision, &parent_refs, message, &created, &operations)?;
    let new_registry = strata::writer::register(registry.as_deref(), &file_name, &revision)?;
    std::fs::create_dir_all(dir).map_err(|source| MigrateError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(&file_name);
    write_new(&path, &source)?;
    if let Err(err) = write_atomically(&registry_path, &new_registry) {
        // Leave nothing half done: the file without its registry entry would be ignored.
        let _ = std::fs::remove_file(&path);
        return Err(err);
    }
    Ok(Some(Written {
        revision,
        path,
        operations: operations.iter().map(|op| op.describe()).collect(),
        warnings,
        lint,
    }))
}

fn read_optional(path: &Path) -> Result<Option<String>, MigrateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MigrateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Refuses to diff against a history older than the files on disk: the new migration would
/// branch from a stale head.
fn ensure_binary_is_current(
    history: &History,
    registry: &str,
    path: &Path,
) -> Result<(), MigrateError> {
    for line in registry.lines() {
        let Some(module) = line.trim().strip_prefix("mod m_") else {
            continue;
        };
        let revision = module.trim_end_matches(';');
        if history
            .get(revision)
            .map(|m| m.revision != revision)
            .unwrap_or(true)
        {
            return Err(MigrateError::StaleBinary {
                path: path.to_path_buf(),
                revision: revision.to_string(),
            });
        }
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<(), MigrateError> {
    use std::io::Write;
    let io = |source| MigrateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), MigrateError> {
    let io = |source| MigrateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("rs.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Lint warnings of the migrations that `plan` will run.
pub fn lint_plan(history: &History, plan: &Plan) -> Result<Vec<lint::Warning>, MigrateError> {
    let mut warnings = Vec::new();
    for m in &plan.migrations {
        let migration = history.get(&m.revision)?;
        let mut before = history.schema_before(migration)?;
        if m.direction == Direction::Down {
            for op in &migration.operations {
                let _ = op.apply(&mut before);
            }
        }
        warnings.extend(lint::lint(&m.operations, &before, plan.dialect));
    }
    Ok(warnings)
}
