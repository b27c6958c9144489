//! The one owner of a database's migrations: [`Migrator`].
//!
//! A migrator is a [`History`] and the name of its version table. Everything an application
//! asks about or does to a database's migrations goes through it: where the database stands
//! ([`Migrator::status`]), what an upgrade or downgrade would run ([`Migrator::plan`],
//! [`Migrator::offline_sql`]), running it ([`Migrator::run`]), recording a revision without
//! running anything ([`Migrator::stamp`]), comparing the live schema with the migrations
//! ([`Migrator::check`]) and taking over a database another tool made
//! ([`Migrator::plan_adoption`], [`Migrator::adopt`]). Every statement that reads or writes the
//! version table is written here (or in [`runner`], which it drives), so the application never
//! spells one.
//!
//! The version table is found in one of three shapes ([`VersionTable`]): missing (a new
//! database), the engine's own (`version_num`, `checksum`, `applied_at`), or another tool's:
//! Alembic's single `version_num` column. A database in the last shape must be adopted before
//! anything else runs on it; every command that would write refuses with
//! [`RunError::Foreign`].

use std::collections::BTreeSet;

use serde::Serialize;

use crate::adopt::{self, AdoptError, AdoptionPlan, AdoptionRecord, AdoptionSpec};
use crate::autodetect;
use crate::lint;
use crate::runner::{self, AppliedRevision, Conn, Event, Plan, RunError};
use crate::state::{Direction, History, HistoryError};
use crate::stored::{self, StoredRevision};
use crate::{Dialect, Schema};

/// A version table written by another migration tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignVersion {
    /// The tool, as recognized from the table's shape (`alembic`).
    pub tool: String,
    /// The revisions it records (Alembic keeps one per head).
    pub revisions: Vec<String>,
}

/// What the version table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionTable {
    /// No version table: nothing was ever applied.
    Missing,
    /// The engine's own, with the applied revisions oldest first.
    Managed(Vec<AppliedRevision>),
    /// Another tool's.
    Foreign(ForeignVersion),
}

/// Where a database stands against the migrations.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub applied: Vec<AppliedRevision>,
    /// Applied revisions that are heads of the applied set (what `current` shows).
    pub current: Vec<String>,
    pub heads: Vec<String>,
    pub pending: Vec<String>,
    /// Applied revisions no migration knows.
    pub unknown: Vec<String>,
    /// Set when the version table is another tool's: the database must be adopted first.
    pub foreign: Option<ForeignVersion>,
}

impl Status {
    /// True when every migration is applied and nothing unknown or foreign is recorded.
    pub fn at_head(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty() && self.foreign.is_none()
    }
}

/// What [`Migrator::check`] found.
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
    /// Tables an adoption left alone: not managed by the migrations, so not drift.
    pub unmanaged: Vec<String>,
    /// Indexes an interrupted concurrent build left INVALID (PostgreSQL): `upgrade` rebuilds
    /// them.
    pub invalid_indexes: Vec<crate::concurrent::InvalidIndex>,
}

impl CheckReport {
    /// True when neither the database nor the models differ from the migrations, and no
    /// index is left invalid.
    pub fn is_clean(&self) -> bool {
        self.database_drift.is_empty()
            && self.model_drift.is_empty()
            && self.invalid_indexes.is_empty()
    }
}

/// A history and its version table: the one owner of a database's migrations.
#[derive(Debug, Clone)]
pub struct Migrator {
    history: History,
    version_table: String,
    options: runner::RunOptions,
}

impl Migrator {
    /// A migrator for `history`, recording applied revisions in `version_table`.
    pub fn new(history: History, version_table: impl Into<String>) -> Self {
        Migrator {
            history,
            version_table: version_table.into(),
            options: runner::RunOptions::default(),
        }
    }

    /// Builder: lock and statement timeouts and lock-timeout retries for [`Migrator::run`].
    pub fn with_run_options(mut self, options: runner::RunOptions) -> Self {
        self.options = options;
        self
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn version_table(&self) -> &str {
        &self.version_table
    }

    /// The table that records adoptions (beside the version table, named after it).
    pub fn adoption_table(&self) -> String {
        format!("{}_adoption", self.version_table)
    }

    /// The tables the migrator itself keeps; introspection and drift leave them out.
    pub fn own_tables(&self) -> [String; 2] {
        [self.version_table.clone(), self.adoption_table()]
    }

    /// The query listing the version table's columns (no rows when it does not exist). With
    /// [`Migrator::version_rows_sql`] and [`Migrator::read_version_table`] a caller on another
    /// kind of connection (an ORM's pool) reads the table without spelling its SQL.
    pub fn version_columns_sql(&self, dialect: Dialect) -> String {
        let name = sql_string(&self.version_table);
        match dialect {
            Dialect::Postgres => format!(
                "SELECT CAST(column_name AS text) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = {name} ORDER BY ordinal_position"
            ),
            Dialect::Sqlite => format!("SELECT name FROM pragma_table_info({name}) ORDER BY cid"),
        }
    }

    /// The query reading the version table's rows, given its columns; `None` when it does not
    /// exist or is another tool's of a shape whose rows cannot be read. Every row has three text cells: revision, checksum, time applied (the last two
    /// empty in another tool's table).
    pub fn version_rows_sql(&self, columns: &[String]) -> Option<String> {
        let table = crate::render::quote_ident(&self.version_table);
        match shape(columns) {
            Shape::Missing => None,
            Shape::Managed => Some(format!(
                "SELECT version_num, checksum, CAST(applied_at AS text) FROM {table} ORDER BY applied_at, version_num"
            )),
            // Another tool's table of another shape says which revisions it holds only when
            // it has a `version_num` column; its columns name the tool either way.
            Shape::Unknown if !columns.iter().any(|c| c == "version_num") => None,
            Shape::Alembic | Shape::Unknown => Some(format!(
                "SELECT CAST(version_num AS text), CAST('' AS text), CAST('' AS text) FROM {table} ORDER BY 1"
            )),
        }
    }

    /// What the version table holds, from its columns and the rows of
    /// [`Migrator::version_rows_sql`].
    pub fn read_version_table(
        &self,
        columns: &[String],
        rows: Vec<Vec<Option<String>>>,
    ) -> VersionTable {
        let revisions = rows.into_iter().map(|row| {
            let mut cells = row.into_iter().map(Option::unwrap_or_default);
            AppliedRevision {
                revision: cells.next().unwrap_or_default(),
                checksum: cells.next().unwrap_or_default(),
                applied_at: cells.next().unwrap_or_default(),
            }
        });
        match shape(columns) {
            Shape::Missing => VersionTable::Missing,
            Shape::Managed => VersionTable::Managed(revisions.collect()),
            Shape::Alembic => VersionTable::Foreign(ForeignVersion {
                tool: "alembic".into(),
                revisions: revisions.map(|r| r.revision).collect(),
            }),
            Shape::Unknown => VersionTable::Foreign(ForeignVersion {
                tool: format!("unknown ({})", columns.join(", ")),
                revisions: revisions.map(|r| r.revision).collect(),
            }),
        }
    }

    /// Reads the version table on `conn`.
    pub async fn version_state(&self, conn: &mut Conn) -> Result<VersionTable, sqlx::Error> {
        let columns: Vec<String> = conn
            .fetch_text(&self.version_columns_sql(conn.dialect()))
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        let rows = match self.version_rows_sql(&columns) {
            Some(sql) => conn.fetch_text(&sql).await?,
            None => Vec::new(),
        };
        Ok(self.read_version_table(&columns, rows))
    }

    /// The revisions applied, oldest first; refuses another tool's version table.
    pub async fn applied(&self, conn: &mut Conn) -> Result<Vec<AppliedRevision>, RunError> {
        match self.version_state(conn).await? {
            VersionTable::Missing => Ok(Vec::new()),
            VersionTable::Managed(rows) => Ok(rows),
            VersionTable::Foreign(foreign) => Err(RunError::Foreign(foreign)),
        }
    }

    /// The status a version table gives against the migrations.
    pub fn status_of(&self, table: VersionTable) -> Status {
        let history = &self.history;
        let heads = history.heads().iter().map(|h| (*h).to_string()).collect();
        let applied = match table {
            VersionTable::Foreign(foreign) => {
                return Status {
                    applied: Vec::new(),
                    current: Vec::new(),
                    heads,
                    pending: history
                        .migrations()
                        .iter()
                        .map(|m| m.revision.clone())
                        .collect(),
                    unknown: Vec::new(),
                    foreign: Some(foreign),
                };
            }
            VersionTable::Missing => Vec::new(),
            VersionTable::Managed(rows) => rows,
        };
        let applied_set: BTreeSet<String> = applied.iter().map(|a| a.revision.clone()).collect();
        let unknown = applied_set
            .iter()
            .filter(|r| history.get(r).map(|m| &m.revision != *r).unwrap_or(true))
            .cloned()
            .collect();
        let current = history.applied_heads(&applied_set);
        let pending = history
            .migrations()
            .iter()
            .filter(|m| !applied_set.contains(&m.revision))
            .map(|m| m.revision.clone())
            .collect();
        Status {
            applied,
            current,
            heads,
            pending,
            unknown,
            foreign: None,
        }
    }

    /// Where the database on `conn` stands.
    pub async fn status(&self, conn: &mut Conn) -> Result<Status, RunError> {
        Ok(self.status_of(self.version_state(conn).await?))
    }

    /// The adoption recorded in the database, if it was adopted.
    pub async fn adoption(&self, conn: &mut Conn) -> Result<Option<AdoptionRecord>, RunError> {
        Ok(adopt::read_record(conn, &self.adoption_table()).await?)
    }

    /// The plan an online run would follow from the database's current state: for a preview
    /// (lint) before [`Migrator::run`], which plans again under its lock.
    pub async fn plan(
        &self,
        conn: &mut Conn,
        direction: Direction,
        target: &str,
    ) -> Result<Plan, RunError> {
        let applied = self.applied(conn).await?;
        let mut applied_set: BTreeSet<String> = applied.into_iter().map(|a| a.revision).collect();
        let mut target = target.to_string();
        if direction == Direction::Down {
            // Revisions a newer release applied are undone with their stored SQL first (see
            // [`crate::stored`]); the plan covers what is left for the known ones.
            let rows = stored::read(conn, &self.version_table).await?;
            let (undo, rest) = stored::split_downgrade(&self.history, &rows, &target)?;
            stored::refuse_without_sql(&undo)?;
            applied_set.retain(|r| stored::is_known(&self.history, r));
            match rest {
                Some(rest) => target = rest,
                None => {
                    return Ok(Plan {
                        dialect: conn.dialect(),
                        version_table: self.version_table.clone(),
                        migrations: Vec::new(),
                    });
                }
            }
        }
        let plan = Plan::new(
            &self.history,
            &applied_set,
            direction,
            &target,
            conn.dialect(),
            &self.version_table,
        )?;
        if direction == Direction::Down {
            self.refuse_below_adoption(conn, plan.migrations.iter().map(|m| &m.revision))
                .await?;
        }
        Ok(plan)
    }

    /// One migration planned as an upgrade for `dialect`, for showing: its statements are
    /// [`Plan::step_sql`].
    pub fn planned_upgrade(
        &self,
        revision: &str,
        dialect: Dialect,
    ) -> Result<runner::PlannedMigration, RunError> {
        let migration = self.history.get(revision)?;
        runner::plan_migration(
            &self.history,
            migration,
            Direction::Up,
            dialect,
            &self.version_table,
        )
    }

    /// Lint warnings for the migrations `plan` runs, each read against the schema before it.
    pub fn lint(&self, plan: &Plan) -> Result<Vec<lint::Warning>, RunError> {
        let mut warnings = Vec::new();
        for m in &plan.migrations {
            // A squash runs its net operations on an empty chain: nothing to warn of there.
            let Ok(migration) = self.history.get(&m.revision) else {
                continue;
            };
            let mut before = self.history.schema_before(migration)?;
            if m.direction == Direction::Down {
                for op in &migration.operations {
                    let _ = op.apply(&mut before);
                }
            }
            warnings.extend(lint::lint_with(
                &m.operations,
                &before,
                plan.dialect,
                lint::LintContext {
                    concurrent_index_builds: !migration.atomic,
                },
            ));
        }
        Ok(warnings)
    }

    /// The SQL an upgrade or downgrade would run, without a database.
    ///
    /// `range` is `TARGET` or `FROM:TARGET`. An upgrade starts from `FROM` (default: an empty
    /// database); a downgrade from `FROM` (default: head).
    pub fn offline_sql(
        &self,
        dialect: Dialect,
        direction: Direction,
        range: &str,
    ) -> Result<String, RunError> {
        let history = &self.history;
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
            history,
            &start,
            direction,
            target,
            dialect,
            &self.version_table,
        )?;
        Ok(plan.to_sql())
    }

    /// Runs migrations online in `direction` to `target`; returns the revisions it ran.
    /// Refuses another tool's version table, and a downgrade that would undo an adoption.
    pub async fn run(
        &self,
        conn: &mut Conn,
        direction: Direction,
        target: &str,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Vec<String>, RunError> {
        // Planning first refuses what must not run; the runner plans again under its lock,
        // and what it planned is linted before anything runs.
        self.plan(conn, direction, target).await?;
        let mut lint_then_report = |event: Event<'_>| {
            if let Event::Planned { plan } = &event {
                let warnings = self.lint(plan).unwrap_or_default();
                on_event(Event::Linted {
                    warnings: &warnings,
                });
            }
            on_event(event);
        };
        runner::run_with(
            conn,
            &self.history,
            &self.version_table,
            direction,
            target,
            &self.options,
            &mut lint_then_report,
        )
        .await
    }

    /// Sets the version table to exactly `target` and its ancestors without running anything.
    pub async fn stamp(&self, conn: &mut Conn, target: &str) -> Result<Vec<String>, RunError> {
        let applied = self.applied(conn).await?;
        if let Some(record) = self.adoption(conn).await? {
            let kept = runner::stamp_set(&self.history, target)?;
            let undone: Vec<&String> = applied
                .iter()
                .map(|a| &a.revision)
                .filter(|r| !kept.contains(*r))
                .collect();
            refuse_if_adopted(&self.history, &record, undone)?;
        }
        runner::stamp(conn, &self.history, &self.version_table, target).await
    }

    async fn refuse_below_adoption<'r>(
        &self,
        conn: &mut Conn,
        undone: impl IntoIterator<Item = &'r String>,
    ) -> Result<(), RunError> {
        match self.adoption(conn).await? {
            Some(record) => refuse_if_adopted(&self.history, &record, undone),
            None => Ok(()),
        }
    }

    /// Introspects the database and compares it with the schema its recorded revision should
    /// have, and `models` with head.
    pub async fn check(&self, conn: &mut Conn, models: &Schema) -> Result<CheckReport, RunError> {
        let status = self.status(conn).await?;
        if let Some(foreign) = status.foreign {
            return Err(RunError::Foreign(foreign));
        }
        if let Some(unknown) = status.unknown.first() {
            return Err(HistoryError::UnknownApplied(unknown.clone()).into());
        }
        let applied_set: BTreeSet<String> =
            status.applied.iter().map(|a| a.revision.clone()).collect();
        let expected = self.history.schema_with(&applied_set)?;
        let unmanaged = match self.adoption(conn).await? {
            Some(record) => record.unmanaged,
            None => Vec::new(),
        };
        let own = self.own_tables();
        let mut exclude: Vec<&str> = own.iter().map(String::as_str).collect();
        // A table the adoption left alone is not managed unless a later migration took it.
        let unmanaged: Vec<String> = unmanaged
            .into_iter()
            .filter(|t| !expected.tables.contains_key(t))
            .collect();
        exclude.extend(unmanaged.iter().map(String::as_str));
        let live = introspect(conn, &exclude).await?;
        let invalid_indexes = crate::concurrent::invalid_indexes(conn).await?;
        // CHECK expressions too: an edited check is drift (see `checks`).
        let database = crate::checks::live_drift(conn, &expected, &live).await?;
        let head = self.history.head_schema()?;
        let models = autodetect::diff(&head, models, &mut autodetect::NoRenames);
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
            unmanaged,
            invalid_indexes,
        })
    }

    /// Every row of the version table with what is stored beside it (parents, message,
    /// canonical form, downgrade), oldest first: how `current` and `history` describe
    /// revisions a newer release applied.
    pub async fn stored(&self, conn: &mut Conn) -> Result<Vec<StoredRevision>, RunError> {
        self.applied(conn).await?;
        Ok(stored::read(conn, &self.version_table).await?)
    }

    /// What `repair` would rewrite: each applied revision whose checksum no longer verifies
    /// (or only `revision`, even when it verifies, to refresh what is stored beside it), with
    /// what differs. Reads only.
    pub async fn plan_repair(
        &self,
        conn: &mut Conn,
        revision: Option<&str>,
    ) -> Result<Vec<Repair>, RunError> {
        let rows = self.stored(conn).await?;
        let wanted = match revision {
            Some(rev) => {
                let migration = self.history.get(rev)?;
                if !rows.iter().any(|r| r.revision == migration.revision) {
                    return Err(RunError::NotApplied(migration.revision.clone()));
                }
                Some(migration.revision.clone())
            }
            None => None,
        };
        let mut out = Vec::new();
        for row in &rows {
            if !stored::is_known(&self.history, &row.revision) {
                continue;
            }
            let migration = self.history.get(&row.revision)?;
            let verifies = crate::checksum::verifies(&row.checksum, migration);
            let chosen = match &wanted {
                Some(rev) => rev == &row.revision,
                None => !verifies,
            };
            if chosen {
                out.push(Repair {
                    revision: row.revision.clone(),
                    message: migration.message.clone(),
                    checksum_changed: !verifies,
                    differences: if verifies {
                        Vec::new()
                    } else {
                        stored::mismatch_differences(row, migration)
                    },
                });
            }
        }
        Ok(out)
    }

    /// Rewrites the stored checksum, canonical form and downgrade of `revisions` to their
    /// files' current ones, in one transaction (under the upgraders' lock on PostgreSQL, taken
    /// for the transaction only). Returns the revisions rewritten.
    pub async fn repair(
        &self,
        conn: &mut Conn,
        revisions: &[String],
    ) -> Result<Vec<String>, RunError> {
        self.applied(conn).await?;
        let dialect = conn.dialect();
        stored::ensure_columns(conn, &self.version_table).await?;
        conn.execute(runner::begin_sql(dialect)).await?;
        let result = async {
            if dialect == Dialect::Postgres {
                let key = runner::lock_key(&self.version_table);
                conn.execute(&format!("SELECT pg_advisory_xact_lock({key})"))
                    .await?;
            }
            let mut done = Vec::new();
            for revision in revisions {
                let migration = self.history.get(revision)?;
                let changed = conn
                    .execute(&stored::update_sql(
                        &self.history,
                        migration,
                        dialect,
                        &self.version_table,
                    ))
                    .await?;
                if changed > 0 {
                    done.push(migration.revision.clone());
                }
            }
            Ok::<_, RunError>(done)
        }
        .await;
        match result {
            Ok(done) => {
                conn.execute("COMMIT").await?;
                Ok(done)
            }
            Err(err) => {
                let _ = conn.execute("ROLLBACK").await;
                Err(err)
            }
        }
    }

    /// Plans the adoption of a database another tool made: see [`crate::adopt`].
    pub async fn plan_adoption(
        &self,
        conn: &mut Conn,
        spec: &AdoptionSpec,
    ) -> Result<AdoptionPlan, AdoptError> {
        adopt::plan(self, conn, spec).await
    }

    /// Runs an adoption plan as one unit; `backup` names the backup taken before, for the
    /// record (and for the message that refuses a downgrade past the adoption).
    pub async fn adopt(
        &self,
        conn: &mut Conn,
        plan: &AdoptionPlan,
        backup: Option<&str>,
    ) -> Result<(), AdoptError> {
        adopt::run(conn, plan, backup).await
    }
}

/// One revision `repair` rewrites.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    pub revision: String,
    pub message: String,
    /// False when only what is stored beside the checksum is refreshed.
    pub checksum_changed: bool,
    /// Lines of [`crate::checksum::differences`].
    pub differences: Vec<String>,
}

/// Refuses to undo a revision the adoption recorded as applied.
fn refuse_if_adopted<'r>(
    history: &History,
    record: &AdoptionRecord,
    undone: impl IntoIterator<Item = &'r String>,
) -> Result<(), RunError> {
    let adopted = history.ancestors(&record.adopted_into)?;
    match undone.into_iter().find(|r| adopted.contains(*r)) {
        Some(revision) => Err(RunError::BelowAdoption {
            revision: revision.clone(),
            record: Box::new(record.clone()),
        }),
        None => Ok(()),
    }
}

/// Reads the live schema, leaving out `exclude`.
pub(crate) async fn introspect(
    conn: &mut Conn,
    exclude: &[&str],
) -> Result<Schema, crate::introspect::IntrospectError> {
    match conn {
        Conn::Postgres(c) => crate::introspect::postgres(c, exclude).await,
        Conn::Sqlite(c) => crate::introspect::sqlite(c, exclude).await,
    }
}

enum Shape {
    Missing,
    Managed,
    Alembic,
    Unknown,
}

fn shape(columns: &[String]) -> Shape {
    let has = |name: &str| columns.iter().any(|c| c == name);
    if columns.is_empty() {
        Shape::Missing
    } else if has("version_num") && has("checksum") {
        Shape::Managed
    } else if columns == ["version_num"] {
        Shape::Alembic
    } else {
        Shape::Unknown
    }
}

pub(crate) fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
