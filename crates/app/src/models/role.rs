//! `role`: a named set of permissions, such as `application-access` or `superuser`.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "role")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub slug: String,
    #[sea_orm(unique)]
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(has_many, via = "user_account_role")]
    pub users: HasMany<super::user_account::Entity>,
}

audited_behavior!();
