//! todos of a user do not overlap
//!
//! Revision `9014f3b65a0e`, parent: `acce0a353bde`. Created 2026-12-01T04:55:19Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.
//!
//! PostgreSQL refuses a todo whose time range overlaps another of the same user, so writers
//! need no lock on the user's row: an exclusion constraint over `[start_time, end_time)`
//! (half-open, as the service's overlap query reads it), for todos with both times only.
//! `btree_gist` gives `uuid` the `=` GiST needs; it is a trusted extension (the database's
//! owner or a role with CREATE on it may create it), and a role that may not gets a line that
//! says what to ask for. The downgrade leaves the extension: other objects may use it.
//! SQLite has no exclusion constraint; the service checks inside its single writer there.
//! The schema model does not know exclusion constraints and introspection leaves them out,
//! so `check` stays clean.

use strata::prelude::*;

// On one line: a failure names the SQL it ran, and the error stays one line.
const UP: &str = "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS btree_gist; \
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN \
RAISE EXCEPTION 'todos of a user are kept from overlapping with the btree_gist extension, \
which this role cannot create (%): have the database owner or a superuser run \
CREATE EXTENSION btree_gist in this database, then upgrade again', SQLERRM; END $$; \
ALTER TABLE todo ADD CONSTRAINT ex_todo_user_time_no_overlap \
EXCLUDE USING gist (user_id WITH =, tstzrange(start_time, end_time, '[)') WITH &&) \
WHERE (start_time IS NOT NULL AND end_time IS NOT NULL)";

const DOWN: &str = "ALTER TABLE todo DROP CONSTRAINT IF EXISTS ex_todo_user_time_no_overlap";

pub fn migration() -> Migration {
    Migration::new(
        "9014f3b65a0e",
        &["acce0a353bde"],
        "todos of a user do not overlap",
        "2026-12-01T04:55:19Z",
    )
    .operations(vec![raw_sql_reversible(
        DialectSql::new(UP, ""),
        DialectSql::new(DOWN, ""),
    )])
}
