//! `user_account`: a person who signs in and owns todos and tags.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_account")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub email: String,
    pub name: Option<String>,
    /// An argon2id PHC string; `None` for accounts that cannot sign in with a password.
    pub hashed_password: Option<String>,
    pub avatar_url: Option<String>,
    #[sea_orm(default_value = true)]
    pub is_active: bool,
    #[sea_orm(default_value = false)]
    pub is_superuser: bool,
    #[sea_orm(default_value = false)]
    pub is_verified: bool,
    pub verified_at: Option<Date>,
    pub joined_at: Date,
    #[sea_orm(default_value = 0)]
    pub login_count: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(has_many)]
    pub todos: HasMany<super::todo::Entity>,
    #[sea_orm(has_many)]
    pub tags: HasMany<super::tag::Entity>,
    #[sea_orm(has_many, via = "user_account_role")]
    pub roles: HasMany<super::role::Entity>,
}

audited_behavior!();
