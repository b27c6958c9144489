//! Database errors as people read them: the server's message, its code, and PostgreSQL's
//! detail and hint.
//!
//! sqlx's own text starts with "error returned from database:" and ends a PostgreSQL error
//! with "at line N", a line of PostgreSQL's C source that tells the reader nothing, while the
//! SQLSTATE and the detail (which row, which key) that do tell are left out.

use std::fmt::Write as _;

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

/// `err` on one line: for an error the server returned, its message, code, detail and hint;
/// for anything else, sqlx's text.
pub fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => describe_database(db.as_ref()),
        other => one_line(&other.to_string()),
    }
}

fn describe_database(db: &dyn DatabaseError) -> String {
    let mut text = one_line(db.message());
    let postgres = db.try_downcast_ref::<PgDatabaseError>();
    if let Some(code) = db.code() {
        let label = if postgres.is_some() {
            "SQLSTATE"
        } else {
            "SQLite code"
        };
        let _ = write!(text, " ({label} {code})");
    }
    if let Some(pg) = postgres {
        if let Some(detail) = pg.detail() {
            let _ = write!(text, ": {}", one_line(detail));
        }
        if let Some(hint) = pg.hint() {
            let _ = write!(text, "; hint: {}", one_line(hint));
        }
    }
    text
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
