//! What the version table keeps beside each applied revision so that a binary which does not
//! know the revision can still undo it: its parents, message, canonical form (for checksum
//! differences) and its downgrade, rendered for the database's dialect when it was applied.
//!
//! After a deploy is rolled back, the older binary finds revisions it has no file for. Their
//! stored downgrade SQL is what `downgrade` would have run for them, so the older binary runs
//! it, one revision per transaction with its version row deleted in the same transaction,
//! children first (by the stored parents), until it reaches revisions it knows. A downgrade
//! that needs Rust code (a data step) or cannot be reversed stores no SQL but a note, and such
//! a revision is refused with that note.
//!
//! Version tables made before these columns existed gain them on the next run (an idempotent
//! `ADD COLUMN`); their old rows hold NULL: no stored downgrade, no canonical form.

use crate::Dialect;
use crate::checksum;
use crate::migration::Migration;
use crate::render;
use crate::runner::{self, Conn, Event, Plan, PlannedMigration, RunError, Step};
use crate::state::{Direction, History, HistoryError};

/// The columns added to the engine's first version table, all nullable text.
pub const COLUMNS: [&str; 5] = [
    "parents",
    "message",
    "canonical",
    "downgrade_sql",
    "downgrade_note",
];

/// The first line of a stored downgrade that rebuilds SQLite tables: foreign keys must be off
/// around its transaction, as for the migration it undoes.
const FOREIGN_KEYS_OFF: &str = "-- strata: foreign_keys off";

/// The first line of a stored downgrade of a non-atomic migration (PostgreSQL): its statements
/// run one by one outside a transaction (`DROP INDEX CONCURRENTLY` refuses to run in one), so
/// they are kept apart by [`NEXT_STATEMENT`] lines.
const OUTSIDE_TRANSACTION: &str = "-- strata: outside a transaction";
const NEXT_STATEMENT: &str = "-- strata: next statement";

/// A row of the version table with what is stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    pub revision: String,
    pub checksum: String,
    pub applied_at: String,
    /// Empty for a first migration, and for rows written before parents were stored.
    pub parents: Vec<String>,
    pub message: Option<String>,
    /// The canonical text it was applied with ([`checksum::canonical_text`]).
    pub canonical: Option<String>,
    pub downgrade: StoredDowngrade,
}

/// How a revision can be undone without its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredDowngrade {
    /// The statements (without BEGIN/COMMIT and the version row).
    Sql(String),
    /// Why no SQL was stored: the refusal to show.
    Note(String),
    /// Applied before downgrades were stored.
    Missing,
}

/// The downgrade to store for `migration` applied on `dialect`: the statements `downgrade`
/// would run for it, or the reason there are none.
pub fn downgrade_record(
    history: &History,
    migration: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> StoredDowngrade {
    let revision = &migration.revision;
    match runner::plan_migration(history, migration, Direction::Down, dialect, version_table) {
        Ok(planned) => {
            if let Some(name) = planned.steps.iter().find_map(|s| match s {
                Step::Data { name, .. } => Some(name),
                _ => None,
            }) {
                return StoredDowngrade::Note(format!(
                    "revision {revision}'s downgrade runs Rust code (data step {name:?}): downgrade with the release that applied it"
                ));
            }
            let mut script = String::new();
            if dialect == Dialect::Sqlite && planned.rebuilds_tables {
                script.push_str(FOREIGN_KEYS_OFF);
                script.push('\n');
            }
            if !planned.atomic {
                script.push_str(OUTSIDE_TRANSACTION);
                script.push('\n');
            }
            for (i, step) in planned.step_sql().iter().enumerate() {
                if !planned.atomic && i > 0 {
                    script.push_str(NEXT_STATEMENT);
                    script.push('\n');
                }
                script.push_str(step.trim_end_matches(';'));
                script.push_str(";\n");
            }
            StoredDowngrade::Sql(script)
        }
        Err(RunError::History(HistoryError::Irreversible { error, .. })) => {
            StoredDowngrade::Note(format!(
                "revision {revision}'s downgrade is irreversible ({error}): it cannot be undone, not even by the release that applied it"
            ))
        }
        Err(other) => StoredDowngrade::Note(format!(
            "revision {revision}'s downgrade could not be rendered ({other}): downgrade with the release that applied it"
        )),
    }
}

/// The `downgrade_sql` and `downgrade_note` values stored for `migration` (at most one set).
fn downgrade_columns(
    history: &History,
    migration: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> (Option<String>, Option<String>) {
    match downgrade_record(history, migration, dialect, version_table) {
        StoredDowngrade::Sql(sql) => (Some(sql), None),
        StoredDowngrade::Note(note) => (None, Some(note)),
        StoredDowngrade::Missing => (None, None),
    }
}

/// The stored columns of `migration`'s row but `version_num`, with their SQL values.
fn stored_values(
    history: &History,
    migration: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> [(&'static str, String); 6] {
    let (sql, note) = downgrade_columns(history, migration, dialect, version_table);
    [
        ("checksum", sql_string(&checksum::current(migration))),
        ("parents", sql_string(&migration.parents.join(","))),
        ("message", sql_string(&migration.message)),
        (
            "canonical",
            sql_string(&checksum::canonical_text(migration)),
        ),
        ("downgrade_sql", sql_or_null(sql.as_deref())),
        ("downgrade_note", sql_or_null(note.as_deref())),
    ]
}

/// The statement recording `migration` as applied, with everything stored beside it.
pub fn insert_sql(
    history: &History,
    migration: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> String {
    let values = stored_values(history, migration, dialect, version_table);
    let columns: Vec<&str> = values.iter().map(|(column, _)| *column).collect();
    let values: Vec<&str> = values.iter().map(|(_, value)| value.as_str()).collect();
    format!(
        "INSERT INTO {} (version_num, {}) VALUES ({}, {})",
        render::quote_ident(version_table),
        columns.join(", "),
        sql_string(&migration.revision),
        values.join(", "),
    )
}

/// The statement rewriting a row's checksum and stored parts to `migration`'s current ones
/// (what `repair` runs).
pub fn update_sql(
    history: &History,
    migration: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> String {
    let sets: Vec<String> = stored_values(history, migration, dialect, version_table)
        .iter()
        .map(|(column, value)| format!("{column} = {value}"))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE version_num = {}",
        render::quote_ident(version_table),
        sets.join(", "),
        sql_string(&migration.revision),
    )
}

/// Adds the columns of [`COLUMNS`] that the version table lacks. No existing column changes
/// type: statements other processes prepared on the table keep their result types. Run under the runner's exclusion; each statement is
/// idempotent on its own, so two processes racing here both end with the same table.
pub async fn ensure_columns(conn: &mut Conn, table: &str) -> Result<(), sqlx::Error> {
    let present = columns(conn, table).await?;
    // Missing, or another tool's table (adopted first): nothing of the engine's to extend.
    if !present.iter().any(|c| c == "checksum") {
        return Ok(());
    }
    let quoted = render::quote_ident(table);
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !present.iter().any(|p| p == c))
        .collect();
    match conn.dialect() {
        Dialect::Postgres => {
            if !missing.is_empty() {
                let adds: Vec<String> = missing
                    .iter()
                    .map(|c| format!("ADD COLUMN IF NOT EXISTS {c} text"))
                    .collect();
                conn.execute(&format!("ALTER TABLE {quoted} {}", adds.join(", ")))
                    .await?;
            }
        }
        Dialect::Sqlite => {
            for column in missing {
                let added = conn
                    .execute(&format!("ALTER TABLE {quoted} ADD COLUMN {column} text"))
                    .await;
                // Another process may have added it meanwhile.
                if let Err(err) = added
                    && !columns(conn, table).await?.iter().any(|p| p == column)
                {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// For `--sql`: what gives a version table of an earlier engine the columns of [`COLUMNS`]
/// (online runs check first). PostgreSQL has `ADD COLUMN IF NOT EXISTS`; SQLite does not, so
/// its script says what to run on such a table.
pub fn offline_columns_sql(dialect: Dialect, table: &str) -> String {
    let quoted = render::quote_ident(table);
    match dialect {
        Dialect::Postgres => format!(
            "ALTER TABLE {quoted} {};\n",
            COLUMNS
                .iter()
                .map(|c| format!("ADD COLUMN IF NOT EXISTS {c} text"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Dialect::Sqlite => format!(
            "-- A version table made before these columns existed needs, once: {}\n",
            COLUMNS
                .iter()
                .map(|c| format!("ALTER TABLE {quoted} ADD COLUMN {c} text;"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// The version table's columns; empty when it does not exist.
async fn columns(conn: &mut Conn, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let sql = match conn.dialect() {
        Dialect::Postgres => format!(
            "SELECT CAST(column_name AS text) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = {} ORDER BY ordinal_position",
            sql_string(table)
        ),
        Dialect::Sqlite => format!(
            "SELECT name FROM pragma_table_info({}) ORDER BY cid",
            sql_string(table)
        ),
    };
    Ok(conn
        .fetch_text(&sql)
        .await?
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect())
}

/// Every row of the version table with what is stored beside it, oldest first; empty when
/// the table does not exist. Columns an older table lacks read as NULL.
pub async fn read(conn: &mut Conn, table: &str) -> Result<Vec<StoredRevision>, sqlx::Error> {
    let present = columns(conn, table).await?;
    if present.is_empty() {
        return Ok(Vec::new());
    }
    let extra: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            if present.iter().any(|p| p == c) {
                format!("CAST({c} AS text)")
            } else {
                "CAST(NULL AS text)".to_string()
            }
        })
        .collect();
    let sql = format!(
        "SELECT version_num, checksum, CAST(applied_at AS text), {} FROM {} ORDER BY applied_at, version_num",
        extra.join(", "),
        render::quote_ident(table)
    );
    Ok(conn
        .fetch_text(&sql)
        .await?
        .into_iter()
        .map(|row| {
            let mut cells = row.into_iter();
            let mut next = || cells.next().flatten();
            let revision = next().unwrap_or_default();
            let checksum = next().unwrap_or_default();
            let applied_at = next().unwrap_or_default();
            let parents = next()
                .map(|p| {
                    p.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let message = next();
            let canonical = next();
            let sql = next();
            let note = next();
            let downgrade = match (sql, note) {
                (Some(sql), _) => StoredDowngrade::Sql(sql),
                (None, Some(note)) => StoredDowngrade::Note(note),
                (None, None) => StoredDowngrade::Missing,
            };
            StoredRevision {
                revision,
                checksum,
                applied_at,
                parents,
                message,
                canonical,
                downgrade,
            }
        })
        .collect())
}

/// Whether `history` has a migration with exactly this revision.
pub fn is_known(history: &History, revision: &str) -> bool {
    history.get(revision).is_ok_and(|m| m.revision == revision)
}

/// Splits a downgrade to `target` into the applied revisions this binary does not know,
/// to undo first (children first) with their stored SQL, and what is left of the target for
/// the known revisions (`None`: nothing more to undo).
///
/// `base` undoes them all; `-N` counts them first; a known revision (or `head`) undoes every
/// unknown one, which a newer release applied on top; an unknown applied revision undoes the
/// unknown ones applied after it and keeps it.
pub fn split_downgrade(
    history: &History,
    rows: &[StoredRevision],
    target: &str,
) -> Result<(Vec<StoredRevision>, Option<String>), RunError> {
    let mut unknown: Vec<StoredRevision> = rows
        .iter()
        .filter(|r| !is_known(history, &r.revision))
        .cloned()
        .collect();
    if unknown.is_empty() {
        return Ok((Vec::new(), Some(target.to_string())));
    }
    let ordered = children_first(&mut unknown);
    if target == "base" {
        return Ok((ordered, Some(target.to_string())));
    }
    if let Some(count) = target.strip_prefix('-') {
        let n: usize = count
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| HistoryError::BadTarget(target.to_string()))?;
        let k = n.min(ordered.len());
        let rest = (n > k).then(|| format!("-{}", n - k));
        return Ok((ordered.into_iter().take(k).collect(), rest));
    }
    if let Some(at) = ordered.iter().position(|r| r.revision == target) {
        return Ok((ordered.into_iter().take(at).collect(), None));
    }
    // A revision this binary knows (resolved here so that a typo undoes nothing).
    if target != "head" {
        history.get(target)?;
    }
    Ok((ordered, Some(target.to_string())))
}

/// Orders revisions so that each comes before its parents (by the stored parents; the time
/// applied, newest first, where parents are not stored).
fn children_first(revisions: &mut Vec<StoredRevision>) -> Vec<StoredRevision> {
    revisions.reverse();
    let mut out = Vec::with_capacity(revisions.len());
    while !revisions.is_empty() {
        let leaf = revisions
            .iter()
            .position(|r| {
                !revisions
                    .iter()
                    .any(|other| other.parents.iter().any(|p| p == &r.revision))
            })
            .unwrap_or(0);
        out.push(revisions.remove(leaf));
    }
    out
}

/// Refuses, before anything runs, a revision whose downgrade is not stored as SQL.
pub fn refuse_without_sql(undo: &[StoredRevision]) -> Result<(), RunError> {
    for row in undo {
        match &row.downgrade {
            StoredDowngrade::Sql(_) => {}
            StoredDowngrade::Note(note) => {
                return Err(RunError::NoStoredDowngrade {
                    revision: row.revision.clone(),
                    reason: note.clone(),
                });
            }
            StoredDowngrade::Missing => {
                return Err(RunError::NoStoredDowngrade {
                    revision: row.revision.clone(),
                    reason: format!(
                        "revision {} was applied before downgrades were stored in the version table: downgrade with the release that applied it",
                        row.revision
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Undoes the applied revisions `history` does not know that a downgrade to `target` passes,
/// with their stored SQL; returns them and what is left of the target.
pub(crate) async fn undo_unknown(
    conn: &mut Conn,
    history: &History,
    version_table: &str,
    target: &str,
    options: &runner::RunOptions,
    on_event: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<(Vec<String>, Option<String>), RunError> {
    let rows = read(conn, version_table).await?;
    let (undo, rest) = split_downgrade(history, &rows, target)?;
    refuse_without_sql(&undo)?;
    let dialect = conn.dialect();
    let mut done = Vec::new();
    for row in undo {
        let StoredDowngrade::Sql(script) = &row.downgrade else {
            continue;
        };
        let atomic = !script.starts_with(OUTSIDE_TRANSACTION);
        let steps = if atomic {
            vec![Step::Sql(script.clone())]
        } else {
            script
                .trim_start_matches(OUTSIDE_TRANSACTION)
                .split(NEXT_STATEMENT)
                .map(str::trim)
                .filter(|sql| !sql.is_empty())
                .map(|sql| Step::Sql(sql.to_string()))
                .collect()
        };
        let planned = PlannedMigration {
            revision: row.revision.clone(),
            message: row
                .message
                .clone()
                .unwrap_or_else(|| "applied by a newer release".to_string()),
            direction: Direction::Down,
            checksum: row.checksum.clone(),
            rebuilds_tables: dialect == Dialect::Sqlite && script.starts_with(FOREIGN_KEYS_OFF),
            steps,
            version_sql: format!(
                "DELETE FROM {} WHERE version_num = {}",
                render::quote_ident(version_table),
                sql_string(&row.revision)
            ),
            replaces: Vec::new(),
            operations: Vec::new(),
            atomic,
        };
        let plan = Plan {
            dialect,
            version_table: version_table.to_string(),
            migrations: Vec::new(),
        };
        if runner::run_retrying(conn, &plan, &planned, options, on_event).await? {
            done.push(row.revision.clone());
        }
    }
    Ok((done, rest))
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn sql_or_null(text: Option<&str>) -> String {
    text.map(sql_string).unwrap_or_else(|| "NULL".to_string())
}

/// Refuses applied revisions this binary does not know and applied migrations whose file
/// changed since, showing what changed where the applied canonical form is stored.
pub fn verify(history: &History, rows: &[StoredRevision]) -> Result<(), RunError> {
    if let Some(row) = rows.iter().find(|r| !is_known(history, &r.revision)) {
        return Err(HistoryError::UnknownApplied(row.revision.clone()).into());
    }
    for row in rows {
        let migration = history.get(&row.revision)?;
        if !checksum::verifies(&row.checksum, migration) {
            return Err(RunError::ChecksumMismatch {
                revision: migration.revision.clone(),
                message: migration.message.clone(),
                differences: mismatch_differences(row, migration),
            });
        }
    }
    Ok(())
}

/// What differs between the applied form of a revision and its file now.
pub fn mismatch_differences(row: &StoredRevision, migration: &Migration) -> Vec<String> {
    match &row.canonical {
        Some(applied) => checksum::differences(applied, &checksum::canonical_text(migration)),
        // Applied before the canonical form was stored: show the file's operations so that
        // the reader can compare them with what they remember.
        None => std::iter::once(
            "(the database holds no copy of the applied form; the file now has:)".to_string(),
        )
        .chain(
            checksum::canonical_text(migration)
                .lines()
                .map(|l| format!("+ {l}")),
        )
        .collect(),
    }
}
