//! `/api/access/*` and `/api/me`: sign-up, sign-in (the OAuth2 password flow), sign-out, and
//! the signed-in account.
//!
//! Also maps [`AccountError`] to HTTP, once, for every module that calls the accounts domain.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{CurrentUser, Form, Json};
use super::users::UserView;
use crate::domain::accounts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/access/signup", post(signup))
        .route("/api/access/login", post(login))
        .route("/api/access/logout", post(logout))
        .route("/api/me", get(me))
}

#[derive(OpenApi)]
#[openapi(
    paths(signup, login, logout, me),
    components(schemas(SignupBody, LoginForm, AccessToken, UserView)),
    tags((name = "access", description = "Sign-up, sign-in and the signed-in account"))
)]
struct Doc;

/// The OpenAPI description of `/api/access/*` and `/api/me`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupBody {
    /// Stored trimmed and lowercased.
    #[serde(default)]
    #[schema(required = true, example = "ann@example.com")]
    email: String,
    #[serde(default)]
    #[schema(example = "Ann")]
    name: Option<String>,
    #[serde(default)]
    #[schema(required = true, min_length = 8, format = Password)]
    password: String,
}

/// The OAuth2 password grant (RFC 6749 4.3), as `application/x-www-form-urlencoded`. Other
/// OAuth2 fields (`scope`, `client_id`) are accepted and ignored.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The account's email.
    #[serde(default)]
    #[schema(required = true, example = "ann@example.com")]
    username: String,
    #[serde(default)]
    #[schema(required = true, format = Password)]
    password: String,
    /// `password` when given.
    #[serde(default)]
    #[schema(example = "password")]
    grant_type: Option<String>,
}

/// An access token, in the OAuth2 shape (snake_case, as RFC 6749 5.1 requires).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    /// A JWT to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

/// Create an account with the `application-access` role.
#[utoipa::path(
    post,
    path = "/api/access/signup",
    tag = "access",
    request_body = SignupBody,
    responses(
        (status = 201, description = "the new account", body = UserView),
        (status = 400, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the email is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields, all named in `errors`", body = Problem, content_type = "application/problem+json")
    )
)]
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let db = state.db.conn();
    let user = accounts::signup(db, &body.email, body.name.as_deref(), &body.password).await?;
    Ok((StatusCode::CREATED, Json(UserView::load(db, user).await?)))
}

/// Sign in: trade an email (as `username`) and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/access/login",
    tag = "access",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "signed in", body = AccessToken),
        (status = 401, description = "the email or password is wrong (the same answer for both)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the account is inactive", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "missing fields, or a grant type other than password", body = Problem, content_type = "application/problem+json")
    )
)]
async fn login(
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> Result<
    (
        [(axum::http::HeaderName, &'static str); 2],
        Json<AccessToken>,
    ),
    ApiError,
> {
    let mut errors = Vec::new();
    if form.username.trim().is_empty() {
        errors.push(FieldError::new("username", "is required"));
    }
    if form.password.is_empty() {
        errors.push(FieldError::new("password", "is required"));
    }
    if form
        .grant_type
        .as_deref()
        .is_some_and(|grant| grant != "password")
    {
        errors.push(FieldError::new("grant_type", "must be password"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let user = accounts::authenticate(state.db.conn(), &form.username, &form.password).await?;
    let access_token = state.tokens.issue(user.id).map_err(ApiError::internal)?;
    let token = AccessToken {
        access_token,
        token_type: "bearer",
        expires_in: state.tokens.lifetime().as_secs(),
    };
    // RFC 6749 5.1: responses with tokens must not be cached.
    Ok((
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        Json(token),
    ))
}

/// Sign out: the token answers 401 from now on.
#[utoipa::path(
    post,
    path = "/api/access/logout",
    tag = "access",
    responses(
        (status = 204, description = "the token is revoked"),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the account is inactive", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn logout(current: CurrentUser, State(state): State<AppState>) -> StatusCode {
    state.tokens.revoke(&current.claims);
    tracing::info!(user_id = %current.user.id, "signed out");
    StatusCode::NO_CONTENT
}

/// The signed-in account, with its roles.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "access",
    responses(
        (status = 200, description = "the signed-in account", body = UserView),
        (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the account is inactive", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn me(
    current: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::load(state.db.conn(), current.user).await?))
}
