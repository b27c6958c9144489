//! `login_failure`: one failed sign-in, kept while it counts toward the login throttle.
//!
//! Several instances share only the database, so the throttle counts here. The email tried and
//! the client's address are stored as SHA-256 digests, never as typed: a password typed into the
//! email field stays unreadable, and unknown emails leave no readable trace. Rows older than
//! the throttle window are deleted as new failures come in.

use sea_orm::entity::prelude::*;

use super::audit::audited_behavior;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_failure")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// SHA-256 (hex) of the email tried, normalized.
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub account_key: String,
    /// SHA-256 (hex) of the client's address (of its /64 network for IPv6); `None` when the
    /// server did not know it.
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub address_key: Option<String>,
    #[sea_orm(indexed)]
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

audited_behavior!();
