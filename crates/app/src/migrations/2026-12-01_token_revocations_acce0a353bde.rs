//! token revocations
//!
//! Revision `acce0a353bde`, parent: `ba33124e89af`. Created 2026-12-01T04:35:52Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "acce0a353bde",
        &["ba33124e89af"],
        "token revocations",
        "2026-12-01T04:35:52Z",
    )
    .operations(vec![create_table(
        Table::new("revoked_token")
            .with_column(Column::new("id", ColumnType::Uuid))
            .with_column(Column::new("expires_at", ColumnType::TimestampTz))
            .with_column(Column::new("created_at", ColumnType::TimestampTz))
            .with_column(Column::new("updated_at", ColumnType::TimestampTz))
            .with_primary_key(["id"])
            .with_index(Index::new("ix_revoked_token_expires_at", &["expires_at"])),
    )])
}
