//! The OpenAPI 3.1 document at `/schema/openapi.json` and the interactive docs at `/schema`,
//! served from assets built into the binary (no CDN).

use axum::Router;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use super::error::{FieldError, Problem};
use super::responses::SharedResponses;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "app",
        description = "Todo service: accounts, roles, todos and tags. Every error is RFC 7807 problem JSON."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SecuritySchemes)
)]
struct BaseDoc;

/// Adds the bearer scheme (and the OAuth2 password flow that issues it).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "/api/access/login",
                Scopes::new(),
            ))])),
        );
    }
}

/// The whole document: the base merged with each route module's paths.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    for part in [
        super::health::openapi(),
        super::metrics::openapi(),
        super::access::openapi(),
        super::users::openapi(),
        super::roles::openapi(),
        super::todos::openapi(),
        super::tags::openapi(),
    ] {
        doc.merge(part);
    }
    SharedResponses.modify(&mut doc);
    doc
}

/// `/schema` (Swagger UI, vendored) and `/schema/openapi.json`.
pub fn router() -> Router<AppState> {
    let config = Config::new(["/schema/openapi.json"]).validator_url("none");
    Router::new().merge(
        SwaggerUi::new("/schema")
            .url("/schema/openapi.json", document())
            .config(config),
    )
}
