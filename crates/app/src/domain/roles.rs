//! Roles: assigning and revoking them by slug and email, and making superusers.
//!
//! The `superuser` role and the `is_superuser` flag move together: assigning or revoking that
//! role sets or clears the flag in the same transaction, and [`promote`] / [`demote`] are
//! exactly that. Every change follows the superuser rules of [`super::accounts`], inside its
//! transaction: a signed-in actor must still be an active superuser, nobody revokes their own
//! `superuser` role, and the last active superuser keeps it.

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect,
};

use super::accounts::{
    Actor, Guarded, Removal, check_superuser_rules, find_role, link_role, lock_active_superusers,
    normalize_email, unlink_role,
};
use crate::fixtures::SUPERUSER_ROLE;
use crate::models::user_account;

/// Why a role could not be assigned or revoked.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no role with slug {0}; load the fixtures or check the slug")]
    UnknownRole(String),
    #[error("no user with email {0}")]
    UnknownUser(String),
    #[error("{}", crate::db::describe(.0))]
    Db(#[from] DbErr),
}

impl From<RoleError> for Guarded<RoleError> {
    fn from(err: RoleError) -> Self {
        Guarded::Failed(err)
    }
}

impl From<DbErr> for Guarded<RoleError> {
    fn from(err: DbErr) -> Self {
        Guarded::Failed(RoleError::Db(err))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Grant,
    Take,
}

/// Gives the role `slug` to the account of `email` for `actor`. Assigning a role the account
/// already holds changes nothing and is no error.
#[tracing::instrument(skip(db))]
pub async fn assign(
    db: &crate::db::DbConn,
    actor: Actor,
    slug: &str,
    email: &str,
) -> Result<user_account::Model, Guarded<RoleError>> {
    change(db, actor, slug, email, Change::Grant).await
}

/// Takes the role `slug` from the account of `email` for `actor`; harmless when it does not
/// hold it. Taking `superuser` follows the superuser rules ([`super::accounts::Refusal`]).
#[tracing::instrument(skip(db))]
pub async fn revoke(
    db: &crate::db::DbConn,
    actor: Actor,
    slug: &str,
    email: &str,
) -> Result<user_account::Model, Guarded<RoleError>> {
    change(db, actor, slug, email, Change::Take).await
}

/// Makes the account of `email` a superuser for `actor`: sets `is_superuser` and assigns the
/// `superuser` role, in one transaction.
#[tracing::instrument(skip(db))]
pub async fn promote(
    db: &crate::db::DbConn,
    actor: Actor,
    email: &str,
) -> Result<user_account::Model, Guarded<RoleError>> {
    change(db, actor, SUPERUSER_ROLE, email, Change::Grant).await
}

/// Undoes [`promote`] for `actor`: clears `is_superuser` and revokes the `superuser` role,
/// unless the superuser rules refuse it.
#[tracing::instrument(skip(db))]
pub async fn demote(
    db: &crate::db::DbConn,
    actor: Actor,
    email: &str,
) -> Result<user_account::Model, Guarded<RoleError>> {
    change(db, actor, SUPERUSER_ROLE, email, Change::Take).await
}

async fn change(
    db: &crate::db::DbConn,
    actor: Actor,
    slug: &str,
    email: &str,
    change: Change,
) -> Result<user_account::Model, Guarded<RoleError>> {
    let txn = crate::db::begin_write(db).await?;
    let role = find_role(&txn, slug)
        .await?
        .ok_or_else(|| RoleError::UnknownRole(slug.to_string()))?;
    // Locked before the account, as every guarded change does (see `lock_active_superusers`).
    let superusers = lock_active_superusers(&txn).await?;
    let user = user_account::Entity::find()
        .filter(user_account::Column::Email.eq(normalize_email(email)))
        .lock(LockType::NoKeyUpdate)
        .one(&txn)
        .await?
        .ok_or_else(|| RoleError::UnknownUser(email.trim().to_string()))?;
    let removal = (change == Change::Take && role.slug == SUPERUSER_ROLE)
        .then_some(Removal::RevokeSuperuserRole);
    check_superuser_rules(actor, &superusers, &user, removal)?;
    match change {
        Change::Grant => link_role(&txn, user.id, role.id).await?,
        Change::Take => unlink_role(&txn, user.id, role.id).await?,
    }
    let user = if role.slug == SUPERUSER_ROLE {
        set_superuser(&txn, user, change == Change::Grant).await?
    } else {
        user
    };
    txn.commit().await?;
    tracing::info!(user_id = %user.id, role = %role.slug, ?change, "role changed");
    Ok(user)
}

async fn set_superuser(
    db: &impl ConnectionTrait,
    user: user_account::Model,
    superuser: bool,
) -> Result<user_account::Model, DbErr> {
    if user.is_superuser == superuser {
        return Ok(user);
    }
    let mut row = user.into_active_model();
    row.is_superuser = Set(superuser);
    row.update(db).await
}
