//! Adopting a database whose schema another tool made.
//!
//! A database created by another migration tool (Alembic) holds the tables a history manages,
//! but with that tool's version table, its own names for indexes and constraints, other types
//! and extra columns, and tables of its own. Adoption brings it to the schema of one revision of
//! the history in one unit:
//!
//! 1. **Recognize** the version table ([`crate::migrator::VersionTable::Foreign`]) and refuse
//!    what cannot be bridged: another tool, another revision, an empty database, a database the
//!    migrator already manages.
//! 2. **Introspect** the live tables the history manages at the target revision; every other
//!    table is left alone (counted, listed, never touched).
//! 3. **Diff** the live tables against the target schema and **check** every row the change
//!    needs (values the application's [`Conversion`]s cannot convert, NULLs in columns that
//!    become NOT NULL, duplicates under new unique keys, strings longer than a narrowed type,
//!    rows whose new foreign keys point nowhere), before anything is written.
//! 4. **Render**: on PostgreSQL the diff's `ALTER`s, with the conversions as `UPDATE`s before
//!    new constraints; on SQLite one rebuild per table, the conversions in its copy.
//! 5. **Run** it all in one transaction with the version table rewritten in the engine's format
//!    at the target revision and an adoption record beside it, so that a failure anywhere leaves
//!    the database as it was.
//!
//! The application supplies only what is its own ([`AdoptionSpec`]): the tool and revision it
//! recognizes, the revision to end at, and the data conversions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::autodetect::{self, DiffOptions, NoRenames};
use crate::migrator::{Migrator, VersionTable, introspect, sql_string};
use crate::render::{self, RenderError, column_type_sql, quote_ident};
use crate::runner::{self, Conn, RunError};
use crate::schema::{Column, ColumnType, Table};
use crate::state::HistoryError;
use crate::{Dialect, Operation, Schema};

/// What the application knows of the databases it adopts.
#[derive(Debug, Clone)]
pub struct AdoptionSpec {
    /// The tool whose version table is recognized (`alembic`).
    pub tool: String,
    /// The revisions of that tool an adoption starts from (its head); any other is refused.
    pub revisions: Vec<String>,
    /// The revision of the history to end at (`head` or a revision).
    pub target: String,
    /// How values change on the way.
    pub conversions: Vec<Conversion>,
}

/// A change of the values of one column, run in the adoption's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub table: String,
    pub column: String,
    /// The dialect it applies to; `None` for both.
    pub dialect: Option<Dialect>,
    /// One line for the plan: what changes.
    pub description: String,
    /// SQL computing the new value from the old row (the column quoted by name).
    pub expr: String,
    /// SQL that is true for rows whose value cannot be converted; they make the adoption
    /// refuse before it writes.
    pub invalid_when: Option<String>,
}

/// The adoption recorded in the database beside the version table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionRecord {
    pub tool: String,
    /// The other tool's revision the database was at.
    pub revision: String,
    /// The revision of the history it was brought to.
    pub adopted_into: String,
    /// Tables the adoption left alone.
    pub unmanaged: Vec<String>,
    /// The backup taken before, when the caller took one.
    pub backup: Option<String>,
    pub adopted_at: String,
}

/// What happens to one managed table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePlan {
    pub table: String,
    pub rows: u64,
    /// Changes of types, nullability, defaults, keys, indexes and constraints, one a line.
    pub changes: Vec<String>,
    /// Data conversions, one a line.
    pub conversions: Vec<String>,
    /// True when the table is rebuilt (SQLite) rather than altered in place.
    pub rebuilt: bool,
}

/// A table the adoption leaves alone.
#[derive(Debug, Clone, Serialize)]
pub struct LeftAlone {
    pub table: String,
    pub rows: u64,
}

/// Everything an adoption does, checked against the data and ready to run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionPlan {
    pub dialect: Dialect,
    pub tool: String,
    pub from_revision: String,
    pub into_revision: String,
    pub tables: Vec<TablePlan>,
    pub left_alone: Vec<LeftAlone>,
    /// The statements that change the schema and data, without transaction control.
    pub statements: Vec<String>,
    #[serde(skip)]
    version_table: String,
    #[serde(skip)]
    adoption_table: String,
    /// Revisions recorded as applied, in history order, with their checksums.
    #[serde(skip)]
    stamped: Vec<(String, String)>,
    /// Managed tables, for the foreign-key check on SQLite.
    #[serde(skip)]
    managed: Vec<String>,
}

/// Why an adoption was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("the database is already managed (at {}); there is nothing to adopt", if current.is_empty() { "base".to_string() } else { current.join(", ") })]
    AlreadyManaged { current: Vec<String> },
    #[error("the database is empty: there is nothing to adopt")]
    Empty,
    #[error(
        "the database has {tables} table(s) but no version table {version_table}; it was not made by a tool this can adopt from"
    )]
    NotRecognized {
        tables: usize,
        version_table: String,
    },
    #[error("the version table is {found}'s, not {expected}'s")]
    OtherTool { found: String, expected: String },
    #[error(
        "the database is at {tool} revision {}, not {}",
        if found.is_empty() { "(none)".to_string() } else { found.join(", ") },
        expected.join(" or ")
    )]
    OtherRevision {
        tool: String,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error(
        "cannot convert {table}.{column}: {rows} row(s) {reason}{}; nothing was changed",
        example.as_ref().map(|e| format!(", for example {e}")).unwrap_or_default()
    )]
    Unconvertible {
        table: String,
        column: String,
        rows: u64,
        reason: String,
        example: Option<String>,
    },
    #[error(
        "adoption failed at `{statement}`: {error}; it was rolled back and the database is as it was"
    )]
    Failed { statement: String, error: String },
    #[error("the database changed while the adoption was planned ({0}); nothing was changed")]
    Changed(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot read the live schema: {0}")]
    Introspect(#[from] crate::introspect::IntrospectError),
    #[error("cannot render the adoption: {0}")]
    Render(#[from] RenderError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl AdoptionPlan {
    /// The whole adoption as one SQL script: what [`run`] executes, with the adoption record's
    /// backup left empty.
    pub fn to_sql(&self) -> String {
        let mut out = format!(
            "-- Adopt {} revision {} into revision {} ({})\n",
            self.tool, self.from_revision, self.into_revision, self.dialect
        );
        for statement in self.script(None) {
            out.push_str(statement.trim_end_matches(';'));
            out.push_str(";\n");
        }
        out
    }

    /// Every statement in order, transaction control included.
    fn script(&self, backup: Option<&str>) -> Vec<String> {
        let sqlite = self.dialect == Dialect::Sqlite;
        let mut all = Vec::new();
        if sqlite {
            all.push("PRAGMA foreign_keys = OFF".to_string());
        }
        all.push(runner::begin_sql(self.dialect).to_string());
        if !sqlite {
            all.push(format!(
                "SELECT pg_advisory_xact_lock({})",
                runner::lock_key(&self.version_table)
            ));
        }
        all.extend(self.statements.iter().cloned());
        all.extend(self.record_statements(backup));
        if sqlite {
            all.extend(
                self.managed
                    .iter()
                    .map(|t| format!("PRAGMA foreign_key_check({})", quote_ident(t))),
            );
        }
        all.push("COMMIT".to_string());
        if sqlite {
            all.push("PRAGMA foreign_keys = ON".to_string());
        }
        all
    }

    /// The version table in the engine's format at the target, and the adoption record.
    fn record_statements(&self, backup: Option<&str>) -> Vec<String> {
        let version = quote_ident(&self.version_table);
        let mut out = vec![
            format!("DROP TABLE {version}"),
            runner::version_table_sql(self.dialect, &self.version_table),
        ];
        out.extend(self.stamped.iter().map(|(revision, checksum)| {
            format!(
                "INSERT INTO {version} (version_num, checksum) VALUES ({}, {})",
                sql_string(revision),
                sql_string(checksum)
            )
        }));
        let adopted_at = match self.dialect {
            Dialect::Postgres => "timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
            Dialect::Sqlite => "text NOT NULL DEFAULT CURRENT_TIMESTAMP",
        };
        let record = quote_ident(&self.adoption_table);
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {record} (revision varchar(64) NOT NULL PRIMARY KEY, tool varchar(64) NOT NULL, adopted_into varchar(32) NOT NULL, unmanaged text NOT NULL, backup text, adopted_at {adopted_at})"
        ));
        let unmanaged: Vec<&str> = self.left_alone.iter().map(|t| t.table.as_str()).collect();
        out.push(format!(
            "INSERT INTO {record} (revision, tool, adopted_into, unmanaged, backup) VALUES ({}, {}, {}, {}, {})",
            sql_string(&self.from_revision),
            sql_string(&self.tool),
            sql_string(&self.into_revision),
            sql_string(&serde_json::to_string(&unmanaged).unwrap_or_default()),
            backup.map(sql_string).unwrap_or_else(|| "NULL".into())
        ));
        out
    }
}

/// Plans the adoption of the database on `conn`: see the module documentation.
pub(crate) async fn plan(
    migrator: &Migrator,
    conn: &mut Conn,
    spec: &AdoptionSpec,
) -> Result<AdoptionPlan, AdoptError> {
    let dialect = conn.dialect();
    let own = migrator.own_tables();
    let foreign = match migrator.version_state(conn).await? {
        VersionTable::Managed(rows) if !rows.is_empty() => {
            let status = migrator.status_of(VersionTable::Managed(rows));
            return Err(AdoptError::AlreadyManaged {
                current: status.current,
            });
        }
        VersionTable::Managed(_) | VersionTable::Missing => {
            let tables = table_names(conn).await?;
            let tables = tables.iter().filter(|t| !own.contains(t)).count();
            return Err(if tables == 0 {
                AdoptError::Empty
            } else {
                AdoptError::NotRecognized {
                    tables,
                    version_table: migrator.version_table().to_string(),
                }
            });
        }
        VersionTable::Foreign(foreign) => foreign,
    };
    if foreign.tool != spec.tool {
        return Err(AdoptError::OtherTool {
            found: foreign.tool,
            expected: spec.tool.clone(),
        });
    }
    let from_revision = match foreign.revisions.as_slice() {
        [one] if spec.revisions.contains(one) => one.clone(),
        _ => {
            return Err(AdoptError::OtherRevision {
                tool: foreign.tool,
                found: foreign.revisions,
                expected: spec.revisions.clone(),
            });
        }
    };

    let history = migrator.history();
    let into_revision = match spec.target.as_str() {
        "head" => history
            .head()?
            .ok_or_else(|| HistoryError::BadTarget("head".into()))?
            .to_string(),
        other => history.get(other)?.revision.clone(),
    };
    let applied = history.ancestors(&into_revision)?;
    let stamped = history
        .migrations()
        .iter()
        .filter(|m| applied.contains(&m.revision))
        .map(|m| (m.revision.clone(), m.checksum()))
        .collect();
    let mut expected = history.schema_with(&applied)?;
    if dialect == Dialect::Sqlite {
        expected = expected.without_comments();
    }

    let all_tables: Vec<String> = table_names(conn)
        .await?
        .into_iter()
        .filter(|t| !own.contains(t))
        .collect();
    let unmanaged: Vec<String> = all_tables
        .iter()
        .filter(|t| !expected.tables.contains_key(*t))
        .cloned()
        .collect();
    let mut exclude: Vec<&str> = own.iter().map(String::as_str).collect();
    exclude.extend(unmanaged.iter().map(String::as_str));
    let live = introspect(conn, &exclude).await?;

    // The plan lists every finding; the detector's own log line per finding would repeat it.
    let diff = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        autodetect::diff_with(
            &live,
            &expected,
            &mut NoRenames,
            DiffOptions {
                compare_check_expressions: dialect == Dialect::Sqlite,
            },
        )
    });
    let conversions: Vec<&Conversion> = spec
        .conversions
        .iter()
        .filter(|c| c.dialect.is_none_or(|d| d == dialect))
        .filter(|c| {
            live.table(&c.table)
                .is_some_and(|t| t.column(&c.column).is_some())
                && expected
                    .table(&c.table)
                    .is_some_and(|t| t.column(&c.column).is_some())
        })
        .collect();

    let mut rows = BTreeMap::new();
    for table in &all_tables {
        rows.insert(
            table.clone(),
            count(
                conn,
                &format!("SELECT count(*) FROM {}", quote_ident(table)),
            )
            .await?,
        );
    }
    preflight(conn, &live, &diff.operations, &conversions).await?;

    // PostgreSQL names a primary key `<table>_pkey` when the engine creates the table; the
    // model does not hold the name, so it is renamed here to match a database the engine made.
    let pk_renames = match dialect {
        Dialect::Postgres => primary_key_renames(conn, &live).await?,
        Dialect::Sqlite => Vec::new(),
    };
    let statements = match dialect {
        Dialect::Postgres => {
            let mut statements: Vec<String> = pk_renames
                .iter()
                .map(|(table, from, to)| {
                    format!(
                        "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                        quote_ident(table),
                        quote_ident(from),
                        quote_ident(to)
                    )
                })
                .collect();
            statements.extend(postgres_statements(&live, &diff.operations, &conversions)?);
            statements
        }
        Dialect::Sqlite => sqlite_statements(&live, &expected, &diff.operations, &conversions),
    };

    let mut tables = Vec::new();
    for name in expected.tables.keys() {
        let changes = match live.table(name) {
            Some(before) => pk_renames
                .iter()
                .filter(|(table, ..)| table == name)
                .map(|(_, from, to)| format!("~ primary key {from} renamed {to}"))
                .chain(
                    diff.operations
                        .iter()
                        .filter(|op| op.table() == Some(name.as_str()))
                        .map(|op| describe_change(op, before, dialect)),
                )
                .collect(),
            None => vec![format!("+ create table {name}")],
        };
        let conversions: Vec<String> = conversions
            .iter()
            .filter(|c| &c.table == name)
            .map(|c| format!("{}: {}", c.column, c.description))
            .collect();
        let rebuilt = dialect == Dialect::Sqlite
            && live.table(name).is_some()
            && (!changes.is_empty() || !conversions.is_empty());
        tables.push(TablePlan {
            table: name.clone(),
            rows: rows.get(name).copied().unwrap_or(0),
            changes,
            conversions,
            rebuilt,
        });
    }
    let left_alone = unmanaged
        .iter()
        .map(|t| LeftAlone {
            table: t.clone(),
            rows: rows.get(t).copied().unwrap_or(0),
        })
        .collect();
    Ok(AdoptionPlan {
        dialect,
        tool: foreign.tool,
        from_revision,
        into_revision,
        tables,
        left_alone,
        statements,
        version_table: migrator.version_table().to_string(),
        adoption_table: migrator.adoption_table(),
        stamped,
        managed: expected.tables.keys().cloned().collect(),
    })
}

/// Runs `plan` as one unit. Any failure rolls everything back.
pub(crate) async fn run(
    conn: &mut Conn,
    plan: &AdoptionPlan,
    backup: Option<&str>,
) -> Result<(), AdoptError> {
    let script = plan.script(backup);
    // Foreign keys off (SQLite), BEGIN, and the lock (PostgreSQL) come first.
    let prefix = 2;
    let mut in_transaction = false;
    let result: Result<(), AdoptError> = async {
        for (index, statement) in script.iter().enumerate() {
            if index == prefix {
                // Under the lock: nothing is written unless the database is still where the
                // plan found it.
                let version = quote_ident(&plan.version_table);
                let found: Vec<String> = conn
                    .fetch_text(&format!("SELECT CAST(version_num AS text) FROM {version}"))
                    .await
                    .map_err(|e| failed("reading the version table", e))?
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect();
                if found != [plan.from_revision.clone()] {
                    return Err(AdoptError::Changed(format!(
                        "the version table now holds {}",
                        found.join(", ")
                    )));
                }
            }
            if statement.starts_with("PRAGMA foreign_key_check") {
                let broken = conn
                    .fetch_text(statement)
                    .await
                    .map_err(|e| failed(statement, e))?;
                if let Some(row) = broken.first() {
                    return Err(AdoptError::Failed {
                        statement: statement.clone(),
                        error: format!(
                            "rows of {} point at missing rows of {}",
                            row.first().cloned().flatten().unwrap_or_default(),
                            row.get(2).cloned().flatten().unwrap_or_default()
                        ),
                    });
                }
                continue;
            }
            conn.execute(statement)
                .await
                .map_err(|e| failed(statement, e))?;
            if statement.starts_with("BEGIN") {
                in_transaction = true;
            } else if statement == "COMMIT" {
                in_transaction = false;
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        if in_transaction {
            let _ = conn.execute("ROLLBACK").await;
        }
        if plan.dialect == Dialect::Sqlite {
            let _ = conn.execute("PRAGMA foreign_keys = ON").await;
        }
    }
    result
}

fn failed(statement: &str, error: sqlx::Error) -> AdoptError {
    AdoptError::Failed {
        statement: statement.to_string(),
        error: crate::server_error::describe(&error),
    }
}

/// Reads the latest adoption record; `None` when the database was never adopted.
pub(crate) async fn read_record(
    conn: &mut Conn,
    table: &str,
) -> Result<Option<AdoptionRecord>, sqlx::Error> {
    if !runner::has_version_table(conn, table).await? {
        return Ok(None);
    }
    let rows = conn
        .fetch_text(&format!(
            "SELECT revision, tool, adopted_into, unmanaged, backup, CAST(adopted_at AS text) FROM {} ORDER BY adopted_at DESC",
            quote_ident(table)
        ))
        .await?;
    Ok(rows.into_iter().next().map(|row| {
        let mut cells = row.into_iter();
        let mut next = || cells.next().flatten();
        AdoptionRecord {
            revision: next().unwrap_or_default(),
            tool: next().unwrap_or_default(),
            adopted_into: next().unwrap_or_default(),
            unmanaged: next()
                .and_then(|u| serde_json::from_str(&u).ok())
                .unwrap_or_default(),
            backup: next(),
            adopted_at: next().unwrap_or_default(),
        }
    }))
}

/// The tables of the database (current schema on PostgreSQL, `main` on SQLite).
async fn table_names(conn: &mut Conn) -> Result<Vec<String>, sqlx::Error> {
    let sql = match conn.dialect() {
        Dialect::Postgres => {
            "SELECT CAST(c.relname AS text) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
        }
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1"
        }
    };
    Ok(conn
        .fetch_text(sql)
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

/// Primary keys of `tables` whose name is not PostgreSQL's default `<table>_pkey`:
/// (table, name, default name).
async fn primary_key_renames(
    conn: &mut Conn,
    tables: &Schema,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = conn
        .fetch_text(
            "SELECT CAST(c.relname AS text), CAST(k.conname AS text) FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'p' AND n.nspname = current_schema() ORDER BY 1",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let mut cells = row.into_iter().flatten();
            let (table, name) = (cells.next()?, cells.next()?);
            let default = format!("{table}_pkey");
            (tables.tables.contains_key(&table) && name != default)
                .then_some((table, name, default))
        })
        .collect())
}

async fn count(conn: &mut Conn, sql: &str) -> Result<u64, sqlx::Error> {
    let rows = conn
        .fetch_text(&format!("SELECT CAST(({sql}) AS text)"))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The first offending value as SQL shows it, for the refusal.
async fn example(
    conn: &mut Conn,
    table: &str,
    column: &str,
    predicate: &str,
) -> Result<Option<String>, sqlx::Error> {
    let shown = match conn.dialect() {
        Dialect::Postgres => format!("quote_nullable(CAST({} AS text))", quote_ident(column)),
        Dialect::Sqlite => format!("quote({})", quote_ident(column)),
    };
    let rows = conn
        .fetch_text(&format!(
            "SELECT {shown} FROM {} WHERE {predicate} LIMIT 1",
            quote_ident(table)
        ))
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Refuses, before anything is written, rows the adoption could not carry over.
async fn preflight(
    conn: &mut Conn,
    live: &Schema,
    operations: &[Operation],
    conversions: &[&Conversion],
) -> Result<(), AdoptError> {
    // Constraints hold on the converted values, so the checks read those.
    let value = |table: &str, column: &str| {
        conversions
            .iter()
            .find(|c| c.table == table && c.column == column)
            .map(|c| format!("({})", c.expr))
            .unwrap_or_else(|| quote_ident(column))
    };
    let mut checks: Vec<(String, String, String, String)> = Vec::new();
    let mut unique_keys: Vec<(&str, &[String])> = Vec::new();
    for c in conversions {
        if let Some(invalid) = &c.invalid_when {
            checks.push((
                c.table.clone(),
                c.column.clone(),
                format!("({invalid})"),
                format!("hold values that cannot be converted ({})", c.description),
            ));
        }
    }
    for op in operations {
        match op {
            Operation::AlterColumn { table, to } => {
                let Some(before) = live.table(table).and_then(|t| t.column(&to.name)) else {
                    continue;
                };
                let column = value(table, &to.name);
                if before.nullable && !to.nullable && to.default.is_none() {
                    checks.push((
                        table.clone(),
                        to.name.clone(),
                        format!("{column} IS NULL"),
                        "are NULL and the column becomes NOT NULL".into(),
                    ));
                }
                if let ColumnType::String(Some(n)) = to.ty
                    && !before.ty.widens_to(&to.ty)
                {
                    checks.push((
                        table.clone(),
                        to.name.clone(),
                        format!("length({column}) > {n}"),
                        format!("are longer than {n} characters"),
                    ));
                }
            }
            Operation::AddUnique { table, unique } => unique_keys.push((table, &unique.columns)),
            Operation::CreateIndex { table, index } if index.unique => {
                unique_keys.push((table, &index.columns))
            }
            Operation::AddForeignKey { table, foreign_key } if foreign_key.columns.len() == 1 => {
                let column = quote_ident(&foreign_key.columns[0]);
                checks.push((
                    table.clone(),
                    foreign_key.columns[0].clone(),
                    format!(
                        "{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} r WHERE r.{} = {}.{column})",
                        quote_ident(&foreign_key.ref_table),
                        quote_ident(&foreign_key.ref_columns[0]),
                        quote_ident(table)
                    ),
                    format!("point at no row of {}", foreign_key.ref_table),
                ));
            }
            _ => {}
        }
    }
    for (table, column, predicate, reason) in checks {
        let rows = count(
            conn,
            &format!(
                "SELECT count(*) FROM {} WHERE {predicate}",
                quote_ident(&table)
            ),
        )
        .await?;
        if rows > 0 {
            let example = example(conn, &table, &column, &predicate).await?;
            return Err(AdoptError::Unconvertible {
                table,
                column,
                rows,
                reason,
                example,
            });
        }
    }
    for (table, columns) in unique_keys {
        let values: Vec<String> = columns.iter().map(|c| value(table, c)).collect();
        duplicates(conn, table, columns, &values).await?;
    }
    Ok(())
}

/// Refuses rows that a new unique key would reject.
async fn duplicates(
    conn: &mut Conn,
    table: &str,
    columns: &[String],
    values: &[String],
) -> Result<(), AdoptError> {
    let list = values.join(", ");
    let groups = format!(
        "SELECT {list} FROM {} GROUP BY {list} HAVING count(*) > 1",
        quote_ident(table)
    );
    let rows = count(conn, &format!("SELECT count(*) FROM ({groups}) d")).await?;
    if rows > 0 {
        let shown = match conn.dialect() {
            Dialect::Postgres => format!("CAST(ROW({list}) AS text)"),
            Dialect::Sqlite => values
                .iter()
                .map(|v| format!("quote({v})"))
                .collect::<Vec<_>>()
                .join(" || ', ' || "),
        };
        let example = conn
            .fetch_text(&format!(
                "SELECT {shown} FROM {} GROUP BY {list} HAVING count(*) > 1 LIMIT 1",
                quote_ident(table)
            ))
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten());
        return Err(AdoptError::Unconvertible {
            table: table.to_string(),
            column: columns.join(", "),
            rows,
            reason: "share values that a new unique key allows once".into(),
            example,
        });
    }
    Ok(())
}

/// PostgreSQL: the diff's statements in order, the conversions after the column changes and
/// before the constraints and indexes that may depend on the converted values.
fn postgres_statements(
    live: &Schema,
    operations: &[Operation],
    conversions: &[&Conversion],
) -> Result<Vec<String>, RenderError> {
    let adds = |op: &&Operation| {
        matches!(
            op,
            Operation::AddCheck { .. }
                | Operation::AddUnique { .. }
                | Operation::AddForeignKey { .. }
                | Operation::CreateIndex { .. }
        )
    };
    let mut state = live.clone();
    let mut statements = Vec::new();
    let mut render_all =
        |ops: Vec<&Operation>, statements: &mut Vec<String>| -> Result<(), RenderError> {
            for op in ops {
                statements.extend(render::render(op, &state, Dialect::Postgres)?);
                // render has checked that the operation fits.
                let _ = op.apply(&mut state);
            }
            Ok(())
        };
    render_all(
        operations.iter().filter(|op| !adds(op)).collect(),
        &mut statements,
    )?;
    for c in conversions {
        statements.push(format!(
            "UPDATE {} SET {} = {}",
            quote_ident(&c.table),
            quote_ident(&c.column),
            c.expr
        ));
    }
    render_all(operations.iter().filter(adds).collect(), &mut statements)?;
    Ok(statements)
}

/// SQLite: one rebuild per managed table that changes, its conversions in the copy; tables the
/// database lacks are created.
fn sqlite_statements(
    live: &Schema,
    expected: &Schema,
    operations: &[Operation],
    conversions: &[&Conversion],
) -> Vec<String> {
    let touched: BTreeSet<&str> = operations
        .iter()
        .filter_map(Operation::table)
        .chain(conversions.iter().map(|c| c.table.as_str()))
        .collect();
    let mut statements = Vec::new();
    for name in expected.tables_in_dependency_order() {
        let to = &expected.tables[name];
        match live.table(name) {
            None => statements.extend(render::render_schema(
                &Schema::new().with_table(to.clone()),
                Dialect::Sqlite,
            )),
            Some(from) if touched.contains(name) => {
                let converted: BTreeMap<String, String> = conversions
                    .iter()
                    .filter(|c| c.table == name)
                    .map(|c| (c.column.clone(), c.expr.clone()))
                    .collect();
                statements.extend(render::sqlite_rebuild(from, to, &converted));
            }
            Some(_) => {}
        }
    }
    statements
}

/// One line for the plan; column changes spell out what differs.
fn describe_change(op: &Operation, before: &Table, dialect: Dialect) -> String {
    match op {
        Operation::AlterColumn { to, .. } => match before.column(&to.name) {
            Some(from) => format!(
                "~ column {}: {}",
                to.name,
                column_changes(from, to, dialect)
            ),
            None => op.describe(),
        },
        other => other.describe(),
    }
}

fn column_changes(from: &Column, to: &Column, dialect: Dialect) -> String {
    let mut parts = Vec::new();
    if from.ty != to.ty {
        parts.push(format!(
            "type {} -> {}",
            column_type_sql(&from.ty, dialect),
            column_type_sql(&to.ty, dialect)
        ));
    }
    if from.nullable != to.nullable {
        parts.push(if to.nullable {
            "NOT NULL -> NULL".to_string()
        } else {
            "NULL -> NOT NULL".to_string()
        });
    }
    if from.default != to.default {
        let show = |d: &Option<crate::DefaultValue>| {
            d.as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "none".into())
        };
        parts.push(format!(
            "default {} -> {}",
            show(&from.default),
            show(&to.default)
        ));
    }
    if from.comment != to.comment {
        parts.push("comment".into());
    }
    parts.join(", ")
}
