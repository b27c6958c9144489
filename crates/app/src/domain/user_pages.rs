//! Keyset pages of the account list (oldest first): each page is one range of the
//! `(created_at, id)` index, starting after the last account of the previous page.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::models::user_account;

/// Where a page of accounts stopped, for the search it was made with. Handed out sealed
/// ([`super::cursor::Cursors`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPosition {
    /// A digest of the search, trimmed (so a long search keeps the cursor short).
    #[serde(rename = "q")]
    search: String,
    #[serde(rename = "t")]
    created_at: DateTime<Utc>,
    #[serde(rename = "i")]
    id: Uuid,
}

/// A digest of the search as lists compare it: trimmed, empty for none.
fn search_key(search: Option<&str>) -> String {
    let search = search.map(str::trim).unwrap_or_default();
    hex::encode(&Sha256::digest(search.as_bytes())[..8])
}

impl UserPosition {
    /// The place of `account` in the list of accounts matching `search`.
    pub fn of(account: &user_account::Model, search: Option<&str>) -> Self {
        UserPosition {
            search: search_key(search),
            created_at: account.created_at,
            id: account.id,
        }
    }

    /// Whether the position belongs to the list of `search`: in another, it would skip or
    /// repeat accounts.
    pub fn fits(&self, search: Option<&str>) -> bool {
        self.search == search_key(search)
    }

    /// The accounts after this one: `(created_at, id) > (t, i)`, a range of the index.
    pub fn after(&self) -> SimpleExpr {
        let column = |c: user_account::Column| Expr::col((user_account::Entity, c));
        Expr::tuple([
            column(user_account::Column::CreatedAt),
            column(user_account::Column::Id),
        ])
        .gt(Expr::tuple([
            Expr::val(self.created_at),
            Expr::val(self.id),
        ]))
    }
}
