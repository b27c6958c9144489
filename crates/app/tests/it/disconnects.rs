//! Clients that hang up mid-request: the work they started ends as written (committed or
//! rolled back), and no pooled connection is left inside a transaction for the next request.

use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use crate::api::TestApp;
use crate::helpers::{Kind, pg_direct};

/// Pool connections of the test database the server leaves open inside a transaction.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    let mut admin = pg_direct(&app.db).await;
    sqlx::query(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get::<i64, _>(0)
}

#[tokio::test]
async fn hung_up_requests_leave_no_connection_inside_a_transaction() {
    // Two connections, so every request reuses what an abandoned one left behind.
    let app = TestApp::spawn_with(Kind::Postgres, &[("DATABASE_POOL_SIZE", "2")]).await;
    let user = app.user("hangup@example.com", false).await;
    for round in 0..12u64 {
        let requests: Vec<_> = (0..40u64)
            .map(|i| {
                // A fresh client per request, giving up somewhere inside the handler's work.
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_micros(
                        500 + (i * 397 + round * 131) % 15_000,
                    ))
                    .build()
                    .unwrap();
                let request = client
                    .post(app.url("/api/todos"))
                    .bearer_auth(&user.token)
                    .json(&json!({"item": format!("hang up {round}-{i}"), "tags": ["a", "b"]}));
                tokio::spawn(async move { request.send().await.is_ok() })
            })
            .collect();
        for request in requests {
            request.await.unwrap();
        }
        // The abandoned work finishes on its own; then nothing may be left half open.
        let mut left = 0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = idle_in_transaction(&app).await;
            if left == 0 {
                break;
            }
        }
        assert_eq!(
            left, 0,
            "round {round}: connections left inside a transaction"
        );
    }
    // And the service still answers.
    let page = app.get("/api/todos?limit=1", &user).send().await.unwrap();
    assert_eq!(page.status(), 200);
}
