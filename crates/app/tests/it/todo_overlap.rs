//! Writes of one user that do not queue: on PostgreSQL an exclusion constraint, not a lock on
//! the user's row, keeps a user's todos from overlapping. Racing overlapping creates let one
//! win and the others name it; a transaction holding a new todo open delays no other write of
//! the user except one whose range meets it. (The overlap rules themselves are tested on both
//! databases in `todos`.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::api::{TestApp, TestUser, answer};
use sqlx::Executor;

use crate::helpers::{Kind, TestDb, one_line_failure, pg_direct, run_app_on};

/// Longer than any of these writes takes when nothing holds it up.
const NOT_HELD: Duration = Duration::from_secs(10);

/// Writes a todo of `user_id` from `start` to `end` in `held`, a transaction the test keeps
/// open (as a request in flight would); returns its id.
async fn hold_todo(
    held: &sea_orm::DatabaseTransaction,
    user_id: uuid::Uuid,
    item: &str,
    start: &str,
    end: &str,
) -> uuid::Uuid {
    use sea_orm::{ActiveModelBehavior, ActiveModelTrait, Set};
    let now = app::models::now();
    let mut row = app::models::todo::ActiveModel::new();
    row.item = Set(item.to_string());
    row.description = Set(None);
    row.created_time = Set(now);
    row.alarm_time = Set(None);
    row.start_time = Set(Some(time(start)));
    row.end_time = Set(Some(time(end)));
    row.importance = Set(Default::default());
    row.user_id = Set(user_id);
    row.created_at = Set(now);
    row.insert(held).await.expect("insert the held todo").id
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test time")
        .with_timezone(&Utc)
}

fn range(item: &str, start: &str, end: &str) -> Value {
    json!({"item": item, "startTime": format!("2026-03-01T{start}:00Z"), "endTime": format!("2026-03-01T{end}:00Z")})
}

async fn post(app: &TestApp, user: &TestUser, body: Value) -> (u16, Value) {
    answer(
        app.post("/api/todos", user)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A POST of `body` running on its own, so the test can watch whether it waits.
fn spawn_post(app: &TestApp, user: &TestUser, body: Value) -> JoinHandle<(u16, Value)> {
    let request = app.post("/api/todos", user).json(&body);
    tokio::spawn(async move { answer(request.send().await.unwrap()).await })
}

async fn patch(app: &TestApp, user: &TestUser, id: &str, body: Value) -> (u16, Value) {
    answer(
        app.patch(&format!("/api/todos/{id}"), user)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {value}"))
        .to_string()
}

fn conflicts(problem: &Value) -> Vec<String> {
    problem["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of conflicts: {problem}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn racing_overlapping_creates_on_postgres_let_one_win_and_name_it() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = app.user("ann@example.com", false).await;
    // Each racer overlaps every other one, none the same range.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (start, end) = (format!("09:{i:02}"), format!("10:{i:02}"));
            spawn_post(&app, &ann, range(&format!("racer {i}"), &start, &end))
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap());
    }
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, todo)| todo)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = id(winners[0]);
    for (status, body) in results.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(conflicts(body), std::slice::from_ref(&winner), "{body}");
        assert_eq!(body["status"], 409, "the problem shape: {body}");
        assert!(body["detail"].as_str().unwrap().contains(&winner), "{body}");
    }
}

#[tokio::test]
async fn an_open_write_of_a_user_holds_up_only_the_writes_it_overlaps() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = app.user("ann@example.com", false).await;
    let (status, before) = post(&app, &ann, range("before", "13:00", "14:00")).await;
    assert_eq!(status, 201, "{before}");
    let before = id(&before);

    // Another connection makes a todo of ann's and keeps its transaction open.
    let db = app.db.connect(&[]).await;
    let held = db.conn().begin().await.unwrap();
    let open = hold_todo(
        &held,
        ann.id,
        "open",
        "2026-03-01T09:00:00Z",
        "2026-03-01T10:00:00Z",
    )
    .await;

    // Writes of ann's that do not meet it go through: a range elsewhere, no range, a patch
    // that moves another todo, and one that does not touch times.
    let quick = async {
        let (status, body) = post(&app, &ann, range("later", "11:00", "12:00")).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = post(&app, &ann, json!({"item": "no time"})).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = patch(
            &app,
            &ann,
            &before,
            json!({"startTime": "2026-03-01T14:00:00Z", "endTime": "2026-03-01T15:00:00Z"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = patch(&app, &ann, &before, json!({"item": "renamed"})).await;
        assert_eq!(status, 200, "{body}");
    };
    tokio::time::timeout(NOT_HELD, quick)
        .await
        .expect("writes of the same user that meet no open todo do not wait for it");

    // One that meets it waits for that transaction, then is refused naming it.
    let overlapping = spawn_post(&app, &ann, range("clash", "09:30", "10:30"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !overlapping.is_finished(),
        "the overlapping write waits for the open one"
    );
    held.commit().await.unwrap();
    let (status, problem) = tokio::time::timeout(NOT_HELD, overlapping)
        .await
        .expect("the commit releases it")
        .unwrap();
    assert_eq!(status, 409, "{problem}");
    assert_eq!(conflicts(&problem), [open.to_string()]);
    db.close().await;
}

#[tokio::test]
async fn an_overlap_rolled_back_frees_the_range() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    let held = db.conn().begin().await.unwrap();
    hold_todo(
        &held,
        ann.id,
        "undone",
        "2026-03-01T09:00:00Z",
        "2026-03-01T10:00:00Z",
    )
    .await;
    let waiting = spawn_post(&app, &ann, range("takes it", "09:30", "10:30"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.rollback().await.unwrap();
    let (status, body) = tokio::time::timeout(NOT_HELD, waiting)
        .await
        .expect("the rollback releases it")
        .unwrap();
    assert_eq!(status, 201, "{body}");
    db.close().await;
}

#[tokio::test]
async fn the_constraint_is_in_place_and_the_schema_checks_clean() {
    let db = TestDb::new(Kind::Postgres).await;
    let out = crate::helpers::succeeded(&run_app_on(&db.url, &["database", "check"]));
    assert!(out.contains("database matches"), "{out}");
    let mut conn = crate::helpers::pg_direct(&db).await;
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
    )
    .bind(app::domain::todo_overlap::CONSTRAINT)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(definition.starts_with("EXCLUDE USING gist"), "{definition}");
    assert!(definition.contains("'[)'"), "{definition}");
}

#[tokio::test]
async fn a_role_that_cannot_create_btree_gist_is_told_what_to_ask_for() {
    let db = TestDb::empty(Kind::Postgres).await;
    // A role that may make tables in the schema but not extensions in the database.
    let role = format!("app_noext_{}", uuid::Uuid::now_v7().simple());
    let mut admin = pg_direct(&db).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN; GRANT CREATE ON SCHEMA public TO {role}"
        )))
        .await
        .unwrap();
    let url = db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    let out = crate::helpers::run_app(
        std::env::temp_dir().as_path(),
        &["database", "upgrade"],
        &[("APP_ENV", "testing"), ("DATABASE_URL", url.as_str())],
    );
    // The role owns what the earlier migrations made; it goes before the assertions can fail.
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP OWNED BY {role}; DROP ROLE {role}"
        )))
        .await
        .unwrap();
    let line = one_line_failure(&out, 1);
    assert!(
        line.contains("btree_gist") && line.contains("CREATE EXTENSION btree_gist"),
        "{line}"
    );
}

#[tokio::test]
async fn racing_creates_making_the_same_new_tags_in_any_order_all_succeed() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = app.user("ann@example.com", false).await;
    // Writers of one user no longer run one at a time: each makes the same new tags, named in
    // a different order, and none may deadlock on another's.
    let names: Vec<String> = (0..50).map(|i| format!("tag {i:02}")).collect();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let mut tags = names.clone();
            tags.rotate_left(i * 5 % names.len());
            if i % 2 == 1 {
                tags.reverse();
            }
            spawn_post(
                &app,
                &ann,
                json!({"item": format!("writer {i}"), "tags": tags}),
            )
        })
        .collect();
    for writer in writers {
        let (status, body) = writer.await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["tags"].as_array().unwrap().len(),
            names.len(),
            "{body}"
        );
    }
}
