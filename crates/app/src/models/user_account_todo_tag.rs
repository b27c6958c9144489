//! `user_account_todo_tag`: which tags a todo carries.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_account_todo_tag")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "todo_tag")]
    pub todo_id: Uuid,
    #[sea_orm(unique_key = "todo_tag")]
    pub tag_id: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "todo_id", to = "id", on_delete = "Cascade")]
    pub todo: BelongsTo<super::todo::Entity>,
    #[sea_orm(belongs_to, from = "tag_id", to = "id", on_delete = "Cascade")]
    pub tag: BelongsTo<super::tag::Entity>,
}

audited_behavior!();
