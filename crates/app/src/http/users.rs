//! `/api/users`: account management, for superusers only.
//!
//! Also home of [`UserView`], the one way an account is shown (never with its password hash),
//! which `/api/me` and `/api/roles` answer too.

use axum::Router;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderName, StatusCode};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{Json, Path, Query, Superuser};
use crate::domain::accounts::{self, Actor, NewUser, UserPatch};
use crate::models::{role, user_account};

/// Page size when the client names none.
const DEFAULT_LIMIT: u64 = 20;
/// Largest page a client may ask for.
const MAX_LIMIT: u64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/{id}", get(show).patch(update).delete(remove))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, create, show, update, remove),
    components(schemas(UserView, RoleView, UserPage, NewUserBody, UserPatchBody)),
    tags((name = "users", description = "Account management; superusers only"))
)]
struct Doc;

/// The OpenAPI description of `/api/users`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// An account as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_verified: bool,
    pub verified_at: Option<NaiveDate>,
    pub joined_at: NaiveDate,
    pub login_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The roles the account holds, by slug.
    pub roles: Vec<RoleView>,
}

/// A role held by an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleView {
    #[schema(example = "application-access")]
    pub slug: String,
    #[schema(example = "Application Access")]
    pub name: String,
}

impl UserView {
    pub fn new(user: user_account::Model, roles: Vec<role::Model>) -> Self {
        UserView {
            id: user.id,
            email: user.email,
            name: user.name,
            avatar_url: user.avatar_url,
            is_active: user.is_active,
            is_superuser: user.is_superuser,
            is_verified: user.is_verified,
            verified_at: user.verified_at,
            joined_at: user.joined_at,
            login_count: user.login_count,
            created_at: user.created_at,
            updated_at: user.updated_at,
            roles: roles
                .into_iter()
                .map(|role| RoleView {
                    slug: role.slug,
                    name: role.name,
                })
                .collect(),
        }
    }

    /// The view of `user`, with its roles read from the database.
    pub async fn load(db: &crate::db::DbConn, user: user_account::Model) -> Result<Self, ApiError> {
        let roles = accounts::roles_of(db, user.id).await?;
        Ok(UserView::new(user, roles))
    }
}

/// One page of accounts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// How many accounts match, on all pages, when `totalIsExact`; counting stops past 1000,
    /// and then this is 1000 and `totalIsExact` is false: there are more.
    pub total: u64,
    /// Whether `total` is the exact number (true up to 1000 matching accounts).
    pub total_is_exact: bool,
    pub limit: u64,
    pub offset: u64,
    /// Send as `cursor` (with the same search) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Paging and search of `GET /api/users`. Read as text and checked here, so every bad value
/// is reported by name at once.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Accounts per page, 1 to 100.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// Accounts to skip. Deep offsets read every skipped account: page with `cursor`
    /// instead. Not with `cursor`.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64, default = 0)]
    offset: Option<String>,
    /// The `nextCursor` of the previous page (made with the same search): the page starts
    /// right after it, at the same cost at any depth.
    #[param(max_length = 2048)]
    cursor: Option<String>,
    /// Part of an email or name, any case.
    #[param(pattern = r"^[^\u0000]*$")]
    search: Option<String>,
}

/// A number from the query string within `min..=max`, or a field error.
fn bounded(
    raw: Option<&str>,
    field: &str,
    default: u64,
    min: u64,
    max: u64,
    errors: &mut Vec<FieldError>,
) -> u64 {
    let Some(raw) = raw.map(str::trim) else {
        return default;
    };
    match raw.parse::<i64>() {
        Ok(value) if value < min as i64 => {
            errors.push(FieldError::new(field, format!("must be at least {min}")));
            default
        }
        Ok(value) if value as u64 > max => {
            errors.push(FieldError::new(field, format!("must be at most {max}")));
            default
        }
        Ok(value) => value as u64,
        Err(_) => {
            errors.push(FieldError::new(
                field,
                format!("must be a whole number, not {raw:?}"),
            ));
            default
        }
    }
}

/// A new account, as a superuser makes it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUserBody {
    /// A plausible address (one `@`, a dotted domain), up to 254 characters; stored trimmed
    /// and lowercased; unique.
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ann@example.com")]
    email: String,
    /// Up to 255 characters; a blank name is stored as none.
    #[serde(default)]
    #[schema(
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,253}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?)?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: Option<String>,
    /// 8 to 1024 characters.
    #[serde(default)]
    #[schema(required = true, min_length = 8, max_length = 1024, pattern = r"^[^\u0000]*$", format = Password)]
    password: String,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
    #[serde(default)]
    is_verified: bool,
}

fn yes() -> bool {
    true
}

/// Changes to an account; absent fields stay as they are, and `"name": null` clears the name.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatchBody {
    /// Up to 255 characters; blank or `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,253}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?)?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    name: Option<Option<String>>,
    /// A plausible address, up to 254 characters; unique.
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    /// 8 to 1024 characters; refuses the account's earlier tokens.
    #[schema(min_length = 8, max_length = 1024, pattern = r"^[^\u0000]*$", format = Password)]
    password: Option<String>,
    is_active: Option<bool>,
    /// Also assigns or revokes the `superuser` role.
    is_superuser: Option<bool>,
    /// Setting it stamps `verifiedAt` with today; clearing it clears `verifiedAt`.
    is_verified: Option<bool>,
}

/// Tells `"field": null` (`Some(None)`) from an absent field (`None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A change the superuser rules refused: 403 when the actor lost their rights meanwhile, else
/// 409 (the change conflicts with who the superusers are).
/// List accounts, oldest first, with paging and search.
///
/// Page with `cursor`: each page answers `nextCursor`, to send back with the same search.
/// `total` is exact up to 1000 matching accounts (`totalIsExact`); past that it is 1000 and
/// `totalIsExact` is false.
#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "one page of accounts", body = UserPage),
        (status = 403, description = "not a superuser", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a bad limit or offset, named in `errors`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn list(
    _: Superuser,
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<UserPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = bounded(
        params.limit.as_deref(),
        "limit",
        DEFAULT_LIMIT,
        1,
        MAX_LIMIT,
        &mut errors,
    );
    let offset = bounded(
        params.offset.as_deref(),
        "offset",
        0,
        0,
        i64::MAX as u64,
        &mut errors,
    );
    if params.cursor.is_some() && params.offset.is_some() {
        errors.push(FieldError::new(
            "offset",
            "cannot be combined with cursor: the cursor says where the page starts",
        ));
    }
    let after = match params
        .cursor
        .as_deref()
        .map(|text| state.cursors.open(text))
    {
        Some(Err(err)) => {
            errors.push(FieldError::new("cursor", err.to_string()));
            None
        }
        Some(Ok(position)) => Some(position),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let db = &state.reader();
    let page =
        accounts::list_users(db, params.search.as_deref(), limit, offset, after.as_ref()).await?;
    let roles = accounts::roles_of_each(db, &page.items).await?;
    let items = page
        .items
        .into_iter()
        .zip(roles)
        .map(|(u, r)| UserView::new(u, r))
        .collect();
    Ok(Json(UserPage {
        items,
        total: page.total.count,
        total_is_exact: page.total.exact,
        limit,
        offset,
        next_cursor: page.next.map(|next| state.cursors.seal(&next)),
    }))
}

/// Create an account with the `application-access` role (and `superuser` when `isSuperuser`).
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "created", body = UserView,
            headers(("location" = String, description = "the new account's URL"))),
        (status = 403, description = "not a superuser", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the email is taken", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn create(
    _: Superuser,
    State(state): State<AppState>,
    Json(body): Json<NewUserBody>,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<UserView>), ApiError> {
    let new = NewUser {
        email: body.email,
        name: body.name,
        password: body.password,
        is_superuser: body.is_superuser,
        is_active: body.is_active,
        is_verified: body.is_verified,
    };
    let db = state.db.conn();
    let user = accounts::create_user(db, new).await?;
    let location = format!("/api/users/{}", user.id);
    let view = UserView::load(db, user).await?;
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(view)))
}

/// One account.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the account's id")),
    responses(
        (status = 200, description = "the account", body = UserView),
        (status = 403, description = "not a superuser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such account", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn show(
    _: Superuser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    let db = &state.reader();
    let user = accounts::get_user(db, id).await?;
    Ok(Json(UserView::load(db, user).await?))
}

/// Change an account. A superuser cannot deactivate or demote themselves, nor the last active
/// superuser; a new password refuses the account's earlier tokens.
#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the account's id")),
    request_body = UserPatchBody,
    responses(
        (status = 200, description = "the changed account", body = UserView),
        (status = 403, description = "not a superuser (or no longer one)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the email is taken, the change would lock you out, or it would leave no active superuser", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn update(
    Superuser(actor): Superuser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<UserPatchBody>,
) -> Result<Json<UserView>, ApiError> {
    let patch = UserPatch {
        name: body.name,
        email: body.email,
        password: body.password,
        is_active: body.is_active,
        is_superuser: body.is_superuser,
        is_verified: body.is_verified,
    };
    let db = state.db.conn();
    let user = accounts::update_user(db, Actor::Superuser(actor.id), id, patch).await?;
    Ok(Json(UserView::load(db, user).await?))
}

/// Delete an account with its todos, tags and role links. A superuser cannot delete themselves,
/// nor the last active superuser.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the account's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, description = "not a superuser (or no longer one)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "that is your own account, or the last active superuser", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn remove(
    Superuser(actor): Superuser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    accounts::delete_user(state.db.conn(), Actor::Superuser(actor.id), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_named() {
        let mut errors = Vec::new();
        assert_eq!(bounded(None, "limit", 20, 1, 100, &mut errors), 20);
        assert_eq!(bounded(Some("5"), "limit", 20, 1, 100, &mut errors), 5);
        assert!(errors.is_empty());
        bounded(Some("0"), "limit", 20, 1, 100, &mut errors);
        bounded(Some("101"), "limit", 20, 1, 100, &mut errors);
        bounded(Some("ten"), "limit", 20, 1, 100, &mut errors);
        bounded(Some("-1"), "offset", 0, 0, u64::MAX / 2, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "limit", "limit", "offset"]);
    }
}
