//! write positions for read replicas
//!
//! Revision `86298080d8d1`, parent: `9014f3b65a0e`. Created 2026-12-01T07:34:30Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "86298080d8d1",
        &["9014f3b65a0e"],
        "write positions for read replicas",
        "2026-12-01T07:34:30Z",
    )
    .operations(vec![create_table(
        Table::new("write_position")
            .with_column(Column::new("id", ColumnType::Uuid))
            .with_column(Column::new("lsn", ColumnType::BigInteger))
            .with_column(Column::new("created_at", ColumnType::TimestampTz))
            .with_column(Column::new("updated_at", ColumnType::TimestampTz))
            .with_primary_key(["id"])
            .with_foreign_key(
                ForeignKey::new(
                    "fk_write_position_id_user_account",
                    &["id"],
                    "user_account",
                    &["id"],
                )
                .on_delete(ForeignKeyAction::Cascade),
            ),
    )])
}
