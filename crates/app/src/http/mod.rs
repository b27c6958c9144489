//! The HTTP API: one router per module, merged by [`app`], sharing [`AppState`].

mod access;
pub mod error;
pub mod extract;
mod health;
mod metrics;
pub mod openapi;
mod roles;
mod tags;
mod todos;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::db::Database;
use crate::domain::tokens::Tokens;

/// What every handler can reach: the settings, the database and the token service.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub tokens: Arc<Tokens>,
}

impl AppState {
    pub fn new(settings: Settings, db: Database) -> Self {
        let tokens = Tokens::new(settings.secret_key.expose(), settings.token_lifetime);
        Self {
            settings: Arc::new(settings),
            db,
            tokens: Arc::new(tokens),
        }
    }
}

/// The whole application router. Does no I/O, so tests can drive it directly.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.http.max_body_bytes;
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(access::router())
        .merge(users::router())
        .merge(roles::router())
        .merge(todos::router())
        .merge(tags::router())
        .merge(openapi::router())
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            tracing::info_span!("http", method = %req.method(), route)
        }))
        // Outermost, and added with `Router::layer` so it runs per route and sees `MatchedPath`.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .with_state(state)
}
