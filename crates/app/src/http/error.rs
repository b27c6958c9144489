//! The one error type of the HTTP layer, answered as RFC 7807 problem JSON.
//!
//! Domain errors convert into [`ApiError`] with `From` (all here); the status of each case is
//! chosen in this file. Server errors are logged with their cause and answered
//! without it: a database error's text never reaches a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::DbError;
use crate::domain::accounts::AccountError;
use crate::domain::roles::RoleError;
use crate::domain::tags::TagError;
use crate::domain::todos::TodoError;
use crate::metrics::PoolTimeoutSeen;

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
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                ApiError::Unavailable(DbError::Query(err))
            }
            _ => ApiError::Internal(Box::new(err)),
        }
    }
}

impl ApiError {
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
        if status.is_server_error() {
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
