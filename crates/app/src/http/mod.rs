//! The HTTP API: one router per module, merged by [`app`], sharing [`AppState`].

mod access;
pub mod error;
pub mod extract;
mod health;
mod metrics;
pub mod openapi;
mod read_routing;
mod responses;
pub mod retry;
mod roles;
mod tags;
mod to_completion;
mod todos;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::db::{Database, Replicas};
use crate::domain::cursor::Cursors;
use crate::domain::tokens::Tokens;

/// What every handler can reach: the settings, the database and its read replicas, the token
/// service and whether the server is stopping.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub replicas: Replicas,
    pub tokens: Arc<Tokens>,
    /// Seals the cursors of lists, with a key derived from the same secret.
    pub cursors: Arc<Cursors>,
    pub lifecycle: Lifecycle,
}

impl AppState {
    pub fn new(settings: Settings, db: Database) -> Self {
        let tokens = Tokens::new(settings.secret_key.expose(), settings.token_lifetime);
        let cursors = Cursors::new(settings.secret_key.expose());
        Self {
            settings: Arc::new(settings),
            db,
            replicas: Replicas::none(),
            tokens: Arc::new(tokens),
            cursors: Arc::new(cursors),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The same state reading from these replicas.
    pub fn with_replicas(mut self, replicas: Replicas) -> Self {
        self.replicas = replicas;
        self
    }

    /// The connection a read-only handler reads from: a replica that has the signed-in
    /// account's writes and lags little enough, else the primary (see `db::replicas`).
    /// Handlers that write, or read to decide a write, use `db.conn()`.
    pub fn reader(&self) -> crate::db::DbConn {
        self.replicas.reader(self.db.conn())
    }
}

/// Whether the server is shutting down, and how many requests it is answering: shared by the
/// server loop (which starts the shutdown, waits for quiet and reports what it cut off),
/// `/health` (which answers 503 meanwhile) and the middleware that counts requests.
#[derive(Debug, Clone)]
pub struct Lifecycle(Arc<LifecycleInner>);

#[derive(Debug)]
struct LifecycleInner {
    stopping: watch::Sender<bool>,
    in_flight: AtomicUsize,
    started: AtomicU64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self(Arc::new(LifecycleInner {
            stopping: watch::Sender::new(false),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
        }))
    }
}

impl Lifecycle {
    /// Marks the server as shutting down; wakes everything waiting in [`Self::shutting_down`].
    pub fn begin_shutdown(&self) {
        self.0.stopping.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.0.stopping.borrow()
    }

    /// Resolves once [`Self::begin_shutdown`] was called (at once if it already was).
    pub async fn shutting_down(&self) {
        let mut stopping = self.0.stopping.subscribe();
        // The sender lives in `self`, so waiting fails only if it never comes: wait forever.
        if stopping.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Requests whose handlers have started and not yet produced a response.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Requests started since the server was built (to tell a quiet moment from a busy one).
    pub fn started(&self) -> u64 {
        self.0.started.load(Ordering::SeqCst)
    }
}

/// Counts a request in [`Lifecycle::in_flight`] until its response is ready, or until it is
/// dropped unanswered (a cut-off request counts until then). While shutting down, every
/// response says `Connection: close`: its client then sends its next request on a new
/// connection (to another instance) instead of racing the close of this one.
async fn track_requests(State(lifecycle): State<Lifecycle>, req: Request, next: Next) -> Response {
    struct InFlight(Lifecycle);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
    lifecycle.0.started.fetch_add(1, Ordering::SeqCst);
    lifecycle.0.in_flight.fetch_add(1, Ordering::SeqCst);
    let counted = InFlight(lifecycle);
    let mut response = next.run(req).await;
    if counted.0.is_shutting_down() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
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
        // Innermost: chooses where each attempt reads and records the write position after a
        // write (per attempt, so a write's position is recorded once it committed).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_routing::route,
        ))
        // Runs a request again after a lost connection (or a failed replica read, on the
        // primary); reads the body within the limit.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            retry::retry,
        ))
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
        .layer(axum::middleware::from_fn_with_state(
            state.lifecycle.clone(),
            track_requests,
        ))
        // Outermost: a client that goes away cannot cut the work below off half way.
        .layer(axum::middleware::from_fn(to_completion::run_to_completion))
        .with_state(state)
}
