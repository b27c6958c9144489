//! `/api/todos`: the signed-in user's todos.
//!
//! Bodies and query strings are read as text and parsed here, so every bad value (a malformed
//! time, an unknown importance, an item too long) is named at once in one 422.

use axum::Router;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderName, StatusCode};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{CurrentUser, Json, Path, Query};
use super::responses::TRIMMED_NAME;
use crate::domain::cursor::Cursors;
use crate::domain::todos::{
    self, NewTodo, SortField, SortOrder, TodoPatch, TodoQuery, TodoWithTags,
};
use crate::models::tag;
use crate::models::todo::Importance;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/todos", get(list).post(create))
        .route("/api/todos/{id}", get(show).patch(update).delete(remove))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, create, show, update, remove),
    components(schemas(
        TodoView,
        TagRef,
        TodoPage,
        NewTodoBody,
        TodoPatchBody,
        ImportanceName,
        TagName,
        SortName,
        OrderName
    )),
    tags((name = "todos", description = "The signed-in user's todos"))
)]
struct Doc;

/// The OpenAPI description of `/api/todos`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// A todo as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TodoView {
    pub id: Uuid,
    pub item: String,
    pub description: Option<String>,
    /// When the todo was made.
    pub created_time: DateTime<Utc>,
    pub alarm_time: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    #[schema(value_type = ImportanceName)]
    pub importance: Importance,
    /// Sorted by name.
    pub tags: Vec<TagRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tag on a todo.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TagRef {
    pub id: Uuid,
    pub name: String,
    pub color: Option<String>,
}

impl From<tag::Model> for TagRef {
    fn from(tag: tag::Model) -> Self {
        TagRef {
            id: tag.id,
            name: tag.name,
            color: tag.color,
        }
    }
}

impl From<TodoWithTags> for TodoView {
    fn from(TodoWithTags { todo, tags }: TodoWithTags) -> Self {
        TodoView {
            id: todo.id,
            item: todo.item,
            description: todo.description,
            created_time: todo.created_time,
            alarm_time: todo.alarm_time,
            start_time: todo.start_time,
            end_time: todo.end_time,
            importance: todo.importance,
            tags: tags.into_iter().map(TagRef::from).collect(),
            created_at: todo.created_at,
            updated_at: todo.updated_at,
        }
    }
}

/// One page of todos.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TodoPage {
    pub items: Vec<TodoView>,
    /// How many todos match the filters, on all pages, when `totalIsExact`; counting stops
    /// past 1000, and then this is 1000 and `totalIsExact` is false: there are more.
    pub total: u64,
    /// Whether `total` is the exact number (true up to 1000 matching todos).
    pub total_is_exact: bool,
    pub limit: u64,
    pub offset: u64,
    /// Send as `cursor` (with the same filters, sort and order) for the next page; null on
    /// the last page.
    pub next_cursor: Option<String>,
}

/// How much a todo matters.
// For the document only: the model's enum is what is stored and sent.
#[derive(ToSchema)]
#[schema(as = Importance, rename_all = "lowercase")]
#[allow(dead_code)]
enum ImportanceName {
    None,
    Low,
    Medium,
    High,
}

/// What a list can be sorted by; camelCase spellings (`startTime`) are accepted too.
// For the document only: `SortField::parse` reads the text.
#[derive(ToSchema)]
#[schema(as = TodoSort, rename_all = "snake_case")]
#[allow(dead_code)]
enum SortName {
    CreatedAt,
    UpdatedAt,
    Item,
    StartTime,
    EndTime,
    Importance,
}

/// The direction of a sort.
// For the document only: `SortOrder::parse` reads the text.
#[derive(ToSchema)]
#[schema(as = SortOrder, rename_all = "lowercase")]
#[allow(dead_code)]
enum OrderName {
    Asc,
    Desc,
}

/// A new todo. Times are RFC 3339 (`2026-03-01T09:00:00Z`), kept to the microsecond (finer
/// digits are dropped; a leap second `23:59:60` reads as the next minute's first second);
/// tags are names, made as needed. No text may hold the NUL character (U+0000).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTodoBody {
    /// 1 to 100 characters after trimming.
    #[schema(required = true, value_type = String, min_length = 1,  pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,98}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", example = "Buy milk")]
    item: Option<String>,
    /// Up to 1024 characters.
    #[schema(max_length = 1024, pattern = r"^[^\u0000]*$")]
    description: Option<String>,
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T08:45:00Z")]
    alarm_time: Option<String>,
    /// Must be before `endTime` when both are given (an equal or later `startTime` answers
    /// 422); `[startTime, endTime)` may not overlap another todo of yours (409).
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T09:00:00Z")]
    start_time: Option<String>,
    /// Must be after `startTime` when both are given.
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T10:00:00Z")]
    end_time: Option<String>,
    /// `none` when not given.
    #[schema(value_type = Option<ImportanceName>)]
    importance: Option<String>,
    /// Tag names, 1 to 100 characters each; at most 50.
    #[serde(default)]
    #[schema(value_type = Vec<TagName>, max_items = 50)]
    tags: Vec<String>,
}

/// A tag's name in a todo's `tags`, for the document: bodies carry names as plain strings.
struct TagName;

impl utoipa::PartialSchema for TagName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 100 characters after trimming; made among your tags as needed",
            ))
            .min_length(Some(1))
            .pattern(Some(TRIMMED_NAME))
            .examples(["errands"])
            .into()
    }
}

impl ToSchema for TagName {}

/// Changes to a todo: absent fields stay as they are; `null` clears `description` and the
/// times; `tags` replaces the whole set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TodoPatchBody {
    /// 1 to 100 characters after trimming.
    #[schema(
        min_length = 1,
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,98}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    item: Option<String>,
    /// Up to 1024 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = r"^[^\u0000]*$")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T08:45:00Z")]
    alarm_time: Option<Option<String>>,
    /// Must be before `endTime` as the todo will be after the change (422 otherwise).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T09:00:00Z")]
    start_time: Option<Option<String>>,
    /// Must be after `startTime` as the todo will be after the change.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>, example = "2026-03-01T10:00:00Z")]
    end_time: Option<Option<String>>,
    #[schema(value_type = Option<ImportanceName>)]
    importance: Option<String>,
    /// At most 50 names, 1 to 100 characters each.
    #[schema(value_type = Option<Vec<TagName>>, max_items = 50)]
    tags: Option<Vec<String>>,
}

/// Tells `"field": null` (`Some(None)`) from an absent field (`None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Filters, sort and paging of `GET /api/todos`. Names are camelCase (snake_case is accepted
/// too); times are RFC 3339, read to the microsecond like stored times, and a `+` in an
/// offset must be sent as `%2B`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Todos per page, 1 to 100.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// Todos to skip. Deep offsets read every skipped todo: page through long lists with
    /// `cursor` instead. Not with `cursor`.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64, default = 0)]
    offset: Option<String>,
    /// The `nextCursor` of the previous page: the page starts right after it, at the same cost
    /// at any depth. Valid only with the filters, sort and order it was made with.
    #[param(max_length = 2048)]
    cursor: Option<String>,
    /// Part of the item, any case.
    #[param(pattern = r"^[^\u0000]*$")]
    search: Option<String>,
    /// Only todos starting at or after this time.
    #[serde(alias = "start_time_from")]
    #[param(value_type = Option<DateTime<Utc>>)]
    start_time_from: Option<String>,
    /// Only todos starting at or before this time.
    #[serde(alias = "start_time_to")]
    #[param(value_type = Option<DateTime<Utc>>)]
    start_time_to: Option<String>,
    /// Only todos ending at or after this time.
    #[serde(alias = "end_time_from")]
    #[param(value_type = Option<DateTime<Utc>>)]
    end_time_from: Option<String>,
    /// Only todos ending at or before this time.
    #[serde(alias = "end_time_to")]
    #[param(value_type = Option<DateTime<Utc>>)]
    end_time_to: Option<String>,
    /// Only todos created strictly before this time.
    #[serde(alias = "created_before")]
    #[param(value_type = Option<DateTime<Utc>>)]
    created_before: Option<String>,
    /// Only todos created strictly after this time.
    #[serde(alias = "created_after")]
    #[param(value_type = Option<DateTime<Utc>>)]
    created_after: Option<String>,
    /// Only todos last changed strictly before this time.
    #[serde(alias = "updated_before")]
    #[param(value_type = Option<DateTime<Utc>>)]
    updated_before: Option<String>,
    /// Only todos last changed strictly after this time.
    #[serde(alias = "updated_after")]
    #[param(value_type = Option<DateTime<Utc>>)]
    updated_after: Option<String>,
    /// Only todos of this importance.
    #[param(value_type = Option<ImportanceName>)]
    importance: Option<String>,
    /// Only todos carrying the tag of this name.
    #[param(pattern = r"^[^\u0000]*$")]
    tag: Option<String>,
    /// The field to sort by (default `created_at`); ties are broken by id.
    #[param(value_type = Option<SortName>)]
    sort: Option<String>,
    /// `asc` or `desc` (default `desc`).
    #[param(value_type = Option<OrderName>)]
    order: Option<String>,
}

/// Collects the field errors of one request while its fields are parsed.
#[derive(Default)]
struct Fields(Vec<FieldError>);

impl Fields {
    /// An RFC 3339 time, made what both databases keep (whole microseconds, no leap second:
    /// [`todos::normalize_time`]) before anything compares it.
    fn time(&mut self, field: &str, raw: Option<&str>) -> Option<DateTime<Utc>> {
        let raw = raw?;
        match DateTime::parse_from_rfc3339(raw.trim()) {
            Ok(time) => Some(todos::normalize_time(time.with_timezone(&Utc))),
            Err(err) => {
                self.0.push(FieldError::new(
                    field,
                    format!(
                        "must be an RFC 3339 date-time such as 2026-03-01T09:00:00Z, not {raw:?} ({err})"
                    ),
                ));
                None
            }
        }
    }

    fn nullable_time(
        &mut self,
        field: &str,
        raw: Option<Option<String>>,
    ) -> Option<Option<DateTime<Utc>>> {
        match raw? {
            None => Some(None),
            Some(raw) => self.time(field, Some(&raw)).map(Some),
        }
    }

    fn importance(&mut self, raw: Option<&str>) -> Option<Importance> {
        let raw = raw?;
        let parsed = match raw {
            "none" => Importance::None,
            "low" => Importance::Low,
            "medium" => Importance::Medium,
            "high" => Importance::High,
            _ => {
                self.0.push(FieldError::new(
                    "importance",
                    format!("must be one of none, low, medium, high, not {raw:?}"),
                ));
                return None;
            }
        };
        Some(parsed)
    }

    fn number(&mut self, field: &str, raw: Option<&str>) -> Option<u64> {
        let raw = raw?;
        match raw.trim().parse::<u64>() {
            Ok(value) => Some(value),
            Err(_) => {
                self.0.push(FieldError::new(
                    field,
                    format!("must be a whole number of 0 or more, not {raw:?}"),
                ));
                None
            }
        }
    }

    fn parsed<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|message| self.0.push(FieldError::new(field, message)))
            .ok()
    }

    /// Fails with every collected error plus the domain's own problems.
    fn finish(self, problems: Vec<(String, String)>) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut errors = self.0;
        errors.extend(
            problems
                .into_iter()
                .map(|(field, message)| FieldError::new(field, message)),
        );
        Err(ApiError::Validation(errors))
    }
}

fn query_of(params: ListParams, cursors: &Cursors) -> Result<TodoQuery, ApiError> {
    let mut fields = Fields::default();
    let defaults = TodoQuery::default();
    if params.cursor.is_some() && params.offset.is_some() {
        fields.0.push(FieldError::new(
            "offset",
            "cannot be combined with cursor: the cursor says where the page starts",
        ));
    }
    let after = params
        .cursor
        .as_deref()
        .and_then(|text| fields.parsed("cursor", cursors.open(text).map_err(|e| e.to_string())));
    let query = TodoQuery {
        after,
        limit: fields
            .number("limit", params.limit.as_deref())
            .unwrap_or(defaults.limit),
        // Refused above when a cursor came too; 0 keeps the domain from saying so again.
        offset: fields
            .number("offset", params.offset.as_deref())
            .filter(|_| params.cursor.is_none())
            .unwrap_or(0),
        search: params.search,
        start_time_from: fields.time("startTimeFrom", params.start_time_from.as_deref()),
        start_time_to: fields.time("startTimeTo", params.start_time_to.as_deref()),
        end_time_from: fields.time("endTimeFrom", params.end_time_from.as_deref()),
        end_time_to: fields.time("endTimeTo", params.end_time_to.as_deref()),
        created_before: fields.time("createdBefore", params.created_before.as_deref()),
        created_after: fields.time("createdAfter", params.created_after.as_deref()),
        updated_before: fields.time("updatedBefore", params.updated_before.as_deref()),
        updated_after: fields.time("updatedAfter", params.updated_after.as_deref()),
        importance: fields.importance(params.importance.as_deref()),
        tag: params.tag,
        sort: params
            .sort
            .and_then(|raw| fields.parsed("sort", SortField::parse(&raw)))
            .unwrap_or(defaults.sort),
        order: params
            .order
            .and_then(|raw| fields.parsed("order", SortOrder::parse(&raw)))
            .unwrap_or(defaults.order),
    };
    let problems = todos::check_query(&query);
    fields.finish(problems)?;
    Ok(query)
}

fn new_todo_of(body: NewTodoBody) -> Result<NewTodo, ApiError> {
    let mut fields = Fields::default();
    let item_missing = body.item.is_none();
    if item_missing {
        fields.0.push(FieldError::new("item", "is required"));
    }
    let new = NewTodo {
        item: body.item.unwrap_or_default(),
        description: body.description,
        alarm_time: fields.time("alarmTime", body.alarm_time.as_deref()),
        start_time: fields.time("startTime", body.start_time.as_deref()),
        end_time: fields.time("endTime", body.end_time.as_deref()),
        importance: fields
            .importance(body.importance.as_deref())
            .unwrap_or_default(),
        tags: body.tags,
    };
    let mut problems = todos::check_new(&new);
    problems.retain(|(field, _)| !(item_missing && field == "item"));
    fields.finish(problems)?;
    Ok(new)
}

/// The patch, or a 422 naming every bad field: those that do not parse, and what the domain
/// finds wrong with the rest applied to the todo.
async fn patch_of(
    state: &AppState,
    user_id: Uuid,
    id: Uuid,
    body: TodoPatchBody,
) -> Result<TodoPatch, ApiError> {
    let mut fields = Fields::default();
    let patch = TodoPatch {
        item: body.item,
        description: body.description,
        alarm_time: fields.nullable_time("alarmTime", body.alarm_time),
        start_time: fields.nullable_time("startTime", body.start_time),
        end_time: fields.nullable_time("endTime", body.end_time),
        importance: fields.importance(body.importance.as_deref()),
        tags: body.tags,
    };
    if fields.0.is_empty() {
        return Ok(patch);
    }
    let problems = todos::check_update(state.db.conn(), user_id, id, &patch).await?;
    fields.finish(problems)?;
    Ok(patch)
}

/// List your todos, a page at a time, with filters and a sort.
///
/// Page through a long list with `cursor`: each page answers `nextCursor`, which you send
/// back with the same filters, sort and order; every page costs the same at any depth.
/// `offset` pages still work but read all the todos they skip. `total` is exact up to 1000
/// matching todos (`totalIsExact: true`); past that it is 1000 and `totalIsExact` is false.
#[utoipa::path(
    get,
    path = "/api/todos",
    tag = "todos",
    params(ListParams),
    responses(
        (status = 200, description = "one page of your todos", body = TodoPage),
        (status = 422, description = "bad query parameters, all named in `errors`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn list(
    current: CurrentUser,
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<TodoPage>, ApiError> {
    let query = query_of(params, &state.cursors)?;
    let page = todos::list(&state.reader(), current.user.id, &query).await?;
    Ok(Json(TodoPage {
        items: page.items.into_iter().map(TodoView::from).collect(),
        total: page.total.count,
        total_is_exact: page.total.exact,
        limit: query.limit,
        offset: query.offset,
        next_cursor: page.next.map(|next| state.cursors.seal(&next)),
    }))
}

/// Make a todo; its tags are made as needed.
#[utoipa::path(
    post,
    path = "/api/todos",
    tag = "todos",
    request_body = NewTodoBody,
    responses(
        (status = 201, description = "the new todo", body = TodoView,
            headers(("location" = String, description = "the todo's URL"))),
        (status = 409, description = "the time range overlaps other todos of yours, listed in `conflicts`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn create(
    current: CurrentUser,
    State(state): State<AppState>,
    Json(body): Json<NewTodoBody>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<TodoView>), ApiError> {
    let new = new_todo_of(body)?;
    let todo = todos::create(state.db.conn(), current.user.id, new).await?;
    let location = format!("/api/todos/{}", todo.todo.id);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location)],
        Json(TodoView::from(todo)),
    ))
}

/// One of your todos.
#[utoipa::path(
    get,
    path = "/api/todos/{id}",
    tag = "todos",
    params(("id" = Uuid, Path, description = "the todo's id")),
    responses(
        (status = 200, description = "the todo", body = TodoView),
        (status = 404, description = "no todo of yours has this id", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn show(
    current: CurrentUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<TodoView>, ApiError> {
    let todo = todos::get(&state.reader(), current.user.id, id).await?;
    Ok(Json(TodoView::from(todo)))
}

/// Change one of your todos; `tags` replaces the whole set.
#[utoipa::path(
    patch,
    path = "/api/todos/{id}",
    tag = "todos",
    params(("id" = Uuid, Path, description = "the todo's id")),
    request_body = TodoPatchBody,
    responses(
        (status = 200, description = "the changed todo", body = TodoView),
        (status = 404, description = "no todo of yours has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the new time range overlaps other todos of yours, listed in `conflicts`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn update(
    current: CurrentUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<TodoPatchBody>,
) -> Result<Json<TodoView>, ApiError> {
    let patch = patch_of(&state, current.user.id, id, body).await?;
    let todo = todos::update(state.db.conn(), current.user.id, id, patch).await?;
    Ok(Json(TodoView::from(todo)))
}

/// Delete one of your todos; its tags stay.
#[utoipa::path(
    delete,
    path = "/api/todos/{id}",
    tag = "todos",
    params(("id" = Uuid, Path, description = "the todo's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no todo of yours has this id", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn remove(
    current: CurrentUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    todos::delete(state.db.conn(), current.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
