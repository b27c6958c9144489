//! A running server on a fresh database, and users with tokens, for the HTTP API tests.

use app::config::Settings;
use app::domain::{passwords, tokens::Tokens};
use app::fixtures::APPLICATION_ACCESS_ROLE;
use app::models::{role, user_account, user_account_role};
use app::startup::Application;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelBehavior, ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::helpers::{Kind, TestDb, telemetry};

/// The password every test user gets.
pub const PASSWORD: &str = "correct-horse-battery";

/// A server on its own database, stopped when the test's runtime ends.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub settings: Settings,
    tokens: Tokens,
}

/// A user made for a test, with a valid token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn(kind: Kind) -> TestApp {
        Self::spawn_with(kind, &[]).await
    }

    pub async fn spawn_with(kind: Kind, vars: &[(&str, &str)]) -> TestApp {
        Self::spawn_on(TestDb::new(kind).await, vars).await
    }

    /// A server on a database the test prepared.
    pub async fn spawn_on(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
        telemetry();
        let settings = db.settings(vars);
        let tokens = Tokens::new(settings.secret_key.expose(), settings.token_lifetime);
        let app = Application::build(settings.clone())
            .await
            .expect("the app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            client: reqwest::Client::new(),
            db,
            settings,
            tokens,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Makes an active user with the application-access role, straight in the database, and
    /// signs a token for them with the server's key.
    pub async fn user(&self, email: &str, superuser: bool) -> TestUser {
        let db = self.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
        let mut row = user_account::ActiveModel::new();
        row.email = Set(email.to_string());
        row.name = Set(Some(format!("User {email}")));
        row.hashed_password = Set(Some(passwords::hash(PASSWORD.into()).await.unwrap()));
        row.is_superuser = Set(superuser);
        row.joined_at = Set(chrono::Utc::now().date_naive());
        let user = row.insert(db.conn()).await.expect("insert the test user");
        let access = role::Entity::find()
            .filter(role::Column::Slug.eq(APPLICATION_ACCESS_ROLE))
            .one(db.conn())
            .await
            .unwrap()
            .expect("the fixture role");
        let mut grant = user_account_role::ActiveModel::new();
        grant.user_id = Set(user.id);
        grant.role_id = Set(access.id);
        grant.assigned_at = Set(chrono::Utc::now());
        grant.insert(db.conn()).await.unwrap();
        db.close().await;
        TestUser {
            id: user.id,
            email: email.to_string(),
            token: self.tokens.issue(user.id).unwrap(),
        }
    }

    /// The server's token service (to forge expired or foreign tokens in tests).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn get(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&user.token)
    }

    pub fn post(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&user.token)
    }

    pub fn patch(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path)).bearer_auth(&user.token)
    }

    pub fn delete(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&user.token)
    }
}

/// Status and JSON body of a response; asserts problem JSON for every error status.
pub async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{status}: {text}");
        assert_eq!(body["status"], status, "{text}");
        assert!(
            body["title"].is_string() && body["detail"].is_string(),
            "{text}"
        );
    }
    (status, body)
}

/// The `slug` of each role of a user in an answer.
pub fn role_slugs(user: &serde_json::Value) -> Vec<String> {
    user["roles"]
        .as_array()
        .expect("roles is a list")
        .iter()
        .map(|role| role["slug"].as_str().unwrap().to_string())
        .collect()
}

/// The `field` of each error of a 422 problem, in order.
pub fn error_fields(problem: &serde_json::Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of errors: {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}
