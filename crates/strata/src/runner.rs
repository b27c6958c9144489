//! Applying migrations to a live database: version table, checksums, locking, transactions.
//!
//! Every run is first a [`Plan`]: for each migration the exact statements, in order, inside
//! `BEGIN`/`COMMIT`, with the version-table row written in the same transaction. `--sql`
//! prints the plan ([`Plan::to_sql`]); an online run executes the same statements. So a
//! migration that fails leaves the database at the last good revision on both dialects
//! (both have transactional DDL).
//!
//! Concurrent upgraders are serialized per migration: each migration's transaction starts
//! (after `BEGIN`; `BEGIN IMMEDIATE` on SQLite) by taking the lock, on PostgreSQL a
//! transaction-scoped advisory lock (`pg_advisory_xact_lock`), then re-reads the version table
//! and skips a revision another process applied meanwhile. A transaction-scoped lock ends with
//! its transaction on the server connection that took it, so the exclusion holds through a
//! transaction pooler (PgBouncer in `pool_mode = transaction`), where a session lock and its
//! unlock could land on different server connections. For the same reason every statement is
//! sent with the simple query protocol ([`Conn`]): such a pooler cannot keep prepared
//! statements. The version table is created under the same lock, in a short transaction of its
//! own.
//!
//! On PostgreSQL each migration's transaction also sets its lock and statement timeouts, and a
//! lock timeout is retried ([`crate::timeouts`]). A non-atomic migration
//! ([`Migration::atomic`] false) runs its statements outside a transaction and records its
//! revision afterwards in a short locked transaction ([`crate::concurrent`]).
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
use crate::server_error::describe;
use crate::sqlite_dependents::{self, Dependent, DependentsStep, Phase};
use crate::sqlite_rebuilds::RebuildPlanner;
use crate::state::{Direction, History, HistoryError};
use crate::timeouts;
pub use crate::timeouts::RunOptions;

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
            // The simple query protocol: no prepared statement, which a transaction pooler
            // cannot keep. Every value arrives as text, so the cell is read without the type
            // check (a count or a boolean reads as its text form, `t`/`f` for booleans).
            Conn::Postgres(c) => sqlx::raw_sql(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get_unchecked::<Option<String>, _>(i))
                        .collect()
                })
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
        self.conn.execute(sql).await.map_err(|e| describe(&e))
    }

    /// Rows of a query, each column read as text.
    pub async fn fetch_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        self.conn.fetch_text(sql).await.map_err(|e| describe(&e))
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
        "migration {revision} ({message}) leaves rows whose foreign keys point nowhere: {orphans}; it was rolled back"
    )]
    ForeignKeyCheck {
        revision: String,
        message: String,
        /// The first table with such rows (`PRAGMA foreign_key_check`).
        table: String,
        /// Each table, the table it points at and the rowids of its first orphaned rows.
        orphans: String,
    },
    /// A run of several migrations failed after some of them committed.
    #[error(
        "{error}; before it, {} committed ({}), so the database is now at {at}",
        if committed.len() == 1 { "1 migration".to_string() } else { format!("{} migrations", committed.len()) },
        committed.join(", ")
    )]
    AfterCommits {
        error: Box<RunError>,
        /// The revisions that committed, in the order they ran.
        committed: Vec<String>,
        /// The revision(s) the version table records now, or `base`.
        at: String,
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
    /// A lock timeout every retry hit too; names the session in the way when one was found.
    #[error(
        "migration {revision} ({message}) gave up after {attempts} attempt(s), each waiting {timeout_ms} ms for a lock: {blocker}; the database stays at the previous revision"
    )]
    LockTimeout {
        revision: String,
        message: String,
        attempts: u32,
        timeout_ms: u64,
        blocker: String,
    },
    #[error("cannot read the live schema: {0}")]
    Introspect(#[from] crate::introspect::IntrospectError),
    #[error("database error: {}", describe(.0))]
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
    Data {
        name: String,
        run: DataFn,
    },
    /// Around a SQLite rebuild: keep the views, triggers and indexes only the database knows.
    Dependents(DependentsStep),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Sql(sql) => write!(f, "Sql({sql:?})"),
            Step::Data { name, .. } => write!(f, "Data({name:?})"),
            Step::Dependents(d) => write!(f, "Dependents({:?} {:?})", d.phase, d.table),
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
    /// False on PostgreSQL for a non-atomic migration: its steps run outside a transaction and
    /// the version row is written in a short transaction after them. Always true on SQLite.
    pub atomic: bool,
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
    /// It hit the lock timeout and was rolled back; it runs again after `delay`.
    Retrying {
        migration: &'a PlannedMigration,
        /// 1 for the first retry.
        attempt: u32,
        retries: u32,
        delay: Duration,
        /// The session holding a lock on its tables, when one was found.
        blocker: Option<&'a str>,
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
    let atomic = migration.atomic || dialect == Dialect::Sqlite;
    let (steps, rebuilds_tables) = plan_steps(migration, &operations, &mut state, dialect, atomic)?;
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
        atomic,
    })
}

/// The steps of `operations` applied from `state` (moved forward as they go), for the
/// migration `owner` (named in errors): each operation's SQL, data steps, on SQLite the
/// table rebuilds held back and done once per table (see [`crate::sqlite_rebuilds`]), and
/// when not `atomic` the statements a concurrent index build or drop needs. Also whether any
/// SQLite table is rebuilt.
pub(crate) fn plan_steps(
    owner: &Migration,
    operations: &[Operation],
    state: &mut crate::Schema,
    dialect: Dialect,
    atomic: bool,
) -> Result<(Vec<Step>, bool), RunError> {
    let render_error = |error: RenderError| RunError::Render {
        revision: owner.revision.clone(),
        message: owner.message.clone(),
        error: Box::new(error),
    };
    let mut steps = Vec::new();
    let mut rebuilds = RebuildPlanner::default();
    for op in operations {
        let mut absorbed = false;
        if dialect == Dialect::Sqlite {
            let decision = rebuilds.decide(op, state);
            steps.extend(decision.before);
            absorbed = decision.absorbed;
        }
        if let Operation::Data(step) = op {
            steps.push(Step::Data {
                name: step.name.clone(),
                run: step.up,
            });
        } else {
            let mut sql = render::render(op, state, dialect).map_err(render_error)?;
            if !atomic {
                sql = crate::concurrent::statements(op, sql);
            }
            if !absorbed {
                steps.extend(sql.into_iter().map(Step::Sql));
            }
        }
        op.apply(state).map_err(|error| HistoryError::State {
            revision: owner.revision.clone(),
            message: owner.message.clone(),
            error,
        })?;
    }
    if dialect == Dialect::Sqlite {
        steps.extend(rebuilds.flush_all(state));
    }
    Ok((steps, rebuilds.rebuilt))
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
                    Statement::Dependents(d) => {
                        out.push_str(&d.comment());
                        out.push('\n');
                    }
                    Statement::ForeignKeyCheck => {
                        out.push_str(
                            "-- Any row this returns fails the migration (ROLLBACK instead of COMMIT)\n",
                        );
                        out.push_str(FOREIGN_KEY_CHECK);
                        out.push_str(";\n");
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// The statements of one migration as executed: pragmas, BEGIN, steps, version row, COMMIT;
    /// for a non-atomic migration the steps come first, each on its own, then BEGIN, the
    /// version row and COMMIT.
    pub fn statements<'a>(&self, m: &'a PlannedMigration) -> Vec<Statement<'a>> {
        let sqlite_rebuild = self.dialect == Dialect::Sqlite && m.rebuilds_tables;
        let mut out = Vec::new();
        if sqlite_rebuild {
            out.push(Statement::Sql("PRAGMA foreign_keys = OFF"));
        }
        if m.atomic {
            out.push(Statement::Sql(begin_sql(self.dialect)));
        }
        for step in &m.steps {
            out.push(match step {
                Step::Sql(sql) => Statement::Sql(sql),
                Step::Data { name, .. } => Statement::Data(name),
                Step::Dependents(d) => Statement::Dependents(d),
            });
        }
        if sqlite_rebuild {
            // With foreign keys off, only this finds the rows a rebuild left dangling.
            out.push(Statement::ForeignKeyCheck);
        }
        if !m.atomic {
            out.push(Statement::Sql(begin_sql(self.dialect)));
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
                Step::Dependents(d) => d.comment(),
            })
            .collect()
    }
}

/// A statement of the script, or the name of a data step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    Sql(&'a str),
    Data(&'a str),
    /// Finds (before) or re-creates (after) the objects a SQLite rebuild must keep.
    Dependents(&'a DependentsStep),
    /// [`FOREIGN_KEY_CHECK`] before the COMMIT of a SQLite rebuild: any row fails the migration.
    ForeignKeyCheck,
}

/// The statement that lists rows whose foreign keys point nowhere (SQLite).
pub const FOREIGN_KEY_CHECK: &str = "PRAGMA foreign_key_check";

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
    let options = RunOptions::default();
    run_with(
        conn,
        history,
        version_table,
        direction,
        target,
        &options,
        on_event,
    )
    .await
}

/// [`run`] with timeouts and retries ([`RunOptions`]).
pub async fn run_with(
    conn: &mut Conn,
    history: &History,
    version_table: &str,
    direction: Direction,
    target: &str,
    options: &RunOptions,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, RunError> {
    let dialect = conn.dialect();
    create_version_table(conn, version_table).await?;
    // Revisions a newer release applied are undone first, with the SQL stored beside them.
    let (mut done, target) = match direction {
        Direction::Down => {
            crate::stored::undo_unknown(conn, history, version_table, target, options, on_event)
                .await?
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
        match run_retrying(conn, &plan, m, options, on_event).await {
            Ok(true) => done.push(m.revision.clone()),
            Ok(false) => {}
            Err(error) if done.is_empty() => return Err(error),
            Err(error) => {
                // Those before it stay committed: say which, and where that leaves the database.
                let at = match applied(conn, version_table).await {
                    Ok(rows) => revision_of(history, &rows),
                    Err(err) => format!("a revision that cannot be read ({err})"),
                };
                return Err(RunError::AfterCommits {
                    error: Box::new(error),
                    committed: done,
                    at,
                });
            }
        }
    }
    Ok(done)
}

/// Creates the version table if it is missing. On PostgreSQL under the advisory lock in a
/// transaction of its own: concurrent `CREATE TABLE IF NOT EXISTS` can both pass the check
/// and one then fail on the catalog's unique index.
///
/// A version table of an earlier engine gains the columns it lacks there too
/// ([`crate::stored::ensure_columns`]).
async fn create_version_table(conn: &mut Conn, version_table: &str) -> Result<(), RunError> {
    let create = version_table_sql(conn.dialect(), version_table);
    if conn.dialect() == Dialect::Sqlite {
        conn.execute(&create).await?;
        crate::stored::ensure_columns(conn, version_table).await?;
        return Ok(());
    }
    conn.execute("BEGIN").await?;
    let result = async {
        conn.execute(&xact_lock_sql(version_table)).await?;
        conn.execute(&create).await?;
        crate::stored::ensure_columns(conn, version_table).await?;
        conn.execute("COMMIT").await
    }
    .await;
    if let Err(err) = result {
        let _ = conn.execute("ROLLBACK").await;
        return Err(err.into());
    }
    Ok(())
}

/// The statement that takes the migration lock until the transaction ends.
fn xact_lock_sql(version_table: &str) -> String {
    format!("SELECT pg_advisory_xact_lock({})", lock_key(version_table))
}

/// Runs one migration, again after a backoff when it hit the lock timeout; false when another
/// process already did it.
pub(crate) async fn run_retrying(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
    options: &RunOptions,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<bool, RunError> {
    let mut attempt = 0;
    loop {
        match run_one(conn, plan, m, options, on_event).await? {
            Outcome::Done => return Ok(true),
            Outcome::Skipped => return Ok(false),
            Outcome::LockTimeout => {
                // Asked after the rollback, from the same connection: the session in the way
                // usually still holds its lock.
                let blocker = timeouts::blocker(conn, &timeouts::tables(&m.operations)).await;
                if attempt >= options.lock_retries {
                    return Err(RunError::LockTimeout {
                        revision: m.revision.clone(),
                        message: m.message.clone(),
                        attempts: attempt + 1,
                        timeout_ms: u64::try_from(
                            options.lock_timeout.unwrap_or_default().as_millis(),
                        )
                        .unwrap_or(u64::MAX),
                        blocker: blocker.unwrap_or_else(|| {
                            "no session holds a lock on its tables any more".to_string()
                        }),
                    });
                }
                attempt += 1;
                let delay = options.backoff(attempt);
                on_event(Event::Retrying {
                    migration: m,
                    attempt,
                    retries: options.lock_retries,
                    delay,
                    blocker: blocker.as_deref(),
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How one attempt at a migration ended.
enum Outcome {
    Done,
    /// Another process did it meanwhile.
    Skipped,
    /// A statement hit the lock timeout; everything was rolled back.
    LockTimeout,
}

/// The heads of the applied revisions, comma-separated, or `base`.
fn revision_of(history: &History, rows: &[AppliedRevision]) -> String {
    let applied: BTreeSet<String> = rows.iter().map(|r| r.revision.clone()).collect();
    let heads = history.applied_heads(&applied);
    if heads.is_empty() {
        "base".to_string()
    } else {
        heads.join(", ")
    }
}

/// Runs one migration in its transaction (a non-atomic one: its steps, then its version row
/// in a transaction).
///
/// Whatever fails, the transaction is rolled back and SQLite's foreign keys are switched
/// back on before the error (or the lock timeout) is returned.
async fn run_one(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
    options: &RunOptions,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Outcome, RunError> {
    let guard = match &options.guard_connection {
        Some(guard_options) if !m.atomic && plan.dialect == Dialect::Postgres => {
            Some(crate::non_atomic_guard::Guard::take(guard_options, &plan.version_table).await?)
        }
        _ => None,
    };
    let result = run_statements(conn, plan, m, options, on_event).await;
    if !matches!(result, Ok(Outcome::Done | Outcome::Skipped)) {
        // Outside a transaction this fails harmlessly.
        let _ = conn.execute("ROLLBACK").await;
        restore_foreign_keys(conn, plan, m).await;
    }
    if let Some(guard) = guard {
        guard.release().await;
    }
    result
}

async fn run_statements(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
    options: &RunOptions,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let fail = |statement: &str, error: String| RunError::Statement {
        revision: m.revision.clone(),
        message: m.message.clone(),
        statement: statement.to_string(),
        error,
    };
    let statements = plan.statements(m);
    let mut announced = false;
    if !m.atomic {
        // Its steps run before the transaction that re-reads the version table: skip it now
        // when another process did it, and probe the locks its steps will wait for.
        if already_done(conn, plan, m).await? {
            on_event(Event::Skipped { migration: m });
            return Ok(Outcome::Skipped);
        }
        announced = true;
        on_event(Event::Started { migration: m });
        if timeouts::probe_locks(conn, &m.operations, options).await? {
            return Ok(Outcome::LockTimeout);
        }
    }
    // What the latest rebuild's dependents step took, for the step after the rebuild.
    let mut saved: Vec<Dependent> = Vec::new();
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
                run(&mut cx)
                    .await
                    .map_err(|error| fail(&format!("data step {name}"), error))?;
                continue;
            }
            Statement::Dependents(d) => {
                let result = match d.phase {
                    Phase::Save => sqlite_dependents::save(conn, d).await.map(|s| saved = s),
                    Phase::Restore => sqlite_dependents::restore(conn, d, &saved).await,
                };
                result.map_err(|error| {
                    fail(
                        &format!(
                            "keeping the views, triggers and indexes of table {}",
                            d.table
                        ),
                        error,
                    )
                })?;
                continue;
            }
            Statement::ForeignKeyCheck => {
                on_event(Event::Statement {
                    sql: FOREIGN_KEY_CHECK,
                });
                check_foreign_keys(conn, m).await?;
                continue;
            }
            Statement::Sql(sql) => *sql,
        };
        on_event(Event::Statement { sql });
        if let Err(error) = conn.execute(sql).await {
            if timeouts::is_lock_timeout(&error) && options.lock_timeout.is_some() {
                return Ok(Outcome::LockTimeout);
            }
            return Err(fail(sql, describe(&error)));
        }
        if sql.starts_with("BEGIN") {
            if !announced {
                announced = true;
                on_event(Event::Started { migration: m });
            }
            if plan.dialect == Dialect::Postgres {
                // The lock first, without a timeout: waiting for another upgrader is fine;
                // then the timeouts for what the migration itself waits for.
                let mut guard = vec![xact_lock_sql(&plan.version_table)];
                guard.extend(options.transaction_settings());
                for sql in &guard {
                    conn.execute(sql)
                        .await
                        .map_err(|error| fail(sql, describe(&error)))?;
                }
            }
            // Another process may have run this migration while we waited for the lock.
            if already_done(conn, plan, m).await? {
                conn.execute("ROLLBACK").await?;
                restore_foreign_keys(conn, plan, m).await;
                on_event(Event::Skipped { migration: m });
                return Ok(Outcome::Skipped);
            }
        }
    }
    on_event(Event::Finished {
        migration: m,
        elapsed: started.elapsed(),
    });
    Ok(Outcome::Done)
}

/// Whether the version table already says `m` is done (applied for an upgrade, absent for a
/// downgrade).
async fn already_done(
    conn: &mut Conn,
    plan: &Plan,
    m: &PlannedMigration,
) -> Result<bool, RunError> {
    let rows = applied(conn, &plan.version_table).await?;
    // A squash is done when another process recorded any of its chain.
    let present = rows
        .iter()
        .any(|r| r.revision == m.revision || m.replaces.contains(&r.revision));
    Ok(match m.direction {
        Direction::Up => present,
        Direction::Down => !present,
    })
}

/// Fails with the tables, and the first rowids, of rows whose foreign keys point nowhere.
async fn check_foreign_keys(conn: &mut Conn, m: &PlannedMigration) -> Result<(), RunError> {
    // The rowid is an integer (NULL for a WITHOUT ROWID table): read it as text.
    let rows = conn
        .fetch_text(
            "SELECT \"table\", \"parent\", CAST(\"rowid\" AS TEXT) FROM pragma_foreign_key_check \
             ORDER BY 1, 2, \"rowid\"",
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    for row in &rows {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (table, parent) = (cell(0), cell(1));
        let rowid = row.get(2).cloned().flatten();
        let key = rowid.unwrap_or_else(|| "(no rowid)".to_string());
        match groups.last_mut() {
            Some((t, p, keys)) if *t == table && *p == parent => keys.push(key),
            _ => groups.push((table, parent, vec![key])),
        }
    }
    const SHOWN: usize = 5;
    let orphans = groups
        .iter()
        .map(|(table, parent, keys)| {
            let mut shown = keys
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if keys.len() > SHOWN {
                shown.push_str(&format!(" and {} more", keys.len() - SHOWN));
            }
            format!("table {table} rowid {shown} (pointing at {parent})")
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(RunError::ForeignKeyCheck {
        revision: m.revision.clone(),
        message: m.message.clone(),
        table: first.first().cloned().flatten().unwrap_or_default(),
        orphans,
    })
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
    create_version_table(conn, version_table).await?;
    conn.execute(begin_sql(dialect)).await?;
    let result = async {
        if dialect == Dialect::Postgres {
            // The upgraders' lock: a stamp does not interleave with a run, through a
            // transaction pooler too.
            conn.execute(&xact_lock_sql(version_table)).await?;
        }
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
