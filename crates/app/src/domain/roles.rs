//! Roles: assigning and revoking them by slug and email, and making superusers.
//!
//! The `superuser` role and the `is_superuser` flag move together: assigning or revoking that
//! role sets or clears the flag in the same transaction, and [`promote`] / [`demote`] are
//! exactly that.

use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, IntoActiveModel};

use super::accounts::{find_by_email, find_role, link_role, unlink_role};
use crate::fixtures::SUPERUSER_ROLE;
use crate::models::user_account;

/// Why a role could not be assigned or revoked.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no role with slug {0}; load the fixtures or check the slug")]
    UnknownRole(String),
    #[error("no user with email {0}")]
    UnknownUser(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Grant,
    Take,
}

/// Gives the role `slug` to the account of `email`. Assigning a role the account already
/// holds changes nothing and is no error.
#[tracing::instrument(skip(db))]
pub async fn assign(
    db: &DatabaseConnection,
    slug: &str,
    email: &str,
) -> Result<user_account::Model, RoleError> {
    change(db, slug, email, Change::Grant).await
}

/// Takes the role `slug` from the account of `email`; harmless when it does not hold it.
#[tracing::instrument(skip(db))]
pub async fn revoke(
    db: &DatabaseConnection,
    slug: &str,
    email: &str,
) -> Result<user_account::Model, RoleError> {
    change(db, slug, email, Change::Take).await
}

/// Makes the account of `email` a superuser: sets `is_superuser` and assigns the `superuser`
/// role, in one transaction.
#[tracing::instrument(skip(db))]
pub async fn promote(
    db: &DatabaseConnection,
    email: &str,
) -> Result<user_account::Model, RoleError> {
    change(db, SUPERUSER_ROLE, email, Change::Grant).await
}

/// Undoes [`promote`]: clears `is_superuser` and revokes the `superuser` role.
#[tracing::instrument(skip(db))]
pub async fn demote(
    db: &DatabaseConnection,
    email: &str,
) -> Result<user_account::Model, RoleError> {
    change(db, SUPERUSER_ROLE, email, Change::Take).await
}

async fn change(
    db: &DatabaseConnection,
    slug: &str,
    email: &str,
    change: Change,
) -> Result<user_account::Model, RoleError> {
    let txn = crate::db::begin_write(db).await?;
    let role = find_role(&txn, slug)
        .await?
        .ok_or_else(|| RoleError::UnknownRole(slug.to_string()))?;
    let user = find_by_email(&txn, email)
        .await?
        .ok_or_else(|| RoleError::UnknownUser(email.trim().to_string()))?;
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
