//! `/api/access/*` and `/api/me`: sign-up, sign-in (the OAuth2 password flow), sign-out, and
//! the signed-in account.
//!
//! Sign-in is throttled (`LOGIN_*` settings): too many failures for an email or from a client
//! address answer 429 with `Retry-After`. The client address is the connection's peer, when the
//! server was started with connection info; no proxy header is trusted.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{CurrentUser, Form, Json};
use super::users::UserView;
use crate::domain::accounts::{self, SignIn, SignInError};
use crate::domain::revocations;

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
    /// A plausible address (one `@`, a dotted domain), up to 254 characters; stored trimmed
    /// and lowercased; unique.
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, example = "ann@example.com")]
    email: String,
    /// Up to 255 characters; a blank name is stored as none.
    #[serde(default)]
    #[schema(
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,253}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?)?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        example = "Ann"
    )]
    name: Option<String>,
    /// 8 to 1024 characters.
    #[serde(default)]
    #[schema(required = true, min_length = 8, max_length = 1024, pattern = r"^[^\u0000]*$", format = Password)]
    password: String,
}

/// The OAuth2 password grant (RFC 6749 4.3), as `application/x-www-form-urlencoded`. Other
/// OAuth2 fields (`scope`, `client_id`) are accepted and ignored.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The account's email.
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$",
        example = "ann@example.com"
    )]
    username: String,
    #[serde(default)]
    #[schema(required = true, min_length = 1, pattern = r"^[^\u0000]*$", format = Password)]
    password: String,
    /// `password` when given.
    #[serde(default)]
    #[schema(pattern = "^password$", example = "password")]
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
        (status = 409, description = "the email is taken", body = Problem, content_type = "application/problem+json")
    )
)]
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let db = state.db.conn();
    let user = accounts::signup(db, &body.email, body.name.as_deref(), &body.password).await?;
    crate::db::replicas::note_actor(user.id);
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
        (status = 415, description = "the body is not a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "missing fields, or a grant type other than password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed sign-ins for this email or from this address (LOGIN_MAX_FAILURES, LOGIN_MAX_FAILURES_PER_ADDRESS within LOGIN_THROTTLE_WINDOW); the password was not checked", body = Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "seconds until a sign-in may pass again")))
    )
)]
async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Result<
    (
        [(axum::http::HeaderName, &'static str); 2],
        Json<AccessToken>,
    ),
    LoginRefused,
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
        return Err(ApiError::Validation(errors).into());
    }
    let attempt = SignIn {
        email: &form.username,
        password: &form.password,
        address: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
    };
    let user = accounts::sign_in(state.db.conn(), &state.settings.login_throttle, attempt).await?;
    // Sign-in counts the login on the account: the account's next reads must see it.
    crate::db::replicas::note_actor(user.id);
    let access_token = state.tokens.issue_for(&user).map_err(ApiError::internal)?;
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

/// Why a sign-in was refused: as any request can be, or throttled.
#[derive(Debug)]
enum LoginRefused {
    Api(ApiError),
    /// 429 with `Retry-After`.
    Throttled {
        retry_after: Duration,
        detail: String,
    },
}

impl From<ApiError> for LoginRefused {
    fn from(err: ApiError) -> Self {
        LoginRefused::Api(err)
    }
}

impl From<SignInError> for LoginRefused {
    fn from(err: SignInError) -> Self {
        match err {
            SignInError::Throttled { retry_after } => LoginRefused::Throttled {
                retry_after,
                detail: err.to_string(),
            },
            SignInError::Account(err) => LoginRefused::Api(err.into()),
        }
    }
}

impl IntoResponse for LoginRefused {
    fn into_response(self) -> Response {
        match self {
            LoginRefused::Api(err) => err.into_response(),
            LoginRefused::Throttled {
                retry_after,
                detail,
            } => {
                let status = StatusCode::TOO_MANY_REQUESTS;
                let mut problem: Problem = ApiError::BadRequest(detail).problem();
                problem.status = status.as_u16();
                problem.title = status.canonical_reason().unwrap_or("Too Many Requests");
                let mut response = (
                    status,
                    [(CONTENT_TYPE, "application/problem+json")],
                    axum::Json(problem),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
                response
            }
        }
    }
}

/// Sign out: the token answers 401 from now on, on every instance.
#[utoipa::path(
    post,
    path = "/api/access/logout",
    tag = "access",
    responses(
        (status = 204, description = "the token is revoked"),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn logout(
    current: CurrentUser,
    State(state): State<AppState>,
) -> Result<StatusCode, ApiError> {
    revocations::revoke(state.db.conn(), &current.claims).await?;
    tracing::info!(user_id = %current.user.id, "signed out");
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account, with its roles.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "access",
    responses(
        (status = 200, description = "the signed-in account", body = UserView),
    ),
    security(("bearer" = []), ("oauth2" = []))
)]
async fn me(
    current: CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::load(&state.reader(), current.user).await?))
}
