#[path = "sample_migration.rs"]
mod m_5a7c0ffee123;

pub fn all() -> Vec<strata::Migration> {
    vec![m_5a7c0ffee123::migration()]
}
