//! `tag`: a label a user puts on their todos; names are unique per user.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tag")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(
        column_type = "String(StringLen::N(100))",
        indexed,
        unique_key = "tag_user_name"
    )]
    pub name: String,
    #[sea_orm(column_type = "String(StringLen::N(100))")]
    pub color: Option<String>,
    #[sea_orm(unique_key = "tag_user_name")]
    pub user_id: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user_account::Entity>,
    #[sea_orm(has_many, via = "user_account_todo_tag")]
    pub todos: HasMany<super::todo::Entity>,
}

audited_behavior!();
