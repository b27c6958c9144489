//! Applying migrations to a live database: version table, checksums, locking, transactions.
//!
//! Every run is first a [`Plan`]: for each migration the exact statements, in order, inside
//! `BEGIN`/`COMMIT`, with the version-table row written in the same transaction. `--sql`
//! prints the plan ([`Plan::to_sql`]); an online run executes the same statements. So a
//! migration that fails leaves the database at the last good revision on both dialects
//! (both have transactional DDL).
//!
//! Concurrent upgraders are serialized: on PostgreSQL by a session advisory lock held for the
//! whole run; on SQLite each migration runs in a `BEGIN IMMEDIATE` transaction that re-reads
//! the version table first and skips a revision another process applied meanwhile.
//!
//! A migration that rebuilds SQLite tables runs with `PRAGMA foreign_keys=OFF` around its
//! transaction (the pragma is ignored inside one) and checks `PRAGMA foreign_key_check` before
//! committing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row;

use crate::Dialect;
use crate::migration::Migration;
use crate::ops::{DataFn, Operation};
use crate::render::{self, RenderError};
use crate::state::{Direction, History, HistoryError};

/// A connection to the database being migrated.
pub enum Conn {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Conn {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs SQL that may hold several statements; returns the rows changed.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let query = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()));
        match self {
            Conn::Postgres(c) => query.execute(c).await.map(|r| r.rows_affected()),
            Conn::Sqlite(c) => query.execute(c).await.map(|r| r.rows_affected()),
        }
    }

    /// Rows of text columns (NULL as `None`).
    pub async fn fetch_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        fn cells<R: Row>(row: &R) -> Result<Vec<Option<String>>, sqlx::Error>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i))
                .collect()
        }
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Conn::Postgres(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(cells)
                .collect(),
            Conn::Sqlite(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(cells)
                .collect(),
        }
    }
}

/// What a Rust data step can do: run SQL inside the migration's transaction.
pub struct DataContext<'c> {
    pub(crate) conn: &'c mut Conn,
}

impl DataContext<'_> {
    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// Runs SQL (one or more statements); returns the rows it changed.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, String> {
        self.conn.execute(sql).await.map_err(|e| e.to_string())
    }

    /// Rows of a query, each column read as text.
    pub async fn fetch_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        self.conn.fetch_text(sql).await.map_err(|e| e.to_string())
    }
}

/// Why a run failed. Each names the migration and, where one failed, the statement.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("migration {revision} ({message}): {error}")]
    Render {
        revision: String,
        message: String,
        error: Box<RenderError>,
    },
    /// `differences` are lines of [`crate::checksum::differences`] (none when the database
    /// holds no canonical form of what was applied).
    #[error(
        "migration {revision} ({message}) changed after it was applied; restore the file, make a new migration, or accept the edit with `repair {revision}`{}",
        show_differences(differences)
    )]
    ChecksumMismatch {
        revision: String,
        message: String,
        differences: Vec<String>,
    },
    #[error("revision {0} is not applied to this database")]
    NotApplied(String),
    /// A revision this binary does not know, whose downgrade is not stored as SQL.
    #[error("{reason}")]
    NoStoredDowngrade { revision: String, reason: String },
    #[error(
        "migration {revision} ({message}) failed at `{statement}`: {error}; the database stays at the previous revision"
    )]
    Statement {
        revision: String,
        message: String,
        statement: String,
        error: String,
    },
    #[error(
        "migration {revision} ({message}) leaves rows whose foreign keys point nowhere (table {table}); nothing was changed"
    )]
    ForeignKeyCheck {
        revision: String,
        message: String,
        table: String,
    },
    /// The version table is another tool's: the database must be adopted first.
    #[error(
        "the version table is {tool}'s (revision {revisions}); adopt the database before migrating it",
        tool = .0.tool,
        revisions = if .0.revisions.is_empty() { "none".to_string() } else { .0.revisions.join(", ") }
    )]
    Foreign(crate::migrator::ForeignVersion),
    /// A downgrade (or stamp) would undo a revision an adoption recorded.
    #[error(
        "revision {revision} came with the adoption of {tool} revision {from}; going below it cannot give back that database{backup}",
        tool = record.tool,
        from = record.revision,
        backup = match &record.backup {
            Some(path) => format!(": restore the backup taken before the adoption ({path})"),
            None => String::from(": restore a backup taken before the adoption"),
        }
    )]
    BelowAdoption {
        revision: String,
        record: Box<crate::adopt::AdoptionRecord>,
    },
    #[error("cannot read the live schema: {0}")]
    Introspect(#[from] crate::introspect::IntrospectError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

fn show_differences(differences: &[String]) -> String {
    if differences.is_empty() {
        return String::new();
    }
    let mut out = String::from(". What differs (- as applied, + the file now):");
    for line in differences {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

/// One step of a planned migration.
#[derive(Clone)]
pub enum Step {
    Sql(String),
    Data { name: String, run: DataFn },
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Sql(sql) => write!(f, "Sql({sql:?})"),
            Step::Data { name, .. } => write!(f, "Data({name:?})"),
        }
    }
}

/// One migration, ready to run in one direction.
#[derive(Debug, Clone)]
pub struct PlannedMigration {
    pub revision: String,
    pub message: String,
    pub direction: Direction,
    pub checksum: String,
    /// On SQLite: foreign keys must be off around the transaction.
    pub rebuilds_tables: bool,
    pub steps: Vec<Step>,
    /// Writes (up) or deletes (down) the version row, in the same transaction.
    pub version_sql: String,
    /// For a squash: the revisions it records; empty otherwise.
    pub replaces: Vec<String>,
    pub operations: Vec<Operation>,
}

/// Everything a run will do, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dialect: Dialect,
    pub version_table: String,
    pub migrations: Vec<PlannedMigration>,
}

/// A row of the version table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRevision {
    pub revision: String,
    pub checksum: String,
    pub applied_at: String,
}

/// Progress of an online run, for logs and progress bars.
#[derive(Debug)]
pub enum Event<'a> {
    /// The plan made under the lock, about to run.
    Planned {
        plan: &'a Plan,
    },
    /// Lint warnings about the planned migrations, before any of them runs.
    Linted {
        warnings: &'a [crate::lint::Warning],
    },
    Started {
        migration: &'a PlannedMigration,
    },
    Statement {
        sql: &'a str,
    },
    Finished {
        migration: &'a PlannedMigration,
        elapsed: Duration,
    },
    /// Another process applied (or undid) it meanwhile.
    Skipped {
        migration: &'a PlannedMigration,
    },
}

fn quote(name: &str) -> String {
    render::quote_ident(name)
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statement that creates the version table if it is missing.
pub fn version_table_sql(dialect: Dialect, table: &str) -> String {
    let applied_at = match dialect {
        Dialect::Postgres => "timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
        Dialect::Sqlite => "text NOT NULL DEFAULT CURRENT_TIMESTAMP",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {} (version_num varchar(32) NOT NULL PRIMARY KEY, checksum varchar(64) NOT NULL, applied_at {applied_at}, parents text, message text, canonical text, downgrade_sql text, downgrade_note text)",
        quote(table)
    )
}

pub(crate) fn begin_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "BEGIN",
        Dialect::Sqlite => "BEGIN IMMEDIATE",
    }
}

/// Builds the statements of one migration in one direction.
pub fn plan_migration(
    history: &History,
    migration: &Migration,
    direction: Direction,
    dialect: Dialect,
    version_table: &str,
) -> Result<PlannedMigration, RunError> {
    let mut state = history.schema_before(migration)?;
    let operations = match direction {
        Direction::Up => migration.operations.clone(),
        Direction::Down => {
            let down = history.downgrade_operations(migration)?;
            for op in &migration.operations {
                op.apply(&mut state).map_err(|error| HistoryError::State {
                    revision: migration.revision.clone(),
                    message: migration.message.clone(),
                    error,
                })?;
            }
            down
        }
    };
    let render_error = |error: RenderError| RunError::Render {
        revision: migration.revision.clone(),
        message: migration.message.clone(),
        error: Box::new(error),
    };
    let mut steps = Vec::new();
    let mut rebuilds_tables = false;
    for op in &operations {
        if let Operation::Data(step) = op {
            steps.push(Step::Data {
                name: step.name.clone(),
                run: step.up,
            });
        } else {
            if dialect == Dialect::Sqlite && render::needs_sqlite_rebuild(op, &state) {
                rebuilds_tables = true;
            }
            let sql = render::render(op, &state, dialect).map_err(render_error)?;
            steps.extend(sql.into_iter().map(Step::Sql));
        }
        op.apply(&mut state).map_err(|error| HistoryError::State {
            revision: migration.revision.clone(),
            message: migration.message.clone(),
            error,
        })?;
    }
    let checksum = crate::checksum::current(migration);
    let version_sql = match direction {
        // The row keeps the downgrade too, for a binary that will not know this revision.
        Direction::Up => crate::stored::insert_sql(history, migration, dialect, version_table),
        Direction::Down => format!(
            "DELETE FROM {} WHERE version_num = {}",
            quote(version_table),
            sql_string(&migration.revision)
        ),
    };
    Ok(PlannedMigration {
        revision: migration.revision.clone(),
        message: migration.message.clone(),
        direction,
        checksum,
        rebuilds_tables,
        steps,
        version_sql,
        replaces: Vec::new(),
        operations,
    })
}

impl Plan {
    /// The plan to reach `target` from `applied` going in `direction`: see
    /// [`History::plan_upgrade`] and [`History::plan_downgrade`] for the targets.
    pub fn new(
        history: &History,
        applied: &BTreeSet<String>,
        direction: Direction,
        target: &str,
        dialect: Dialect,
        version_table: &str,
    ) -> Result<Plan, RunError> {
        let chosen = match direction {
            Direction::Up => history.plan_upgrade(applied, target)?,
            Direction::Down => history.plan_downgrade(applied, target)?,
        };
        let migrations = match direction {
            // A chain that runs whole on this database may run as its squash.
            Direction::Up => {
                crate::squash::plan_up(history, applied, chosen, dialect, version_table)?
            }
            Direction::Down => chosen
                .into_iter()
                .map(|m| plan_migration(history, m, direction, dialect, version_table))
                .collect::<Result<_, _>>()?,
        };
        Ok(Plan {
            dialect,
            version_table: version_table.to_string(),
            migrations,
        })
    }

    /// Every statement an online run executes, in order, as one SQL script. Rust data steps
    /// appear as comments.
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        if self.migrations.iter().any(|m| m.direction == Direction::Up) {
            out.push_str(&version_table_sql(self.dialect, &self.version_table));
            out.push_str(";\n");
            out.push_str(&crate::stored::offline_columns_sql(
                self.dialect,
                &self.version_table,
            ));
            out.push('\n');
        }
        for m in &self.migrations {
            let arrow = match m.direction {
                Direction::Up => "upgrade",
                Direction::Down => "downgrade",
            };
            out.push_str(&format!(
                "-- Running {arrow} {}: {}\n",
                m.revision,
                m.message.replace('\n', " ")
            ));
            for sql in self.statements(m) {
                match sql {
                    Statement::Sql(sql) => {
                        out.push_str(sql.trim_end_matches(';'));
                        out.push_str(";\n");
                    }
                    Statement::Data(name) => {
                        out.push_str(&render::data_step_comment(name));
                        out.push('\n');
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// The statements of one migration as executed: pragmas, BEGIN, steps, version row, COMMIT.
    pub fn statements<'a>(&self, m: &'a PlannedMigration) -> Vec<Statement<'a>> {
        let sqlite_rebuild = self.dialect == Dialect::Sqlite && m.rebuilds_tables;
        let mut out = Vec::new();
        if sqlite_rebuild {
            out.push(Statement::Sql("PRAGMA foreign_keys = OFF"));
        }
        out.push(Statement::Sql(begin_sql(self.dialect)));
        for step in &m.steps {
            out.push(match step {
                Step::Sql(sql) => Statement::Sql(sql),
                Step::Data { name, .. } => Statement::Data(name),
            });
        }
        out.push(Statement::Sql(&m.version_sql));
        out.push(Statement::Sql("COMMIT"));
        if sqlite_rebuild {
            out.push(Statement::Sql("PRAGMA foreign_keys = ON"));
        }
        out
    }
}

impl PlannedMigration {
    /// The migration's steps as SQL text, data steps as comments (without BEGIN/COMMIT and
    /// the version row).
    pub fn step_sql(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Sql(sql) => sql.clone(),
                Step::Data { name, .. } => render::data_step_comment(name),
            })
            .collect()
    }
}

/// A statement of the script, or the name of a data step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    Sql(&'a str),
    Data(&'a str),
}

/// An advisory-lock key derived from the version table's name, so two applications sharing a
/// server but not a version table do not block each other.
pub(crate) fn lock_key(version_table: &str) -> i64 {
    // FNV-1a, stable across builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("strata:{version_table}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Whether the version table exists.
pub async fn has_version_table(conn: &mut Conn, table: &str) -> Result<bool, sqlx::Error> {
    let sql = match conn.dialect() {
        Dialect::Postgres => format!("SELECT to_regclass({})::text", sql_string(&quote(table))),
        Dialect::Sqlite => format!(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = {}",
            sql_string(table)
        ),
    };
    let rows = conn.fetch_text(&sql).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .is_some())
}

/// The rows of the version table, oldest first; empty when it does not exist.
pub async fn applied(conn: &mut Conn, table: &str) -> Result<Vec<AppliedRevision>, sqlx::Error> {
    if !has_version_table(conn, table).await? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT version_num, checksum, CAST(applied_at AS text) FROM {} ORDER BY applied_at, version_num",
        quote(table)
    );
    Ok(conn
        .fetch_text(&sql)
        .await?
        .into_iter()
        .map(|row| {
            let mut cells = row.into_iter().map(Option::unwrap_or_default);
            AppliedRevision {
                revision: cells.next().unwrap_or_default(),
                checksum: cells.next().unwrap_or_default(),
                applied_at: cells.next().unwrap_or_default(),
            }
        })
        .collect())
}

/// Refuses applied migrations whose file changed since.
pub fn verify_checksums(history: &History, applied: &[AppliedRevision]) -> Result<(), RunError> {
    let applied_set: BTreeSet<String> = applied.iter().map(|a| a.revision.clone()).collect();
    history.check_applied(&applied_set)?;
    for row in applied {
        let migration = history.get(&row.revision)?;
        if !crate::checksum::verifies(&row.checksum, migration) {
            return Err(RunError::ChecksumMismatch {
                revision: migration.revision.clone(),
                message: migration.message.clone(),
                differences: Vec::new(),
            });
        }
    }
    Ok(())
}

/// Runs `plan_for(applied)` online and returns the migrations it ran.
///
/// The plan is made after the lock is taken, so a second upgrader waits and then finds
/// nothing left to do.
pub async fn run(
    conn: &mut Conn,
    history: &History,
    version_table: &str,
    direction: Direction,
    target: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, RunError> {
    let dialect = conn.dialect();
    let key = lock_key(version_table);
    if dialect == Dialect::Postgres {
        conn.execute(&format!("SELECT pg_advisory_lock({key})"))
            .await?;
    }
    let result = run_locked(conn, history, version_table, direction, target, on_event).await;
    if dialect == Dialect::Postgres {
        // The lock is the session's: release it after a failure too.
        conn.execute(&format!("SELECT pg_advisory_unlock({key})"))
            .await?;
    }
    result
}

async fn run_locked(
    conn: &mut Conn,
    history: &History,
    version_table: &str,
    direction: Direction,
    target: &str,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, RunError> {
    let dialect = conn.dialect();
    conn.execute(&version_table_sql(dialect, version_table))
        .await?;
    crate::stored::ensure_columns(conn, version_table).await?;
    // Revisions a newer release applied are undone first, with the SQL stored beside them.
    let (mut done, target) = match direction {
        Direction::Down => {
            crate::stored::undo_unknown(conn, history, version_table, target, on_event).await?
        }
        Direction::Up => (Vec::new(), Some(target.to_string())),
    };
    let Some(target) = target else {
        return Ok(done);
    };
    let rows = crate::stored::read(conn, version_table).await?;
    crate::stored::verify(history, &rows)?;
    let applied_set: BTreeSet<String> = rows.into_iter().map(|r| r.revision).collect();
    let plan = Plan::new(
        history,
        &applied_set,
        direction,
        &target,
        dialect,
        version_table,
    )?;
    on_event(Event::Planned { plan: &plan });
    for m in &plan.migrations {
        if run_one(conn, &plan, m, on_event).await? {
            done.push(m.revision.clone());
        }
    }
    Ok(done)
}

/// Runs one migration in its transaction; false when another process already did it.
pub(crate) async fn run_one(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<bool, RunError> {
    let started = Instant::now();
    let fail = |statement: &str, error: String| RunError::Statement {
        revision: m.revision.clone(),
        message: m.message.clone(),
        statement: statement.to_string(),
        error,
    };
    let statements = plan.statements(m);
    let mut in_transaction = false;
    for statement in &statements {
        let sql = match statement {
            Statement::Data(name) => {
                let Some(Step::Data { run, .. }) = m
                    .steps
                    .iter()
                    .find(|s| matches!(s, Step::Data { name: n, .. } if n == name))
                else {
                    continue;
                };
                let mut cx = DataContext { conn };
                if let Err(error) = run(&mut cx).await {
                    let _ = conn.execute("ROLLBACK").await;
                    restore_foreign_keys(conn, plan, m).await;
                    return Err(fail(&format!("data step {name}"), error));
                }
                continue;
            }
            Statement::Sql(sql) => *sql,
        };
        if sql == "COMMIT" && plan.dialect == Dialect::Sqlite && m.rebuilds_tables {
            check_foreign_keys(conn, plan, m).await?;
        }
        on_event(Event::Statement { sql });
        if let Err(error) = conn.execute(sql).await {
            if in_transaction {
                let _ = conn.execute("ROLLBACK").await;
            }
            restore_foreign_keys(conn, plan, m).await;
            return Err(fail(sql, error.to_string()));
        }
        if sql.starts_with("BEGIN") {
            in_transaction = true;
            on_event(Event::Started { migration: m });
            // Another process may have run this migration while we waited for the lock.
            let rows = applied(conn, &plan.version_table).await?;
            // A squash is done when another process recorded any of its chain.
            let present = rows
                .iter()
                .any(|r| r.revision == m.revision || m.replaces.contains(&r.revision));
            let already = match m.direction {
                Direction::Up => present,
                Direction::Down => !present,
            };
            if already {
                conn.execute("ROLLBACK").await?;
                restore_foreign_keys(conn, plan, m).await;
                on_event(Event::Skipped { migration: m });
                return Ok(false);
            }
        }
    }
    on_event(Event::Finished {
        migration: m,
        elapsed: started.elapsed(),
    });
    Ok(true)
}

async fn check_foreign_keys(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
) -> Result<(), RunError> {
    let broken = conn.fetch_text("PRAGMA foreign_key_check").await?;
    if let Some(row) = broken.first() {
        let _ = conn.execute("ROLLBACK").await;
        restore_foreign_keys(conn, plan, m).await;
        return Err(RunError::ForeignKeyCheck {
            revision: m.revision.clone(),
            message: m.message.clone(),
            table: row.first().cloned().flatten().unwrap_or_default(),
        });
    }
    Ok(())
}

async fn restore_foreign_keys(conn: &mut Conn, plan: &Plan, m: &PlannedMigration) {
    if plan.dialect == Dialect::Sqlite && m.rebuilds_tables {
        let _ = conn.execute("PRAGMA foreign_keys = ON").await;
    }
}

/// Sets the version table to exactly `target` and its ancestors without running anything.
pub async fn stamp(
    conn: &mut Conn,
    history: &History,
    version_table: &str,
    target: &str,
) -> Result<Vec<String>, RunError> {
    let revisions = stamp_set(history, target)?;
    let dialect = conn.dialect();
    conn.execute(&version_table_sql(dialect, version_table))
        .await?;
    crate::stored::ensure_columns(conn, version_table).await?;
    conn.execute(begin_sql(dialect)).await?;
    let result = async {
        conn.execute(&format!("DELETE FROM {}", quote(version_table)))
            .await?;
        for m in history
            .migrations()
            .iter()
            .filter(|m| revisions.contains(&m.revision))
        {
            conn.execute(&crate::stored::insert_sql(
                history,
                m,
                dialect,
                version_table,
            ))
            .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match result {
        Ok(()) => conn.execute("COMMIT").await?,
        Err(err) => {
            let _ = conn.execute("ROLLBACK").await;
            return Err(err.into());
        }
    };
    Ok(history
        .migrations()
        .iter()
        .map(|m| m.revision.clone())
        .filter(|r| revisions.contains(r))
        .collect())
}

/// The revisions a stamp to `target` records: `base` none, `head` or `heads` everything up to
/// them, a revision it and its ancestors.
pub fn stamp_set(history: &History, target: &str) -> Result<BTreeSet<String>, HistoryError> {
    Ok(match target {
        "base" => BTreeSet::new(),
        "head" => match history.head()? {
            Some(head) => history.ancestors(head)?,
            None => BTreeSet::new(),
        },
        "heads" => {
            let mut all = BTreeSet::new();
            for head in history.heads() {
                all.extend(history.ancestors(head)?);
            }
            all
        }
        rev => history.ancestors(rev)?,
    })
}
