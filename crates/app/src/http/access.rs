//! Routes of /api/access (being written).

use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}
