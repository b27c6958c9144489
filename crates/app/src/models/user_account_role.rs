//! `user_account_role`: which user holds which role, and since when.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_account_role")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique_key = "user_account_role")]
    pub user_id: Uuid,
    #[sea_orm(unique_key = "user_account_role")]
    pub role_id: Uuid,
    pub assigned_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user_account::Entity>,
    #[sea_orm(belongs_to, from = "role_id", to = "id", on_delete = "Cascade")]
    pub role: BelongsTo<super::role::Entity>,
}

audited_behavior!();
