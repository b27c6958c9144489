//! Extractors whose rejections are our [`ApiError`], so a malformed request answers problem
//! JSON like every other error; and the extractors of the signed-in user.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sea_orm::EntityTrait;

use super::AppState;
use super::error::{ApiError, FieldError};
use crate::domain::tokens::Claims;
use crate::models::user_account;

/// A JSON body; a bad one answers 400 (not JSON), 413 (too large), 415 (not
/// `application/json`) or 422 (JSON of the wrong shape, naming the field).
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters; bad ones answer 422.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; a malformed one (such as an id that is not a UUID) answers 400.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A URL-encoded form (the OAuth2 password flow); bad ones answer 422.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Form), rejection(ApiError))]
pub struct Form<T>(pub T);

/// `invalid type: ... at line 1 column 9` from serde, split into field and message where
/// axum names the field (`item: invalid type ...`).
fn field_error(text: &str) -> FieldError {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to deserialize query string: "))
        .or_else(|| text.strip_prefix("Failed to deserialize form body: "))
        .or_else(|| text.strip_prefix("Failed to deserialize form: "))
        .unwrap_or(text);
    let text = match text.rfind(" at line ") {
        Some(cut) => &text[..cut],
        None => text,
    };
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return FieldError::new(field, "is required");
    }
    if let Some(field) = text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        return FieldError::new(field, "is not a known field");
    }
    match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => FieldError::new(path, message),
        _ => FieldError::new("body", text),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match &rejection {
            JsonRejection::JsonDataError(err) => {
                ApiError::Validation(vec![field_error(&err.body_text())])
            }
            JsonRejection::JsonSyntaxError(err) => {
                ApiError::BadRequest(format!("the body is not valid JSON: {}", err.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("send the body as application/json".into())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(vec![field_error(&rejection.body_text())])
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match &rejection {
            FormRejection::InvalidFormContentType(_) => ApiError::UnsupportedMediaType(
                "send the form as application/x-www-form-urlencoded".into(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::Validation(vec![field_error(&other.body_text())]),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!("malformed path: {}", rejection.body_text()))
    }
}

/// The signed-in user, from `Authorization: Bearer <token>`. A missing, malformed, expired,
/// revoked or forged token answers 401; an inactive account 403.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: user_account::Model,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("sign in: send Authorization: Bearer <token>".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be Bearer <token>".into())
            })?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|err| ApiError::Unauthorized(err.to_string()))?;
        let user = user_account::Entity::find_by_id(claims.sub)
            .one(state.db.conn())
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("the account of this token no longer exists".into())
            })?;
        if !user.is_active {
            return Err(ApiError::Forbidden("this account is inactive".into()));
        }
        Ok(CurrentUser { user, claims })
    }
}

/// The signed-in user, who must be a superuser (else 403).
#[derive(Debug, Clone)]
pub struct Superuser(pub user_account::Model);

impl FromRequestParts<AppState> for Superuser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        if !current.user.is_superuser {
            return Err(ApiError::Forbidden("only superusers may do this".into()));
        }
        Ok(Superuser(current.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_field_errors() {
        assert_eq!(
            field_error(
                "Failed to deserialize the JSON body into the target type: missing field `item` at line 1 column 2"
            ),
            FieldError::new("item", "is required")
        );
        assert_eq!(
            field_error(
                "Failed to deserialize the JSON body into the target type: importance: unknown variant `urgent`, expected one of `none`, `low` at line 1 column 30"
            ),
            FieldError::new(
                "importance",
                "unknown variant `urgent`, expected one of `none`, `low`"
            )
        );
        assert_eq!(field_error("something odd").field, "body");
    }
}
