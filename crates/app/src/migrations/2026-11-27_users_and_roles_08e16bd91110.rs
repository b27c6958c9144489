//! users and roles
//!
//! Revision `08e16bd91110`, parent: none. Created 2026-11-27T21:39:20Z by `app database make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "08e16bd91110",
        &[],
        "users and roles",
        "2026-11-27T21:39:20Z",
    )
    .operations(vec![
        create_table(
            Table::new("role")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("slug", ColumnType::String(None)))
                .with_column(Column::new("name", ColumnType::String(None)))
                .with_column(Column::new("description", ColumnType::String(None)).nullable())
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_unique(Unique::new("uq_role_name", &["name"]))
                .with_unique(Unique::new("uq_role_slug", &["slug"])),
        ),
        create_table(
            Table::new("user_account")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("email", ColumnType::String(None)))
                .with_column(Column::new("name", ColumnType::String(None)).nullable())
                .with_column(Column::new("hashed_password", ColumnType::String(None)).nullable())
                .with_column(Column::new("avatar_url", ColumnType::String(None)).nullable())
                .with_column(
                    Column::new("is_active", ColumnType::Boolean).default(DefaultValue::Bool(true)),
                )
                .with_column(
                    Column::new("is_superuser", ColumnType::Boolean)
                        .default(DefaultValue::Bool(false)),
                )
                .with_column(
                    Column::new("is_verified", ColumnType::Boolean)
                        .default(DefaultValue::Bool(false)),
                )
                .with_column(Column::new("verified_at", ColumnType::Date).nullable())
                .with_column(Column::new("joined_at", ColumnType::Date))
                .with_column(
                    Column::new("login_count", ColumnType::Integer).default(DefaultValue::Int(0)),
                )
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_unique(Unique::new("uq_user_account_email", &["email"])),
        ),
        create_table(
            Table::new("user_account_role")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("user_id", ColumnType::Uuid))
                .with_column(Column::new("role_id", ColumnType::Uuid))
                .with_column(Column::new("assigned_at", ColumnType::TimestampTz))
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_unique(Unique::new(
                    "uq_user_account_role_user_id_role_id",
                    &["user_id", "role_id"],
                ))
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_user_account_role_role_id_role",
                        &["role_id"],
                        "role",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_user_account_role_user_id_user_account",
                        &["user_id"],
                        "user_account",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_index(Index::new("ix_user_account_role_role_id", &["role_id"])),
        ),
    ])
}
