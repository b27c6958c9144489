//! The migrations of this application, oldest first.
//!
//! Maintained by `app database make-migrations`: each migration file is listed twice below,
//! as a module and in `all()`. Keep the marker comments.

#[path = "2026-11-27_users_and_roles_08e16bd91110.rs"]
mod m_08e16bd91110;

#[path = "2026-11-27_todos_and_tags_363878e3d4c3.rs"]
mod m_363878e3d4c3;

#[path = "2026-11-27_check_todo_importance_0228a2248923.rs"]
mod m_0228a2248923;

#[path = "2026-12-01_login_failures_ba33124e89af.rs"]
mod m_ba33124e89af;

#[path = "2026-12-01_token_revocations_acce0a353bde.rs"]
mod m_acce0a353bde;

#[path = "2026-12-01_todos_of_a_user_do_not_overlap_9014f3b65a0e.rs"]
mod m_9014f3b65a0e;

#[path = "2026-12-01_write_positions_for_read_replicas_86298080d8d1.rs"]
mod m_86298080d8d1;

#[path = "2026-12-01_an_index_per_sort_of_a_user_s_todos_094d57262bca.rs"]
mod m_094d57262bca;

#[path = "2026-12-01_the_account_list_s_order_is_indexed_565916603307.rs"]
mod m_565916603307;

#[path = "2026-12-01_search_on_todos_and_accounts_uses_an_ind_3168f13bb5b8.rs"]
mod m_3168f13bb5b8;
// strata:modules

/// Every migration, oldest first.
pub fn all() -> Vec<strata::Migration> {
    vec![
        m_08e16bd91110::migration(),
        m_363878e3d4c3::migration(),
        m_0228a2248923::migration(),
        m_ba33124e89af::migration(),
        m_acce0a353bde::migration(),
        m_9014f3b65a0e::migration(),
        m_86298080d8d1::migration(),
        m_094d57262bca::migration(),
        m_565916603307::migration(),
        m_3168f13bb5b8::migration(),
        // strata:list
    ]
}
