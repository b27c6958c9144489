//! The HTTP API: one router per module, merged by [`app`], sharing [`AppState`].

pub mod error;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::db::Database;

/// What every handler can reach: the settings and the database.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
}

impl AppState {
    pub fn new(settings: Settings, db: Database) -> Self {
        Self {
            settings: Arc::new(settings),
            db,
        }
    }
}

/// The whole application router. Does no I/O, so tests can drive it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(error::not_found)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            tracing::info_span!("http", method = %req.method(), route)
        }))
        .with_state(state)
}
