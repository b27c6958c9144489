//! The application's side of migrations: glue between its settings and the engine's
//! [`Migrator`], which owns status, plans, runs, stamps, checks, adoption and every statement on
//! the version table. The CLI, startup, `/health`, `doctor` and dump/load speak only to this
//! module.

use std::path::{Path, PathBuf};

use serde::Serialize;
use strata::autodetect;
use strata::migrator::{ForeignVersion, Migrator};
use strata::runner::{Conn, RunError};
use strata::state::{History, HistoryError};
use strata::{Dialect, lint};

// What callers of this module see of the engine, so the CLI and startup name only `migrate`.
pub use strata::adopt::{AdoptError, AdoptionPlan, AdoptionRecord};
pub use strata::autodetect::{NoRenames, RenameCandidate, RenamePolicy};
pub use strata::lint::{DialectWarning, Warning as LintWarning};
pub use strata::migrator::{CheckReport, Repair, Status};
pub use strata::runner::Event;
pub use strata::state::Direction;
pub use strata::stored::{StoredDowngrade, StoredRevision};

use crate::config::{Backend, DatabaseSettings};
use crate::db::{Database, DbError};
use crate::models::schema::checked_target;

/// Why a migration command failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Run(RunError),
    /// The database still belongs to the Python service (Alembic's version table).
    #[error("{}", crate::legacy::explain(.0))]
    NeedsAdoption(ForeignVersion),
    #[error(transparent)]
    Adopt(Box<AdoptError>),
    #[error(transparent)]
    Db(#[from] DbError),
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
    /// The binary holds a migration the files no longer list, or whose file is gone.
    #[error(
        "this binary contains revision {revision}, {why}; rebuild (cargo build) so the binary matches the files, and run the command again"
    )]
    StaleFiles { revision: String, why: String },
    #[error("{0}")]
    Refused(String),
    /// Strict mode (`--strict`, DATABASE_MIGRATION_STRICT) and the lint found something.
    #[error(
        "strict mode (--strict or DATABASE_MIGRATION_STRICT): {} lint finding(s); {outcome}",
        findings.len()
    )]
    Strict {
        findings: Vec<DialectWarning>,
        /// What was not done, e.g. "no migration was written".
        outcome: &'static str,
    },
    #[error(transparent)]
    Squash(#[from] strata::squash::SquashError),
}

impl From<RunError> for MigrateError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Foreign(foreign) => MigrateError::NeedsAdoption(foreign),
            RunError::BelowAdoption { revision, record } => MigrateError::Refused(format!(
                "revision {revision} came with the adoption of the Python service's database (Alembic revision {}); a downgrade cannot give that database back: restore the backup taken before the adoption with `app database restore {}`",
                record.revision,
                record.backup.as_deref().unwrap_or("FILE")
            )),
            RunError::ChecksumMismatch {
                revision,
                message,
                differences,
            } => {
                let mut text = format!(
                    "migration {revision} ({message}) changed after it was applied; restore the file, make a new migration, or accept the edit with `app database repair {revision}`"
                );
                if !differences.is_empty() {
                    text.push_str(". What differs (- as applied, + the file now):");
                    for line in differences {
                        text.push_str("\n  ");
                        text.push_str(&line);
                    }
                }
                MigrateError::Refused(text)
            }
            other => MigrateError::Run(other),
        }
    }
}

impl From<AdoptError> for MigrateError {
    fn from(err: AdoptError) -> Self {
        match err {
            AdoptError::Run(run) => run.into(),
            AdoptError::History(history) => history.into(),
            other => MigrateError::Adopt(Box::new(other)),
        }
    }
}

/// The application's migrations, checked and ordered.
pub fn history() -> Result<History, MigrateError> {
    Ok(History::new(crate::migrations::all())?)
}

/// The engine's migrator for the application's migrations and version table: every command
/// on migrations goes through it.
pub fn migrator(settings: &DatabaseSettings) -> Result<Migrator, MigrateError> {
    let timeouts = &settings.migration_timeouts;
    let options = strata::runner::RunOptions {
        lock_timeout: timeouts.lock_timeout,
        statement_timeout: timeouts.statement_timeout,
        lock_retries: timeouts.lock_retries,
        // Non-atomic migrations keep concurrent upgraders out through a connection of their own.
        guard_connection: match &settings.url {
            crate::config::DatabaseUrl::Postgres { options, .. } => Some((**options).clone()),
            crate::config::DatabaseUrl::Sqlite { .. } => None,
        },
        ..strata::runner::RunOptions::default()
    };
    Ok(Migrator::new(history()?, settings.version_table.clone()).with_run_options(options))
}

/// The engine's dialect for a backend.
pub fn dialect(backend: Backend) -> Dialect {
    match backend {
        Backend::Postgresql => Dialect::Postgres,
        Backend::Sqlite => Dialect::Sqlite,
    }
}

/// A connection of its own for the migrator, outside the pool.
pub async fn connection(db: &Database) -> Result<Conn, DbError> {
    db.dedicated_connection().await
}

/// Runs migrations online in `direction` to `target`; `on_event` sees progress.
pub async fn run(
    db: &Database,
    settings: &DatabaseSettings,
    direction: Direction,
    target: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.run(&mut conn, direction, target, on_event).await?)
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
    Ok(migrator(settings)?.offline_sql(dialect(settings.url.backend()), direction, range)?)
}

/// The lint findings of the migrations a run in `direction` to `target` would run now, each
/// read against the schema before it (for `--strict` before anything runs).
pub async fn lint_pending(
    db: &Database,
    settings: &DatabaseSettings,
    direction: Direction,
    target: &str,
) -> Result<Vec<LintWarning>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    let plan = migrator.plan(&mut conn, direction, target).await?;
    Ok(migrator.lint(&plan)?)
}

/// Records `target` (and its ancestors) as applied without running anything.
pub async fn stamp(
    db: &Database,
    settings: &DatabaseSettings,
    target: &str,
) -> Result<Vec<String>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.stamp(&mut conn, target).await?)
}

/// The database's status (another tool's version table shows in `foreign`).
pub async fn status(db: &Database, settings: &DatabaseSettings) -> Result<Status, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.status(&mut conn).await?)
}

/// The adoption recorded in the database, if it was adopted.
pub async fn adoption(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<Option<AdoptionRecord>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.adoption(&mut conn).await?)
}

/// The database's status read through the pool (for `/health`, which must not open
/// connections of its own).
pub async fn pooled_status(db: &Database, settings: &DatabaseSettings) -> Result<Status, DbError> {
    let migrator = migrator(settings).map_err(|err| DbError::Unexpected(err.to_string()))?;
    status_through(db.conn(), &migrator)
        .await
        .map_err(|err| db.explain(err))
}

/// The status read through a SeaORM connection or transaction, with the migrator's own
/// statements, for callers that must stay on it: `/health` on the pool, dump and load inside
/// their transaction.
pub async fn status_through<C: sea_orm::ConnectionTrait>(
    conn: &C,
    migrator: &Migrator,
) -> Result<Status, sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    let dialect = match backend {
        sea_orm::DbBackend::Postgres => Dialect::Postgres,
        _ => Dialect::Sqlite,
    };
    let text_rows = |rows: Vec<sea_orm::QueryResult>, width: usize| {
        rows.iter()
            .map(|row| {
                (0..width)
                    .map(|i| row.try_get_by_index::<Option<String>>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let query = |sql: String| sea_orm::Statement::from_string(backend, sql);
    let columns: Vec<String> = text_rows(
        conn.query_all_raw(query(migrator.version_columns_sql(dialect)))
            .await?,
        1,
    )?
    .into_iter()
    .filter_map(|row| row.into_iter().next().flatten())
    .collect();
    let rows = match migrator.version_rows_sql(&columns) {
        Some(sql) => text_rows(conn.query_all_raw(query(sql)).await?, 3)?,
        None => Vec::new(),
    };
    Ok(migrator.status_of(migrator.read_version_table(&columns, rows)))
}

/// Introspects the database and compares it with the migrations and the models.
pub async fn check(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<CheckReport, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    let models = checked_target().map_err(MigrateError::Refused)?;
    Ok(migrator.check(&mut conn, &models).await?)
}

/// Every row of the version table with what is stored beside it (for revisions a newer
/// release applied: their message and whether their downgrade is stored).
pub async fn stored(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<Vec<StoredRevision>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.stored(&mut conn).await?)
}

/// What `repair` would rewrite (see [`Migrator::plan_repair`]).
pub async fn plan_repair(
    db: &Database,
    settings: &DatabaseSettings,
    revision: Option<&str>,
) -> Result<Vec<Repair>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.plan_repair(&mut conn, revision).await?)
}

/// Rewrites the stored checksums (and stored downgrades) of `revisions` to the files' ones.
pub async fn repair(
    db: &Database,
    settings: &DatabaseSettings,
    revisions: &[String],
) -> Result<Vec<String>, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.repair(&mut conn, revisions).await?)
}

/// Plans the adoption of the Python service's database (refusing what cannot be bridged).
pub async fn plan_adoption(
    db: &Database,
    settings: &DatabaseSettings,
) -> Result<AdoptionPlan, MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    let spec = crate::legacy::adoption_spec(&migrator)?;
    Ok(migrator.plan_adoption(&mut conn, &spec).await?)
}

/// Runs an adoption plan in one transaction; `backup` is recorded beside it.
pub async fn adopt(
    db: &Database,
    settings: &DatabaseSettings,
    plan: &AdoptionPlan,
    backup: Option<&str>,
) -> Result<(), MigrateError> {
    let migrator = migrator(settings)?;
    let mut conn = connection(db).await?;
    Ok(migrator.adopt(&mut conn, plan, backup).await?)
}

/// What `make-migrations` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub revision: String,
    pub path: PathBuf,
    pub operations: Vec<String>,
    pub warnings: Vec<String>,
    /// For both dialects: a migration is written once and runs on either.
    pub lint: Vec<DialectWarning>,
    /// The non-atomic migration written after this one with its index builds and drops on
    /// existing tables (run CONCURRENTLY on PostgreSQL), when there are both kinds of change.
    pub indexes: Option<Box<Written>>,
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
    strict: bool,
) -> Result<Option<Written>, MigrateError> {
    let history = history()?;
    let dir = &settings.migration_path;
    let registry_path = dir.join("mod.rs");
    // Parsed before any work, so that a broken registry or a stale binary is reported before
    // the models are diffed.
    let registry = match read_optional(&registry_path)? {
        Some(text) => {
            let registry = strata::writer::Registry::parse(&text)?;
            ensure_binary_is_current(&history, &registry, &registry_path)?;
            ensure_files_are_current(&history, &registry, dir)?;
            registry
        }
        None => strata::writer::Registry::new(),
    };
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
            let target = checked_target().map_err(MigrateError::Refused)?;
            let diff = autodetect::diff(&history.head_schema()?, &target, renames);
            if diff.operations.is_empty() {
                return Ok(None);
            }
            (heads, diff.operations, diff.warnings)
        }
    };
    let head_schema = history.head_schema()?;
    let written = write_migrations(
        dir,
        &registry,
        message,
        &parents,
        operations,
        kind == MakeKind::Autogenerate,
        &head_schema,
        strict,
        now,
    )?;
    Ok(Some(Written {
        warnings,
        ..written
    }))
}

/// Writes the migration of `operations` made against `head_schema`; with `split`, index
/// builds and drops on tables that already hold rows go into a migration of their own after
/// it, which runs outside a transaction (CONCURRENTLY on PostgreSQL, so writes go on). Both
/// are linted for both dialects first; in `strict` mode a finding writes nothing.
#[allow(clippy::too_many_arguments)]
fn write_migrations(
    dir: &Path,
    registry: &strata::writer::Registry,
    message: &str,
    parents: &[String],
    operations: Vec<strata::Operation>,
    split: bool,
    head_schema: &strata::Schema,
    strict: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written, MigrateError> {
    let registry_path = dir.join("mod.rs");
    let (operations, index_operations) = if split {
        strata::concurrent::split_index_operations(operations, head_schema)
    } else {
        (operations, Vec::new())
    };
    let mut after = head_schema.clone();
    for op in &operations {
        let _ = op.apply(&mut after);
    }
    let lint = lint::lint_both(&operations, head_schema, lint::LintContext::default());
    let index_lint = lint::lint_both(
        &index_operations,
        &after,
        lint::LintContext {
            concurrent_index_builds: true,
        },
    );
    if strict && (!lint.is_empty() || !index_lint.is_empty()) {
        return Err(MigrateError::Strict {
            findings: lint.into_iter().chain(index_lint).collect(),
            outcome: "no migration was written",
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| MigrateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if operations.is_empty() && !index_operations.is_empty() {
        // Only index changes: one non-atomic migration.
        let written = write_migration(
            dir,
            &registry_path,
            registry,
            message,
            parents,
            &index_operations,
            false,
            now,
        )?;
        return Ok(Written {
            lint: index_lint,
            ..written
        });
    }
    let mut written = write_migration(
        dir,
        &registry_path,
        registry,
        message,
        parents,
        &operations,
        true,
        now,
    )?;
    written.lint = lint;
    if !index_operations.is_empty() {
        let registry = match read_optional(&registry_path)? {
            Some(text) => strata::writer::Registry::parse(&text)?,
            None => strata::writer::Registry::new(),
        };
        let mut indexes = write_migration(
            dir,
            &registry_path,
            &registry,
            &format!("{message} (indexes)"),
            &[written.revision.clone()],
            &index_operations,
            false,
            now,
        )?;
        indexes.lint = index_lint;
        written.indexes = Some(Box::new(indexes));
    }
    Ok(written)
}

/// Writes one migration file and lists it in the registry (given as read before).
#[allow(clippy::too_many_arguments)]
fn write_migration(
    dir: &Path,
    registry_path: &Path,
    registry: &strata::writer::Registry,
    message: &str,
    parents: &[String],
    operations: &[strata::Operation],
    atomic: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written, MigrateError> {
    let revision = strata::writer::new_revision();
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file_name =
        strata::writer::file_name(&now.format("%Y-%m-%d").to_string(), message, &revision);
    let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
    let source = strata::writer::render_migration_with(
        &revision,
        &parent_refs,
        message,
        &created,
        operations,
        atomic,
    )?;
    let new_registry = registry.with(&file_name, &revision)?.render();
    let path = dir.join(&file_name);
    write_new(&path, &source)?;
    if let Err(err) = write_atomically(registry_path, &new_registry) {
        // Leave nothing half done: the file without its registry entry would be ignored.
        let _ = std::fs::remove_file(&path);
        return Err(err);
    }
    Ok(Written {
        revision,
        path,
        operations: operations.iter().map(|op| op.describe()).collect(),
        warnings: Vec::new(),
        lint: Vec::new(),
        indexes: None,
    })
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, MigrateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MigrateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Refuses to work with a binary that does not match the migration files, both ways: the
/// files list a revision the binary lacks (made or pulled since the build), or the binary holds
/// one the files no longer list or whose file is gone. Without the registry (a deployed binary
/// with no sources beside it) there is nothing to compare with.
pub fn ensure_binary_matches_files(settings: &DatabaseSettings) -> Result<(), MigrateError> {
    let dir = &settings.migration_path;
    let registry_path = dir.join("mod.rs");
    let Some(text) = read_optional(&registry_path)? else {
        return Ok(());
    };
    let registry = strata::writer::Registry::parse(&text)?;
    let history = history()?;
    ensure_binary_is_current(&history, &registry, &registry_path)?;
    ensure_files_are_current(&history, &registry, dir)
}

/// The other direction of [`ensure_binary_is_current`]: every migration of the binary is
/// listed and its file is on disk.
pub(crate) fn ensure_files_are_current(
    history: &History,
    registry: &strata::writer::Registry,
    dir: &Path,
) -> Result<(), MigrateError> {
    for m in history.migrations().iter().chain(history.squashes()) {
        match registry.entries().iter().find(|e| e.revision == m.revision) {
            None => {
                return Err(MigrateError::StaleFiles {
                    revision: m.revision.clone(),
                    why: format!("which {} does not list", dir.join("mod.rs").display()),
                });
            }
            Some(entry) if !dir.join(&entry.file_name).is_file() => {
                return Err(MigrateError::StaleFiles {
                    revision: m.revision.clone(),
                    why: format!(
                        "whose file {} is gone",
                        dir.join(&entry.file_name).display()
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Refuses to diff against a history older than the files on disk: the new migration would
/// branch from a stale head.
pub(crate) fn ensure_binary_is_current(
    history: &History,
    registry: &strata::writer::Registry,
    path: &Path,
) -> Result<(), MigrateError> {
    for revision in registry.revisions() {
        // `get` also resolves a unique prefix; only the full revision counts here. A squash
        // is kept beside the graph, so it is looked for there too.
        let known = history.get(revision).is_ok_and(|m| m.revision == revision)
            || history.squashes().iter().any(|s| s.revision == revision);
        if !known {
            return Err(MigrateError::StaleBinary {
                path: path.to_path_buf(),
                revision: revision.to_string(),
            });
        }
    }
    Ok(())
}

pub(crate) fn write_new(path: &Path, text: &str) -> Result<(), MigrateError> {
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

pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), MigrateError> {
    let io = |source| MigrateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("rs.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use strata::prelude::*;

    use super::*;

    fn item_table() -> strata::Schema {
        let mut schema = strata::Schema::default();
        create_table(
            Table::new("item")
                .with_column(Column::new("id", ColumnType::Integer))
                .with_column(Column::new("code", ColumnType::Text))
                .with_primary_key(["id"]),
        )
        .apply(&mut schema)
        .unwrap();
        schema
    }

    #[test]
    fn index_changes_on_existing_tables_are_written_as_a_second_non_atomic_migration() {
        let dir = tempfile::tempdir().unwrap();
        let ops = vec![
            add_column("item", Column::new("note", ColumnType::Text).nullable()),
            create_index("item", "ix_item_code", &["code"]),
        ];
        let written = write_migrations(
            dir.path(),
            &strata::writer::Registry::new(),
            "notes",
            &["p".to_string()],
            ops,
            true,
            &item_table(),
            false,
            chrono::Utc::now(),
        )
        .unwrap();
        let main = std::fs::read_to_string(&written.path).unwrap();
        assert!(!main.contains(".atomic("), "{main}");
        assert!(!main.contains("ix_item_code"), "{main}");
        let indexes = written.indexes.expect("a second migration");
        let second = std::fs::read_to_string(&indexes.path).unwrap();
        assert!(second.contains(".atomic(false)"), "{second}");
        assert!(second.contains("ix_item_code"), "{second}");
        assert!(
            second.contains(&written.revision),
            "its parent is the first: {second}"
        );
        assert!(second.contains("notes (indexes)"), "{second}");
        assert!(
            indexes.lint.is_empty(),
            "built CONCURRENTLY: {:?}",
            indexes.lint
        );
        let registry = std::fs::read_to_string(dir.path().join("mod.rs")).unwrap();
        assert!(registry.contains(&written.revision) && registry.contains(&indexes.revision));
    }

    #[test]
    fn an_empty_migration_stays_atomic_and_single() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_migrations(
            dir.path(),
            &strata::writer::Registry::new(),
            "by hand",
            &["p".to_string()],
            Vec::new(),
            false,
            &item_table(),
            false,
            chrono::Utc::now(),
        )
        .unwrap();
        assert!(written.indexes.is_none());
        let text = std::fs::read_to_string(&written.path).unwrap();
        assert!(!text.contains(".atomic("), "{text}");
    }
}
