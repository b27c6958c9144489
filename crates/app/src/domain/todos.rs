//! Todos: a user's items with optional times, an importance and tags.
//!
//! A user sees and changes only their own todos; another user's id is [`TodoError::NotFound`],
//! as an unknown one is. Every check of the input runs before anything is written and all
//! broken rules are reported together. A todo with both `start_time` and `end_time` occupies
//! the half-open range `[start_time, end_time)`, and no two todos of the same user may occupy
//! overlapping ranges; todos without a full range never conflict.
//!
//! Writes run in one transaction each. Two requests racing for the same hour cannot both
//! succeed: PostgreSQL refuses the second with an exclusion constraint, and no writer of a
//! user waits for another whose range it does not meet; SQLite runs one writer at a time
//! (`BEGIN IMMEDIATE`) with the overlap check inside it. See [`super::todo_overlap`].
//!
//! Times are compared in SQL on both databases. On SQLite they are stored as RFC 3339 text in
//! UTC with 0, 3, 6 or 9 fraction digits (sqlx's encoding); that text sorts as the instants do
//! (`+` sorts before `.` and the digits), so range filters and ordering work on the text.
//! Every time that comes in, stored or filtered on, is first made what PostgreSQL keeps
//! ([`normalize_time`]: whole microseconds, no leap second), so both databases store, compare
//! and answer the same instants.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, TimeDelta, Timelike, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, NullOrdering, OnConflict, Query};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::paging::{self, Total};
use super::tags::{self, MAX_IN_VALUES, NUL_MESSAGE, rows_per_insert};
use super::todo_pages::{self, Position};
use super::{search, todo_overlap};
use crate::models::todo::{self, Importance};
use crate::models::{tag, user_account_todo_tag};

/// Longest item accepted, in characters after trimming (the column's length).
pub const MAX_ITEM_CHARS: usize = 100;
/// Longest description accepted, in characters (the column's length).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u64 = 20;
/// Largest page size accepted.
pub const MAX_LIMIT: u64 = 100;
/// At most this many conflicting ids are named in an [`TodoError::Overlap`].
pub const MAX_CONFLICTS_NAMED: u64 = 100;
/// Most tag names one todo takes (as given, repeats included); more are refused, naming `tags`.
pub const MAX_TAGS: usize = 50;

/// Why a todo operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TodoError {
    /// Unknown, or another user's (the two are not told apart).
    #[error("todo {0} not found")]
    NotFound(Uuid),
    /// The time range overlaps these todos of the same user (none named when every look
    /// found the todos in the way already gone: they were changing at that very moment).
    #[error("{}", overlap_detail(.0))]
    Overlap(Vec<Uuid>),
    /// Each broken rule as `(field, message)`, the field spelled as clients write it.
    #[error("{}", tags::describe(.0))]
    Invalid(Vec<(String, String)>),
    #[error("{}", crate::db::describe(.0))]
    Db(#[from] DbErr),
}

fn overlap_detail(ids: &[Uuid]) -> String {
    if ids.is_empty() {
        "the time range overlapped todos of yours that were changing at the same moment; try again"
            .to_string()
    } else {
        format!(
            "the time range overlaps your todo(s) {}; move it or change those first",
            join_ids(ids)
        )
    }
}

fn join_ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a user gives to make a todo.
#[derive(Debug, Clone, Default)]
pub struct NewTodo {
    /// Trimmed; 1 to [`MAX_ITEM_CHARS`] characters.
    pub item: String,
    /// Up to [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: Option<String>,
    pub alarm_time: Option<DateTime<Utc>>,
    /// Must be before `end_time` when both are given.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub importance: Importance,
    /// Names of the user's tags, made as needed; trimmed, repeats dropped.
    pub tags: Vec<String>,
}

/// Changes to a todo; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct TodoPatch {
    pub item: Option<String>,
    pub description: Option<Option<String>>,
    pub alarm_time: Option<Option<DateTime<Utc>>>,
    pub start_time: Option<Option<DateTime<Utc>>>,
    pub end_time: Option<Option<DateTime<Utc>>>,
    pub importance: Option<Importance>,
    /// Replaces the whole set of tags.
    pub tags: Option<Vec<String>>,
}

/// A todo with its tags, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoWithTags {
    pub todo: todo::Model,
    pub tags: Vec<tag::Model>,
}

/// What a list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SortField {
    #[default]
    CreatedAt,
    UpdatedAt,
    Item,
    StartTime,
    EndTime,
    /// By rank (none < low < medium < high), not by the stored text.
    Importance,
}

impl SortField {
    /// Every field, as clients name it.
    pub const NAMES: [&'static str; 6] = [
        "created_at",
        "updated_at",
        "item",
        "start_time",
        "end_time",
        "importance",
    ];

    /// Reads a field in snake_case (`start_time`) or camelCase (`startTime`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "created_at" | "createdAt" => Ok(SortField::CreatedAt),
            "updated_at" | "updatedAt" => Ok(SortField::UpdatedAt),
            "item" => Ok(SortField::Item),
            "start_time" | "startTime" => Ok(SortField::StartTime),
            "end_time" | "endTime" => Ok(SortField::EndTime),
            "importance" => Ok(SortField::Importance),
            other => Err(format!(
                "cannot sort by {other:?}; use one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

impl SortOrder {
    /// Reads `asc` or `desc` (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            _ => Err(format!("must be asc or desc, not {text:?}")),
        }
    }

    fn order(self) -> Order {
        match self {
            SortOrder::Asc => Order::Asc,
            SortOrder::Desc => Order::Desc,
        }
    }
}

/// One page of a user's todos: filters, sort and window.
///
/// `*_from` bounds are inclusive, `*_to` bounds inclusive, `*_before` and `*_after` strict.
/// A time filter on `start_time` or `end_time` leaves out todos without that time.
#[derive(Debug, Clone)]
pub struct TodoQuery {
    /// 1 to [`MAX_LIMIT`].
    pub limit: u64,
    /// Todos to skip; 0 with `after`.
    pub offset: u64,
    /// Continue after this position (a [`TodoList::next`] of the same sort and filters).
    pub after: Option<Position>,
    /// Case-insensitive substring of `item`.
    pub search: Option<String>,
    pub start_time_from: Option<DateTime<Utc>>,
    pub start_time_to: Option<DateTime<Utc>>,
    pub end_time_from: Option<DateTime<Utc>>,
    pub end_time_to: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub created_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub importance: Option<Importance>,
    /// The name of one of the user's tags.
    pub tag: Option<String>,
    pub sort: SortField,
    pub order: SortOrder,
}

impl Default for TodoQuery {
    fn default() -> Self {
        TodoQuery {
            limit: DEFAULT_LIMIT,
            offset: 0,
            after: None,
            search: None,
            start_time_from: None,
            start_time_to: None,
            end_time_from: None,
            end_time_to: None,
            created_before: None,
            created_after: None,
            updated_before: None,
            updated_after: None,
            importance: None,
            tag: None,
            sort: SortField::default(),
            order: SortOrder::default(),
        }
    }
}

/// A time as both databases keep it: truncated to whole microseconds (PostgreSQL keeps no
/// finer; SQLite would keep the nanoseconds), and a leap second (`23:59:60.25`, which chrono
/// reads as a second 59 longer than a second) read as PostgreSQL reads it, as the first second
/// of the next minute (`00:00:00.25`).
pub fn normalize_time(time: DateTime<Utc>) -> DateTime<Utc> {
    const SECOND: u32 = 1_000_000_000;
    let nanos = time.nanosecond();
    let time = if nanos >= SECOND {
        time.with_nanosecond(nanos - SECOND)
            .and_then(|time| time.checked_add_signed(TimeDelta::seconds(1)))
            .unwrap_or(time)
    } else {
        time
    };
    time.trunc_subsecs(6)
}

fn normalize_each(time: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    time.map(normalize_time)
}

fn normalize_change(time: Option<Option<DateTime<Utc>>>) -> Option<Option<DateTime<Utc>>> {
    time.map(normalize_each)
}

impl NewTodo {
    /// The same todo with its times normalized ([`normalize_time`]).
    pub fn normalized(mut self) -> Self {
        self.alarm_time = normalize_each(self.alarm_time);
        self.start_time = normalize_each(self.start_time);
        self.end_time = normalize_each(self.end_time);
        self
    }
}

impl TodoPatch {
    /// The same patch with its times normalized ([`normalize_time`]).
    pub fn normalized(mut self) -> Self {
        self.alarm_time = normalize_change(self.alarm_time);
        self.start_time = normalize_change(self.start_time);
        self.end_time = normalize_change(self.end_time);
        self
    }
}

impl TodoQuery {
    /// The same query with its time bounds normalized ([`normalize_time`]).
    pub fn normalized(mut self) -> Self {
        for bound in [
            &mut self.start_time_from,
            &mut self.start_time_to,
            &mut self.end_time_from,
            &mut self.end_time_to,
            &mut self.created_before,
            &mut self.created_after,
            &mut self.updated_before,
            &mut self.updated_after,
        ] {
            *bound = normalize_each(*bound);
        }
        self
    }
}

type Problems = Vec<(String, String)>;

fn problem(problems: &mut Problems, field: &str, message: impl Into<String>) {
    problems.push((field.to_string(), message.into()));
}

fn check_item(item: &str, problems: &mut Problems) {
    let chars = item.trim().chars().count();
    if item.contains('\0') {
        problem(problems, "item", NUL_MESSAGE);
    } else if chars == 0 {
        problem(problems, "item", "must not be empty");
    } else if chars > MAX_ITEM_CHARS {
        problem(
            problems,
            "item",
            format!("must be at most {MAX_ITEM_CHARS} characters (got {chars})"),
        );
    }
}

fn check_description(description: Option<&str>, problems: &mut Problems) {
    let chars = description.map_or(0, |d| d.chars().count());
    if description.is_some_and(|d| d.contains('\0')) {
        problem(problems, "description", NUL_MESSAGE);
    } else if chars > MAX_DESCRIPTION_CHARS {
        problem(
            problems,
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters (got {chars})"),
        );
    }
}

/// Compares the times as they will be stored ([`normalize_time`]).
fn check_range(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, problems: &mut Problems) {
    if let (Some(start), Some(end)) = (normalize_each(start), normalize_each(end))
        && start >= end
    {
        problem(
            problems,
            "startTime",
            format!(
                "must be before endTime ({} is not before {})",
                start.to_rfc3339(),
                end.to_rfc3339()
            ),
        );
    }
}

fn check_tags(names: &[String], problems: &mut Problems) {
    if names.len() > MAX_TAGS {
        // Each name is not checked too: the answer stays short whatever the list's length.
        problem(
            problems,
            "tags",
            format!("must have at most {MAX_TAGS} names (got {})", names.len()),
        );
        return;
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(message) = tags::check_name(name) {
            problem(problems, &format!("tags[{i}]"), message);
        }
    }
}

/// Every rule a new todo breaks (empty when none).
pub fn check_new(new: &NewTodo) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    check_item(&new.item, &mut problems);
    check_description(new.description.as_deref(), &mut problems);
    check_range(new.start_time, new.end_time, &mut problems);
    check_tags(&new.tags, &mut problems);
    problems
}

/// Every rule the fields of a patch break on their own; the time range of the merged todo is
/// checked by [`update`].
pub fn check_patch(patch: &TodoPatch) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if let Some(item) = &patch.item {
        check_item(item, &mut problems);
    }
    if let Some(description) = &patch.description {
        check_description(description.as_deref(), &mut problems);
    }
    if let (Some(start), Some(end)) = (patch.start_time, patch.end_time) {
        check_range(start, end, &mut problems);
    }
    if let Some(names) = &patch.tags {
        check_tags(names, &mut problems);
    }
    problems
}

/// Every rule a list query breaks.
pub fn check_query(query: &TodoQuery) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if !(1..=MAX_LIMIT).contains(&query.limit) {
        problem(
            &mut problems,
            "limit",
            format!("must be between 1 and {MAX_LIMIT} (got {})", query.limit),
        );
    }
    if i64::try_from(query.offset).is_err() {
        problem(
            &mut problems,
            "offset",
            format!("must be at most {}", i64::MAX),
        );
    }
    if query.search.as_deref().is_some_and(|s| s.contains('\0')) {
        problem(&mut problems, "search", NUL_MESSAGE);
    }
    if query.tag.as_deref().is_some_and(|s| s.contains('\0')) {
        problem(&mut problems, "tag", NUL_MESSAGE);
    }
    if let Some(position) = &query.after {
        if query.offset != 0 {
            problem(
                &mut problems,
                "offset",
                "cannot be combined with cursor: the cursor says where the page starts",
            );
        }
        if let Some(message) = todo_pages::mismatch(position, query) {
            problem(&mut problems, "cursor", message);
        }
    }
    problems
}

/// Makes a todo for the user in one transaction: checks it, refuses an overlapping time
/// range, makes the missing tags and links them. `created_time` is now.
#[tracing::instrument(skip(db, new), fields(item = %new.item))]
pub async fn create(
    db: &crate::db::DbConn,
    user_id: Uuid,
    new: NewTodo,
) -> Result<TodoWithTags, TodoError> {
    let new = new.normalized();
    let problems = check_new(&new);
    if !problems.is_empty() {
        return Err(TodoError::Invalid(problems));
    }
    for _ in 0..todo_overlap::ATTEMPTS {
        if let Some(done) = create_once(db, user_id, &new).await? {
            return Ok(done);
        }
    }
    // Each attempt met todos that were gone by the time they were looked up: a conflict all
    // the same, with nothing left to name.
    Err(TodoError::Overlap(Vec::new()))
}

/// One transaction of [`create`]; `None` when the database refused an overlap that was gone
/// when looked up (see [`todo_overlap::refusal`]).
async fn create_once(
    db: &crate::db::DbConn,
    user_id: Uuid,
    new: &NewTodo,
) -> Result<Option<TodoWithTags>, TodoError> {
    let range = full_range(new.start_time, new.end_time);
    let txn = crate::db::begin_write(db).await?;
    if !todo_overlap::enforced_by_database(&txn)
        && let Some((start, end)) = range
    {
        let conflicts = overlapping(&txn, user_id, start, end, None).await?;
        if !conflicts.is_empty() {
            return Err(TodoError::Overlap(conflicts));
        }
    }
    let now = crate::models::now();
    let mut row = todo::ActiveModel::new();
    row.item = Set(new.item.trim().to_string());
    row.description = Set(new.description.clone());
    row.created_time = Set(now);
    row.alarm_time = Set(new.alarm_time);
    row.start_time = Set(new.start_time);
    row.end_time = Set(new.end_time);
    row.importance = Set(new.importance);
    row.user_id = Set(user_id);
    row.created_at = Set(now);
    let todo = match row.insert(&txn).await {
        Ok(todo) => todo,
        Err(err) => {
            // The failed statement ended the transaction; its connection goes back first.
            let _ = txn.rollback().await;
            todo_overlap::refusal(db, err, user_id, range, None).await?;
            return Ok(None);
        }
    };
    let mut tags = tags::ensure_tags(&txn, user_id, &new.tags).await?;
    insert_links(&txn, todo.id, &tags).await?;
    txn.commit().await?;
    sort_tags(&mut tags);
    Ok(Some(TodoWithTags { todo, tags }))
}

/// `(start, end)` when the todo has both, the only todos that can overlap.
fn full_range(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    start.zip(end)
}

/// One of the user's todos with its tags (two statements).
#[tracing::instrument(skip(db))]
pub async fn get(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> Result<TodoWithTags, TodoError> {
    let todo = find_own(db, user_id, id).await?;
    let tags = tags_of(db, &[id]).await?.remove(&id).unwrap_or_default();
    Ok(TodoWithTags { todo, tags })
}

/// Changes one of the user's todos in one transaction. The checks of [`create`] apply to the
/// todo as it will be; the overlap check runs when the patch touches a time and leaves the
/// todo itself out, so moving a todo within its own range is no conflict.
#[tracing::instrument(skip(db, patch))]
pub async fn update(
    db: &crate::db::DbConn,
    user_id: Uuid,
    id: Uuid,
    patch: TodoPatch,
) -> Result<TodoWithTags, TodoError> {
    let patch = patch.normalized();
    for _ in 0..todo_overlap::ATTEMPTS {
        if let Some(done) = update_once(db, user_id, id, &patch).await? {
            return Ok(done);
        }
    }
    Err(TodoError::Overlap(Vec::new()))
}

/// One transaction of [`update`], as [`create_once`] is of [`create`].
async fn update_once(
    db: &crate::db::DbConn,
    user_id: Uuid,
    id: Uuid,
    patch: &TodoPatch,
) -> Result<Option<TodoWithTags>, TodoError> {
    let txn = crate::db::begin_write(db).await?;
    let enforced = todo_overlap::enforced_by_database(&txn);
    // On PostgreSQL the todo's own row is locked as it is read (the UPDATE below would lock it
    // anyway), so two patches of one todo apply one after the other and neither merges the
    // times it reads with a stale copy of the other's. Other todos of the user do not wait.
    let current = find_own_for_update(&txn, user_id, id, enforced).await?;
    let problems = problems_of_update(&current, patch);
    if !problems.is_empty() {
        return Err(TodoError::Invalid(problems));
    }
    let start = patch.start_time.unwrap_or(current.start_time);
    let end = patch.end_time.unwrap_or(current.end_time);
    let times_touched = patch.start_time.is_some() || patch.end_time.is_some();
    let range = full_range(start, end).filter(|_| times_touched);
    if !enforced && let Some((start, end)) = range {
        let conflicts = overlapping(&txn, user_id, start, end, Some(id)).await?;
        if !conflicts.is_empty() {
            return Err(TodoError::Overlap(conflicts));
        }
    }
    let mut row = current.into_active_model();
    if let Some(item) = &patch.item {
        row.item = Set(item.trim().to_string());
    }
    if let Some(description) = &patch.description {
        row.description = Set(description.clone());
    }
    if let Some(alarm_time) = patch.alarm_time {
        row.alarm_time = Set(alarm_time);
    }
    row.start_time = Set(start);
    row.end_time = Set(end);
    if let Some(importance) = patch.importance {
        row.importance = Set(importance);
    }
    // Always saved, so `updated_at` moves even when only the tags change.
    let todo = match row.update(&txn).await {
        Ok(todo) => todo,
        Err(err) => {
            let _ = txn.rollback().await;
            todo_overlap::refusal(db, err, user_id, range, Some(id)).await?;
            return Ok(None);
        }
    };
    let mut tags = match &patch.tags {
        Some(names) => {
            let tags = tags::ensure_tags(&txn, user_id, names).await?;
            replace_links(&txn, id, &tags).await?;
            tags
        }
        None => tags_of(&txn, &[id]).await?.remove(&id).unwrap_or_default(),
    };
    txn.commit().await?;
    sort_tags(&mut tags);
    Ok(Some(TodoWithTags { todo, tags }))
}

/// Every rule `patch` would break on one of the user's todos, changing nothing; for a caller
/// that found other problems first and wants to report all of them at once.
#[tracing::instrument(skip(db, patch))]
pub async fn check_update(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
    patch: &TodoPatch,
) -> Result<Vec<(String, String)>, TodoError> {
    let current = find_own(db, user_id, id).await?;
    Ok(problems_of_update(&current, patch))
}

/// The patch's own problems, and the time range of the todo as it would be.
fn problems_of_update(current: &todo::Model, patch: &TodoPatch) -> Problems {
    let mut problems = check_patch(patch);
    if patch.start_time.is_none() || patch.end_time.is_none() {
        let start = patch.start_time.unwrap_or(current.start_time);
        let end = patch.end_time.unwrap_or(current.end_time);
        check_range(start, end, &mut problems);
    }
    problems
}

/// Deletes one of the user's todos; its tags stay.
#[tracing::instrument(skip(db))]
pub async fn delete(db: &impl ConnectionTrait, user_id: Uuid, id: Uuid) -> Result<(), TodoError> {
    let result = todo::Entity::delete_many()
        .filter(todo::Column::Id.eq(id))
        .filter(todo::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(TodoError::NotFound(id));
    }
    Ok(())
}

/// One page of a user's todos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoList {
    pub items: Vec<TodoWithTags>,
    /// The todos matching the filters, on all pages, counted only up to a bound.
    pub total: Total,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Position>,
}

/// One page of the user's todos with their tags, the number of todos matching the filters
/// (exact up to [`super::paging::EXACT_TOTAL_UP_TO`]) and where the next page starts.
///
/// The order is the sort field then the id in the same direction, so pages are stable; todos
/// without the sorted time come last in both directions. A page that starts at the beginning
/// or at `after` is read by keyset through the sort's index ([`todo_pages`]); a page at an
/// `offset` reads and skips the rows before it, so its cost grows with the offset.
///
/// Statements: the bounded count, the page (one per part of the order it reaches: at most
/// two for the time sorts with NULLs, four for `importance`), and the tags of every todo on
/// the page in one query.
#[tracing::instrument(skip(db))]
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    query: &TodoQuery,
) -> Result<TodoList, TodoError> {
    let problems = check_query(query);
    if !problems.is_empty() {
        return Err(TodoError::Invalid(problems));
    }
    let normalized = query.clone().normalized();
    let search = match normalized.search.as_deref().filter(|s| !s.is_empty()) {
        Some(term) => Some(search::condition(db, search::TODO_ITEM, term).await?),
        None => None,
    };
    let filter = list_filter(user_id, &normalized, search);
    let total = paging::bounded_count(db, todo::Entity::find().filter(filter.clone())).await?;
    // One row more than the page tells whether another page follows.
    let wanted = query.limit + 1;
    let mut todos = if query.offset == 0 {
        todo_pages::rows_after(db, filter, query, query.after.as_ref(), wanted).await?
    } else {
        rows_at_offset(db, filter, query, wanted).await?
    };
    let more = todos.len() as u64 > query.limit;
    todos.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    let next = todos
        .last()
        .filter(|_| more)
        .map(|last| todo_pages::position_of(query, last));
    let ids: Vec<Uuid> = todos.iter().map(|todo| todo.id).collect();
    let mut tags = tags_of(db, &ids).await?;
    let items = todos
        .into_iter()
        .map(|todo| TodoWithTags {
            tags: tags.remove(&todo.id).unwrap_or_default(),
            todo,
        })
        .collect();
    Ok(TodoList { items, total, next })
}

/// Up to `count` todos after skipping `query.offset`, in one statement.
async fn rows_at_offset(
    db: &impl ConnectionTrait,
    filter: Condition,
    query: &TodoQuery,
    count: u64,
) -> Result<Vec<todo::Model>, DbErr> {
    let order = query.order.order();
    let key = sort_key(query.sort);
    let mut select = todo::Entity::find().filter(filter);
    select = match query.sort {
        SortField::StartTime | SortField::EndTime => {
            select.order_by_with_nulls(key, order.clone(), NullOrdering::Last)
        }
        _ => select.order_by(key, order.clone()),
    };
    select
        .order_by(todo::Column::Id, order)
        .limit(count)
        .offset(query.offset)
        .all(db)
        .await
}

/// The conditions of `query`; `search` is its search, made by [`search::condition`].
fn list_filter(user_id: Uuid, query: &TodoQuery, search: Option<Condition>) -> Condition {
    use todo::Column as C;
    let mut filter = Condition::all().add(C::UserId.eq(user_id));
    if let Some(search) = search {
        filter = filter.add(search);
    }
    let bounds = [
        (C::StartTime, query.start_time_from, false, true),
        (C::StartTime, query.start_time_to, true, true),
        (C::EndTime, query.end_time_from, false, true),
        (C::EndTime, query.end_time_to, true, true),
        (C::CreatedAt, query.created_after, false, false),
        (C::CreatedAt, query.created_before, true, false),
        (C::UpdatedAt, query.updated_after, false, false),
        (C::UpdatedAt, query.updated_before, true, false),
    ];
    for (column, bound, upper, inclusive) in bounds {
        let Some(bound) = bound else { continue };
        filter = filter.add(match (upper, inclusive) {
            (false, true) => column.gte(bound),
            (false, false) => column.gt(bound),
            (true, true) => column.lte(bound),
            (true, false) => column.lt(bound),
        });
    }
    if let Some(importance) = query.importance {
        filter = filter.add(C::Importance.eq(importance));
    }
    if let Some(name) = &query.tag {
        use user_account_todo_tag as link;
        filter = filter.add(
            C::Id.in_subquery(
                Query::select()
                    .column((link::Entity, link::Column::TodoId))
                    .from(link::Entity)
                    .inner_join(
                        tag::Entity,
                        Expr::col((tag::Entity, tag::Column::Id))
                            .equals((link::Entity, link::Column::TagId)),
                    )
                    .and_where(Expr::col((tag::Entity, tag::Column::UserId)).eq(user_id))
                    .and_where(Expr::col((tag::Entity, tag::Column::Name)).eq(name.trim()))
                    .to_owned(),
            ),
        );
    }
    filter
}

fn sort_key(field: SortField) -> Expr {
    use todo::Column as C;
    let column = |c: C| Expr::col((todo::Entity, c));
    match field {
        SortField::CreatedAt => column(C::CreatedAt),
        SortField::UpdatedAt => column(C::UpdatedAt),
        SortField::Item => column(C::Item),
        SortField::StartTime => column(C::StartTime),
        SortField::EndTime => column(C::EndTime),
        SortField::Importance => Expr::case(column(C::Importance).eq("low"), 1)
            .case(column(C::Importance).eq("medium"), 2)
            .case(column(C::Importance).eq("high"), 3)
            .finally(0)
            .into(),
    }
}

/// [`find_own`], locking the row (FOR NO KEY UPDATE, which foreign-key checks of other
/// writers do not wait for) when `lock`; SQLite needs no lock: [`crate::db::begin_write`]
/// already holds the database's write lock.
async fn find_own_for_update(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<todo::Model, TodoError> {
    let mut select = todo::Entity::find_by_id(id).filter(todo::Column::UserId.eq(user_id));
    if lock {
        select = select.lock(LockType::NoKeyUpdate);
    }
    select.one(db).await?.ok_or(TodoError::NotFound(id))
}

async fn find_own(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> Result<todo::Model, TodoError> {
    todo::Entity::find_by_id(id)
        .filter(todo::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(TodoError::NotFound(id))
}

/// The user's todos with a full time range that overlaps `[start, end)`, leaving `except` out.
pub(super) async fn overlapping(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    except: Option<Uuid>,
) -> Result<Vec<Uuid>, DbErr> {
    use todo::Column as C;
    let mut select = todo::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::UserId.eq(user_id))
        .filter(C::StartTime.is_not_null())
        .filter(C::EndTime.is_not_null())
        .filter(C::StartTime.lt(end))
        .filter(C::EndTime.gt(start));
    if let Some(except) = except {
        select = select.filter(C::Id.ne(except));
    }
    select
        .order_by_asc(C::StartTime)
        .order_by_asc(C::Id)
        .limit(MAX_CONFLICTS_NAMED)
        .into_tuple::<Uuid>()
        .all(db)
        .await
}

/// The tags of these todos in one query (per [`MAX_IN_VALUES`] todos), by todo id, each list
/// sorted by name.
async fn tags_of(
    db: &impl ConnectionTrait,
    todo_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<tag::Model>>, DbErr> {
    let mut by_todo: HashMap<Uuid, Vec<tag::Model>> = HashMap::new();
    if todo_ids.is_empty() {
        return Ok(by_todo);
    }
    // One statement for a page (at most 100 todos); more only for more ids than an IN list takes.
    for batch in todo_ids.chunks(MAX_IN_VALUES) {
        let rows = user_account_todo_tag::Entity::find()
            .find_also_related(tag::Entity)
            .filter(user_account_todo_tag::Column::TodoId.is_in(batch.iter().copied()))
            .all(db)
            .await?;
        for (link, tag) in rows {
            if let Some(tag) = tag {
                by_todo.entry(link.todo_id).or_default().push(tag);
            }
        }
    }
    // Sorted here rather than in SQL, so the order is the same on both databases whatever
    // PostgreSQL's collation.
    by_todo.values_mut().for_each(|tags| sort_tags(tags));
    Ok(by_todo)
}

/// By name (byte order), then id.
fn sort_tags(tags: &mut [tag::Model]) {
    tags.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
}

fn link_rows(todo_id: Uuid, tags: &[tag::Model]) -> Vec<user_account_todo_tag::ActiveModel> {
    let now = crate::models::now();
    tags.iter()
        .map(|tag| {
            let mut row = user_account_todo_tag::ActiveModel::new();
            row.todo_id = Set(todo_id);
            row.tag_id = Set(tag.id);
            row.created_at = Set(now);
            row.updated_at = Set(now);
            row
        })
        .collect()
}

/// Inserts links of the todo to these tags, a bounded number of rows per statement (one
/// statement for up to [`MAX_TAGS`] tags); links that exist already are left as they are.
async fn insert_links(
    txn: &impl ConnectionTrait,
    todo_id: Uuid,
    tags: &[tag::Model],
) -> Result<(), DbErr> {
    use user_account_todo_tag::Column as L;
    for batch in tags.chunks(rows_per_insert::<user_account_todo_tag::Entity>()) {
        user_account_todo_tag::Entity::insert_many(link_rows(todo_id, batch))
            .on_conflict(
                OnConflict::columns([L::TodoId, L::TagId])
                    .do_nothing()
                    .to_owned(),
            )
            .try_insert()
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Makes `tags` the whole set of the todo's tags, keeping the links that stay: reads the
/// todo's links, deletes the stale ones and inserts the missing ones, each statement binding a
/// bounded number of values however many tags there are.
async fn replace_links(
    txn: &impl ConnectionTrait,
    todo_id: Uuid,
    tags: &[tag::Model],
) -> Result<(), DbErr> {
    use user_account_todo_tag::Column as L;
    let current: HashSet<Uuid> = user_account_todo_tag::Entity::find()
        .select_only()
        .column(L::TagId)
        .filter(L::TodoId.eq(todo_id))
        .into_tuple::<Uuid>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let wanted: HashSet<Uuid> = tags.iter().map(|tag| tag.id).collect();
    let stale: Vec<Uuid> = current.difference(&wanted).copied().collect();
    for batch in stale.chunks(MAX_IN_VALUES) {
        user_account_todo_tag::Entity::delete_many()
            .filter(L::TodoId.eq(todo_id))
            .filter(L::TagId.is_in(batch.iter().copied()))
            .exec(txn)
            .await?;
    }
    let missing: Vec<tag::Model> = tags
        .iter()
        .filter(|tag| !current.contains(&tag.id))
        .cloned()
        .collect();
    insert_links(txn, todo_id, &missing).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlap_names_the_todos_in_the_way_or_says_to_try_again() {
        let id = Uuid::nil();
        assert_eq!(
            TodoError::Overlap(vec![id]).to_string(),
            format!("the time range overlaps your todo(s) {id}; move it or change those first")
        );
        let none = TodoError::Overlap(Vec::new()).to_string();
        assert!(none.ends_with("; try again"), "{none}");
        assert!(!none.contains(" ;"), "{none}");
    }

    #[test]
    fn sort_fields_parse_in_both_spellings() {
        assert_eq!(SortField::parse("start_time"), Ok(SortField::StartTime));
        assert_eq!(SortField::parse("startTime"), Ok(SortField::StartTime));
        assert!(SortField::parse("id").is_err());
        assert_eq!(SortOrder::parse("ASC"), Ok(SortOrder::Asc));
        assert!(SortOrder::parse("up").is_err());
    }

    #[test]
    fn every_problem_of_a_new_todo_is_reported() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let new = NewTodo {
            item: " ".into(),
            description: Some("x".repeat(MAX_DESCRIPTION_CHARS + 1)),
            start_time: Some(t("2026-01-01T10:00:00Z")),
            end_time: Some(t("2026-01-01T09:00:00Z")),
            tags: vec!["ok".into(), "".into()],
            ..NewTodo::default()
        };
        let fields: Vec<String> = check_new(&new).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["item", "description", "startTime", "tags[1]"]);
    }

    #[test]
    fn too_many_tags_are_one_problem() {
        let new = |count: usize| NewTodo {
            item: "x".into(),
            tags: vec![String::new(); count],
            ..NewTodo::default()
        };
        let fields =
            |count| -> Vec<String> { check_new(&new(count)).into_iter().map(|(f, _)| f).collect() };
        assert_eq!(fields(MAX_TAGS + 1), ["tags"]);
        assert_eq!(fields(10_923), ["tags"]);
        assert_eq!(fields(MAX_TAGS).len(), MAX_TAGS, "each empty name");
    }

    #[test]
    fn times_become_what_postgresql_keeps() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let cases = [
            (
                "2026-03-01T10:00:00.123456789Z",
                "2026-03-01T10:00:00.123456Z",
            ),
            ("2026-03-01T10:00:00.5Z", "2026-03-01T10:00:00.5Z"),
            (
                "1969-12-31T23:59:59.9999999Z",
                "1969-12-31T23:59:59.999999Z",
            ),
            ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
            ("2016-12-31T23:59:60.5000009Z", "2017-01-01T00:00:00.5Z"),
            ("2017-01-01T08:59:60.25+09:00", "2017-01-01T00:00:00.25Z"),
        ];
        for (given, kept) in cases {
            assert_eq!(normalize_time(t(given)), t(kept), "{given}");
            assert_eq!(normalize_time(t(kept)), t(kept), "{kept} stays");
        }
        // Within one microsecond: no range.
        let mut problems = Vec::new();
        check_range(
            Some(t("2026-03-01T10:00:00.0000001Z")),
            Some(t("2026-03-01T10:00:00.0000009Z")),
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
    }
}
