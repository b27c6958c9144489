//! `revoked_token`: a token refused by logout before its expiry, shared by every instance.
//!
//! Several instances share only the database, so a logout through one must refuse the token on
//! all of them at once: every authenticated request looks its token's id up here. A row is kept
//! until the token would have expired anyway (`expires_at`, indexed for the cleanup that
//! deletes the rows past it).

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revoked_token")]
pub struct Model {
    /// The token's `jti` (a UUIDv7, so rows sort by when the token was issued); named `id` as
    /// every table's key is.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The token's `exp`: past it the token is refused as expired, and the row can go.
    #[sea_orm(indexed)]
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

// No `audited_behavior!`: the key is the token's id, not a fresh one, and a revocation is
// written once and never updated, so the domain sets every column itself.
impl ActiveModelBehavior for ActiveModel {}
