//! The migrations of this application, oldest first.
//!
//! Maintained by `make-migrations`: each migration file is listed twice below,
//! as a module and in `all()`. Keep the marker comments.

#[path = "sample_migration.rs"]
mod m_5a7c0ffee123;
// strata:modules

/// Every migration, oldest first.
pub fn all() -> Vec<strata::Migration> {
    vec![
        m_5a7c0ffee123::migration(),
        // strata:list
    ]
}
