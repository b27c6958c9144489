//! The one error type of the HTTP layer, answered as RFC 7807 problem JSON.
//!
//! Domain errors convert into [`ApiError`] with `From` (all here); the status of each case is
//! chosen in this file. Server errors are logged with their cause and answered
//! without it: a database error's text never reaches a client.
//!
//! A database that cannot serve (no connection free in time, the server unreachable, a lost
//! connection) answers 503 with `Retry-After`. A lost connection also marks the response with
//! [`ConnectionLost`], so the retry layer (`http::retry`) can run the request again.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::{DbError, is_connection_lost};
use crate::domain::accounts::{AccountError, Guarded, Refusal};
use crate::domain::roles::RoleError;
use crate::domain::tags::TagError;
use crate::domain::todos::TodoError;
use crate::metrics::PoolTimeoutSeen;

/// Seconds a client is told to wait (`Retry-After`) after a 503 for a pool timeout: every
/// connection was busy for `DATABASE_POOL_TIMEOUT`, so the load needs a moment to pass.
pub const POOL_TIMEOUT_RETRY_AFTER_SECS: u32 = 5;

/// Seconds a client is told to wait after any other 503 (a lost connection, a server that does
/// not answer): a restarting server is usually back within that.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 1;

/// Put in a response's extensions when the request failed because its database connection was
/// lost ([`is_connection_lost`]): the retry layer may run the request again on a fresh one.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLost;

/// One invalid field of a request, in a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field as the client wrote it (camelCase), or `body` for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `conflicts` names the rows in the way (such as overlapping todos).
    #[error("{detail}")]
    Conflict {
        detail: String,
        conflicts: Vec<Uuid>,
    },
    #[error("the request body is larger than this server accepts (APP_MAX_BODY_BYTES)")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the database is not available; try again shortly")]
    Unavailable(#[source] DbError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An RFC 7807 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// For 422: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For 409: the ids of the rows in the way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<Uuid>>,
}

impl ApiError {
    /// A 422 with a single field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// A 409 naming no rows.
    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::Conflict {
            detail: detail.into(),
            conflicts: Vec::new(),
        }
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(err))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document; a server error's cause stays in the log.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            conflicts: match self {
                ApiError::Conflict { conflicts, .. } if !conflicts.is_empty() => {
                    Some(conflicts.clone())
                }
                _ => None,
            },
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            ApiError::Unavailable(err)
        } else {
            ApiError::Internal(Box::new(err))
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        match &err {
            _ if is_connection_lost(&err) => ApiError::Unavailable(DbError::ConnectionLost(err)),
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                ApiError::Unavailable(DbError::Query(err))
            }
            _ => ApiError::Internal(Box::new(err)),
        }
    }
}

impl ApiError {
    /// The request failed because its database connection was lost.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ApiError::Unavailable(err) if err.is_connection_lost())
    }

    /// `Retry-After` seconds for a 503; `None` for any other status.
    fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Unavailable(DbError::PoolTimeout { .. }) => {
                Some(POOL_TIMEOUT_RETRY_AFTER_SECS)
            }
            _ if self.is_uncounted_pool_timeout() => Some(POOL_TIMEOUT_RETRY_AFTER_SECS),
            ApiError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// A pool timeout that came straight from SeaORM (`From<DbErr>`). One that went through
    /// `Database::explain` is a `DbError::PoolTimeout` and was counted there.
    fn is_uncounted_pool_timeout(&self) -> bool {
        matches!(
            self,
            ApiError::Unavailable(DbError::Query(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout
            )))
        )
    }
}

// Each domain error, mapped to a status here and nowhere else.

/// `(field, message)` pairs of a domain check as field errors.
fn field_errors<F: Into<String>, M: Into<String>>(problems: Vec<(F, M)>) -> Vec<FieldError> {
    problems
        .into_iter()
        .map(|(field, message)| FieldError::new(field, message))
        .collect()
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotSuperuser => ApiError::Forbidden(refusal.to_string()),
            Refusal::OwnAccount(_) | Refusal::LastSuperuser(_) => {
                ApiError::conflict(refusal.to_string())
            }
        }
    }
}

impl<E> From<Guarded<E>> for ApiError
where
    ApiError: From<E>,
{
    fn from(err: Guarded<E>) -> Self {
        match err {
            Guarded::Refused(refusal) => refusal.into(),
            Guarded::Failed(err) => err.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(fields) => ApiError::Validation(
                fields
                    .into_iter()
                    .map(|f| FieldError::new(f.field, f.message))
                    .collect(),
            ),
            AccountError::EmailTaken(_) => ApiError::conflict(err.to_string()),
            AccountError::InvalidCredentials => ApiError::Unauthorized(err.to_string()),
            AccountError::Inactive => ApiError::Forbidden(err.to_string()),
            AccountError::NotFound(_) => ApiError::NotFound(err.to_string()),
            AccountError::Db(db) => ApiError::from(db),
            AccountError::MissingRole(_) | AccountError::Hash(_) => ApiError::internal(err),
        }
    }
}

impl From<RoleError> for ApiError {
    fn from(err: RoleError) -> Self {
        match err {
            RoleError::UnknownRole(_) | RoleError::UnknownUser(_) => {
                ApiError::NotFound(err.to_string())
            }
            RoleError::Db(db) => ApiError::from(db),
        }
    }
}

impl From<TagError> for ApiError {
    fn from(err: TagError) -> Self {
        match err {
            TagError::Invalid(problems) => ApiError::Validation(field_errors(problems)),
            TagError::Duplicate(_) => ApiError::conflict(err.to_string()),
            TagError::NotFound(_) => ApiError::NotFound(err.to_string()),
            TagError::Db(err) => ApiError::from(err),
        }
    }
}

impl From<TodoError> for ApiError {
    fn from(err: TodoError) -> Self {
        match err {
            TodoError::NotFound(_) => ApiError::NotFound(err.to_string()),
            TodoError::Overlap(ref ids) => ApiError::Conflict {
                conflicts: ids.clone(),
                detail: err.to_string(),
            },
            TodoError::Invalid(problems) => ApiError::Validation(field_errors(problems)),
            TodoError::Db(err) => ApiError::from(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let uncounted_timeout = self.is_uncounted_pool_timeout();
        let lost = self.is_connection_lost();
        let retry_after = self.retry_after();
        if lost {
            // Usually run again by the retry layer, which logs what it does.
            tracing::warn!(error = ?self, "database connection lost");
        } else if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self.problem()),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if lost {
            response.extensions_mut().insert(ConnectionLost);
        }
        if uncounted_timeout {
            // `From<DbErr>` has no `Database` to count with; the metrics middleware counts it.
            response.extensions_mut().insert(PoolTimeoutSeen);
        }
        response
    }
}

/// Answers routes that do not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::*;

    fn reset() -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ))))
    }

    fn retry_after(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap())
    }

    #[test]
    fn a_lost_connection_answers_503_with_retry_after_and_is_marked() {
        let response = ApiError::from(reset()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&response), Some("1"));
        assert!(response.extensions().get::<ConnectionLost>().is_some());
        let response = ApiError::from(TodoError::Db(reset())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.extensions().get::<ConnectionLost>().is_some());
    }

    #[test]
    fn a_pool_timeout_answers_503_with_a_longer_retry_after() {
        let straight = ApiError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        let explained = ApiError::from(DbError::PoolTimeout {
            waited: std::time::Duration::from_secs(30),
            size: 5,
            overflow: 10,
            in_use: 15,
        });
        for err in [straight, explained] {
            let response = err.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry_after(&response), Some("5"));
            assert!(response.extensions().get::<ConnectionLost>().is_none());
        }
    }

    #[test]
    fn other_errors_have_no_retry_after_and_no_mark() {
        for err in [
            ApiError::NotFound("x".into()),
            ApiError::from(DbErr::Custom("broken".into())),
        ] {
            let response = err.into_response();
            assert!(retry_after(&response).is_none());
            assert!(response.extensions().get::<ConnectionLost>().is_none());
        }
    }
}
