//! Runs a request again when its database connection was lost and nothing it did can have
//! changed the database, so a server restart, failover or terminated session costs clients no
//! errors.
//!
//! The layer keeps the request body (bodies are limited to `APP_MAX_BODY_BYTES` already) and
//! runs the handler. When the answer is marked [`ConnectionLost`] (see `http::error`), it tells
//! the pool to flush the connections that may have died too
//! ([`Database::note_connection_lost`](crate::db::Database::note_connection_lost)) and runs the
//! request again, at most [`MAX_RETRIES`] times, when that is safe:
//!
//! - a GET or HEAD only reads, so it is always safe;
//! - any other method is safe only when the failed attempt sent no statement that may change
//!   data ([`db::track_writes`]): its reads, and a BEGIN that failed on a dead connection, left
//!   nothing behind. Once a write was sent, it or its COMMIT may have taken effect before the
//!   connection broke, and the client gets the 503 (with `Retry-After`) to decide.
//!
//! A read that a read replica failed (any 5xx of an attempt that read from one, see
//! `http::read_routing`) is run once more on the primary alone, without counting as a retry;
//! a replica that could not serve (503) is marked down until its monitor sees it answer.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ConnectionLost};
use super::read_routing::{PrimaryOnly, ServedByReplica};
use crate::db;

/// How many times one request is run again after a lost connection.
pub const MAX_RETRIES: usize = 2;

/// The retry middleware; layer it inside `DefaultBodyLimit`, whose limit it reads the body with.
pub async fn retry(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.settings.http.max_body_bytes) {
        // Too large to keep: the handler refuses it (413) or ignores it, as without this layer.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let body = match read_body(&parts, body).await {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let only_reads = parts.method == Method::GET || parts.method == Method::HEAD;
    let mut retries = 0;
    let mut primary_only = false;
    loop {
        let mut request = attempt(&parts, &body);
        if primary_only {
            request.extensions_mut().insert(PrimaryOnly);
        }
        let (response, writes) = db::track_writes(next.clone().run(request)).await;
        if let Some(&ServedByReplica(replica)) = response.extensions().get::<ServedByReplica>()
            && response.status().is_server_error()
        {
            if response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
                state.replicas.mark_down(replica, "a read on it failed");
            }
            tracing::info!(
                method = %parts.method,
                status = response.status().as_u16(),
                "a read replica failed the request; running it on the primary"
            );
            primary_only = true;
            continue;
        }
        if response.extensions().get::<ConnectionLost>().is_none() {
            return response;
        }
        state.db.note_connection_lost();
        if !only_reads && writes > 0 {
            tracing::warn!(
                method = %parts.method,
                writes,
                "not run again: the request sent writes before its database connection was lost"
            );
            return response;
        }
        if retries == MAX_RETRIES {
            tracing::warn!(
                method = %parts.method,
                retries,
                "database connections kept failing; answering 503"
            );
            return response;
        }
        retries += 1;
        tracing::info!(
            method = %parts.method,
            retry = retries,
            "database connection lost; running the request again"
        );
    }
}

/// The whole body, read within `DefaultBodyLimit` as the extractors read it: too large answers
/// 413 as the JSON extractor would.
async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, ApiError> {
    let mut request = Request::new(body);
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })
}

/// A copy of the request for one attempt.
fn attempt(parts: &Parts, body: &Bytes) -> Request {
    let mut request = Request::new(Body::from(body.clone()));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;
    use sea_orm::{ConnectionTrait, DbErr, RuntimeErr};

    use super::*;
    use crate::config::Settings;
    use crate::db::Database;

    fn lost() -> ApiError {
        ApiError::from(DbErr::Exec(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ))))
    }

    async fn run(db: &Database, sql: &str) {
        db.conn().execute_raw(db.statement(sql)).await.unwrap();
    }

    /// Serves `routes` behind the retry layer on an in-memory SQLite database with a table `t`.
    async fn serve(routes: Router<AppState>) -> String {
        let vars = HashMap::from([
            ("APP_ENV".to_string(), "testing".to_string()),
            ("DATABASE_URL".to_string(), "sqlite::memory:".to_string()),
            ("APP_MAX_BODY_BYTES".to_string(), "1024".to_string()),
        ]);
        let settings = Settings::from_vars(&vars).unwrap();
        let db = Database::connect(&settings.database).await.unwrap();
        run(&db, "CREATE TABLE t (x TEXT)").await;
        let state = AppState::new(settings, db);
        let router = routes
            .layer(axum::middleware::from_fn_with_state(state.clone(), retry))
            .layer(axum::extract::DefaultBodyLimit::max(1024))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    /// A route that runs `sql` and then fails with a lost connection on its first `failures`
    /// calls, and echoes the body after; counts its calls.
    fn flaky(sql: &'static str, failures: usize, calls: &Arc<AtomicUsize>) -> Router<AppState> {
        let calls = Arc::clone(calls);
        let handler = move |State(state): State<AppState>, body: String| {
            let calls = Arc::clone(&calls);
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                run(&state.db, sql).await;
                if call < failures {
                    return Err(lost());
                }
                Ok(body)
            }
        };
        Router::new().route("/", get(handler.clone()).post(handler))
    }

    async fn send(method: reqwest::Method, base: &str, body: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(method, base)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_read_is_run_again_on_a_fresh_connection() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(flaky("SELECT 1", 2, &calls)).await;
        let response = send(reqwest::Method::GET, &base, "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_write_that_sent_only_reads_is_run_again_with_its_body() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(flaky("SELECT x FROM t", 1, &calls)).await;
        let response = send(reqwest::Method::POST, &base, "the same body").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "the same body");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_that_sent_a_write_is_not_run_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(flaky("INSERT INTO t VALUES ('a')", 1, &calls)).await;
        let response = send(reqwest::Method::POST, &base, "{}").await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_a_replica_failed_runs_again_on_the_primary_alone() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let handler = move |request: Request| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                if request.extensions().get::<PrimaryOnly>().is_some() {
                    return "from the primary".into_response();
                }
                // As `read_routing` marks an attempt that read from replica 0 and lost it.
                let mut response = lost().into_response();
                response.extensions_mut().insert(ServedByReplica(0));
                response
            }
        };
        let base = serve(Router::new().route("/", get(handler))).await;
        let response = send(reqwest::Method::GET, &base, "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "from the primary");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "once on the replica, once on the primary"
        );
    }

    #[tokio::test]
    async fn retries_stop_after_two_with_a_503() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(flaky("SELECT 1", usize::MAX, &calls)).await;
        let response = send(reqwest::Method::GET, &base, "").await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1 + MAX_RETRIES);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_answer_413_as_before() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(flaky("SELECT 1", 0, &calls)).await;
        let big = "x".repeat(2048);
        // With a length the handler refuses it; streamed, the layer does.
        let declared = send(reqwest::Method::POST, &base, &big).await;
        assert_eq!(declared.status(), 413);
        let streamed = chunked_post(&base, &big).await;
        assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
        assert!(
            streamed.contains("content-type: application/problem+json"),
            "{streamed}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "neither reached the handler"
        );
    }

    /// POSTs `body` with no length (chunked), as a streaming client does; returns the answer.
    async fn chunked_post(base: &str, body: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}
