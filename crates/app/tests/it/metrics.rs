//! `GET /metrics` on both databases: request counts by matched route, statement and checkout
//! histograms (every checkout timed, SeaORM's too), pool gauges, and pool timeouts counted once
//! each.

use app::config::Settings;
use app::db::Database;
use app::http::AppState;
use sea_orm::TransactionTrait;

use crate::api::{TestApp, answer};
use crate::helpers::{Kind, TestDb, alone_in_process, on_both_databases, telemetry};

/// The body of `GET /metrics`, after checking the content type.
async fn scrape(base: &str) -> String {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as exported), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| {
            v.parse().unwrap_or_else(|_| panic!("{series}: {v}"))
        })
}

const HEALTH_OK: &str = r#"app_http_requests_total{method="GET",route="/health",status="200"}"#;
const UNMATCHED_404: &str =
    r#"app_http_requests_total{method="GET",route="unmatched",status="404"}"#;
const STATEMENTS_OK: &str = r#"app_db_statement_duration_seconds_count{outcome="ok"}"#;
const ACQUIRE_WAITS: &str = "app_db_pool_acquire_wait_seconds_count";
const TIMEOUTS: &str = "app_db_pool_acquire_timeouts_total";

/// How many checkouts the histogram has that took longer than `le` seconds.
fn waits_over(text: &str, le: &str) -> f64 {
    value(text, ACQUIRE_WAITS)
        - value(
            text,
            &format!(r#"app_db_pool_acquire_wait_seconds_bucket{{le="{le}"}}"#),
        )
}

async fn requests_statements_and_pool(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let before = scrape(&app.base).await;
    for _ in 0..2 {
        let status = reqwest::get(app.url("/health")).await.unwrap().status();
        assert_eq!(status.as_u16(), 200);
    }
    let status = reqwest::get(app.url("/no/such/route"))
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 404);
    let after = scrape(&app.base).await;

    assert_eq!(
        value(&after, HEALTH_OK) - value(&before, HEALTH_OK),
        2.0,
        "{after}"
    );
    assert_eq!(
        value(&after, UNMATCHED_404) - value(&before, UNMATCHED_404),
        1.0
    );
    assert!(!after.contains("/no/such/route"), "{after}");
    assert!(value(&after, STATEMENTS_OK) > value(&before, STATEMENTS_OK));
    // Each health check checks out at least twice: its probe, and for its queries.
    assert!(
        value(&after, ACQUIRE_WAITS) - value(&before, ACQUIRE_WAITS) >= 4.0,
        "{after}"
    );
    assert!(
        after.contains(r#"app_http_request_duration_seconds_count{method="GET",route="/health"} "#)
    );
    assert_eq!(value(&after, TIMEOUTS), 0.0);

    for name in [
        "app_db_pool_size",
        "app_db_pool_max_overflow",
        "app_db_pool_connections_open",
        "app_db_pool_connections_idle",
        "app_db_pool_connections_in_use",
        TIMEOUTS,
        "app_db_pool_acquire_wait_seconds",
        "app_db_statement_duration_seconds",
        "app_http_requests_total",
        "app_http_request_duration_seconds",
    ] {
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "{name}: {after}"
        );
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{name}: {after}"
        );
    }
    let size = value(&after, "app_db_pool_size");
    let overflow = value(&after, "app_db_pool_max_overflow");
    let open = value(&after, "app_db_pool_connections_open");
    let idle = value(&after, "app_db_pool_connections_idle");
    let in_use = value(&after, "app_db_pool_connections_in_use");
    assert!(size >= 1.0, "{after}");
    assert!(open >= 1.0 && open <= size + overflow, "{after}");
    assert_eq!(idle + in_use, open, "{after}");
}

#[tokio::test]
async fn metrics_count_requests_statements_and_pool_postgres() {
    requests_statements_and_pool(Kind::Postgres).await;
}

#[tokio::test]
async fn metrics_count_requests_statements_and_pool_sqlite() {
    requests_statements_and_pool(Kind::Sqlite).await;
}

/// The checkouts SeaORM makes for API requests are timed too, not only the health check's.
async fn checkouts_of_queries_are_timed(kind: Kind) {
    const REQUESTS: usize = 5;
    let app = TestApp::spawn(kind).await;
    let user = app.user("waits@example.com", false).await;
    let before = scrape(&app.base).await;
    for _ in 0..REQUESTS {
        let (status, body) = answer(app.get("/api/todos", &user).send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
    let after = scrape(&app.base).await;

    let statements = value(&after, STATEMENTS_OK) - value(&before, STATEMENTS_OK);
    assert!(statements >= REQUESTS as f64, "the requests query: {after}");
    let waits = value(&after, ACQUIRE_WAITS) - value(&before, ACQUIRE_WAITS);
    assert!(
        waits >= REQUESTS as f64,
        "{waits} checkouts timed for {REQUESTS} requests: {after}"
    );
    assert_eq!(value(&after, HEALTH_OK), 0.0, "no health check made them");
}

on_both_databases!(checkouts_of_queries_are_timed);

/// Serves the app on a `Database` the test keeps a handle to; returns the base URL.
async fn serve(settings: Settings) -> (String, Database) {
    telemetry();
    let db = Database::connect(&settings.database)
        .await
        .expect("connect the app's database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app::http::app(AppState::new(settings, db.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, db)
}

async fn pool_timeouts(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let (base, db) = serve(test_db.settings(&[
        ("DATABASE_POOL_SIZE", "1"),
        ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ("DATABASE_POOL_TIMEOUT", "0.5"),
    ]))
    .await;
    let before = scrape(&base).await;
    assert_eq!(value(&before, TIMEOUTS), 0.0);

    let held = db.conn().begin().await.expect("take the only connection");
    // Through `Database::explain` (the health check's checkout).
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    // Through `From<DbErr> for ApiError` (the login looks the user up).
    let login = reqwest::Client::new()
        .post(format!("{base}/api/access/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=nobody%40example.com&password=whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 503);
    let during = scrape(&base).await;
    drop(held);

    assert_eq!(value(&during, TIMEOUTS), 2.0, "{during}");
    assert_eq!(
        value(&during, "app_db_pool_connections_in_use"),
        1.0,
        "{during}"
    );
    // Each timed-out checkout counts as waiting POOL_TIMEOUT (0.5s): over 0.25s, not over
    // 0.5s. The transaction's own checkout was quick.
    let slow = waits_over(&during, "0.25") - waits_over(&before, "0.25");
    if alone_in_process() {
        assert_eq!(slow, 2.0, "{during}");
        assert_eq!(
            waits_over(&during, "0.5"),
            waits_over(&before, "0.5"),
            "{during}"
        );
        assert_eq!(
            value(&during, ACQUIRE_WAITS) - value(&before, ACQUIRE_WAITS),
            3.0,
            "the transaction's checkout and the two timeouts: {during}"
        );
    } else {
        // Other tests' pools share the process-wide histogram.
        assert!(slow >= 2.0, "{during}");
    }
}

#[tokio::test]
async fn metrics_count_pool_timeouts_once_postgres() {
    pool_timeouts(Kind::Postgres).await;
}

#[tokio::test]
async fn metrics_count_pool_timeouts_once_sqlite() {
    pool_timeouts(Kind::Sqlite).await;
}
