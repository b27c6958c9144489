//! Logout's revocations live in the database: a token logged out through one instance is
//! refused by every other at once, expired revocations are deleted, logging out twice is
//! harmless, and a database that cannot answer the check never lets a token through.

use app::db::Database;
use app::domain::revocations;
use app::domain::tokens::Tokens;
use app::http::AppState;
use app::models::revoked_token;
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryTrait, Statement, TransactionTrait};
use uuid::Uuid;

use crate::access::login;
use crate::api::{PASSWORD, TestApp, TestUser, answer};
use crate::helpers::{Kind, on_both_databases};

/// Makes a user and signs them in through `app` as a client would, with the token it issued.
async fn signed_in(app: &TestApp, email: &str) -> TestUser {
    let user = app.user(email, false).await;
    let (status, body) = login(app, email, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    TestUser {
        token: body["access_token"].as_str().unwrap().to_string(),
        ..user
    }
}

/// Every row of `revoked_token`, read through a connection of the test's own.
async fn revocation_rows(app: &TestApp) -> Vec<revoked_token::Model> {
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let rows = revoked_token::Entity::find().all(db.conn()).await.unwrap();
    db.close().await;
    rows
}

async fn a_logout_through_one_instance_is_refused_by_the_others(kind: Kind) {
    let a = TestApp::spawn(kind).await;
    let b = a.another_instance().await;
    let ann = signed_in(&a, "ann@example.com").await;
    let (status, me) = answer(b.get("/api/me", &ann).send().await.unwrap()).await;
    assert_eq!(status, 200, "B accepts what A issued: {me}");

    let response = a.post("/api/access/logout", &ann).send().await.unwrap();
    assert_eq!(response.status(), 204);
    // At once, with no delay and nothing for B to refresh.
    let (status, problem) = answer(b.get("/api/me", &ann).send().await.unwrap()).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    let (status, _) = answer(a.get("/api/me", &ann).send().await.unwrap()).await;
    assert_eq!(status, 401);
    // An instance started after the logout (a restart, a new replica of the service) knows it.
    let c = a.another_instance().await;
    let (status, _) = answer(c.get("/api/todos", &ann).send().await.unwrap()).await;
    assert_eq!(status, 401);

    // One row, for this token, until the token's own expiry.
    let claims = a.tokens().verify(&ann.token).unwrap();
    let rows = revocation_rows(&a).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, claims.jti);
    assert_eq!(rows[0].expires_at.timestamp(), claims.exp);

    // The account's other tokens, and a new sign-in, still work everywhere.
    let again = signed_in_again(&b, &ann).await;
    let (status, _) = answer(a.get("/api/me", &again).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = answer(c.get("/api/me", &again).send().await.unwrap()).await;
    assert_eq!(status, 200);
}

/// Signs `user` in again through another instance.
async fn signed_in_again(instance: &crate::api::Instance, user: &TestUser) -> TestUser {
    let response = instance
        .client
        .post(instance.url("/api/access/login"))
        .form(&[("username", user.email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 200, "{body}");
    TestUser {
        token: body["access_token"].as_str().unwrap().to_string(),
        ..user.clone()
    }
}

/// A revocation row expiring `seconds` from now (negative: already expired).
fn revocation(seconds: i64) -> revoked_token::ActiveModel {
    let now = app::models::now();
    revoked_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        expires_at: Set(now + chrono::Duration::seconds(seconds)),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

async fn expired_revocations_are_deleted(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let live = revocation(3600);
    let live_jti = live.id.clone().unwrap();
    revoked_token::Entity::insert_many([
        revocation(-86_400),
        revocation(-3600),
        revocation(-1),
        live,
    ])
    .exec_without_returning(db.conn())
    .await
    .unwrap();

    // A logout deletes the expired ones and keeps the live one beside its own.
    let ann = signed_in(&app, "ann@example.com").await;
    let response = app.post("/api/access/logout", &ann).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let mut kept: Vec<Uuid> = revocation_rows(&app)
        .await
        .into_iter()
        .map(|row| row.id)
        .collect();
    kept.sort();
    let own = app.tokens().verify(&ann.token).unwrap().jti;
    let mut expected = vec![live_jti, own];
    expected.sort();
    assert_eq!(kept, expected);

    // Each cleanup deletes a bounded batch, oldest first, and nothing unexpired.
    revoked_token::Entity::insert_many((0..5).map(|i| revocation(-100 - i)))
        .exec_without_returning(db.conn())
        .await
        .unwrap();
    assert_eq!(revocations::delete_expired(db.conn(), 2).await.unwrap(), 2);
    assert_eq!(revocation_rows(&app).await.len(), 5);
    assert_eq!(revocations::delete_expired(db.conn(), 10).await.unwrap(), 3);
    assert_eq!(revocations::delete_expired(db.conn(), 10).await.unwrap(), 0);
    assert_eq!(revocation_rows(&app).await.len(), 2);
    db.close().await;
}

async fn logging_out_twice_is_harmless(kind: Kind) {
    let a = TestApp::spawn(kind).await;
    let b = a.another_instance().await;
    // Each token logged out through both instances at the same moment: each answer is 204,
    // or 401 when the other's revocation came first; never an error; one row per token.
    let mut tokens = Vec::new();
    for i in 0..5 {
        let user = signed_in(&a, &format!("user{i}@example.com")).await;
        let (through_a, through_b) = tokio::join!(
            a.post("/api/access/logout", &user).send(),
            b.post("/api/access/logout", &user).send()
        );
        let statuses = [
            through_a.unwrap().status().as_u16(),
            through_b.unwrap().status().as_u16(),
        ];
        assert!(statuses.contains(&204), "{statuses:?}");
        assert!(
            statuses.iter().all(|s| [204, 401].contains(s)),
            "{statuses:?}"
        );
        // Once more, afterwards: the token is refused, as any revoked one.
        let (status, problem) =
            answer(b.post("/api/access/logout", &user).send().await.unwrap()).await;
        assert_eq!(status, 401, "{problem}");
        tokens.push(a.tokens().verify(&user.token).unwrap());
    }
    assert_eq!(revocation_rows(&a).await.len(), tokens.len());

    // Revoking a revoked token again, straight through the domain, changes nothing.
    let db = a.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    revocations::revoke(db.conn(), &tokens[0]).await.unwrap();
    revocations::revoke(db.conn(), &tokens[0]).await.unwrap();
    db.close().await;
    assert_eq!(revocation_rows(&a).await.len(), tokens.len());
}

async fn a_database_that_cannot_answer_the_check_gives_503(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    // A server of the test's own over one connection the test can take away.
    let settings = app.db.settings(&[
        ("DATABASE_POOL_SIZE", "1"),
        ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ("DATABASE_POOL_TIMEOUT", "0.5"),
    ]);
    let tokens = Tokens::new(settings.secret_key.expose(), settings.token_lifetime);
    let ann = TestUser {
        token: tokens.issue(ann.id).unwrap(),
        ..ann
    };
    let db = Database::connect(&settings.database).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app::http::app(AppState::new(settings, db.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let me = || client.get(format!("{base}/api/me")).bearer_auth(&ann.token);

    let (status, _) = answer(me().send().await.unwrap()).await;
    assert_eq!(status, 200);
    let held = db.conn().begin().await.unwrap();
    let response = me().send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, problem) = answer(response).await;
    assert_eq!(status, 503, "the token is not let through: {problem}");
    held.rollback().await.unwrap();

    // A revoked token is not let through either while the database cannot say so.
    let logout = client
        .post(format!("{base}/api/access/logout"))
        .bearer_auth(&ann.token);
    assert_eq!(logout.send().await.unwrap().status(), 204);
    let held = db.conn().begin().await.unwrap();
    let (status, problem) = answer(me().send().await.unwrap()).await;
    assert_eq!(status, 503, "{problem}");
    held.rollback().await.unwrap();
    let (status, _) = answer(me().send().await.unwrap()).await;
    assert_eq!(status, 401);
}

/// The check every authenticated request makes is a lookup by key in `revoked_token`, however
/// many rows it holds: no scan of the table.
#[tokio::test]
async fn the_check_looks_the_token_up_by_key_on_postgres() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = signed_in(&app, "ann@example.com").await;
    let claims = app.tokens().verify(&ann.token).unwrap();
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    db.conn()
        .execute_unprepared(
            "INSERT INTO revoked_token \
             SELECT gen_random_uuid(), now() + interval '1 hour', now(), now() \
             FROM generate_series(1, 20000); \
             ANALYZE revoked_token",
        )
        .await
        .unwrap();
    let query = revocations::holder_query(&claims).build(DbBackend::Postgres);
    let explain = Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("EXPLAIN {}", query.sql),
        query.values.map(|values| values.0).unwrap_or_default(),
    );
    let plan: Vec<String> = db
        .conn()
        .query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("revoked_token_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan on revoked_token"), "{plan}");
    db.close().await;
}

on_both_databases!(
    a_logout_through_one_instance_is_refused_by_the_others,
    expired_revocations_are_deleted,
    logging_out_twice_is_harmless,
    a_database_that_cannot_answer_the_check_gives_503,
);
