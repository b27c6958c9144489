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
pub mod write_position;

/// The time to store: now, truncated to microseconds, which is what PostgreSQL keeps, so the
/// same row holds the same instant on both databases (and a dump of either compares equal).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Registers the entity modules: the ONE list from which [`TABLES`], [`ENTITY_MODULES`] and
/// the tables of [`schema::target`] (what autogenerate and `check` compare with) are made. A
/// module's name is its table's name (a test holds every entity to it).
///
/// `data` tables belong to the domain model (listed in [`TABLES`]: dumps, fixtures, the
/// tables `serve` expects); `bookkeeping` tables are the service's own short-lived state.
macro_rules! register_entities {
    ($($module:ident: $kind:ident),* $(,)?) => {
        /// Every registered entity module, in registration order.
        pub const ENTITY_MODULES: &[&str] = &[$(stringify!($module)),*];

        /// The tables of the domain model, parents before the tables whose keys point at them.
        pub const TABLES: &[&str] = &{
            const ALL: &[(&str, bool)] = &[$((stringify!($module), register_entities!(@data $kind))),*];
            const COUNT: usize = {
                let mut count = 0;
                let mut i = 0;
                while i < ALL.len() {
                    if ALL[i].1 {
                        count += 1;
                    }
                    i += 1;
                }
                count
            };
            let mut tables = [""; COUNT];
            let mut at = 0;
            let mut i = 0;
            while i < ALL.len() {
                if ALL[i].1 {
                    tables[at] = ALL[i].0;
                    at += 1;
                }
                i += 1;
            }
            tables
        };

        /// The engine's table of each registered entity, read from its SeaORM definition
        /// (in registration order), or what in it the engine cannot represent.
        pub(crate) fn entity_tables() -> Vec<(strata::Table, Vec<String>)> {
            vec![$(schema::table_of($module::Entity)),*]
        }

        /// Each registered module with the table its entity names (they must agree).
        pub fn entity_table_names() -> Vec<(&'static str, &'static str)> {
            use sea_orm::EntityName;
            vec![$((stringify!($module), $module::Entity.table_name())),*]
        }
    };
    (@data data) => { true };
    (@data bookkeeping) => { false };
}

// To add an entity: write its module above, then register it here (parents before children).
register_entities! {
    user_account: data,
    role: data,
    user_account_role: data,
    tag: data,
    todo: data,
    user_account_todo_tag: data,
    // Short-lived bookkeeping of sign-in (the login throttle) and logout (revoked tokens),
    // which no other table refers to.
    login_failure: bookkeeping,
    revoked_token: bookkeeping,
    // Read-your-writes with read replicas: each account's latest write position.
    write_position: bookkeeping,
}
