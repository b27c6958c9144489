//! The problem answers many routes share, described once in the OpenAPI document.
//!
//! Each is a response component (`#/components/responses/Unavailable`, ...). [`SharedResponses`]
//! adds them, and then gives every operation under `/api/` each one that applies to it and
//! that its handler did not describe itself: 503 to all; 401 and 403 to those that need a
//! token; 400, 413, 415 and 422 to those that take a body; 400 and 404 to those with an id in
//! the path. A handler lists a status itself only when it has more to say about it (a 409's
//! cause, a 403 for non-superusers).

use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// The JSON Schema `pattern` of a name or item: 1 to 100 characters once trimmed (whitespace
/// as Rust's `str::trim` counts it, any amount of it around), none of them U+0000. The domain
/// trims before it counts, so `maxLength` (which counts the untrimmed text) would say less
/// than the API takes.
pub const TRIMMED_NAME: &str = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000](?:[^\u0000]{0,98}[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000])?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$";

/// The media type of every error answer (RFC 7807).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One shared answer: its component name, status and description.
struct Shared {
    name: &'static str,
    status: &'static str,
    description: &'static str,
}

const BAD_REQUEST: Shared = Shared {
    name: "BadRequest",
    status: "400",
    description: "the body is not valid JSON, or a path segment is malformed (not a UUID, or holds U+0000)",
};
const UNAUTHORIZED: Shared = Shared {
    name: "Unauthorized",
    status: "401",
    description: "no valid token: missing, malformed, expired, revoked, or issued before the account's password changed",
};
const FORBIDDEN: Shared = Shared {
    name: "Forbidden",
    status: "403",
    description: "the account is inactive",
};
const NOT_FOUND: Shared = Shared {
    name: "NotFound",
    status: "404",
    description: "nothing of yours has this id",
};
const PAYLOAD_TOO_LARGE: Shared = Shared {
    name: "PayloadTooLarge",
    status: "413",
    description: "the body is larger than APP_MAX_BODY_BYTES",
};
const UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    name: "UnsupportedMediaType",
    status: "415",
    description: "the body is not of the documented media type, or declares a charset other than UTF-8",
};
const UNPROCESSABLE: Shared = Shared {
    name: "Unprocessable",
    status: "422",
    description: "invalid fields (a value breaking a documented rule, an unknown field, text holding U+0000), all named in `errors`",
};
const UNAVAILABLE: Shared = Shared {
    name: "Unavailable",
    status: "503",
    description: "the database is not available (no connection free in time, or the server unreachable); try again after `Retry-After` seconds",
};

const ALL: [Shared; 8] = [
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    UNPROCESSABLE,
    UNAVAILABLE,
];

/// A problem JSON response with this description.
pub fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn component(shared: &Shared) -> Response {
    let response = problem(shared.description);
    if shared.status != "503" {
        return response;
    }
    let mut response = response;
    response.headers.insert(
        "retry-after".into(),
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some("seconds to wait before trying again"))
            .build()
            .into(),
    );
    response
}

/// Adds the shared responses as components and to each `/api/` operation they apply to.
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for shared in &ALL {
            components
                .responses
                .insert(shared.name.into(), RefOr::T(component(shared)));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared(operation);
            }
        }
    }
}

/// Gives `operation` every shared answer that applies to it and that it lacks.
fn add_shared(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|security| !security.is_empty());
    let body_types: Vec<&String> = match &operation.request_body {
        Some(RefOr::T(body)) => body.content.keys().collect(),
        _ => Vec::new(),
    };
    let has_body = !body_types.is_empty();
    let json_body = body_types.iter().any(|media| media.contains("json"));
    let has_path_id =
        operation.parameters.iter().flatten().any(
            |param| matches!(param, RefOr::T(param) if param.parameter_in == ParameterIn::Path),
        );
    let mut wanted = vec![&UNAVAILABLE];
    if secured {
        wanted.extend([&UNAUTHORIZED, &FORBIDDEN]);
    }
    if json_body {
        wanted.push(&BAD_REQUEST);
    }
    if has_body {
        wanted.extend([&PAYLOAD_TOO_LARGE, &UNSUPPORTED_MEDIA_TYPE, &UNPROCESSABLE]);
    }
    if has_path_id {
        wanted.extend([&BAD_REQUEST, &NOT_FOUND]);
    }
    for shared in wanted {
        operation
            .responses
            .responses
            .entry(shared.status.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(shared.name)));
    }
}
