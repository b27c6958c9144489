//! login failures
//!
//! Revision `ba33124e89af`, parent: `0228a2248923`. Created 2026-12-01T01:54:07Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "ba33124e89af",
        &["0228a2248923"],
        "login failures",
        "2026-12-01T01:54:07Z",
    )
    .operations(vec![create_table(
        Table::new("login_failure")
            .with_column(Column::new("id", ColumnType::Uuid))
            .with_column(Column::new("account_key", ColumnType::String(Some(64))))
            .with_column(Column::new("address_key", ColumnType::String(Some(64))).nullable())
            .with_column(Column::new("created_at", ColumnType::TimestampTz))
            .with_column(Column::new("updated_at", ColumnType::TimestampTz))
            .with_primary_key(["id"])
            .with_index(Index::new(
                "ix_login_failure_account_key_created_at",
                &["account_key", "created_at"],
            ))
            .with_index(Index::new(
                "ix_login_failure_address_key_created_at",
                &["address_key", "created_at"],
            ))
            .with_index(Index::new("ix_login_failure_created_at", &["created_at"])),
    )])
}
