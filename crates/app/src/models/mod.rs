//! SeaORM entities of the seven tables, and the schema they make.
//!
//! Table and column names are those of the reference system, so its databases fit.

mod audit;
pub mod login_failure;
pub mod revoked_token;
pub mod role;
pub mod schema;
pub mod tag;
pub mod todo;
pub mod user_account;
pub mod user_account_role;
pub mod user_account_todo_tag;

/// The time to store: now, truncated to microseconds, which is what PostgreSQL keeps, so the
/// same row holds the same instant on both databases (and a dump of either compares equal).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// The tables of the domain model, parents before the tables whose keys point at them. Not
/// `login_failure` and `revoked_token`: short-lived bookkeeping of sign-in and logout, which no
/// other table refers to.
pub const TABLES: [&str; 6] = [
    "user_account",
    "role",
    "user_account_role",
    "tag",
    "todo",
    "user_account_todo_tag",
];
