//! `GET /health` on both databases: 200 when ready, 503 when the database is gone or the
//! schema is incomplete.

use app::config::Settings;
use app::startup::Application;

use crate::helpers::{Kind, TestDb};

/// Starts the server in the background; returns its base URL.
async fn spawn(settings: Settings) -> String {
    let app = Application::build(settings).await.expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

async fn get_health(base: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn healthy(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let base = spawn(test_db.settings(&[("DATABASE_POOL_SIZE", "2")])).await;
    let (status, body) = get_health(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["reachable"], true);
    assert_eq!(
        body["database"]["backend"],
        match kind {
            Kind::Postgres => "postgresql",
            Kind::Sqlite => "sqlite",
        }
    );
    assert_eq!(body["schema"]["state"], "ready");
    assert_eq!(body["pool"]["size"], 2);
    for field in ["idle", "inUse", "open", "overflow"] {
        assert!(body["pool"][field].is_u64(), "pool.{field}: {body}");
    }
}

#[tokio::test]
async fn healthy_postgres() {
    healthy(Kind::Postgres).await;
}

#[tokio::test]
async fn healthy_sqlite() {
    healthy(Kind::Sqlite).await;
}

#[tokio::test]
async fn unknown_routes_answer_problem_json() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let base = spawn(test_db.settings(&[])).await;
    let response = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn a_database_that_stops_answering_gives_503() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let base = spawn(test_db.settings(&[("DATABASE_POOL_TIMEOUT", "2")])).await;
    assert_eq!(get_health(&base).await.0, 200);
    let name = test_db.pg_name().to_string();
    drop(test_db); // DROP DATABASE ... WITH (FORCE) ends the pool's connections
    let (status, body) = get_health(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"]["reachable"], false);
    assert!(body["database"]["error"].is_string(), "{body}");
    assert!(!name.is_empty());
}

#[tokio::test]
async fn a_schema_behind_head_gives_503_outside_development() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let test_db = TestDb::empty(kind).await;
        // APP_ENV=testing: the app does not migrate by itself.
        let base = spawn(test_db.settings(&[])).await;
        let (status, body) = get_health(&base).await;
        assert_eq!(status, 503, "{kind:?}: {body}");
        assert_eq!(body["schema"]["state"], "behind");
        assert_eq!(
            body["schema"]["pending"].as_u64().unwrap(),
            app::migrations::all().len() as u64
        );
        assert_eq!(body["database"]["reachable"], true);
    }
}
