//! `/api/roles/{slug}/assign` and `/revoke`: giving and taking roles, for superusers only.
//!
//! Assigning or revoking `superuser` also sets or clears the account's `isSuperuser`.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Superuser};
use super::users::UserView;
use crate::domain::accounts;
use crate::domain::roles;
use crate::fixtures::SUPERUSER_ROLE;

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
    /// The account's email (any case).
    #[serde(default)]
    #[schema(required = true, example = "ann@example.com")]
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
    params(("slug" = String, Path, description = "the role, such as `application-access` or `superuser`")),
    request_body = RoleAssignment,
    responses(
        (status = 200, description = "the account with its roles", body = UserView),
        (status = 400, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a superuser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such role or account", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the email is missing", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn assign(
    _: Superuser,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Json(body): Json<RoleAssignment>,
) -> Result<Json<UserView>, ApiError> {
    let db = state.db.conn();
    let user = roles::assign(db, &slug, body.email()?).await?;
    Ok(Json(UserView::load(db, user).await?))
}

/// Take a role from an account; harmless when it does not hold it. A superuser cannot revoke
/// their own `superuser` role.
#[utoipa::path(
    post,
    path = "/api/roles/{slug}/revoke",
    tag = "roles",
    params(("slug" = String, Path, description = "the role, such as `application-access` or `superuser`")),
    request_body = RoleAssignment,
    responses(
        (status = 200, description = "the account with its roles", body = UserView),
        (status = 400, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a superuser", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such role or account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "that would remove your own superuser rights", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not application/json", body = Problem, content_type = "application/problem+json"),
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
    let email = body.email()?;
    if slug == SUPERUSER_ROLE && accounts::normalize_email(email) == actor.email {
        return Err(ApiError::conflict(
            "you cannot revoke your own superuser role; ask another superuser",
        ));
    }
    let db = state.db.conn();
    let user = roles::revoke(db, &slug, email).await?;
    Ok(Json(UserView::load(db, user).await?))
}
