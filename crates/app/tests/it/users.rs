//! `/api/users`: superusers only; paging, search, create, change, delete with cascades.

use app::db::Database;
use app::domain::accounts::{self, Actor, Guarded, Refusal, UserPatch};
use app::models::{tag, todo, user_account, user_account_role, user_account_todo_tag};
use reqwest::StatusCode;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::login;
use crate::api::{PASSWORD, TestApp, TestUser, answer, error_fields, role_slugs};
use crate::helpers::{Kind, TestDb, on_both_databases};

async fn create(app: &TestApp, admin: &TestUser, body: &Value) -> (u16, Value) {
    answer(
        app.post("/api/users", admin)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn list(app: &TestApp, admin: &TestUser, query: &str) -> (u16, Value) {
    answer(
        app.get(&format!("/api/users{query}"), admin)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn others_are_refused_on_every_route(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let plain = app.user("plain@example.com", false).await;
    let path = format!("/api/users/{}", plain.id);
    let body = json!({"email": "new@example.com", "password": PASSWORD});
    let requests = |user: Option<&TestUser>| {
        let with = |builder: reqwest::RequestBuilder| match user {
            Some(user) => builder.bearer_auth(&user.token),
            None => builder,
        };
        vec![
            ("list", with(app.client.get(app.url("/api/users")))),
            (
                "create",
                with(app.client.post(app.url("/api/users"))).json(&body),
            ),
            ("show", with(app.client.get(app.url(&path)))),
            (
                "patch",
                with(app.client.patch(app.url(&path))).json(&json!({"name": "x"})),
            ),
            ("delete", with(app.client.delete(app.url(&path)))),
            (
                "list bad limit",
                with(app.client.get(app.url("/api/users?limit=0"))),
            ),
            (
                "show bad id",
                with(app.client.get(app.url("/api/users/not-a-uuid"))),
            ),
        ]
    };
    for (route, request) in requests(Some(&plain)) {
        let (status, problem) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 403, "{route}: {problem}");
    }
    for (route, request) in requests(None) {
        let (status, problem) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{route}: {problem}");
    }
}

#[tokio::test]
async fn others_are_refused_on_every_route_postgres() {
    others_are_refused_on_every_route(Kind::Postgres).await;
}

#[tokio::test]
async fn others_are_refused_on_every_route_sqlite() {
    others_are_refused_on_every_route(Kind::Sqlite).await;
}

async fn list_pages_counts_and_searches(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    for (email, name) in [
        ("zed.one@example.com", "Zed One"),
        ("two@example.com", "Second ZEDSON"),
        ("three@example.org", "Third"),
        ("under_score@example.com", "100% Real"),
    ] {
        let (status, user) = create(
            &app,
            &admin,
            &json!({"email": email, "name": name, "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, 201, "{user}");
    }

    let (status, page) = list(&app, &admin, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["offset"], 0);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["email"], "admin@example.com", "oldest first");
    assert_eq!(role_slugs(&items[1]), ["application-access"]);
    assert!(!page.to_string().contains("argon2"));
    assert!(items.iter().all(|u| u.get("hashedPassword").is_none()));

    let (_, first) = list(&app, &admin, "?limit=2").await;
    let (_, second) = list(&app, &admin, "?limit=2&offset=2").await;
    let (_, past) = list(&app, &admin, "?limit=2&offset=10").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert_eq!(second["offset"], 2);
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert_eq!(past["items"], json!([]));
    assert_eq!(past["total"], 5, "the total counts all pages");

    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, found) = list(&app, &admin, "?search=zEd").await;
    assert_eq!(found["total"], 2, "{found}");
    assert_eq!(emails(&found), ["zed.one@example.com", "two@example.com"]);
    let (_, found) = list(&app, &admin, "?search=EXAMPLE.ORG").await;
    assert_eq!(emails(&found), ["three@example.org"]);
    let (_, found) = list(&app, &admin, "?search=%25").await;
    assert_eq!(emails(&found), ["under_score@example.com"], "% is literal");
    let (_, found) = list(&app, &admin, "?search=e_a").await;
    assert_eq!(found["total"], 0, "_ is literal: {found}");
    let (_, found) = list(&app, &admin, "?search=zed&limit=1&offset=1").await;
    assert_eq!(found["total"], 2);
    assert_eq!(emails(&found), ["two@example.com"]);
}

#[tokio::test]
async fn list_pages_counts_and_searches_postgres() {
    list_pages_counts_and_searches(Kind::Postgres).await;
}

#[tokio::test]
async fn list_pages_counts_and_searches_sqlite() {
    list_pages_counts_and_searches(Kind::Sqlite).await;
}

async fn list_rejects_bad_paging(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    for (query, fields) in [
        ("?limit=0", &["limit"][..]),
        ("?limit=101", &["limit"]),
        ("?limit=ten", &["limit"]),
        ("?limit=", &["limit"]),
        ("?offset=-1", &["offset"]),
        ("?offset=1.5", &["offset"]),
        ("?limit=-5&offset=x", &["limit", "offset"]),
    ] {
        let (status, problem) = list(&app, &admin, query).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(error_fields(&problem), fields, "{query}");
    }
    let (status, page) = list(&app, &admin, "?limit=100&offset=0").await;
    assert_eq!(status, 200);
    assert_eq!(page["limit"], 100);
}

#[tokio::test]
async fn list_rejects_bad_paging_postgres() {
    list_rejects_bad_paging(Kind::Postgres).await;
}

#[tokio::test]
async fn list_rejects_bad_paging_sqlite() {
    list_rejects_bad_paging(Kind::Sqlite).await;
}

async fn create_show_change_and_delete(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;

    let response = app
        .post("/api/users", &admin)
        .json(&json!({"email": "Fay@Example.com", "name": "Fay", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (status, fay) = answer(response).await;
    assert_eq!(status, 201, "{fay}");
    let id = fay["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/users/{id}"));
    assert_eq!(fay["email"], "fay@example.com");
    assert_eq!(fay["isActive"], true);
    assert_eq!(fay["isSuperuser"], false);
    assert_eq!(role_slugs(&fay), ["application-access"]);

    let (status, boss) = create(
        &app,
        &admin,
        &json!({
            "email": "boss@example.com", "password": PASSWORD,
            "isSuperuser": true, "isVerified": true, "isActive": false
        }),
    )
    .await;
    assert_eq!(status, 201, "{boss}");
    assert_eq!(boss["isSuperuser"], true);
    assert_eq!(boss["isActive"], false);
    assert_eq!(boss["isVerified"], true);
    assert_eq!(
        boss["verifiedAt"],
        chrono::Utc::now().date_naive().to_string()
    );
    assert_eq!(role_slugs(&boss), ["application-access", "superuser"]);

    let path = format!("/api/users/{id}");
    let (status, shown) = answer(app.get(&path, &admin).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(shown, fay);

    let patch = |body: Value| {
        let request = app.patch(&path, &admin).json(&body);
        async move { answer(request.send().await.unwrap()).await }
    };
    let (status, changed) = patch(json!({
        "name": "Fay Doe", "email": " FAY.DOE@example.com ", "isVerified": true
    }))
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "Fay Doe");
    assert_eq!(changed["email"], "fay.doe@example.com");
    assert_eq!(changed["isVerified"], true);
    assert_eq!(
        changed["verifiedAt"],
        chrono::Utc::now().date_naive().to_string()
    );
    assert_eq!(changed["createdAt"], fay["createdAt"]);
    assert_ne!(changed["updatedAt"], fay["updatedAt"]);

    let (status, changed) = patch(json!({"name": null, "isVerified": false})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], Value::Null, "null clears the name");
    assert_eq!(changed["verifiedAt"], Value::Null);
    assert_eq!(
        changed["email"], "fay.doe@example.com",
        "absent fields stay"
    );

    let (status, changed) = patch(json!({"isSuperuser": true})).await;
    assert_eq!(status, 200);
    assert_eq!(changed["isSuperuser"], true);
    assert_eq!(role_slugs(&changed), ["application-access", "superuser"]);
    let (_, changed) = patch(json!({"isSuperuser": false})).await;
    assert_eq!(changed["isSuperuser"], false);
    assert_eq!(role_slugs(&changed), ["application-access"]);

    let (status, _) = patch(json!({"password": "a-brand-new-password"})).await;
    assert_eq!(status, 200);
    let (status, _) = login(&app, "fay.doe@example.com", PASSWORD).await;
    assert_eq!(status, 401, "the old password is gone");
    let (status, _) = login(&app, "fay.doe@example.com", "a-brand-new-password").await;
    assert_eq!(status, 200);

    let (status, changed) = patch(json!({"isActive": false})).await;
    assert_eq!(status, 200);
    assert_eq!(changed["isActive"], false);
    let (status, _) = login(&app, "fay.doe@example.com", "a-brand-new-password").await;
    assert_eq!(status, 403);

    let response = app.delete(&path, &admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = answer(app.get(&path, &admin).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = answer(app.delete(&path, &admin).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn create_show_change_and_delete_postgres() {
    create_show_change_and_delete(Kind::Postgres).await;
}

#[tokio::test]
async fn create_show_change_and_delete_sqlite() {
    create_show_change_and_delete(Kind::Sqlite).await;
}

async fn bad_input_is_named_field_by_field(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let other = app.user("other@example.com", false).await;

    let (status, problem) = create(
        &app,
        &admin,
        &json!({"email": "nope", "password": "short", "name": "x".repeat(300)}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email", "name", "password"]);

    let (status, problem) = create(&app, &admin, &json!({})).await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email", "password"]);

    let (status, problem) = create(
        &app,
        &admin,
        &json!({"email": "x@example.com", "password": PASSWORD, "hashedPassword": "x"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["hashedPassword"]);

    let (status, problem) = create(
        &app,
        &admin,
        &json!({"email": "OTHER@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");

    let path = format!("/api/users/{}", other.id);
    let (status, problem) = answer(
        app.patch(&path, &admin)
            .json(&json!({"email": "bad", "password": "short"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["email", "password"]);

    let (status, problem) = answer(
        app.patch(&path, &admin)
            .json(&json!({"email": "Admin@Example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{problem}");

    let (status, problem) = answer(
        app.patch(&path, &admin)
            .json(&json!({"isActive": "yes"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_fields(&problem), ["isActive"]);

    // Keeping one's own email is no conflict.
    let (status, _) = answer(
        app.patch(&path, &admin)
            .json(&json!({"email": "other@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_input_is_named_field_by_field_postgres() {
    bad_input_is_named_field_by_field(Kind::Postgres).await;
}

#[tokio::test]
async fn bad_input_is_named_field_by_field_sqlite() {
    bad_input_is_named_field_by_field(Kind::Sqlite).await;
}

async fn malformed_and_unknown_ids(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let unknown = format!("/api/users/{}", Uuid::now_v7());
    for (name, request) in [
        ("get", app.get("/api/users/42", &admin)),
        ("patch", app.patch("/api/users/42", &admin).json(&json!({}))),
        ("delete", app.delete("/api/users/not-a-uuid", &admin)),
    ] {
        let (status, problem) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{name}: {problem}");
    }
    for (name, request) in [
        ("get", app.get(&unknown, &admin)),
        (
            "patch",
            app.patch(&unknown, &admin).json(&json!({"name": "x"})),
        ),
        ("delete", app.delete(&unknown, &admin)),
    ] {
        let (status, problem) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 404, "{name}: {problem}");
    }
}

#[tokio::test]
async fn malformed_and_unknown_ids_postgres() {
    malformed_and_unknown_ids(Kind::Postgres).await;
}

#[tokio::test]
async fn malformed_and_unknown_ids_sqlite() {
    malformed_and_unknown_ids(Kind::Sqlite).await;
}

async fn delete_takes_todos_tags_and_role_links(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let gone = app.user("gone@example.com", false).await;
    let kept = app.user("kept@example.com", false).await;

    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let conn = db.conn();
    for owner in [gone.id, kept.id] {
        let mut row = todo::ActiveModel::new();
        row.item = Set("water the plants".into());
        row.description = Set(None);
        row.created_time = Set(chrono::Utc::now());
        row.alarm_time = Set(None);
        row.start_time = Set(None);
        row.end_time = Set(None);
        row.importance = Set(todo::Importance::Low);
        row.user_id = Set(owner);
        let todo = row.insert(conn).await.unwrap();
        let mut row = tag::ActiveModel::new();
        row.name = Set("home".into());
        row.color = Set(Some("green".into()));
        row.user_id = Set(owner);
        let tag = row.insert(conn).await.unwrap();
        let mut row = user_account_todo_tag::ActiveModel::new();
        row.todo_id = Set(todo.id);
        row.tag_id = Set(tag.id);
        row.insert(conn).await.unwrap();
    }

    let response = app
        .delete(&format!("/api/users/{}", gone.id), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let todos = |user: Uuid| todo::Entity::find().filter(todo::Column::UserId.eq(user));
    let tags = |user: Uuid| tag::Entity::find().filter(tag::Column::UserId.eq(user));
    let links = |user: Uuid| {
        user_account_role::Entity::find().filter(user_account_role::Column::UserId.eq(user))
    };
    assert_eq!(todos(gone.id).count(conn).await.unwrap(), 0);
    assert_eq!(tags(gone.id).count(conn).await.unwrap(), 0);
    assert_eq!(links(gone.id).count(conn).await.unwrap(), 0);
    assert!(
        user_account::Entity::find_by_id(gone.id)
            .one(conn)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        user_account_todo_tag::Entity::find()
            .count(conn)
            .await
            .unwrap(),
        1,
        "only the kept user's todo-tag link is left"
    );
    assert_eq!(todos(kept.id).count(conn).await.unwrap(), 1);
    assert_eq!(tags(kept.id).count(conn).await.unwrap(), 1);
    assert_eq!(links(kept.id).count(conn).await.unwrap(), 1);
    db.close().await;
}

#[tokio::test]
async fn delete_takes_todos_tags_and_role_links_postgres() {
    delete_takes_todos_tags_and_role_links(Kind::Postgres).await;
}

#[tokio::test]
async fn delete_takes_todos_tags_and_role_links_sqlite() {
    delete_takes_todos_tags_and_role_links(Kind::Sqlite).await;
}

async fn superusers_cannot_lock_themselves_out(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let path = format!("/api/users/{}", admin.id);
    for body in [json!({"isActive": false}), json!({"isSuperuser": false})] {
        let (status, problem) =
            answer(app.patch(&path, &admin).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 409, "{body}: {problem}");
    }
    let (status, _) = answer(app.delete(&path, &admin).send().await.unwrap()).await;
    assert_eq!(status, 409);
    let (status, me) = answer(
        app.patch(&path, &admin)
            .json(&json!({"name": "Still Admin"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "other changes to oneself are fine");
    assert_eq!(me["isSuperuser"], true);
}

#[tokio::test]
async fn superusers_cannot_lock_themselves_out_postgres() {
    superusers_cannot_lock_themselves_out(Kind::Postgres).await;
}

#[tokio::test]
async fn superusers_cannot_lock_themselves_out_sqlite() {
    superusers_cannot_lock_themselves_out(Kind::Sqlite).await;
}

async fn oversized_and_mistyped_bodies(kind: Kind) {
    let app = TestApp::spawn_with(kind, &[("APP_MAX_BODY_BYTES", "2048")]).await;
    let admin = app.user("admin@example.com", true).await;
    let big = json!({"email": "big@example.com", "password": PASSWORD, "name": "x".repeat(4096)});
    let (status, problem) = create(&app, &admin, &big).await;
    assert_eq!(status, 413, "{problem}");
    let (status, _) = answer(
        app.patch(&format!("/api/users/{}", admin.id), &admin)
            .json(&big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);

    let (status, problem) = answer(
        app.post("/api/users", &admin)
            .header("content-type", "text/plain")
            .body(json!({"email": "t@example.com", "password": PASSWORD}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415, "{problem}");
    let (status, _) = answer(app.post("/api/users", &admin).send().await.unwrap()).await;
    assert_eq!(status, 415, "no body, no content type");

    let (status, _) = create(
        &app,
        &admin,
        &json!({"email": "small@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "a body under the limit passes");
}

#[tokio::test]
async fn oversized_and_mistyped_bodies_postgres() {
    oversized_and_mistyped_bodies(Kind::Postgres).await;
}

#[tokio::test]
async fn oversized_and_mistyped_bodies_sqlite() {
    oversized_and_mistyped_bodies(Kind::Sqlite).await;
}

/// How one superuser takes another's rights away, through the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeaway {
    Demote,
    Deactivate,
    Delete,
    RevokeRole,
}

impl Takeaway {
    fn request(
        self,
        app: &TestApp,
        actor: &TestUser,
        target: &TestUser,
    ) -> reqwest::RequestBuilder {
        let path = format!("/api/users/{}", target.id);
        match self {
            Takeaway::Demote => app.patch(&path, actor).json(&json!({"isSuperuser": false})),
            Takeaway::Deactivate => app.patch(&path, actor).json(&json!({"isActive": false})),
            Takeaway::Delete => app.delete(&path, actor),
            Takeaway::RevokeRole => app
                .post("/api/roles/superuser/revoke", actor)
                .json(&json!({"email": target.email})),
        }
    }
}

/// Active superusers in the database now.
pub async fn active_superusers(db: &Database) -> u64 {
    user_account::Entity::find()
        .filter(user_account::Column::IsSuperuser.eq(true))
        .filter(user_account::Column::IsActive.eq(true))
        .count(db.conn())
        .await
        .unwrap()
}

/// Makes every account an ordinary one, straight in the database.
async fn no_superusers(db: &Database) {
    user_account::Entity::update_many()
        .col_expr(user_account::Column::IsSuperuser, Expr::value(false))
        .exec(db.conn())
        .await
        .unwrap();
}

/// Rounds of two superusers, the only two, taking each other's rights at the same moment with
/// each pair of `takeaways` in turn: one wins, the other is refused with problem JSON (409 when
/// both requests got past sign-in before either changed anything, which most rounds manage;
/// 403 or 401 when the winner's change was already in when the loser's token was checked), and
/// one active superuser is left every time.
pub async fn race_superusers(kind: Kind, takeaways: &[(Takeaway, Takeaway)], rounds: usize) {
    let app = TestApp::spawn(kind).await;
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let mut conflicts = 0;
    for round in 0..rounds {
        no_superusers(&db).await;
        let a = app.user(&format!("a{round}@example.com"), true).await;
        let b = app.user(&format!("b{round}@example.com"), true).await;
        let (a_does, b_does) = takeaways[round % takeaways.len()];
        let (by_a, by_b) = tokio::join!(
            a_does.request(&app, &a, &b).send(),
            b_does.request(&app, &b, &a).send()
        );
        let (by_a, by_b) = (answer(by_a.unwrap()).await, answer(by_b.unwrap()).await);
        let context = format!("round {round}, {a_does:?} vs {b_does:?}: {by_a:?} / {by_b:?}");
        let won = |status: u16| status == 200 || status == 204;
        assert!(won(by_a.0) != won(by_b.0), "exactly one wins: {context}");
        let loser = if won(by_a.0) { &by_b } else { &by_a };
        assert!([409, 403, 401].contains(&loser.0), "{context}");
        if loser.0 == 409 {
            conflicts += 1;
            assert!(
                loser.1["detail"]
                    .as_str()
                    .unwrap()
                    .contains("last active superuser"),
                "{context}"
            );
        }
        assert_eq!(active_superusers(&db).await, 1, "{context}");
    }
    db.close().await;
    assert!(conflicts > 0, "no round raced; the test proves nothing");
}

async fn racing_superusers_leave_one_active(kind: Kind) {
    use Takeaway::*;
    race_superusers(
        kind,
        &[
            (Demote, Demote),
            (Delete, Demote),
            (Deactivate, Demote),
            (Delete, Delete),
            (Deactivate, Delete),
        ],
        15,
    )
    .await;
}

/// A superuser straight in the database (no password: the domain is called directly).
async fn superuser(db: &Database, email: &str) -> user_account::Model {
    let mut row = user_account::ActiveModel::new();
    row.email = Set(email.to_string());
    row.is_superuser = Set(true);
    row.joined_at = Set(chrono::Utc::now().date_naive());
    row.insert(db.conn()).await.unwrap()
}

fn demote() -> UserPatch {
    UserPatch {
        is_superuser: Some(false),
        ..UserPatch::default()
    }
}

/// The domain functions themselves, raced with no HTTP in between: both always get past the
/// door, so the loser is always refused inside the transaction, as the last superuser.
async fn the_rule_holds_inside_the_transaction(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    for round in 0..12 {
        no_superusers(&db).await;
        let a = superuser(&db, &format!("a{round}@example.com")).await;
        let b = superuser(&db, &format!("b{round}@example.com")).await;
        let by_a = accounts::update_user(db.conn(), Actor::Superuser(a.id), b.id, demote());
        let outcomes = if round % 2 == 0 {
            let by_b = accounts::update_user(db.conn(), Actor::Superuser(b.id), a.id, demote());
            let (x, y) = tokio::join!(by_a, by_b);
            [x.map(|_| ()), y.map(|_| ())]
        } else {
            let by_b = accounts::delete_user(db.conn(), Actor::Superuser(b.id), a.id);
            let (x, y) = tokio::join!(by_a, by_b);
            [x.map(|_| ()), y]
        };
        let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert_eq!(refused.len(), 1, "round {round}: {outcomes:?}");
        assert!(
            matches!(refused[0], Guarded::Refused(Refusal::LastSuperuser(_))),
            "round {round}: {outcomes:?}"
        );
        assert_eq!(active_superusers(&db).await, 1, "round {round}");
    }

    // Alone, nobody removes the last one either, not even from the shell.
    no_superusers(&db).await;
    let last = superuser(&db, "last@example.com").await;
    for patch in [
        demote(),
        UserPatch {
            is_active: Some(false),
            ..UserPatch::default()
        },
    ] {
        let refused = accounts::update_user(db.conn(), Actor::Operator, last.id, patch).await;
        assert!(
            matches!(refused, Err(Guarded::Refused(Refusal::LastSuperuser(ref email))) if email == "last@example.com"),
            "{refused:?}"
        );
    }
    let refused = accounts::delete_user(db.conn(), Actor::Operator, last.id).await;
    assert!(
        matches!(refused, Err(Guarded::Refused(Refusal::LastSuperuser(_)))),
        "{refused:?}"
    );
    // An inactive superuser does not count, and can go.
    let mut idle = superuser(&db, "idle@example.com").await.into_active_model();
    idle.is_active = Set(false);
    let idle = idle.update(db.conn()).await.unwrap();
    accounts::update_user(db.conn(), Actor::Operator, idle.id, demote())
        .await
        .expect("demoting an inactive superuser leaves the active one");
    // A superuser who lost their rights meanwhile is refused, even for a harmless change.
    let other = superuser(&db, "other@example.com").await;
    let gone = Uuid::now_v7();
    let refused = accounts::update_user(
        db.conn(),
        Actor::Superuser(gone),
        other.id,
        UserPatch {
            name: Some(Some("x".into())),
            ..UserPatch::default()
        },
    )
    .await;
    assert!(
        matches!(refused, Err(Guarded::Refused(Refusal::NotSuperuser))),
        "{refused:?}"
    );
    assert_eq!(active_superusers(&db).await, 2);
    db.close().await;
}

on_both_databases!(
    racing_superusers_leave_one_active,
    the_rule_holds_inside_the_transaction,
);
