//! Sign-up, sign-in, sign-out, `/api/me`, and every way a token can be bad.

use std::net::SocketAddr;
use std::time::Duration;

use app::domain::tokens::Claims;
use app::models::{login_failure, user_account};
use reqwest::StatusCode;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{PASSWORD, TestApp, TestUser, answer, error_fields, role_slugs};
use crate::helpers::{Kind, TestDb, on_both_databases, telemetry};

/// `POST /api/access/signup` with a JSON body.
pub async fn signup(app: &TestApp, body: &Value) -> (u16, Value) {
    answer(
        app.client
            .post(app.url("/api/access/signup"))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `POST /api/access/login` with the OAuth2 password form.
pub async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value) {
    answer(
        app.client
            .post(app.url("/api/access/login"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `GET /api/me` with a raw `Authorization` header (or none).
async fn me_with(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url("/api/me"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// Changes one account straight in the database.
pub async fn edit_user(app: &TestApp, id: Uuid, edit: impl FnOnce(&mut user_account::ActiveModel)) {
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let user = user_account::Entity::find_by_id(id)
        .one(db.conn())
        .await
        .unwrap()
        .expect("the user exists");
    let mut row = user.into_active_model();
    edit(&mut row);
    row.update(db.conn()).await.unwrap();
    db.close().await;
}

async fn signup_creates_an_account_with_the_access_role(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let (status, user) = signup(
        &app,
        &json!({"email": "  Ann@Example.COM ", "name": " Ann ", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["name"], "Ann");
    assert_eq!(user["isActive"], true);
    assert_eq!(user["isSuperuser"], false);
    assert_eq!(user["isVerified"], false);
    assert_eq!(user["verifiedAt"], Value::Null);
    assert_eq!(user["loginCount"], 0);
    assert_eq!(
        user["joinedAt"],
        chrono::Utc::now().date_naive().to_string()
    );
    assert!(user["createdAt"].is_string() && user["updatedAt"].is_string());
    assert!(user["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert_eq!(role_slugs(&user), ["application-access"]);
    assert_eq!(user["roles"][0]["name"], "Application Access");
    let text = user.to_string();
    assert!(
        !text.contains("hashed") && !text.contains("argon2"),
        "{text}"
    );

    let (status, problem) = signup(
        &app,
        &json!({"email": "ANN@example.com", "password": "another-password"}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ann@example.com")
    );
}

#[tokio::test]
async fn signup_creates_an_account_with_the_access_role_postgres() {
    signup_creates_an_account_with_the_access_role(Kind::Postgres).await;
}

#[tokio::test]
async fn signup_creates_an_account_with_the_access_role_sqlite() {
    signup_creates_an_account_with_the_access_role(Kind::Sqlite).await;
}

async fn racing_signups_for_one_email_make_one_account(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let body = json!({"email": "race@example.com", "password": PASSWORD});
    // Both pass the early check together; the unique key decides, and the loser gets 409.
    let (a, b) = tokio::join!(signup(&app, &body), signup(&app, &body));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", a.1, b.1);
}

#[tokio::test]
async fn racing_signups_for_one_email_make_one_account_postgres() {
    racing_signups_for_one_email_make_one_account(Kind::Postgres).await;
}

#[tokio::test]
async fn racing_signups_for_one_email_make_one_account_sqlite() {
    racing_signups_for_one_email_make_one_account(Kind::Sqlite).await;
}

async fn signup_rejects_bad_input(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let (status, problem) = signup(
        &app,
        &json!({"email": "short@example.com", "password": "seven77"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["password"]);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 8")
    );

    let (status, problem) = signup(
        &app,
        &json!({"email": "not-an-email", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email"]);

    let (status, problem) = signup(&app, &json!({"email": "missing@example.com"})).await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["password"]);
    assert_eq!(problem["errors"][0]["message"], "is required");

    let (status, problem) = signup(&app, &json!({"password": PASSWORD})).await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email"]);

    // Every bad field at once.
    let (status, problem) = signup(&app, &json!({"email": "a@b", "password": "x"})).await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email", "password"]);

    let (status, problem) = signup(
        &app,
        &json!({"email": "x@example.com", "password": PASSWORD, "isSuperuser": true}),
    )
    .await;
    assert_eq!(status, 422, "unknown fields are refused");
    assert_eq!(error_fields(&problem), ["isSuperuser"]);

    let (status, _) = signup(&app, &json!({"email": 5, "password": PASSWORD})).await;
    assert_eq!(status, 422);

    let (status, _) = answer(
        app.client
            .post(app.url("/api/access/signup"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = answer(
        app.client
            .post(app.url("/api/access/signup"))
            .header("content-type", "text/plain")
            .body(json!({"email": "x@example.com", "password": PASSWORD}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn signup_rejects_bad_input_postgres() {
    signup_rejects_bad_input(Kind::Postgres).await;
}

#[tokio::test]
async fn signup_rejects_bad_input_sqlite() {
    signup_rejects_bad_input(Kind::Sqlite).await;
}

async fn login_issues_a_token_that_works(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let (status, _) = signup(
        &app,
        &json!({"email": "bob@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201);

    let response = app
        .client
        .post(app.url("/api/access/login"))
        .form(&[
            ("username", "Bob@Example.com"),
            ("password", PASSWORD),
            ("grant_type", "password"),
            ("scope", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, token) = answer(response).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(
        token["expires_in"].as_u64().unwrap(),
        app.settings.token_lifetime.as_secs()
    );
    let access_token = token["access_token"].as_str().unwrap();
    assert_eq!(token.as_object().unwrap().len(), 3, "{token}");

    let (status, me) = answer(me_with(&app, Some(&format!("Bearer {access_token}"))).await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "bob@example.com");
    assert_eq!(me["loginCount"], 1);
    assert_eq!(role_slugs(&me), ["application-access"]);

    let (status, _) = login(&app, "bob@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let (_, me) = answer(me_with(&app, Some(&format!("Bearer {access_token}"))).await).await;
    assert_eq!(me["loginCount"], 2, "every sign-in counts");
}

#[tokio::test]
async fn login_issues_a_token_that_works_postgres() {
    login_issues_a_token_that_works(Kind::Postgres).await;
}

#[tokio::test]
async fn login_issues_a_token_that_works_sqlite() {
    login_issues_a_token_that_works(Kind::Sqlite).await;
}

async fn login_failures_give_nothing_away(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let user = app.user("carol@example.com", false).await;

    let (status, wrong_password) = login(&app, "carol@example.com", "wrong-password").await;
    assert_eq!(status, 401);
    let (status, unknown_email) = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(status, 401);
    assert_eq!(
        wrong_password["detail"], unknown_email["detail"],
        "no hint which of the two was wrong"
    );

    let (status, problem) = answer(
        app.client
            .post(app.url("/api/access/login"))
            .form(&[("password", PASSWORD)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["username"]);

    let (status, problem) = answer(
        app.client
            .post(app.url("/api/access/login"))
            .form(&[
                ("username", "carol@example.com"),
                ("password", PASSWORD),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["grant_type"]);

    let (status, _) = answer(
        app.client
            .post(app.url("/api/access/login"))
            .json(&json!({"username": "carol@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415, "the login takes a form, not JSON");

    edit_user(&app, user.id, |row| row.is_active = Set(false)).await;
    let (status, problem) = login(&app, "carol@example.com", PASSWORD).await;
    assert_eq!(status, 403, "{problem}");
    let (status, _) = login(&app, "carol@example.com", "wrong-password").await;
    assert_eq!(
        status, 401,
        "inactivity is told only with the right password"
    );
    let (status, _) = answer(app.get("/api/me", &user).send().await.unwrap()).await;
    assert_eq!(status, 403, "an inactive account's token stops working");
}

#[tokio::test]
async fn login_failures_give_nothing_away_postgres() {
    login_failures_give_nothing_away(Kind::Postgres).await;
}

#[tokio::test]
async fn login_failures_give_nothing_away_sqlite() {
    login_failures_give_nothing_away(Kind::Sqlite).await;
}

async fn logout_revokes_the_token(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    app.user("dave@example.com", false).await;
    let (_, token) = login(&app, "dave@example.com", PASSWORD).await;
    let user = TestUser {
        id: Uuid::nil(),
        email: "dave@example.com".into(),
        token: token["access_token"].as_str().unwrap().to_string(),
    };
    let (status, _) = answer(app.get("/api/me", &user).send().await.unwrap()).await;
    assert_eq!(status, 200);

    let response = app.post("/api/access/logout", &user).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let (status, problem) = answer(app.get("/api/me", &user).send().await.unwrap()).await;
    assert_eq!(status, 401, "{problem}");
    let (status, _) = answer(app.post("/api/access/logout", &user).send().await.unwrap()).await;
    assert_eq!(status, 401);

    let (status, _) = answer(
        app.client
            .post(app.url("/api/access/logout"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "logout needs a token");

    // A fresh sign-in works again.
    let (status, _) = login(&app, "dave@example.com", PASSWORD).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_revokes_the_token_postgres() {
    logout_revokes_the_token(Kind::Postgres).await;
}

#[tokio::test]
async fn logout_revokes_the_token_sqlite() {
    logout_revokes_the_token(Kind::Sqlite).await;
}

async fn bad_tokens_answer_401(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let user = app.user("erin@example.com", false).await;
    let now = chrono::Utc::now().timestamp();
    let expired = app
        .tokens()
        .sign(&Claims {
            sub: user.id,
            iat: now - 7200,
            nbf: None,
            exp: now - 3600,
            jti: Uuid::now_v7(),
            password_stamp: None,
        })
        .unwrap();
    let signed = |iat: i64, nbf: Option<i64>| {
        app.tokens()
            .sign(&Claims {
                sub: user.id,
                iat,
                nbf,
                exp: now + 3600,
                jti: Uuid::now_v7(),
                password_stamp: None,
            })
            .unwrap()
    };
    let not_yet_valid = signed(now, Some(now + 600));
    let from_the_future = signed(now + 600, None);
    let a_little_ahead = signed(now + 5, Some(now + 5));
    let mut tampered = user.token.clone();
    let at = tampered.len() - 5;
    let flipped = if &tampered[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, flipped);
    // The same claims, unsigned, claiming `alg: none`.
    let payload = user.token.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let foreign = app::domain::tokens::Tokens::new(
        "a-different-secret-key-of-enough-length",
        std::time::Duration::from_secs(60),
    )
    .issue(user.id)
    .unwrap();
    let ghost = app.tokens().issue(Uuid::now_v7()).unwrap();

    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty bearer", Some("Bearer ".into())),
        ("other scheme", Some(format!("Basic {}", user.token))),
        ("no scheme", Some(user.token.clone())),
        ("malformed", Some("Bearer not.a.jwt".into())),
        ("garbage", Some("Bearer garbage".into())),
        ("tampered", Some(format!("Bearer {tampered}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        ("foreign key", Some(format!("Bearer {foreign}"))),
        ("unknown user", Some(format!("Bearer {ghost}"))),
        ("nbf in the future", Some(format!("Bearer {not_yet_valid}"))),
        (
            "iat in the future",
            Some(format!("Bearer {from_the_future}")),
        ),
    ];
    for (case, header) in cases {
        let response = me_with(&app, header.as_deref()).await;
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{case}"
        );
        let (status, problem) = answer(response).await;
        assert_eq!(status, 401, "{case}: {problem}");
    }
    let (status, _) = answer(me_with(&app, Some(&format!("bearer {}", user.token))).await).await;
    assert_eq!(
        status, 200,
        "the scheme is case-insensitive; the real token still works"
    );
    let (status, _) = answer(me_with(&app, Some(&format!("Bearer {a_little_ahead}"))).await).await;
    assert_eq!(
        status, 200,
        "a clock a few seconds ahead is within the leeway"
    );
}

#[tokio::test]
async fn bad_tokens_answer_401_postgres() {
    bad_tokens_answer_401(Kind::Postgres).await;
}

#[tokio::test]
async fn bad_tokens_answer_401_sqlite() {
    bad_tokens_answer_401(Kind::Sqlite).await;
}

#[tokio::test]
async fn the_openapi_document_describes_accounts_users_and_roles() {
    let app = TestApp::spawn(Kind::Sqlite).await;
    let (status, doc) = answer(
        app.client
            .get(app.url("/schema/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/access/signup", "post"),
        ("/api/access/login", "post"),
        ("/api/access/logout", "post"),
        ("/api/me", "get"),
        ("/api/users", "get"),
        ("/api/users", "post"),
        ("/api/users/{id}", "get"),
        ("/api/users/{id}", "patch"),
        ("/api/users/{id}", "delete"),
        ("/api/roles/{slug}/assign", "post"),
        ("/api/roles/{slug}/revoke", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        let needs_token = !path.starts_with("/api/access/s") && path != "/api/access/login";
        assert_eq!(
            operation["security"].is_array(),
            needs_token,
            "{method} {path}: security"
        );
        if needs_token {
            assert_eq!(
                operation["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
                "{method} {path}"
            );
        }
    }
    assert!(
        paths["/api/access/login"]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]
            .is_object()
    );
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "UserView",
        "RoleView",
        "UserPage",
        "SignupBody",
        "AccessToken",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema}");
    }
    let user_props = schemas["UserView"]["properties"].as_object().unwrap();
    assert!(user_props.contains_key("isSuperuser"));
    assert!(
        !user_props
            .keys()
            .any(|k| k.to_lowercase().contains("password"))
    );
}

/// `POST /api/access/login` at `base`; the whole response, for its headers.
async fn login_at(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/access/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 problem with a `Retry-After` of 1 to `max` seconds; returns the seconds.
async fn throttled(response: reqwest::Response, max: u64) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    let (status, problem) = answer(response).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["title"], "Too Many Requests");
    assert!(
        (1..=max).contains(&retry_after),
        "Retry-After {retry_after}, at most {max}"
    );
    retry_after
}

async fn login_failures_rows(app: &TestApp) -> Vec<login_failure::Model> {
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let rows = login_failure::Entity::find().all(db.conn()).await.unwrap();
    db.close().await;
    rows
}

async fn failed_logins_are_throttled_per_account(kind: Kind) {
    let app = TestApp::spawn_with(
        kind,
        &[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_THROTTLE_WINDOW", "3")],
    )
    .await;
    app.user("fred@example.com", false).await;
    app.user("gina@example.com", false).await;
    let try_login = |username: &'static str, password: &'static str| {
        login_at(&app.client, &app.base, username, password)
    };

    for _ in 0..3 {
        let (status, _) = answer(try_login("fred@example.com", "wrong-password").await).await;
        assert_eq!(status, 401);
    }
    // The limit is reached: even the right password waits, and is not looked at.
    let wait = throttled(try_login("FRED@example.com", PASSWORD).await, 3).await;
    throttled(try_login("fred@example.com", "wrong-password").await, 3).await;

    // An email nobody has is throttled the same way: the answers tell no accounts apart.
    for _ in 0..3 {
        let (status, _) = answer(try_login("nobody@example.com", "wrong-password").await).await;
        assert_eq!(status, 401);
    }
    throttled(try_login("nobody@example.com", "wrong-password").await, 3).await;

    // Other accounts are not held up.
    let (status, _) = answer(try_login("gina@example.com", PASSWORD).await).await;
    assert_eq!(status, 200);

    // Nothing readable is kept: the email is stored as a digest.
    let rows = login_failures_rows(&app).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.account_key.len() == 64 && !row.account_key.contains("fred")),
        "{rows:?}"
    );

    // Once the window has passed, the right password works again, and a success clears the
    // account's failures.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    let (status, token) = answer(try_login("fred@example.com", PASSWORD).await).await;
    assert_eq!(status, 200, "{token}");
    for _ in 0..2 {
        let (status, _) = answer(try_login("fred@example.com", "wrong-password").await).await;
        assert_eq!(status, 401);
    }
    let (status, _) = answer(try_login("fred@example.com", PASSWORD).await).await;
    assert_eq!(
        status, 200,
        "two failures after a success are under the limit of three"
    );

    // Failures older than the window are deleted as new ones come in.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, _) = answer(try_login("gina@example.com", "wrong-password").await).await;
    assert_eq!(status, 401);
    assert_eq!(login_failures_rows(&app).await.len(), 1);
}

async fn failed_logins_are_throttled_per_address(kind: Kind) {
    // The app as `app run` serves it, with each connection's peer address.
    telemetry();
    let db = TestDb::new(kind).await;
    let settings = db.settings(&[
        ("LOGIN_MAX_FAILURES", "100"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "4"),
        ("LOGIN_THROTTLE_WINDOW", "60"),
    ]);
    let database = app::db::Database::connect(&settings.database)
        .await
        .unwrap();
    let router = app::http::app(app::http::AppState::new(settings, database));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let client = reqwest::Client::new();
    let (status, _) = signup_at(&client, &base, "hank@example.com").await;
    assert_eq!(status, 201);

    // One guess at each of four emails from one address.
    for n in 0..4 {
        let email = format!("guess{n}@example.com");
        let (status, _) = answer(login_at(&client, &base, &email, "wrong-password").await).await;
        assert_eq!(status, 401);
    }
    throttled(
        login_at(&client, &base, "guess9@example.com", "x-password").await,
        60,
    )
    .await;
    throttled(
        login_at(&client, &base, "hank@example.com", PASSWORD).await,
        60,
    )
    .await;
}

/// The server `app run` starts tells the login handler each connection's peer address.
async fn the_server_counts_failures_by_peer_address(kind: Kind) {
    let app = TestApp::spawn_with(
        kind,
        &[
            ("LOGIN_MAX_FAILURES", "100"),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "2"),
        ],
    )
    .await;
    app.user("kim@example.com", false).await;
    for email in ["guess1@example.com", "guess2@example.com"] {
        let (status, _) = login(&app, email, "wrong-password").await;
        assert_eq!(status, 401);
    }
    throttled(
        login_at(&app.client, &app.base, "kim@example.com", PASSWORD).await,
        900,
    )
    .await;
}

async fn signup_at(client: &reqwest::Client, base: &str, email: &str) -> (u16, Value) {
    answer(
        client
            .post(format!("{base}/api/access/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn concurrent_guesses_stay_within_the_limit(kind: Kind) {
    let app = TestApp::spawn_with(kind, &[("LOGIN_MAX_FAILURES", "3")]).await;
    app.user("ivy@example.com", false).await;
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, base) = (app.client.clone(), app.base.clone());
        guesses.spawn(async move {
            login_at(&client, &base, "ivy@example.com", "wrong-guess")
                .await
                .status()
                .as_u16()
        });
    }
    let statuses = guesses.join_all().await;
    let mut wrong = 0;
    for status in statuses {
        match status {
            401 => wrong += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        wrong <= 3,
        "only as many passwords as the limit were checked: {wrong}"
    );
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let kept = login_failure::Entity::find()
        .count(db.conn())
        .await
        .unwrap();
    db.close().await;
    assert_eq!(
        kept, wrong,
        "one row per wrong password, none for throttled attempts"
    );
}

async fn a_password_change_refuses_earlier_tokens(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let jay = app.user("jay@example.com", false).await;
    let (status, token) = login(&app, "jay@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let signed_in = TestUser {
        token: token["access_token"].as_str().unwrap().to_string(),
        ..jay.clone()
    };
    for user in [&jay, &signed_in] {
        let (status, _) = answer(app.get("/api/me", user).send().await.unwrap()).await;
        assert_eq!(status, 200);
    }

    // A superuser resets Jay's password: the token Jay signed in with stops working.
    let (status, changed) = answer(
        app.patch(&format!("/api/users/{}", jay.id), &admin)
            .json(&json!({"password": "a-brand-new-password"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let (status, problem) = answer(app.get("/api/me", &signed_in).send().await.unwrap()).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("password"),
        "{problem}"
    );

    // A token made after the change works, at once (within the same second too).
    let (status, token) = login(&app, "jay@example.com", "a-brand-new-password").await;
    assert_eq!(status, 200, "{token}");
    let fresh = TestUser {
        token: token["access_token"].as_str().unwrap().to_string(),
        ..jay.clone()
    };
    let (status, me) = answer(app.get("/api/me", &fresh).send().await.unwrap()).await;
    assert_eq!(status, 200, "{me}");

    // Changing other fields leaves tokens alone; changing the password again does not.
    let patch = |body: Value| {
        let request = app
            .patch(&format!("/api/users/{}", jay.id), &admin)
            .json(&body);
        async move { answer(request.send().await.unwrap()).await.0 }
    };
    assert_eq!(patch(json!({"name": "Jay"})).await, 200);
    let (status, _) = answer(app.get("/api/me", &fresh).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        patch(json!({"password": "yet-another-password"})).await,
        200
    );
    let (status, _) = answer(app.get("/api/me", &fresh).send().await.unwrap()).await;
    assert_eq!(status, 401);
    // The admin's own token was never affected.
    let (status, _) = answer(app.get("/api/me", &admin).send().await.unwrap()).await;
    assert_eq!(status, 200);
}

on_both_databases!(
    failed_logins_are_throttled_per_account,
    failed_logins_are_throttled_per_address,
    the_server_counts_failures_by_peer_address,
    concurrent_guesses_stay_within_the_limit,
    a_password_change_refuses_earlier_tokens,
);
