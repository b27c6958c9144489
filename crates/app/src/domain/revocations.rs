//! Logout's revocations, in the database: a revoked token answers 401 on every instance at
//! once, and no list in process memory decides access.
//!
//! [`revoke`] writes the token's id with its expiry (idempotently: a second logout of the same
//! token, on any instance, changes nothing). [`holder`] loads a token's account and whether the
//! token is revoked in one query, an indexed lookup by primary key folded into the lookup each
//! authenticated request makes anyway. A revocation is only needed until the token expires (an
//! expired token is refused on its own), so each logout also deletes up to
//! [`CLEANUP_BATCH`] expired rows: the table holds the revocations of unexpired tokens plus a
//! backlog that each logout shrinks, and an idle service adds none.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, Select,
};
use uuid::Uuid;

use super::tokens::Claims;
use crate::models::{revoked_token, user_account, write_position};

/// How many expired revocations one logout deletes at most: a hundred times what a logout adds,
/// so the backlog of expired rows shrinks under any rate of logouts; and few enough that
/// PostgreSQL deletes them by key (about 1 ms with 200,000 rows in the table) where a
/// thousand make it scan the table.
pub const CLEANUP_BATCH: u64 = 100;

/// The latest expiry stored, 9999-12-31T23:59:59Z: a token's `exp` can be any number, and
/// both databases keep (and SQLite compares, as text) four-digit years only.
const LATEST_EXPIRY: i64 = 253_402_300_799;

/// Refuses the token from now on, on every instance, until its expiry; then deletes up to
/// [`CLEANUP_BATCH`] revocations that have expired. Revoking a revoked token is harmless.
pub async fn revoke<C: ConnectionTrait>(db: &C, claims: &Claims) -> Result<(), DbErr> {
    let now = crate::models::now();
    let expires_at = chrono::DateTime::from_timestamp(Ord::min(claims.exp, LATEST_EXPIRY), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let row = revoked_token::ActiveModel {
        id: Set(claims.jti),
        expires_at: Set(expires_at),
        created_at: Set(now),
        updated_at: Set(now),
    };
    revoked_token::Entity::insert(row)
        .on_conflict(
            OnConflict::column(revoked_token::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    // The revocation holds whatever happens to the cleanup; the next logout tries again.
    if let Err(err) = delete_expired(db, CLEANUP_BATCH).await {
        tracing::warn!(error = %err, "could not delete expired token revocations");
    }
    Ok(())
}

/// Deletes up to `limit` revocations whose tokens have expired, oldest first; the number
/// deleted.
///
/// The ids are read first (through the `expires_at` index) and then deleted by key, so the
/// plan does not hinge on how PostgreSQL estimates a `DELETE ... IN (SELECT ... LIMIT n)`.
pub async fn delete_expired<C: ConnectionTrait>(db: &C, limit: u64) -> Result<u64, DbErr> {
    use revoked_token::Column as R;
    let expired: Vec<Uuid> = revoked_token::Entity::find()
        .select_only()
        .column(R::Id)
        .filter(R::ExpiresAt.lte(crate::models::now()))
        .order_by_asc(R::ExpiresAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let deleted = revoked_token::Entity::delete_many()
        .filter(R::Id.is_in(expired))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// The account a token was issued to, whether the token was revoked, and the account's write
/// position (see `db::replicas`; `None` when it never wrote since replicas came in).
#[derive(Debug, Clone)]
pub struct Holder {
    pub user: user_account::Model,
    pub revoked: bool,
    pub write_lsn: Option<i64>,
}

impl FromQueryResult for Holder {
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Holder {
            user: user_account::Model::from_query_result(row, pre)?,
            revoked: row.try_get(pre, "revoked")?,
            write_lsn: row.try_get(pre, "write_lsn")?,
        })
    }
}

/// The token's account with whether the token is revoked, in one query; `None` when the
/// account is gone.
pub async fn holder<C: ConnectionTrait>(db: &C, claims: &Claims) -> Result<Option<Holder>, DbErr> {
    holder_query(claims).into_model::<Holder>().one(db).await
}

/// [`holder`]'s query: the account by key, with `EXISTS` on the revocation's key and the
/// account's write position by key (a subquery, so choosing a read replica costs no round
/// trip of its own).
pub fn holder_query(claims: &Claims) -> Select<user_account::Entity> {
    let revoked = Query::select()
        .expr(Expr::val(1))
        .from(revoked_token::Entity)
        .and_where(Expr::col((revoked_token::Entity, revoked_token::Column::Id)).eq(claims.jti))
        .to_owned();
    let write_lsn = Query::select()
        .column((write_position::Entity, write_position::Column::Lsn))
        .from(write_position::Entity)
        .and_where(Expr::col((write_position::Entity, write_position::Column::Id)).eq(claims.sub))
        .to_owned();
    user_account::Entity::find_by_id(claims.sub)
        .expr_as(Expr::exists(revoked), "revoked")
        .expr_as(
            Expr::SubQuery(None, Box::new(write_lsn.into())),
            "write_lsn",
        )
}
