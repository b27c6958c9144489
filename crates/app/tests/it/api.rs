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

    /// Another server on this database with the same settings (so the same signing key), as
    /// a second instance behind a load balancer: it shares nothing with this one but the
    /// database.
    pub async fn another_instance(&self) -> Instance {
        let app = Application::build(self.settings.clone())
            .await
            .expect("the second instance builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Instance {
            base,
            client: reqwest::Client::new(),
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

/// A further server made by [`TestApp::another_instance`], stopped with the test's runtime.
pub struct Instance {
    pub base: String,
    pub client: reqwest::Client,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&user.token)
    }

    pub fn post(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&user.token)
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

/// A response of the document with a `$ref` to `#/components/responses/...` followed.
fn resolved<'a>(
    doc: &'a serde_json::Value,
    response: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("a response component: {reference}"));
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}

/// The published contract: every operation of `/api/` lists every status it can answer, each
/// error as problem JSON, and the request schemas carry the rules the API checks.
#[tokio::test]
async fn every_operation_lists_its_statuses_and_rules() {
    let app = TestApp::spawn(Kind::Sqlite).await;
    let response = app
        .client
        .get(app.url("/schema/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, doc) = answer(response).await;
    assert_eq!(status, 200);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let label = format!("{} {path}", method.to_uppercase());
            let responses = operation["responses"].as_object().unwrap();
            let mut wanted = vec!["503"];
            if operation["security"].is_array() {
                wanted.extend(["401", "403"]);
            }
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                wanted.extend(["413", "415", "422"]);
                if content.contains_key("application/json") {
                    wanted.push("400");
                }
            }
            if path.contains('{') {
                wanted.extend(["400", "404"]);
            }
            for status in wanted {
                assert!(responses.contains_key(status), "{label} lists {status}");
            }
            for (status, response) in responses {
                if status.as_str() >= "400" {
                    let response = resolved(&doc, response);
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{label} {status}"
                    );
                    assert!(response["description"].is_string(), "{label} {status}");
                }
            }
            let unavailable = resolved(&doc, &operation["responses"]["503"]);
            assert!(
                unavailable["headers"]["retry-after"].is_object(),
                "{label}: 503 has Retry-After"
            );
        }
    }
    assert_eq!(operations, 19, "every /api/ operation was checked");

    let paths = &doc["paths"];
    for (path, method, statuses) in [
        ("/api/access/login", "post", &["401", "403", "429"][..]),
        ("/api/access/signup", "post", &["409"]),
        ("/api/users", "post", &["409"]),
        ("/api/users/{id}", "patch", &["409"]),
        ("/api/users/{id}", "delete", &["409"]),
        ("/api/roles/{slug}/revoke", "post", &["409"]),
        ("/api/todos", "post", &["409"]),
        ("/api/todos/{id}", "patch", &["409"]),
        ("/api/tags", "post", &["409"]),
        ("/api/todos", "get", &["422"]),
        ("/api/users", "get", &["422"]),
    ] {
        for status in statuses {
            assert!(
                paths[path][method]["responses"][status].is_object(),
                "{method} {path} lists {status}"
            );
        }
    }
    assert!(
        paths["/api/access/login"]["post"]["responses"]["429"]["headers"]["retry-after"]
            .is_object()
    );

    let schemas = &doc["components"]["schemas"];
    for body in ["SignupBody", "NewUserBody"] {
        let props = &schemas[body]["properties"];
        assert_eq!(props["email"]["format"], "email", "{body}");
        assert_eq!(props["email"]["maxLength"], 254, "{body}");
        assert_eq!(props["password"]["minLength"], 8, "{body}");
        assert_eq!(props["password"]["maxLength"], 1024, "{body}");
        assert!(trims_to_at_most(&props["name"]["pattern"], 255), "{body}");
    }
    let patch = &schemas["UserPatchBody"]["properties"];
    assert_eq!(patch["email"]["format"], "email");
    assert_eq!(patch["password"]["minLength"], 8);
    assert!(schemas["RoleAssignment"]["properties"]["email"]["pattern"].is_string());
    assert_eq!(
        schemas["RoleAssignment"]["properties"]["email"]["minLength"],
        1
    );
    for body in ["NewTodoBody", "TodoPatchBody"] {
        let props = &schemas[body]["properties"];
        assert_eq!(props["item"]["minLength"], 1, "{body}");
        assert!(
            trims_to_at_most(&props["item"]["pattern"], 100),
            "{body}: 1 to 100 characters once trimmed"
        );
        assert_eq!(props["description"]["maxLength"], 1024, "{body}");
        assert_eq!(props["tags"]["maxItems"], 50, "{body}");
        assert!(
            props["startTime"]["description"]
                .as_str()
                .is_some_and(|text| text.contains("before `endTime`")),
            "{body}: the range rule is described"
        );
    }
    let tag_name = &schemas["TagName"];
    assert_eq!(tag_name["minLength"], 1);
    assert!(trims_to_at_most(&tag_name["pattern"], 100));
    assert!(trims_to_at_most(
        &schemas["NewTagBody"]["properties"]["name"]["pattern"],
        100
    ));
}

/// Whether `pattern` allows at most `max` characters once trimmed (the domain trims before it
/// counts) and refuses U+0000: a first non-blank character, up to `max - 2` more, a last one.
fn trims_to_at_most(pattern: &serde_json::Value, max: usize) -> bool {
    pattern.as_str().is_some_and(|p| {
        p.contains(&format!("{{0,{}}}", max - 2)) && p.contains(r"\u0000") && p.contains(r"\u3000")
    })
}
