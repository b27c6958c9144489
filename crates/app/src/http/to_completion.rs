//! Requests run to completion even when their client goes away.
//!
//! When a client disconnects, the server drops the request's future wherever it stands. A
//! handler dropped between sending a statement and reading its answer can leave its database
//! connection in a state the driver does not know of: sqlx counts a transaction as begun only
//! once the answer to `BEGIN` arrives, so a `BEGIN` cut off in flight leaves the server inside a
//! transaction sqlx believes closed. That connection goes back to the pool, and the next
//! request's single-statement writes run inside the stale transaction: acknowledged, yet not
//! committed, and undone by the next `ROLLBACK` on that connection. (A `COMMIT` cut off the same
//! way is followed by a needless `ROLLBACK` and a warning.)
//!
//! So each request runs in a task of its own: a disconnect only throws the response away, and
//! the work ends as its code says, committed or rolled back. At shutdown the request still
//! counts as in flight until its task ends (this layer is the outermost).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::error::ApiError;

/// Runs the rest of the stack for `req` in a task that outlives its client.
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        // As if the handler had run here: its panic goes on unwinding.
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // Only the runtime shutting down cancels the task; the work was rolled back.
        Err(err) => ApiError::Internal(Box::new(err)).into_response(),
    }
}
