//! `/api/roles/{slug}/assign` and `/revoke`.

use app::models::user_account_role;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{TestApp, TestUser, answer, role_slugs};
use crate::helpers::Kind;

async fn change(
    app: &TestApp,
    actor: &TestUser,
    slug: &str,
    action: &str,
    email: &str,
) -> (u16, Value) {
    answer(
        app.post(&format!("/api/roles/{slug}/{action}"), actor)
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn role_links(app: &TestApp, user: Uuid) -> u64 {
    let db = app.db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let count = user_account_role::Entity::find()
        .filter(user_account_role::Column::UserId.eq(user))
        .count(db.conn())
        .await
        .unwrap();
    db.close().await;
    count
}

async fn assigning_twice_is_harmless(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let ann = app.user("ann@example.com", false).await;

    for _ in 0..2 {
        let (status, user) = change(&app, &admin, "superuser", "assign", "ANN@example.com").await;
        assert_eq!(status, 200, "{user}");
        assert_eq!(user["email"], "ann@example.com");
        assert_eq!(
            user["isSuperuser"], true,
            "the superuser role sets the flag"
        );
        assert_eq!(role_slugs(&user), ["application-access", "superuser"]);
        assert!(user.get("hashedPassword").is_none());
    }
    assert_eq!(role_links(&app, ann.id).await, 2, "no duplicate row");

    // Ann is a superuser now: the users routes let her in.
    let (status, _) = answer(app.get("/api/users", &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);

    let (status, user) = change(&app, &admin, "application-access", "assign", &ann.email).await;
    assert_eq!(status, 200);
    assert_eq!(role_slugs(&user), ["application-access", "superuser"]);
    assert_eq!(role_links(&app, ann.id).await, 2);
}

#[tokio::test]
async fn assigning_twice_is_harmless_postgres() {
    assigning_twice_is_harmless(Kind::Postgres).await;
}

#[tokio::test]
async fn assigning_twice_is_harmless_sqlite() {
    assigning_twice_is_harmless(Kind::Sqlite).await;
}

async fn revoking_takes_the_role(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let bob = app.user("bob@example.com", false).await;
    change(&app, &admin, "superuser", "assign", "bob@example.com").await;

    let (status, user) = change(&app, &admin, "superuser", "revoke", "bob@example.com").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user["isSuperuser"], false,
        "revoking superuser clears the flag"
    );
    assert_eq!(role_slugs(&user), ["application-access"]);
    let (status, _) = answer(app.get("/api/users", &bob).send().await.unwrap()).await;
    assert_eq!(status, 403);

    let (status, user) = change(&app, &admin, "superuser", "revoke", "bob@example.com").await;
    assert_eq!(status, 200, "revoking a role not held is harmless");
    assert_eq!(role_slugs(&user), ["application-access"]);

    let (status, user) = change(
        &app,
        &admin,
        "application-access",
        "revoke",
        "bob@example.com",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(user["roles"], json!([]));
    assert_eq!(role_links(&app, bob.id).await, 0);
}

#[tokio::test]
async fn revoking_takes_the_role_postgres() {
    revoking_takes_the_role(Kind::Postgres).await;
}

#[tokio::test]
async fn revoking_takes_the_role_sqlite() {
    revoking_takes_the_role(Kind::Sqlite).await;
}

async fn unknown_roles_users_and_callers(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let plain = app.user("plain@example.com", false).await;
    for action in ["assign", "revoke"] {
        let (status, problem) = change(&app, &admin, "wizard", action, "plain@example.com").await;
        assert_eq!(status, 404, "{action}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("wizard"));

        let (status, problem) =
            change(&app, &admin, "superuser", action, "nobody@example.com").await;
        assert_eq!(status, 404, "{action}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("nobody@example.com")
        );

        let (status, problem) = answer(
            app.post(&format!("/api/roles/superuser/{action}"), &admin)
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "email");

        let (status, _) = change(&app, &plain, "superuser", action, "plain@example.com").await;
        assert_eq!(status, 403, "{action}: only superusers");

        let (status, _) = answer(
            app.client
                .post(app.url(&format!("/api/roles/superuser/{action}")))
                .json(&json!({"email": "plain@example.com"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{action}: a token is needed");
    }
    let (status, problem) = change(&app, &admin, "superuser", "revoke", "Admin@example.com").await;
    assert_eq!(
        status, 409,
        "no revoking one's own superuser role: {problem}"
    );
}

#[tokio::test]
async fn unknown_roles_users_and_callers_postgres() {
    unknown_roles_users_and_callers(Kind::Postgres).await;
}

#[tokio::test]
async fn unknown_roles_users_and_callers_sqlite() {
    unknown_roles_users_and_callers(Kind::Sqlite).await;
}

async fn racing_revokes_leave_one_superuser(kind: Kind) {
    use crate::users::Takeaway::*;
    crate::users::race_superusers(
        kind,
        &[
            (RevokeRole, RevokeRole),
            (RevokeRole, Demote),
            (Delete, RevokeRole),
            (RevokeRole, Deactivate),
        ],
        15,
    )
    .await;
}

crate::helpers::on_both_databases!(racing_revokes_leave_one_superuser);
