//! the account list's order is indexed
//!
//! Revision `565916603307`, parent: `094d57262bca`. Created 2026-12-01T07:52:16Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "565916603307",
        &["094d57262bca"],
        "the account list's order is indexed",
        "2026-12-01T07:52:16Z",
    )
    .atomic(false)
    .operations(vec![create_index(
        "user_account",
        "ix_user_account_created_at_id",
        &["created_at", "id"],
    )])
}
