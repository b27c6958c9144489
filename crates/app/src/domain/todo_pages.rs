//! Keyset pages of a user's todos: each page starts where the last one stopped, found through
//! the index of its sort, so a page costs the same at any depth.
//!
//! A list's order is the sort key then the id, both in the sort's direction. It is read in
//! parts, each one index range on `(user_id, key, id)`:
//! - `created_at`, `updated_at`, `item`: one part, the whole list;
//! - `start_time`, `end_time`: the todos with the time, then those without (NULLs last in both
//!   directions), ordered by id; a row-value comparison `(key, id) > (k, i)` never matches a
//!   NULL key, hence two parts rather than one condition with an OR no index can serve;
//! - `importance`: one part per rank (`none`, `low`, `medium`, `high`, reversed for `desc`),
//!   each ordered by id: the rank is not the stored text's order, and four equality ranges of
//!   `(user_id, importance, id)` keep to the index where a CASE expression could not.
//!
//! A page reads the parts from the cursor's on, one statement each, until it has its rows. The
//! ORDER BY of each part names the index's columns in the index's own direction (no NULLS
//! clause, no expression), so PostgreSQL walks the index forward or backward and stops after
//! the page; `tests/it/list_plans.rs` checks it with EXPLAIN.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::todos::{SortField, SortOrder, TodoQuery};
use crate::models::todo::{self, Importance};

/// Where a page of todos stopped: the last row's place in the order of one list (its sort,
/// direction and filters). Handed out sealed ([`super::cursor::Cursors`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    #[serde(rename = "s")]
    sort: SortField,
    #[serde(rename = "o")]
    order: SortOrder,
    /// [`fingerprint`] of the filters the list was made with.
    #[serde(rename = "f")]
    filters: String,
    /// The index of the last row's part in [`parts`].
    #[serde(rename = "p")]
    part: u8,
    /// The last row's sort key, in the parts ordered by it.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    key: Option<Key>,
    #[serde(rename = "i")]
    id: Uuid,
}

/// A sort key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Key {
    #[serde(rename = "t")]
    Time(DateTime<Utc>),
    #[serde(rename = "s")]
    Text(String),
}

/// One index range of a list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Every todo, by key: the key is never NULL.
    All,
    /// The todos whose key is set, by key.
    Known,
    /// The todos without the key, by id.
    Unknown,
    /// The todos of one importance, by id.
    Rank(Importance),
}

impl Part {
    fn ordered_by_key(self) -> bool {
        matches!(self, Part::All | Part::Known)
    }

    fn filter(self, column: todo::Column) -> Condition {
        match self {
            Part::All => Condition::all(),
            Part::Known => Condition::all().add(column.is_not_null()),
            Part::Unknown => Condition::all().add(column.is_null()),
            Part::Rank(importance) => Condition::all().add(todo::Column::Importance.eq(importance)),
        }
    }
}

/// The parts of a list's order, first to last.
fn parts(sort: SortField, order: SortOrder) -> Vec<Part> {
    match sort {
        SortField::CreatedAt | SortField::UpdatedAt | SortField::Item => vec![Part::All],
        SortField::StartTime | SortField::EndTime => vec![Part::Known, Part::Unknown],
        SortField::Importance => {
            let mut ranks = vec![
                Part::Rank(Importance::None),
                Part::Rank(Importance::Low),
                Part::Rank(Importance::Medium),
                Part::Rank(Importance::High),
            ];
            if order == SortOrder::Desc {
                ranks.reverse();
            }
            ranks
        }
    }
}

/// The column a sort orders by (for `importance`, the one each part is an equality on).
pub fn sort_column(sort: SortField) -> todo::Column {
    match sort {
        SortField::CreatedAt => todo::Column::CreatedAt,
        SortField::UpdatedAt => todo::Column::UpdatedAt,
        SortField::Item => todo::Column::Item,
        SortField::StartTime => todo::Column::StartTime,
        SortField::EndTime => todo::Column::EndTime,
        SortField::Importance => todo::Column::Importance,
    }
}

fn direction(order: SortOrder) -> Order {
    match order {
        SortOrder::Asc => Order::Asc,
        SortOrder::Desc => Order::Desc,
    }
}

/// A digest of the filters of `query` (normalized), so that a cursor is refused by a list
/// with other filters: its position would skip or repeat rows there.
pub fn fingerprint(query: &TodoQuery) -> String {
    let search = query.search.as_deref().filter(|s| !s.is_empty());
    let tag = query.tag.as_deref().map(str::trim);
    let filters = format!(
        "{search:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{tag:?}",
        query.start_time_from,
        query.start_time_to,
        query.end_time_from,
        query.end_time_to,
        query.created_before,
        query.created_after,
        query.updated_before,
        query.updated_after,
        query.importance,
    );
    hex::encode(&Sha256::digest(filters.as_bytes())[..8])
}

/// Why `position` cannot continue the list `query` asks for, if it cannot.
pub fn mismatch(position: &Position, query: &TodoQuery) -> Option<String> {
    if position.sort != query.sort || position.order != query.order {
        return Some(
            "was made for another sort or order; send the same sort and order as the first page, or start again without cursor"
                .into(),
        );
    }
    if position.filters != fingerprint(&query.clone().normalized()) {
        return Some(
            "was made for other filters; send the same filters as the first page, or start again without cursor"
                .into(),
        );
    }
    let part = parts(query.sort, query.order)
        .get(usize::from(position.part))
        .copied();
    let key_fits = match (part, &position.key) {
        (Some(part), key) if !part.ordered_by_key() => key.is_none(),
        (Some(_), Some(Key::Text(_))) => query.sort == SortField::Item,
        (Some(_), Some(Key::Time(_))) => query.sort != SortField::Item,
        _ => false,
    };
    (!key_fits).then(|| "does not fit this list; start again without cursor".into())
}

/// The position of `row` in the list `query` asks for.
pub fn position_of(query: &TodoQuery, row: &todo::Model) -> Position {
    let key = match query.sort {
        SortField::CreatedAt => Some(Key::Time(row.created_at)),
        SortField::UpdatedAt => Some(Key::Time(row.updated_at)),
        SortField::Item => Some(Key::Text(row.item.clone())),
        SortField::StartTime => row.start_time.map(Key::Time),
        SortField::EndTime => row.end_time.map(Key::Time),
        SortField::Importance => None,
    };
    let part = match query.sort {
        SortField::StartTime | SortField::EndTime if key.is_none() => Part::Unknown,
        SortField::StartTime | SortField::EndTime => Part::Known,
        SortField::Importance => Part::Rank(row.importance),
        _ => Part::All,
    };
    let index = parts(query.sort, query.order)
        .iter()
        .position(|p| *p == part)
        .unwrap_or(0);
    Position {
        sort: query.sort,
        order: query.order,
        filters: fingerprint(&query.clone().normalized()),
        part: u8::try_from(index).unwrap_or(0),
        key: if part.ordered_by_key() { key } else { None },
        id: row.id,
    }
}

/// The rows of `part` that come after `position` in its order.
fn after(part: Part, column: todo::Column, order: SortOrder, position: &Position) -> SimpleExpr {
    let id = Expr::col((todo::Entity, todo::Column::Id));
    let past = |left: Expr, right: Expr| match order {
        SortOrder::Asc => left.gt(right),
        SortOrder::Desc => left.lt(right),
    };
    match (&position.key, part.ordered_by_key()) {
        (Some(key), true) => {
            let key = match key {
                Key::Time(time) => Expr::val(*time),
                Key::Text(text) => Expr::val(text.clone()),
            };
            past(
                Expr::tuple([Expr::col((todo::Entity, column)), id]),
                Expr::tuple([key, Expr::val(position.id)]),
            )
        }
        _ => past(id, Expr::val(position.id)),
    }
}

/// Up to `count` todos matching `filter` in the order of `query`, from the start or after
/// `position` ([`mismatch`] must have found nothing wrong with it): one statement per part
/// read, stopping as soon as there are `count`.
pub async fn rows_after(
    db: &impl ConnectionTrait,
    filter: Condition,
    query: &TodoQuery,
    position: Option<&Position>,
    count: u64,
) -> Result<Vec<todo::Model>, DbErr> {
    let column = sort_column(query.sort);
    let order = direction(query.order);
    let first = position.map_or(0, |p| usize::from(p.part));
    let mut rows: Vec<todo::Model> = Vec::new();
    for (index, part) in parts(query.sort, query.order)
        .into_iter()
        .enumerate()
        .skip(first)
    {
        let mut condition = filter.clone();
        if part != Part::All {
            condition = condition.add(part.filter(column));
        }
        if let Some(position) = position.filter(|p| usize::from(p.part) == index) {
            condition = condition.add(after(part, column, query.order, position));
        }
        let missing = count - rows.len() as u64;
        let batch = todo::Entity::find()
            .filter(condition)
            .order_by(column, order.clone())
            .order_by(todo::Column::Id, order.clone())
            .limit(missing)
            .all(db)
            .await?;
        rows.extend(batch);
        if rows.len() as u64 >= count {
            break;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_parts_follow_the_rank() {
        assert_eq!(
            parts(SortField::Importance, SortOrder::Desc),
            [
                Part::Rank(Importance::High),
                Part::Rank(Importance::Medium),
                Part::Rank(Importance::Low),
                Part::Rank(Importance::None)
            ]
        );
        assert_eq!(
            parts(SortField::StartTime, SortOrder::Desc),
            [Part::Known, Part::Unknown],
            "NULLs last in both directions"
        );
    }

    #[test]
    fn filters_tell_lists_apart() {
        let plain = TodoQuery::default();
        let tagged = TodoQuery {
            tag: Some("home".into()),
            ..TodoQuery::default()
        };
        let empty_search = TodoQuery {
            search: Some(String::new()),
            limit: 5,
            ..TodoQuery::default()
        };
        assert_ne!(fingerprint(&plain), fingerprint(&tagged));
        assert_eq!(fingerprint(&plain), fingerprint(&empty_search));
    }
}
