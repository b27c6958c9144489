//! Extractors whose rejections are our [`ApiError`], so a malformed request answers problem
//! JSON like every other error; and the extractors of the signed-in user.
//!
//! The body, query and path extractors also refuse the NUL character (U+0000) anywhere in what
//! they read, naming where it is: PostgreSQL cannot store it in a text column (SQLite would),
//! so refusing it here gives every route the same answer on both databases, before any
//! handler or query runs.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{
    BytesRejection, FormRejection, JsonRejection, PathRejection, QueryRejection,
};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, FieldError};
use crate::domain::revocations::{self, Holder};
use crate::domain::tags::NUL_MESSAGE;
use crate::domain::tokens::{Claims, TokenError};
use crate::models::user_account;

/// A JSON body; a bad one answers 400 (not JSON), 413 (too large), 415 (not
/// `application/json`) or 422 (JSON of the wrong shape, or a string holding U+0000, naming
/// the field: `item`, `tags[3]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        utf8_charset(&req)?;
        let (req, bytes) = buffered(req, state).await.map_err(JsonRejection::from)?;
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        nul_free(json_nul_paths(&bytes))?;
        Ok(Json(value))
    }
}

/// Refuses a JSON body declared in a charset other than UTF-8 (RFC 8259 8.1: JSON exchanged
/// between systems is UTF-8), which axum would otherwise read as UTF-8 all the same.
fn utf8_charset(req: &Request) -> Result<(), ApiError> {
    let Some(content_type) = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(());
    };
    let charset = content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    });
    match charset {
        Some(charset)
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") =>
        {
            Err(ApiError::UnsupportedMediaType(format!(
                "send the body as application/json in UTF-8, not charset {charset}"
            )))
        }
        _ => Ok(()),
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters; bad ones, and any holding U+0000, answer 422 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        let query = parts.uri.query().unwrap_or_default();
        nul_free(form_nul_fields(query.as_bytes()))?;
        Ok(Query(value))
    }
}

/// Path parameters; a malformed one (such as an id that is not a UUID, or one holding
/// U+0000) answers 400.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        // Parameters that deserialized are valid UTF-8, so the raw ones read too.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0'))
        {
            return Err(ApiError::BadRequest(format!(
                "malformed path: {} {NUL_MESSAGE}",
                shown(name)
            )));
        }
        Ok(Path(value))
    }
}

/// A URL-encoded form (the OAuth2 password flow); bad fields, and any holding U+0000, answer
/// 422 naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // axum reads a GET or HEAD form from the query string, any other from the body.
        let from_query = matches!(*req.method(), Method::GET | Method::HEAD);
        let query = req.uri().query().unwrap_or_default().to_string();
        let (req, bytes) = buffered(req, state).await.map_err(FormRejection::from)?;
        let axum::Form(value) = axum::Form::<T>::from_request(req, state).await?;
        let read = if from_query { query.as_bytes() } else { &bytes };
        nul_free(form_nul_fields(read))?;
        Ok(Form(value))
    }
}

/// The body read once (within the body limit), and the request again with that body, so the
/// bytes can be checked after axum's own extractor has read them.
async fn buffered<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(Request, Bytes), BytesRejection> {
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

/// A 422 naming each field that holds U+0000, or nothing when none does.
fn nul_free(fields: Vec<String>) -> Result<(), ApiError> {
    if fields.is_empty() {
        return Ok(());
    }
    Err(ApiError::Validation(
        fields
            .into_iter()
            .map(|field| FieldError::new(field, NUL_MESSAGE))
            .collect(),
    ))
}

/// A name as it can be shown: a NUL in it written `\0`.
fn shown(name: &str) -> String {
    name.replace('\0', "\\0")
}

/// The paths (`item`, `tags[3]`, `a.b`; `body` for the body itself) of the strings and keys of
/// a JSON document that hold U+0000. JSON can only spell it `\u0000`, so a document without
/// that text is not parsed again.
fn json_nul_paths(bytes: &[u8]) -> Vec<String> {
    let mut paths = Vec::new();
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return paths;
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk_json(&value, &mut String::new(), &mut paths);
    }
    paths
}

fn walk_json(value: &serde_json::Value, path: &mut String, found: &mut Vec<String>) {
    use serde_json::Value;
    let here = |path: &str| {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => found.push(here(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_json(item, path, found);
                path.truncate(len);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&shown(key));
                if key.contains('\0') {
                    found.push(path.clone());
                } else {
                    walk_json(member, path, found);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The names of the fields of a URL-encoded form or query string whose name or value holds
/// U+0000 (`%00`), each once, in order.
fn form_nul_fields(encoded: &[u8]) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(encoded) {
        if name.contains('\0') || value.contains('\0') {
            let name = shown(&name);
            if !fields.contains(&name) {
                fields.push(name);
            }
        }
    }
    fields
}

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
        // One query for the account and the revocation, on the database every instance
        // shares; an error there answers 503 (or 500), never lets the token through.
        let Holder {
            user,
            revoked,
            write_lsn,
        } = revocations::holder(state.db.conn(), &claims)
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("the account of this token no longer exists".into())
            })?;
        if revoked {
            return Err(ApiError::Unauthorized(TokenError::Revoked.to_string()));
        }
        claims
            .check_holder(&user)
            .map_err(|err| ApiError::Unauthorized(err.to_string()))?;
        if !user.is_active {
            return Err(ApiError::Forbidden("this account is inactive".into()));
        }
        // This request's reads may go to a replica that has replayed the account's writes.
        crate::db::replicas::note_account(user.id, write_lsn);
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

    #[test]
    fn nul_is_found_and_named_in_json() {
        let paths = |text: &str| json_nul_paths(text.as_bytes());
        assert!(paths(r#"{"item":"milk","tags":["a"]}"#).is_empty());
        // An escaped backslash before `u0000` is text, not NUL.
        assert!(paths(r#"{"item":"C:\\u0000"}"#).is_empty());
        assert_eq!(
            paths(r#"{"item":"a\u0000","tags":["ok","b\u0000"],"x":{"y":[{"z":"\u0000"}]}}"#),
            ["item", "tags[1]", "x.y[0].z"]
        );
        assert_eq!(paths(r#"{"a\u0000b":1}"#), ["a\\0b"]);
        assert_eq!(paths(r#""\u0000""#), ["body"]);
    }

    #[test]
    fn nul_is_found_and_named_in_forms() {
        assert!(form_nul_fields(b"username=ann&password=x%2500").is_empty());
        assert_eq!(
            form_nul_fields(b"username=ann%00&search=%00&username=%00x&a%00=1"),
            ["username", "search", "a\\0"]
        );
    }
}
