//! Tags: labels a user puts on their own todos. Names are unique per user (the unique key
//! `(user_id, name)` decides, so two requests racing for the same name cannot both win), and
//! deleting a tag detaches it from every todo through the foreign key's cascade.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    FromQueryResult, Iterable, QueryFilter, QuerySelect, SqlErr,
};
use uuid::Uuid;

use super::paging::EXACT_TOTAL_UP_TO;
use crate::models::{tag, user_account_todo_tag};

/// Longest tag name accepted, in characters (the column's length).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest color accepted, in characters (the column's length).
pub const MAX_COLOR_CHARS: usize = 100;

/// The message for text holding the NUL character (U+0000), which no text field accepts:
/// PostgreSQL cannot store it in a text column and SQLite would, so both refuse it.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Most values bound in one `IN (...)` list; a longer list is split over several statements.
///
/// PostgreSQL takes 65,535 bound values in a statement, the SQLite that sqlx bundles 32,766
/// (999 before SQLite 3.32). Staying far below both, no input, however long, can make a
/// statement that either database refuses.
pub(crate) const MAX_IN_VALUES: usize = 500;
/// Most values bound in one multi-row INSERT, for the same reason.
const MAX_INSERT_VALUES: usize = 900;

/// How many rows of `E` one INSERT takes: [`MAX_INSERT_VALUES`] over its number of columns.
pub(crate) fn rows_per_insert<E: EntityTrait>() -> usize {
    (MAX_INSERT_VALUES / E::Column::iter().count().max(1)).max(1)
}

/// Why a tag operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// Each broken rule as `(field, message)`, the field spelled as clients write it.
    #[error("{}", describe(.0))]
    Invalid(Vec<(String, String)>),
    #[error("you already have a tag named {0:?}")]
    Duplicate(String),
    /// Unknown, or another user's (the two are not told apart).
    #[error("tag {0} not found")]
    NotFound(Uuid),
    #[error("{}", crate::db::describe(.0))]
    Db(#[from] DbErr),
}

pub(crate) fn describe(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A tag with the number of todos carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSummary {
    pub id: Uuid,
    pub name: String,
    pub color: Option<String>,
    /// Exact when `todo_count_is_exact`; otherwise [`EXACT_TOTAL_UP_TO`], and there are more.
    pub todo_count: u64,
    pub todo_count_is_exact: bool,
}

#[derive(Debug, FromQueryResult)]
struct TagCountRow {
    id: Uuid,
    name: String,
    color: Option<String>,
    beyond: bool,
    todo_count: i64,
}

/// Checks one tag name as given (it is trimmed first); `None` when it is fine.
pub fn check_name(name: &str) -> Option<String> {
    let chars = name.trim().chars().count();
    if name.contains('\0') {
        Some(NUL_MESSAGE.into())
    } else if chars == 0 {
        Some("must not be empty".into())
    } else if chars > MAX_NAME_CHARS {
        Some(format!(
            "must be at most {MAX_NAME_CHARS} characters (got {chars})"
        ))
    } else {
        None
    }
}

/// The user's tags by name (byte order), each with the number of its todos, counted only up
/// to [`EXACT_TOTAL_UP_TO`]: one query, whatever the number of tags. For each tag, an EXISTS
/// that skips [`EXACT_TOTAL_UP_TO`] links of the tag (through the `tag_id` index) tells whether
/// there are more; only when there are not are its links counted, so a tag on a million todos
/// costs what one on a thousand does.
#[tracing::instrument(skip(db))]
pub async fn list(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<TagSummary>, TagError> {
    use user_account_todo_tag as link;
    let of_this_tag =
        Expr::col((link::Entity, link::Column::TagId)).equals((tag::Entity, tag::Column::Id));
    let past_the_bound = Query::select()
        .expr(Expr::value(1))
        .from(link::Entity)
        .and_where(of_this_tag.clone())
        .limit(1)
        .offset(EXACT_TOTAL_UP_TO)
        .to_owned();
    let count = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(link::Entity)
        .and_where(of_this_tag)
        .to_owned();
    let beyond = Expr::exists(past_the_bound);
    let todo_count: Expr = Expr::case(beyond.clone(), EXACT_TOTAL_UP_TO as i64)
        .finally(Expr::from(count))
        .into();
    let rows = tag::Entity::find()
        .select_only()
        .column(tag::Column::Id)
        .column(tag::Column::Name)
        .column(tag::Column::Color)
        .column_as(beyond.clone(), "beyond")
        .column_as(todo_count, "todo_count")
        .filter(tag::Column::UserId.eq(user_id))
        .into_model::<TagCountRow>()
        .all(db)
        .await?;
    let mut tags: Vec<TagSummary> = rows
        .into_iter()
        .map(|row| TagSummary {
            id: row.id,
            name: row.name,
            color: row.color,
            todo_count: u64::try_from(row.todo_count).unwrap_or(0),
            todo_count_is_exact: !row.beyond,
        })
        .collect();
    // Sorted here rather than in SQL, so the order is the same on both databases whatever
    // PostgreSQL's collation.
    tags.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(tags)
}

/// Makes a tag for the user. The name is trimmed; a name the user already has is
/// [`TagError::Duplicate`], decided by the unique key so that concurrent requests agree.
#[tracing::instrument(skip(db))]
pub async fn create(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    name: &str,
    color: Option<&str>,
) -> Result<tag::Model, TagError> {
    let name = name.trim();
    let mut problems = Vec::new();
    if let Some(message) = check_name(name) {
        problems.push(("name".to_string(), message));
    }
    if let Some(color) = color {
        let chars = color.chars().count();
        if color.contains('\0') {
            problems.push(("color".to_string(), NUL_MESSAGE.to_string()));
        } else if chars > MAX_COLOR_CHARS {
            problems.push((
                "color".to_string(),
                format!("must be at most {MAX_COLOR_CHARS} characters (got {chars})"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(TagError::Invalid(problems));
    }
    let mut row = tag::ActiveModel::new();
    row.name = Set(name.to_string());
    row.color = Set(color.map(str::to_string));
    row.user_id = Set(user_id);
    row.insert(db).await.map_err(|err| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => TagError::Duplicate(name.to_string()),
        _ => TagError::Db(err),
    })
}

/// Deletes one of the user's tags; the todos carrying it lose it (ON DELETE CASCADE on the
/// link table) and stay.
#[tracing::instrument(skip(db))]
pub async fn delete(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    tag_id: Uuid,
) -> Result<(), TagError> {
    let result = tag::Entity::delete_many()
        .filter(tag::Column::Id.eq(tag_id))
        .filter(tag::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(TagError::NotFound(tag_id));
    }
    Ok(())
}

/// The user's tags with these names, making the missing ones (without a color); in the order
/// of first mention, names trimmed and duplicates dropped. Two statements (an INSERT ... ON
/// CONFLICT DO NOTHING, then a SELECT) for up to 150 names, more for more (each statement
/// binds a bounded number of values), none for no names.
///
/// Run it inside the caller's transaction. The names must already be valid ([`check_name`]).
pub async fn ensure_tags(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    names: &[String],
) -> Result<Vec<tag::Model>, DbErr> {
    let names = unique_trimmed(names);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let now = crate::models::now();
    // Inserted in name order, whatever the order given: writers of one user run side by side,
    // and two making the same new tags in opposite orders would each wait for the other's.
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    for batch in sorted.chunks(rows_per_insert::<tag::Entity>()) {
        let rows = batch.iter().map(|name| {
            let mut row = tag::ActiveModel::new();
            row.name = Set((*name).clone());
            row.color = Set(None);
            row.user_id = Set(user_id);
            row.created_at = Set(now);
            row.updated_at = Set(now);
            row
        });
        tag::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([tag::Column::UserId, tag::Column::Name])
                    .do_nothing()
                    .to_owned(),
            )
            .try_insert()
            .exec_without_returning(txn)
            .await?;
    }
    let mut found = Vec::with_capacity(names.len());
    for batch in names.chunks(MAX_IN_VALUES) {
        found.extend(
            tag::Entity::find()
                .filter(tag::Column::UserId.eq(user_id))
                .filter(tag::Column::Name.is_in(batch.iter().cloned()))
                .all(txn)
                .await?,
        );
    }
    let position: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    found.sort_by_key(|tag| position.get(tag.name.as_str()).copied());
    Ok(found)
}

/// Trimmed names without repeats, in the order first given.
pub(crate) fn unique_trimmed(names: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|name| name.trim().to_string())
        .filter(|name| seen.insert(name.clone()))
        .collect()
}
