//! Where each attempt at a request reads, and the write position a write leaves behind (see
//! `db::replicas`).
//!
//! Layered inside the retry layer, so it runs per attempt: an attempt marked [`PrimaryOnly`]
//! (the one after a replica failed) reads from the primary only, and a response that read from
//! a replica says which ([`ServedByReplica`]), for the retry layer to fail over. After a write
//! request (any method but GET, HEAD and OPTIONS) that succeeded, the acting account's write
//! position is recorded on the primary before the response leaves, so that account's next
//! read, through any instance, sees the write.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::db::replicas;

/// Request extension: this attempt reads from the primary only.
#[derive(Debug, Clone, Copy)]
pub struct PrimaryOnly;

/// Response extension: the attempt read from this replica (its index in the list).
#[derive(Debug, Clone, Copy)]
pub struct ServedByReplica(pub usize);

/// The middleware.
pub async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let primary_only = request.extensions().get::<PrimaryOnly>().is_some();
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let (mut response, routed) = replicas::route_reads(primary_only, next.run(request)).await;
    if writes
        && response.status().is_success()
        && let Some(actor) = routed.actor
        && let Err(err) = replicas::record_write_position(state.db.conn(), actor).await
    {
        // The write stands; only its author's next reads may miss it on a replica that lags,
        // within DATABASE_REPLICA_MAX_LAG.
        tracing::warn!(error = %err, user = %actor, "could not record the write position");
    }
    if let Some(index) = routed.replica {
        response.extensions_mut().insert(ServedByReplica(index));
    }
    response
}
