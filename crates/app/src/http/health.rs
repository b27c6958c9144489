//! `GET /health`: is the database answering, and is its schema at the head migration; and is
//! the server shutting down.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use crate::config::Backend;
use crate::db::PoolStatus;
use crate::db::replicas::ReplicaHealth;
use crate::migrate;

/// A health check answers within this time even when the pool waits longer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(health),
    components(schemas(Health, DatabaseHealth, SchemaHealth, PoolStatus, ReplicaHealth))
)]
struct Doc;

/// The OpenAPI description of `/health`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` when the database answers and the schema is complete, `shutting down` once the
    /// server got SIGTERM or Ctrl-C (it finishes the requests it has and takes no new
    /// connections), else `unavailable`.
    pub status: &'static str,
    /// Left out while shutting down: the check is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseHealth>,
    /// Left out while shutting down: the check is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaHealth>,
    pub pool: PoolStatus,
    /// The read replicas (`DATABASE_REPLICA_URLS`) as the replica monitor last saw them; empty
    /// without replicas. A replica down or lagging does not make the service unhealthy (reads
    /// go to the primary meanwhile): it sets `degraded`.
    pub replicas: Vec<ReplicaHealth>,
    /// True when a read replica is down or lagging.
    pub degraded: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseHealth {
    pub reachable: bool,
    pub backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaHealth {
    /// `ready` (at head), `behind` (migrations pending), `unknown-revision` (the database has
    /// a revision this binary does not know), `needs-adoption` (the Python service's database:
    /// run `app database adopt`) or `unknown` (the database did not answer).
    pub state: &'static str,
    /// Why the schema is not ready, when there is more to say than the state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub current: Vec<String>,
    pub heads: Vec<String>,
    pub pending: usize,
}

/// Whether the database answers and its schema is at the head migration.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "healthy", body = Health),
        (status = 503, description = "the database does not answer, the schema is not at head, or the server is shutting down", body = Health)
    )
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let db = &state.db;
    let check = tokio::time::timeout(HEALTH_TIMEOUT, async {
        // One checkout and back first; like every checkout, it is timed in
        // app_db_pool_acquire_wait_seconds (a timeout there is counted once, by `explain`).
        db.probe_checkout().await?;
        let ping = db.ping().await?;
        let status = migrate::pooled_status(db, &state.settings.database).await?;
        Ok::<_, crate::db::DbError>((ping, status))
    });
    // A check waiting for a connection when the shutdown starts answers at once: a load
    // balancer should learn of it now, not when the pool gives up.
    let checked = tokio::select! {
        biased;
        () = state.lifecycle.shutting_down() => return shutting_down(&state),
        checked = check => checked,
    };
    let (database, schema) = match checked {
        Ok(Ok((ping, status))) => (
            DatabaseHealth {
                reachable: true,
                backend: db.backend(),
                server_version: Some(ping.server_version),
                round_trip_ms: Some(ping.round_trip.as_secs_f64() * 1000.0),
                error: None,
            },
            SchemaHealth {
                detail: status.foreign.as_ref().map(crate::legacy::explain),
                state: if status.foreign.is_some() {
                    "needs-adoption"
                } else if !status.unknown.is_empty() {
                    "unknown-revision"
                } else if !status.pending.is_empty() {
                    "behind"
                } else {
                    "ready"
                },
                pending: status.pending.len(),
                current: status.current,
                heads: status.heads,
            },
        ),
        failed => {
            let error = match failed {
                Ok(Err(err)) => err.to_string(),
                _ => format!("no answer within {}s", HEALTH_TIMEOUT.as_secs()),
            };
            tracing::warn!(%error, "health check failed");
            (
                DatabaseHealth {
                    reachable: false,
                    backend: db.backend(),
                    server_version: None,
                    round_trip_ms: None,
                    error: Some(error),
                },
                SchemaHealth {
                    state: "unknown",
                    detail: None,
                    current: Vec::new(),
                    heads: Vec::new(),
                    pending: 0,
                },
            )
        }
    };
    if state.lifecycle.is_shutting_down() {
        return shutting_down(&state);
    }
    let healthy = database.reachable && schema.state == "ready";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let replicas = state.replicas.health();
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        database: Some(database),
        schema: Some(schema),
        pool: db.pool_status(),
        degraded: replicas.iter().any(|replica| replica.state != "up"),
        replicas,
    };
    (status, Json(body))
}

/// 503 `shutting down`, without touching the database.
fn shutting_down(state: &AppState) -> (StatusCode, Json<Health>) {
    let replicas = state.replicas.health();
    let body = Health {
        status: "shutting down",
        database: None,
        schema: None,
        pool: state.db.pool_status(),
        degraded: replicas.iter().any(|replica| replica.state != "up"),
        replicas,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}
