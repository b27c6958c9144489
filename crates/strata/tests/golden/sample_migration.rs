//! Roles, "todo" tweaks & C:\paths
//! Second line of the message.
//!
//! Revision `5a7c0ffee123`, parent: `1a2b3c4d5e6f`. Created 2026-11-27T21:00:00Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.
//! Irreversible as written: `raw_sql` has no down step (use `raw_sql_reversible`).

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "5a7c0ffee123",
        &["1a2b3c4d5e6f"],
        "Roles, \"todo\" tweaks & C:\\paths\nSecond line of the message.",
        "2026-11-27T21:00:00Z",
    )
    .operations(vec![
        create_table(
            Table::new("role")
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_column(
                    Column::new("slug", ColumnType::String(Some(100)))
                        .default(DefaultValue::Str("it's \"new\" \\ here".into()))
                        .comment("Unique, lowercase"),
                )
                .with_column(Column::new("label", ColumnType::String(None)).nullable())
                .with_column(Column::new("description", ColumnType::Text))
                .with_column(
                    Column::new("active", ColumnType::Boolean).default(DefaultValue::Bool(true)),
                )
                .with_column(
                    Column::new("rank", ColumnType::SmallInteger).default(DefaultValue::Int(-42)),
                )
                .with_column(
                    Column::new("version", ColumnType::Integer).default(DefaultValue::Int(0)),
                )
                .with_column(Column::new("parent_id", ColumnType::Uuid))
                .with_column(Column::new("budget", ColumnType::BigInteger).nullable())
                .with_column(Column::new("weight", ColumnType::Real))
                .with_column(Column::new("score", ColumnType::Double))
                .with_column(
                    Column::new("price", ColumnType::Decimal(12, 2))
                        .default(DefaultValue::Str("".into())),
                )
                .with_column(Column::new("since", ColumnType::Date))
                .with_column(Column::new("alarm", ColumnType::Time))
                .with_column(Column::new("seen_at", ColumnType::Timestamp))
                .with_column(
                    Column::new("created_at", ColumnType::TimestampTz)
                        .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into()))
                        .comment(COMMENT_1),
                )
                .with_column(Column::new("settings", ColumnType::Json))
                .with_column(Column::new("extra", ColumnType::JsonBinary).nullable())
                .with_column(Column::new("avatar", ColumnType::Binary))
                .with_primary_key(["id"])
                .with_unique(Unique::new("uq_role_slug", &["slug"]))
                .with_check(Check::new("ck_role_rank", "rank >= 0 AND label <> 'x'"))
                .with_foreign_key(
                    ForeignKey::new("fk_role_parent", &["parent_id"], "role", &["id"])
                        .on_delete(ForeignKeyAction::Cascade)
                        .on_update(ForeignKeyAction::SetNull),
                )
                .with_index(Index::new("ix_role_created_at", &["created_at"]))
                .with_index(Index::new("ux_role_slug_version", &["slug", "version"]).unique())
                .with_comment("Roles a user can hold; see \"docs/roles.md\""),
        ),
        create_table(
            Table::new("user_role")
                .with_column(Column::new("user_id", ColumnType::Uuid))
                .with_column(Column::new("role_id", ColumnType::Uuid))
                .with_primary_key(["user_id", "role_id"])
                .with_foreign_key(
                    ForeignKey::new("fk_user_role_role", &["role_id"], "role", &["id"])
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .with_foreign_key(
                    ForeignKey::new("fk_user_role_user", &["user_id"], "users", &["id"])
                        .on_update(ForeignKeyAction::SetDefault),
                ),
        ),
        create_table(Table::new("empty_table")),
        add_column(
            "todo",
            Column::new("alarm_time", ColumnType::TimestampTz).nullable(),
        ),
        alter_column(
            "todo",
            Column::new("title", ColumnType::String(Some(200)))
                .default(DefaultValue::Str("".into()))
                .comment("What to do, in a few words"),
        ),
        rename_column("todo", "title", "headline"),
        drop_column("todo", "legacy"),
        rename_table("todo", "task"),
        create_index("task", "ix_task_alarm_time", &["alarm_time"]),
        create_unique_index("task", "ux_task_owner_headline", &["owner_id", "headline"]),
        create_index(
            "task",
            "ix_task_wide",
            &[
                "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
            ],
        ),
        drop_index("task", "ix_todo_old"),
        add_foreign_key(
            "task",
            ForeignKey::new("fk_task_owner", &["owner_id"], "users", &["id"])
                .on_delete(ForeignKeyAction::SetNull)
                .on_update(ForeignKeyAction::Cascade),
        ),
        drop_foreign_key("task", "fk_todo_old"),
        add_unique("task", "uq_task_owner_slug", &["owner_id", "slug"]),
        drop_unique("task", "uq_todo_old"),
        add_check("task", "ck_task_headline", "char_length(headline) > 0"),
        drop_check("task", "ck_todo_old"),
        rename_index("task", "ix_todo_headline", "ix_task_headline"),
        rename_constraint("task", "fk_todo_role_id_role", "fk_task_role_id_role"),
        set_table_comment("task", Some("Things to do\nand \"why\" \\o/")),
        set_table_comment("role", None),
        raw_sql(DialectSql::both(
            "UPDATE task SET headline = 'none' WHERE headline = ''",
        )),
        raw_sql_reversible(
            DialectSql::new("CREATE EXTENSION IF NOT EXISTS pg_trgm", "SELECT 1"),
            DialectSql::both("SELECT 1"),
        ),
        raw_sql_reversible(
            DialectSql::both(SQL_1),
            DialectSql::both("DELETE FROM role WHERE slug = 'admin'"),
        ),
        drop_table("legacy_table"),
    ])
}

const COMMENT_1: &str = "When the role was created; set by the database, never by the application";
const SQL_1: &str = "INSERT INTO role (id, slug, label)\nVALUES ('00000000-0000-0000-0000-000000000001', 'admin', 'Admin \"root\"')";
