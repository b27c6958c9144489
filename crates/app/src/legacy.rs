//! What `app` knows of the databases its Python predecessor (Litestar + Advanced Alchemy +
//! Alembic) made, for `app database adopt`: the Alembic head it adopts from and how values
//! change on the way. The engine does the rest (see `strata::adopt`).
//!
//! The Python service stores `todo.importance` as the enum's member names (`NONE`..`HIGH`);
//! `app` stores the lower-case values. On SQLite it also stores times as naive UTC text
//! (`YYYY-MM-DD HH:MM:SS.ffffff`), where `app` (through sqlx) stores RFC 3339 with the offset
//! and only as many fraction digits as needed (none, 3 or 6); both store UUIDs as 16-byte
//! blobs, dates as `YYYY-MM-DD` and booleans as 0/1, which the adoption checks.

use strata::adopt::{AdoptionSpec, Conversion};
use strata::migrator::{ForeignVersion, Migrator};
use strata::render::quote_ident;
use strata::{ColumnType, Dialect};

use crate::migrate::MigrateError;

/// The migration tool the Python service uses.
pub const TOOL: &str = "alembic";

/// The head revision of the Python service's Alembic chain: the only revision adopted.
pub const HEAD: &str = "f1g2h3i4j5k6";

/// One line for a database whose version table is another tool's: what it is and what to do.
pub fn explain(foreign: &ForeignVersion) -> String {
    if foreign.tool != TOOL {
        return format!(
            "the version table belongs to another tool ({}); app can adopt only the Python service's Alembic databases",
            foreign.tool
        );
    }
    match foreign.revisions.as_slice() {
        [head] if head == HEAD => format!(
            "the database was made by the Python service (Alembic revision {HEAD}, its head); run `app database adopt` to bring it under app"
        ),
        found => format!(
            "the database was made by the Python service at Alembic revision {}, not its head {HEAD}; upgrade it with the Python service first (alembic upgrade head), then run `app database adopt`",
            if found.is_empty() {
                "(none)".to_string()
            } else {
                found.join(", ")
            }
        ),
    }
}

/// What the engine needs to adopt the Python service's database into `app`'s head.
pub fn adoption_spec(migrator: &Migrator) -> Result<AdoptionSpec, MigrateError> {
    let history = migrator.history();
    let head = history.head_schema()?;
    let mut conversions = vec![Conversion {
        table: "todo".into(),
        column: "importance".into(),
        dialect: None,
        description: "enum member names NONE, LOW, MEDIUM, HIGH to none, low, medium, high".into(),
        expr: "lower(\"importance\")".into(),
        invalid_when: Some("upper(\"importance\") NOT IN ('NONE', 'LOW', 'MEDIUM', 'HIGH')".into()),
    }];
    for table in head.tables.values() {
        for column in &table.columns {
            if let Some(conversion) = sqlite_storage(&table.name, &column.name, &column.ty) {
                conversions.push(conversion);
            }
        }
    }
    Ok(AdoptionSpec {
        tool: TOOL.into(),
        revisions: vec![HEAD.into()],
        target: adoption_target(history),
        conversions,
    })
}

/// The revision an adoption stamps: head, or the last one before the first migration whose
/// work the schema model does not describe (raw SQL such as the exclusion constraint on
/// `todo`, a Rust data step). Adoption only brings tables to a schema, so such a migration
/// must run for real; `app database adopt` upgrades past it right after.
fn adoption_target(history: &strata::state::History) -> String {
    let declarative = |m: &&strata::Migration| {
        !m.operations.iter().any(|op| {
            matches!(
                op,
                strata::Operation::RawSql { .. } | strata::Operation::Data(_)
            )
        })
    };
    let migrations = history.migrations();
    match migrations.iter().position(|m| !declarative(&m)) {
        None => "head".into(),
        // The chain is linear: the one before it is its parent.
        Some(first) if first > 0 => migrations[first - 1].revision.clone(),
        Some(_) => "head".into(),
    }
}

/// How a value of type `ty` stored by SQLAlchemy on SQLite becomes what `app` reads: times
/// rewritten, everything else checked as it is.
fn sqlite_storage(table: &str, column: &str, ty: &ColumnType) -> Option<Conversion> {
    let c = quote_ident(column);
    let (description, expr, invalid) = match ty {
        ColumnType::TimestampTz => (
            "naive UTC text YYYY-MM-DD HH:MM:SS.ffffff to RFC 3339 with +00:00",
            sqlite_time(&c),
            format!(
                "{c} IS NOT NULL AND NOT ({c} GLOB '{DATE} {TIME}' OR {c} GLOB '{DATE} {TIME}.{MICROS}')"
            ),
        ),
        ColumnType::Uuid => (
            "16-byte UUID blobs kept",
            c.clone(),
            format!("{c} IS NOT NULL AND (typeof({c}) <> 'blob' OR length({c}) <> 16)"),
        ),
        ColumnType::Date => (
            "dates YYYY-MM-DD kept",
            c.clone(),
            format!("{c} IS NOT NULL AND NOT {c} GLOB '{DATE}'"),
        ),
        ColumnType::Boolean => (
            "booleans 0/1 kept",
            c.clone(),
            format!("{c} IS NOT NULL AND {c} NOT IN (0, 1)"),
        ),
        _ => return None,
    };
    Some(Conversion {
        table: table.into(),
        column: column.into(),
        dialect: Some(Dialect::Sqlite),
        description: description.into(),
        expr,
        invalid_when: Some(invalid),
    })
}

const DATE: &str = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]";
const TIME: &str = "[0-9][0-9]:[0-9][0-9]:[0-9][0-9]";
const MICROS: &str = "[0-9][0-9][0-9][0-9][0-9][0-9]";

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` to `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]+00:00`, the fraction
/// trimmed as sqlx writes it (chrono's `SecondsFormat::AutoSi`), so stored times compare and
/// sort as text with the ones `app` writes.
fn sqlite_time(c: &str) -> String {
    format!(
        "CASE WHEN {c} IS NULL THEN NULL ELSE substr({c}, 1, 10) || 'T' || substr({c}, 12, 8) || \
         CASE WHEN length({c}) = 19 OR substr({c}, 21, 6) = '000000' THEN '' \
         WHEN substr({c}, 24, 3) = '000' THEN '.' || substr({c}, 21, 3) \
         ELSE '.' || substr({c}, 21, 6) END || '+00:00' END"
    )
}
