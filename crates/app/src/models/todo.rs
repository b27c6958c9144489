//! `todo`: one item of a user's list, with optional times and an importance.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use super::audit::audited_behavior;

/// How much a todo matters; stored as text, guarded by the `ck_todo_importance` CHECK.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(10))")]
#[serde(rename_all = "lowercase")]
pub enum Importance {
    #[default]
    #[sea_orm(string_value = "none")]
    None,
    #[sea_orm(string_value = "low")]
    Low,
    #[sea_orm(string_value = "medium")]
    Medium,
    #[sea_orm(string_value = "high")]
    High,
}

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "todo")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_type = "String(StringLen::N(100))", indexed)]
    pub item: String,
    #[sea_orm(column_type = "String(StringLen::N(1024))")]
    pub description: Option<String>,
    pub created_time: DateTimeUtc,
    pub alarm_time: Option<DateTimeUtc>,
    pub start_time: Option<DateTimeUtc>,
    pub end_time: Option<DateTimeUtc>,
    pub importance: Importance,
    pub user_id: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user_account::Entity>,
    #[sea_orm(has_many, via = "user_account_todo_tag")]
    pub tags: HasMany<super::tag::Entity>,
}

audited_behavior!();
