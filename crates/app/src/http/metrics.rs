//! `GET /metrics`: the app's figures in the Prometheus text format, for operators (no auth),
//! and the middleware that records every request into them.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::metrics::{CONTENT_TYPE, PoolTimeoutSeen, UNMATCHED_ROUTE};

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics))]
struct Doc;

/// The OpenAPI description of `/metrics`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

/// Pool, statement and request metrics in the Prometheus text exposition format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "the metrics, one HELP and TYPE per family", body = String,
         content_type = "text/plain; version=0.0.4")
    )
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.db.metrics().render(state.db.pool_status());
    body.push_str(&state.replicas.render_metrics());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

/// Counts and times each request by method, matched route (or `unmatched`) and status, and
/// counts a pool timeout the error marked as not yet counted (with its wait).
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    let metrics = state.db.metrics();
    if response.extensions().get::<PoolTimeoutSeen>().is_some() {
        metrics.pool_timeout(state.db.pool_timeout());
    }
    metrics.observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
