//! `/api/roles/{slug}/assign` and `/revoke`: giving and taking roles, for superusers only.
//!
//! Assigning or revoking `superuser` also sets or clears the account's `isSuperuser`; the
//! superuser rules (see `domain::accounts`) answer 409 or 403.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Superuser};
use super::users::UserView;
use crate::domain::accounts::Actor;
use crate::domain::roles;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/roles/{slug}/assign", post(assign))
        .route("/api/roles/{slug}/revoke", post(revoke))
}

#[derive(OpenApi)]
#[openapi(
    paths(assign, revoke),
    components(schemas(RoleAssignment, UserView)),
    tags((name = "roles", description = "Assigning roles to accounts; superusers only"))
)]
struct Doc;

/// The OpenAPI description of `/api/roles`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// Whose role changes.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignment {
    /// The account's email (any case; not blank). An email no account has answers 404.
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$",
        example = "ann@example.com"
    )]
    email: String,
}

impl RoleAssignment {
    fn email(&self) -> Result<&str, ApiError> {
        let email = self.email.trim();
        if email.is_empty() {
            return Err(ApiError::invalid("email", "is required"));
        }
        Ok(email)
    }
}

/// Give a role to an account; assigning a role it already holds changes nothing.
#[utoipa::path(
    post,
    path = "/api/roles/{slug}/assign",
    tag = "roles",
    params(("slug" = String, Path, pattern = r"^[^\u0000]*$", description = "the role, such as `application-access` or `superuser`")),
    request_body = RoleAssignment,
    responses(
        (status = 200, description = "the account with its roles", body = UserView),
        (status = 403, description = "not a superuser (or no longer one)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such role or account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the email is missing", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn assign(
    Superuser(actor): Superuser,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Json(body): Json<RoleAssignment>,
) -> Result<Json<UserView>, ApiError> {
    let db = state.db.conn();
    let user = roles::assign(db, Actor::Superuser(actor.id), &slug, body.email()?).await?;
    Ok(Json(UserView::load(db, user).await?))
}

/// Take a role from an account; harmless when it does not hold it. A superuser cannot revoke
/// their own `superuser` role, nor the last active superuser's.
#[utoipa::path(
    post,
    path = "/api/roles/{slug}/revoke",
    tag = "roles",
    params(("slug" = String, Path, pattern = r"^[^\u0000]*$", description = "the role, such as `application-access` or `superuser`")),
    request_body = RoleAssignment,
    responses(
        (status = 200, description = "the account with its roles", body = UserView),
        (status = 403, description = "not a superuser (or no longer one)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such role or account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "that would remove your own superuser rights, or leave no active superuser", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the email is missing", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn revoke(
    Superuser(actor): Superuser,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Json(body): Json<RoleAssignment>,
) -> Result<Json<UserView>, ApiError> {
    let db = state.db.conn();
    let user = roles::revoke(db, Actor::Superuser(actor.id), &slug, body.email()?).await?;
    Ok(Json(UserView::load(db, user).await?))
}
