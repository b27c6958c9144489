//! `/api/tags`: the signed-in user's tags, with the number of todos carrying each.

use axum::Router;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{CurrentUser, Json, Path};
use crate::domain::tags::{self, TagSummary};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tags", get(list).post(create))
        .route("/api/tags/{id}", delete(remove))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, create, remove),
    components(schemas(TagView, NewTagBody)),
    tags((name = "tags", description = "The signed-in user's tags"))
)]
struct Doc;

/// The OpenAPI description of `/api/tags`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// A tag as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    pub id: Uuid,
    pub name: String,
    pub color: Option<String>,
    /// How many of your todos carry it, when `todoCountIsExact`; counting stops past 1000,
    /// and then this is 1000 and `todoCountIsExact` is false: there are more.
    pub todo_count: u64,
    /// Whether `todoCount` is the exact number (true up to 1000 todos).
    pub todo_count_is_exact: bool,
}

impl From<TagSummary> for TagView {
    fn from(tag: TagSummary) -> Self {
        TagView {
            id: tag.id,
            name: tag.name,
            color: tag.color,
            todo_count: tag.todo_count,
            todo_count_is_exact: tag.todo_count_is_exact,
        }
    }
}

/// A new tag.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTagBody {
    /// 1 to 100 characters after trimming; unique among your tags.
    #[schema(
        min_length = 1,
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,98}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        example = "errands"
    )]
    name: String,
    /// Any text up to 100 characters, such as `#ff8800`.
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$", example = "#ff8800")]
    color: Option<String>,
}

/// Your tags by name, each with the number of todos carrying it.
#[utoipa::path(
    get,
    path = "/api/tags",
    tag = "tags",
    responses(
        (status = 200, description = "your tags", body = Vec<TagView>),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn list(
    current: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<TagView>>, ApiError> {
    let tags = tags::list(&state.reader(), current.user.id).await?;
    Ok(Json(tags.into_iter().map(TagView::from).collect()))
}

/// Make a tag.
#[utoipa::path(
    post,
    path = "/api/tags",
    tag = "tags",
    request_body = NewTagBody,
    responses(
        (status = 201, description = "the new tag", body = TagView),
        (status = 409, description = "you already have a tag of this name", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn create(
    current: CurrentUser,
    State(state): State<AppState>,
    Json(body): Json<NewTagBody>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<TagView>), ApiError> {
    let tag = tags::create(
        state.db.conn(),
        current.user.id,
        &body.name,
        body.color.as_deref(),
    )
    .await?;
    let view = TagView {
        id: tag.id,
        name: tag.name,
        color: tag.color,
        todo_count: 0,
        todo_count_is_exact: true,
    };
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/api/tags/{}", view.id))],
        Json(view),
    ))
}

/// Delete one of your tags; the todos carrying it stay and lose it.
#[utoipa::path(
    delete,
    path = "/api/tags/{id}",
    tag = "tags",
    params(("id" = Uuid, Path, description = "the tag's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no tag of yours has this id", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn remove(
    current: CurrentUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    tags::delete(state.db.conn(), current.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
