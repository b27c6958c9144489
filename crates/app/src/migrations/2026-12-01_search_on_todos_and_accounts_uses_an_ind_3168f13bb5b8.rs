//! search on todos and accounts uses an index
//!
//! Revision `3168f13bb5b8`, parent: `565916603307`. Created 2026-12-01T07:33:00Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.
//!
//! Case-insensitive substring search (`domain::search`) gets an index on both databases.
//!
//! PostgreSQL: trigram GIN indexes (`pg_trgm`) on exactly the expressions the search reads,
//! `lower(todo.item)`, `lower(user_account.email)` and `lower(user_account.name)`, so
//! `lower(col) LIKE '%term%'` is served by them for terms of three characters or more. A plain
//! index on `lower(item)` is enough for the per-user search: the planner walks the user's
//! `(user_id, created_at)` index for a frequent term and the trigram index for a rare one.
//! `pg_trgm` is a trusted extension (the database's owner or a role with CREATE on it may
//! create it); a role that may not gets a line that says what to ask for.
//!
//! The migration is atomic, so concurrent upgraders stay serialized by their lock (a
//! non-atomic one runs its steps side by side, and two `CREATE INDEX CONCURRENTLY` on one
//! table deadlock); a plain build blocks writes to the table while it runs. On a big table,
//! build the indexes beforehand without blocking writes, and the migration finds them:
//! `CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_todo_item_trgm ON todo USING gin
//! (lower(item) gin_trgm_ops)` (README, "Search").
//! The schema model describes btree indexes only and introspection leaves the others out,
//! so `check` stays clean. The downgrade leaves the extension: other objects may use it.
//!
//! SQLite: FTS5 tables with the `trigram` tokenizer (case folded, Unicode aware) over the
//! same columns, as external-content tables (the text stays in `todo` and `user_account`),
//! filled once here and kept in step by triggers. The engine carries the triggers across
//! table rebuilds and rebuilds these indexes after one (rowids change in a rebuild).

use strata::prelude::*;

// On one line: a failure names the SQL it ran, and the error stays one line. Two concurrent
// CREATE EXTENSION IF NOT EXISTS (another tool's, say) can collide on the catalog's unique
// index: the loser finds the extension made.
const TRIGRAM_EXTENSION: &str = "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS pg_trgm; \
EXCEPTION WHEN unique_violation THEN NULL; \
WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN \
RAISE EXCEPTION 'search on todos and accounts is indexed with the pg_trgm extension, \
which this role cannot create (%): have the database owner or a superuser run \
CREATE EXTENSION pg_trgm in this database, then upgrade again', SQLERRM; END $$";

/// The trigram indexes: name, table, column.
const TRIGRAM_INDEXES: [(&str, &str, &str); 3] = [
    ("ix_todo_item_trgm", "todo", "item"),
    ("ix_user_account_email_trgm", "user_account", "email"),
    ("ix_user_account_name_trgm", "user_account", "name"),
];

/// The SQLite full-text tables: name, content table, indexed columns.
const FTS_TABLES: [(&str, &str, &[&str]); 2] = [
    ("todo_item_fts", "todo", &["item"]),
    (
        "user_account_search_fts",
        "user_account",
        &["email", "name"],
    ),
];

/// One operation for PostgreSQL: the extension, then the indexes.
fn postgres_operation() -> Operation {
    let mut up = vec![TRIGRAM_EXTENSION.to_string()];
    let mut down = Vec::new();
    for (name, table, column) in TRIGRAM_INDEXES {
        // IF NOT EXISTS: an operator may have built it beforehand, CONCURRENTLY (see below).
        up.push(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (lower({column}) gin_trgm_ops)"
        ));
        down.push(format!("DROP INDEX IF EXISTS {name}"));
    }
    raw_sql_reversible(
        DialectSql::new(up.join("; ") + ";", ""),
        DialectSql::new(down.join("; ") + ";", ""),
    )
}

/// One operation for all of SQLite (its statements run in one transaction either way): the
/// FTS5 tables, filled from their content tables, and the triggers that keep them in step.
fn sqlite_operation() -> Operation {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (fts, table, columns) in FTS_TABLES {
        let list = columns.join(", ");
        let values = |row: &str| {
            columns
                .iter()
                .map(|c| format!("{row}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let insert = format!(
            "INSERT INTO {fts} (rowid, {list}) VALUES (new.rowid, {});",
            values("new")
        );
        let delete = format!(
            "INSERT INTO {fts} ({fts}, rowid, {list}) VALUES ('delete', old.rowid, {});",
            values("old")
        );
        up.push(format!(
            "CREATE VIRTUAL TABLE {fts} USING fts5({list}, content='{table}', \
             content_rowid='rowid', tokenize='trigram case_sensitive 0')"
        ));
        up.push(format!("INSERT INTO {fts} ({fts}) VALUES ('rebuild')"));
        for (suffix, event, body) in [
            ("insert", "INSERT".to_string(), insert.clone()),
            ("delete", "DELETE".to_string(), delete.clone()),
            (
                "update",
                format!("UPDATE OF {list}"),
                format!("{delete} {insert}"),
            ),
        ] {
            let trigger = format!("{fts}_{suffix}");
            up.push(format!(
                "CREATE TRIGGER {trigger} AFTER {event} ON {table} BEGIN {body} END"
            ));
            down.push(format!("DROP TRIGGER IF EXISTS {trigger}"));
        }
        down.push(format!("DROP TABLE IF EXISTS {fts}"));
    }
    raw_sql_reversible(
        DialectSql::new("", up.join("; ") + ";"),
        DialectSql::new("", down.join("; ") + ";"),
    )
}

pub fn migration() -> Migration {
    Migration::new(
        "3168f13bb5b8",
        &["565916603307"],
        "search on todos and accounts uses an index",
        "2026-12-01T07:33:00Z",
    )
    .operations(vec![postgres_operation(), sqlite_operation()])
}
