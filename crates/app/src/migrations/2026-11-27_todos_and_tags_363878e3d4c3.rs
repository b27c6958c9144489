//! todos and tags
//!
//! Revision `363878e3d4c3`, parent: `08e16bd91110`. Created 2026-11-27T21:39:33Z by `app database make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "363878e3d4c3",
        &["08e16bd91110"],
        "todos and tags",
        "2026-11-27T21:39:33Z",
    )
    .operations(vec![
        create_table(
            Table::new("tag")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("name", ColumnType::String(Some(100))))
                .with_column(Column::new("color", ColumnType::String(Some(100))).nullable())
                .with_column(Column::new("user_id", ColumnType::Uuid))
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_unique(Unique::new("uq_tag_name_user_id", &["name", "user_id"]))
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_tag_user_id_user_account",
                        &["user_id"],
                        "user_account",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_index(Index::new("ix_tag_name", &["name"])),
        ),
        create_table(
            Table::new("todo")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("item", ColumnType::String(Some(100))))
                .with_column(Column::new("description", ColumnType::String(Some(1024))).nullable())
                .with_column(Column::new("created_time", ColumnType::TimestampTz))
                .with_column(Column::new("alarm_time", ColumnType::TimestampTz).nullable())
                .with_column(Column::new("start_time", ColumnType::TimestampTz).nullable())
                .with_column(Column::new("end_time", ColumnType::TimestampTz).nullable())
                .with_column(Column::new("importance", ColumnType::String(Some(10))))
                .with_column(Column::new("user_id", ColumnType::Uuid))
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_todo_user_id_user_account",
                        &["user_id"],
                        "user_account",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_index(Index::new("ix_todo_item", &["item"]))
                .with_index(Index::new(
                    "ix_todo_user_id_created_at",
                    &["user_id", "created_at"],
                )),
        ),
        create_table(
            Table::new("user_account_todo_tag")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(Column::new("todo_id", ColumnType::Uuid))
                .with_column(Column::new("tag_id", ColumnType::Uuid))
                .with_column(Column::new("created_at", ColumnType::TimestampTz))
                .with_column(Column::new("updated_at", ColumnType::TimestampTz))
                .with_primary_key(["id"])
                .with_unique(Unique::new(
                    "uq_user_account_todo_tag_todo_id_tag_id",
                    &["todo_id", "tag_id"],
                ))
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_user_account_todo_tag_tag_id_tag",
                        &["tag_id"],
                        "tag",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_foreign_key(
                    ForeignKey::new(
                        "fk_user_account_todo_tag_todo_id_todo",
                        &["todo_id"],
                        "todo",
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                )
                .with_index(Index::new("ix_user_account_todo_tag_tag_id", &["tag_id"])),
        ),
    ])
}
