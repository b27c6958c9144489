//! `/api/todos` on both databases: create, validation, overlaps, isolation between users,
//! list filters and sorts, and the number of statements a page takes.

use std::collections::BTreeSet;
use std::time::Duration;

use app::domain::todos::{self, NewTodo, TodoError, TodoPatch, TodoQuery};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::{TestApp, TestUser, answer};
use crate::helpers::Kind;
use crate::helpers::on_both_databases;

on_both_databases!(
    create_fills_defaults_and_makes_tags_per_user,
    every_validation_error_is_named_at_once,
    overlapping_ranges_conflict,
    concurrent_overlapping_creates_let_one_win,
    todos_of_two_users_never_conflict,
    get_patch_and_delete,
    other_users_todos_answer_404,
    malformed_and_unknown_ids,
    every_route_needs_a_token,
    list_pages_with_total,
    list_searches_case_insensitively,
    list_filters_by_time_ranges,
    list_filters_by_created_and_updated,
    list_filters_by_importance_and_tag,
    list_sorts_by_each_field_both_ways,
    bad_list_parameters_answer_422,
    a_page_takes_at_most_three_statements,
    the_domain_limits_tags_and_keeps_microseconds,
    a_json_body_in_another_charset_answers_415,
);

/// Query parameters of a list request.
type Params<'a> = Vec<(&'a str, &'a str)>;
/// The same, borrowed.
type Pairs<'a> = [(&'a str, &'a str)];

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test time")
        .with_timezone(&Utc)
}

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {value}"))
        .to_string()
}

fn error_fields(problem: &Value) -> BTreeSet<String> {
    crate::api::error_fields(problem).into_iter().collect()
}

fn conflicts(problem: &Value) -> BTreeSet<String> {
    problem["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of conflicts: {problem}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

fn tag_names(todo: &Value) -> Vec<String> {
    todo["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of tags: {todo}"))
        .iter()
        .map(|tag| tag["name"].as_str().unwrap().to_string())
        .collect()
}

fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(id)
        .collect()
}

fn owned(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

fn set<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
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

/// Makes a todo and returns it; the request must succeed.
async fn create(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let (status, todo) = post(app, user, body).await;
    assert_eq!(status, 201, "{todo}");
    todo
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

async fn list(app: &TestApp, user: &TestUser, query: &[(&str, &str)]) -> (u16, Value) {
    answer(
        app.get("/api/todos", user)
            .query(query)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The ids of a successful list.
async fn list_ids(app: &TestApp, user: &TestUser, query: &[(&str, &str)]) -> Vec<String> {
    let (status, page) = list(app, user, query).await;
    assert_eq!(status, 200, "{query:?}: {page}");
    page_ids(&page)
}

async fn create_fills_defaults_and_makes_tags_per_user(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;

    let response = app
        .post("/api/todos", &ann)
        .json(&json!({"item": "  Buy milk  ", "tags": ["home", " errands ", "home"]}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (status, first) = answer(response).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(location, format!("/api/todos/{}", id(&first)));
    assert_eq!(first["item"], "Buy milk");
    assert_eq!(first["description"], Value::Null);
    assert_eq!(first["importance"], "none");
    for field in ["alarmTime", "startTime", "endTime"] {
        assert_eq!(first[field], Value::Null, "{field}");
    }
    for field in ["createdTime", "createdAt", "updatedAt"] {
        let text = first[field].as_str().unwrap_or_else(|| panic!("{field}"));
        DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    }
    assert_eq!(tag_names(&first), ["errands", "home"]);

    let second = create(
        &app,
        &ann,
        json!({
            "item": "Call mum",
            "description": "about Sunday",
            "alarmTime": "2026-03-01T08:30:00+01:00",
            "startTime": "2026-03-01T09:00:00Z",
            "endTime": "2026-03-01T09:30:00Z",
            "importance": "high",
            "tags": ["home", "phone"]
        }),
    )
    .await;
    assert_eq!(second["description"], "about Sunday");
    assert_eq!(second["importance"], "high");
    assert_eq!(
        time(second["alarmTime"].as_str().unwrap()),
        time("2026-03-01T07:30:00Z")
    );
    assert_eq!(
        time(second["startTime"].as_str().unwrap()),
        time("2026-03-01T09:00:00Z")
    );
    let home = |todo: &Value| {
        todo["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tag| tag["name"] == "home")
            .map(id)
            .expect("a home tag")
    };
    assert_eq!(home(&first), home(&second), "the tag is reused");

    let bobs = create(&app, &bob, json!({"item": "Walk", "tags": ["home"]})).await;
    assert_ne!(home(&bobs), home(&first), "tags are per user");

    let (status, tags) = answer(app.get("/api/tags", &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let counts: Vec<(String, u64)> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["todoCount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("errands".to_string(), 1),
            ("home".to_string(), 2),
            ("phone".to_string(), 1)
        ]
    );
}

async fn every_validation_error_is_named_at_once(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;

    let (status, problem) = post(
        &app,
        &ann,
        json!({
            "item": "   ",
            "description": "d".repeat(1025),
            "startTime": "2026-03-01T10:00:00Z",
            "endTime": "2026-03-01T09:00:00Z",
            "importance": "urgent",
            "alarmTime": "tomorrow at nine",
            "tags": ["ok", ""]
        }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        error_fields(&problem),
        set(&[
            "item".to_string(),
            "description".to_string(),
            "startTime".to_string(),
            "importance".to_string(),
            "alarmTime".to_string(),
            "tags[1]".to_string(),
        ])
    );

    let (status, problem) = post(
        &app,
        &ann,
        json!({"item": "x".repeat(101), "startTime": "2026-13-01T00:00:00Z", "endTime": "noon"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        error_fields(&problem),
        set(&[
            "item".to_string(),
            "startTime".to_string(),
            "endTime".to_string()
        ])
    );

    let (status, problem) = post(&app, &ann, json!({"description": "no item"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), set(&["item".to_string()]));
    assert_eq!(problem["errors"][0]["message"], "is required");

    // Exactly 100 characters and equal start and end: only the range is wrong.
    let (status, problem) = post(
        &app,
        &ann,
        json!({"item": "x".repeat(100), "startTime": "2026-03-01T10:00:00Z", "endTime": "2026-03-01T10:00:00Z"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), set(&["startTime".to_string()]));

    let (status, problem) = post(&app, &ann, json!({"item": "x", "colour": "red"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), set(&["colour".to_string()]));

    let (_, page) = list(&app, &ann, &[]).await;
    assert_eq!(page["total"], 0, "nothing was written");

    // A PATCH is checked the same way, against the todo as it would be.
    let todo = create(
        &app,
        &ann,
        json!({"item": "ok", "startTime": "2026-03-01T10:00:00Z"}),
    )
    .await;
    let (status, problem) = patch(
        &app,
        &ann,
        &id(&todo),
        json!({"item": "", "endTime": "2026-03-01T09:00:00Z", "importance": "later"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        error_fields(&problem),
        set(&[
            "item".to_string(),
            "importance".to_string(),
            "startTime".to_string()
        ])
    );
}

async fn overlapping_ranges_conflict(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let range = |item: &str, start: &str, end: &str| json!({"item": item, "startTime": format!("2026-03-01T{start}:00Z"), "endTime": format!("2026-03-01T{end}:00Z")});
    let a = id(&create(&app, &ann, range("a", "09:00", "10:00")).await);
    let b = id(&create(&app, &ann, range("b", "11:00", "12:00")).await);

    let (status, problem) = post(&app, &ann, range("c", "09:30", "11:30")).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(conflicts(&problem), set(&[a.clone(), b.clone()]));
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&a) && detail.contains(&b), "{detail}");

    // Half-open ranges: touching is no overlap. Todos without a full range never conflict.
    let d = id(&create(&app, &ann, range("d", "10:00", "11:00")).await);
    create(
        &app,
        &ann,
        json!({"item": "start only", "startTime": "2026-03-01T09:30:00Z"}),
    )
    .await;
    create(
        &app,
        &ann,
        json!({"item": "end only", "endTime": "2026-03-01T09:30:00Z"}),
    )
    .await;
    let (status, problem) = post(&app, &ann, range("inside", "09:10", "09:20")).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(conflicts(&problem), set([&a]));

    // A PATCH does not conflict with the todo itself.
    let (status, moved) = patch(
        &app,
        &ann,
        &a,
        json!({"startTime": "2026-03-01T09:15:00Z", "endTime": "2026-03-01T09:45:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    let (status, same) = patch(&app, &ann, &a, json!({"item": "a again"})).await;
    assert_eq!(status, 200, "{same}");

    // ...but does with the others, also when only one end moves.
    let (status, problem) = patch(
        &app,
        &ann,
        &a,
        json!({"startTime": "2026-03-01T10:30:00Z", "endTime": "2026-03-01T11:30:00Z"}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(conflicts(&problem), set(&[b.clone(), d.clone()]));
    let (status, problem) = patch(&app, &ann, &a, json!({"endTime": "2026-03-01T10:15:00Z"})).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(conflicts(&problem), set([&d]));

    // Clearing a time removes the todo from conflicts.
    let (status, cleared) = patch(&app, &ann, &d, json!({"endTime": null})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["endTime"], Value::Null);
    let (status, _) = patch(&app, &ann, &a, json!({"endTime": "2026-03-01T10:15:00Z"})).await;
    assert_eq!(status, 200);
}

async fn concurrent_overlapping_creates_let_one_win(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let body = |item: &str| json!({"item": item, "startTime": "2026-03-01T09:00:00Z", "endTime": "2026-03-01T10:00:00Z", "tags": ["new"]});
    let (one, two, three, four) = tokio::join!(
        post(&app, &ann, body("racer 1")),
        post(&app, &ann, body("racer 2")),
        post(&app, &ann, body("racer 3")),
        post(&app, &ann, body("racer 4")),
    );
    let results = [one, two, three, four];
    let created = results.iter().filter(|(status, _)| *status == 201).count();
    let refused = results.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!((created, refused), (1, 3), "{results:?}");
    let (_, tags) = answer(app.get("/api/tags", &ann).send().await.unwrap()).await;
    assert_eq!(tags.as_array().unwrap().len(), 1, "{tags}");
    assert_eq!(tags[0]["todoCount"], 1, "{tags}");
}

async fn todos_of_two_users_never_conflict(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    let body = json!({"item": "meeting", "startTime": "2026-03-01T09:00:00Z", "endTime": "2026-03-01T10:00:00Z"});
    create(&app, &ann, body.clone()).await;
    create(&app, &bob, body).await;
}

async fn get_patch_and_delete(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let todo = create(
        &app,
        &ann,
        json!({"item": "draft", "description": "first", "tags": ["a", "b"]}),
    )
    .await;
    let path = format!("/api/todos/{}", id(&todo));

    let (status, got) = answer(app.get(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(got, todo);

    let (status, changed) = patch(
        &app,
        &ann,
        &id(&todo),
        json!({"item": " final ", "importance": "medium", "alarmTime": "2026-04-01T08:00:00Z", "tags": ["b", "c"]}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["item"], "final");
    assert_eq!(changed["description"], "first", "absent fields stay");
    assert_eq!(changed["importance"], "medium");
    assert_eq!(tag_names(&changed), ["b", "c"]);
    assert_eq!(changed["createdAt"], todo["createdAt"]);
    assert!(
        time(changed["updatedAt"].as_str().unwrap()) > time(todo["updatedAt"].as_str().unwrap())
    );

    let (status, cleared) = patch(
        &app,
        &ann,
        &id(&todo),
        json!({"description": null, "alarmTime": null, "tags": []}),
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["alarmTime"], Value::Null);
    assert_eq!(cleared["item"], "final");
    assert_eq!(tag_names(&cleared), Vec::<String>::new());

    let (status, got) = answer(app.get(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(got, cleared);

    let (status, body) = answer(app.delete(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    let (status, _) = answer(app.get(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = answer(app.delete(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404);

    // The tags outlive the todo.
    let (_, tags) = answer(app.get("/api/tags", &ann).send().await.unwrap()).await;
    let names: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

async fn other_users_todos_answer_404(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let eve = app.user("eve@example.com", false).await;
    let todo = create(&app, &ann, json!({"item": "private", "tags": ["mine"]})).await;
    let path = format!("/api/todos/{}", id(&todo));

    let (status, problem) = answer(app.get(&path, &eve).send().await.unwrap()).await;
    assert_eq!(status, 404, "{problem}");
    let (status, _) = patch(&app, &eve, &id(&todo), json!({"item": "mine now"})).await;
    assert_eq!(status, 404);
    let (status, _) = answer(app.delete(&path, &eve).send().await.unwrap()).await;
    assert_eq!(status, 404);

    let (_, page) = list(&app, &eve, &[]).await;
    assert_eq!(page["total"], 0);
    assert_eq!(list_ids(&app, &eve, &[("tag", "mine")]).await.len(), 0);

    let (status, still) = answer(app.get(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(still, todo, "unchanged");
}

async fn malformed_and_unknown_ids(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let body = json!({"item": "x"});
    for path in ["/api/todos/not-a-uuid", "/api/todos/123"] {
        let (status, problem) = answer(app.get(path, &ann).send().await.unwrap()).await;
        assert_eq!(status, 400, "{problem}");
        let (status, _) = answer(app.patch(path, &ann).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 400);
        let (status, _) = answer(app.delete(path, &ann).send().await.unwrap()).await;
        assert_eq!(status, 400);
    }
    let unknown = format!("/api/todos/{}", uuid::Uuid::now_v7());
    let (status, problem) = answer(app.get(&unknown, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404, "{problem}");
    let (status, _) = answer(app.patch(&unknown, &ann).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = answer(app.delete(&unknown, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

async fn every_route_needs_a_token(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let todo = create(&app, &ann, json!({"item": "x"})).await;
    let one = app.url(&format!("/api/todos/{}", id(&todo)));
    let all = app.url("/api/todos");
    let body = json!({"item": "y"});
    for token in [None, Some("not-a-token")] {
        let with = |builder: reqwest::RequestBuilder| match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        let requests = [
            with(app.client.get(&all)),
            with(app.client.post(&all)).json(&body),
            with(app.client.get(&one)),
            with(app.client.patch(&one)).json(&body),
            with(app.client.delete(&one)),
        ];
        for request in requests {
            let (status, problem) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 401, "{token:?}: {problem}");
        }
    }
    let (status, still) = answer(
        app.get(&format!("/api/todos/{}", id(&todo)), &ann)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(still["item"], "x");
}

async fn list_pages_with_total(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(id(&create(
            &app,
            &ann,
            json!({"item": format!("todo {i}")}),
        )
        .await));
    }
    create(&app, &bob, json!({"item": "not ann's"})).await;

    let (status, page) = list(&app, &ann, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 7);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["offset"], 0);
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(page_ids(&page), newest_first, "default: created_at desc");

    let mut seen = Vec::new();
    for offset in [0, 3, 6] {
        let offset = offset.to_string();
        let (status, page) = list(&app, &ann, &[("limit", "3"), ("offset", &offset)]).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 7);
        assert_eq!(page["limit"], 3);
        assert_eq!(page["offset"].to_string(), offset);
        seen.extend(page_ids(&page));
    }
    assert_eq!(seen, newest_first, "pages neither repeat nor skip");

    let (status, page) = list(&app, &ann, &[("offset", "50")]).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 7);
    assert_eq!(page_ids(&page).len(), 0);
}

async fn list_searches_case_insensitively(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let mut ids = std::collections::HashMap::new();
    for item in ["Buy MILK", "milkshake", "Water", "100% juice", "a_b", "ab"] {
        ids.insert(item, id(&create(&app, &ann, json!({"item": item})).await));
    }
    let found = |names: &[&str]| set(names.iter().map(|n| &ids[n]));
    for term in ["milk", "MiLk", "MILK"] {
        let got = list_ids(&app, &ann, &[("search", term)]).await;
        assert_eq!(set(&got), found(&["Buy MILK", "milkshake"]), "{term}");
    }
    let got = list_ids(&app, &ann, &[("search", "%")]).await;
    assert_eq!(set(&got), found(&["100% juice"]), "% is literal");
    let got = list_ids(&app, &ann, &[("search", "_")]).await;
    assert_eq!(set(&got), found(&["a_b"]), "_ is literal");
    let got = list_ids(&app, &ann, &[("search", "!")]).await;
    assert_eq!(got.len(), 0, "the escape character is literal");
    let (_, page) = list(&app, &ann, &[("search", "wAtEr")]).await;
    assert_eq!(page["total"], 1);
}

async fn list_filters_by_time_ranges(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let make = async |item: &str, start: Option<&str>, end: Option<&str>| {
        id(&create(
            &app,
            &ann,
            json!({"item": item, "startTime": start, "endTime": end}),
        )
        .await)
    };
    let t1 = make(
        "t1",
        Some("2026-01-01T09:00:00Z"),
        Some("2026-01-01T10:00:00Z"),
    )
    .await;
    let t2 = make(
        "t2",
        Some("2026-01-01T11:00:00Z"),
        Some("2026-01-01T12:00:00Z"),
    )
    .await;
    let t3 = make(
        "t3",
        Some("2026-01-02T09:00:00Z"),
        Some("2026-01-02T10:00:00Z"),
    )
    .await;
    let none = make("no times", None, None).await;
    // Sub-second times, which SQLite stores as text with and without a fraction.
    let t5 = make(
        "t5",
        Some("2026-01-03T09:00:00.5Z"),
        Some("2026-01-03T09:00:01Z"),
    )
    .await;
    let t6 = make(
        "t6",
        Some("2026-01-03T09:00:00Z"),
        Some("2026-01-03T09:00:00.5Z"),
    )
    .await;
    let t7 = make("t7", Some("2026-01-03T09:00:00.123456Z"), None).await;

    let cases: Vec<(Params, Vec<&String>)> = vec![
        (
            vec![("startTimeFrom", "2026-01-01T11:00:00Z")],
            vec![&t2, &t3, &t5, &t6, &t7],
        ),
        (
            vec![("startTimeTo", "2026-01-01T11:00:00Z")],
            vec![&t1, &t2],
        ),
        (
            vec![
                ("startTimeFrom", "2026-01-01T10:00:00Z"),
                ("startTimeTo", "2026-01-02T09:00:00Z"),
            ],
            vec![&t2, &t3],
        ),
        (
            vec![
                ("endTimeFrom", "2026-01-01T12:00:00Z"),
                ("endTimeTo", "2026-01-02T23:00:00Z"),
            ],
            vec![&t2, &t3],
        ),
        (vec![("endTimeTo", "2026-01-01T10:00:00Z")], vec![&t1]),
        // The same instant with an offset.
        (
            vec![
                ("startTimeFrom", "2026-01-01T13:00:00+02:00"),
                ("startTimeTo", "2026-01-01T13:00:00+02:00"),
            ],
            vec![&t2],
        ),
        (
            vec![("start_time_from", "2026-01-03T09:00:00.25Z")],
            vec![&t5],
        ),
        (
            vec![
                ("startTimeFrom", "2026-01-03T09:00:00.1Z"),
                ("startTimeTo", "2026-01-03T09:00:00.2Z"),
            ],
            vec![&t7],
        ),
        (
            vec![("endTimeFrom", "2026-01-03T09:00:00.5Z")],
            vec![&t5, &t6],
        ),
        (
            vec![
                ("endTimeTo", "2026-01-03T09:00:00.999Z"),
                ("endTimeFrom", "2026-01-03T00:00:00Z"),
            ],
            vec![&t6],
        ),
    ];
    for (query, expected) in cases {
        let got = list_ids(&app, &ann, &query).await;
        assert_eq!(set(&got), set(expected), "{query:?}");
    }

    let ascending = list_ids(&app, &ann, &[("sort", "start_time"), ("order", "asc")]).await;
    assert_eq!(ascending, owned(&[&t1, &t2, &t3, &t6, &t7, &t5, &none]));
}

async fn list_filters_by_created_and_updated(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let pause = || tokio::time::sleep(Duration::from_millis(30));
    let a = id(&create(&app, &ann, json!({"item": "a"})).await);
    pause().await;
    let between = Utc::now().to_rfc3339();
    pause().await;
    let b = id(&create(&app, &ann, json!({"item": "b"})).await);

    assert_eq!(
        list_ids(&app, &ann, &[("createdBefore", &between)]).await,
        owned(&[&a])
    );
    assert_eq!(
        list_ids(&app, &ann, &[("createdAfter", &between)]).await,
        owned(&[&b])
    );

    pause().await;
    let before_patch = Utc::now().to_rfc3339();
    pause().await;
    let (status, _) = patch(&app, &ann, &a, json!({"importance": "low"})).await;
    assert_eq!(status, 200);

    assert_eq!(
        list_ids(&app, &ann, &[("updatedAfter", &before_patch)]).await,
        owned(&[&a])
    );
    assert_eq!(
        list_ids(&app, &ann, &[("updatedBefore", &before_patch)]).await,
        owned(&[&b])
    );
    assert_eq!(
        list_ids(
            &app,
            &ann,
            &[("createdBefore", &between), ("updatedAfter", &before_patch)]
        )
        .await,
        owned(&[&a])
    );
    assert_eq!(
        list_ids(&app, &ann, &[("createdAfter", &before_patch)])
            .await
            .len(),
        0
    );
}

async fn list_filters_by_importance_and_tag(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    let a = id(&create(
        &app,
        &ann,
        json!({"item": "a", "importance": "high", "tags": ["home"]}),
    )
    .await);
    let b = id(&create(
        &app,
        &ann,
        json!({"item": "b", "importance": "low", "tags": ["home", "work"]}),
    )
    .await);
    let c = id(&create(
        &app,
        &ann,
        json!({"item": "c", "importance": "high", "tags": ["work"]}),
    )
    .await);
    let d = id(&create(&app, &ann, json!({"item": "d"})).await);
    create(
        &app,
        &bob,
        json!({"item": "bob's", "importance": "high", "tags": ["home"]}),
    )
    .await;

    let got = |query: Vec<(&'static str, &'static str)>| {
        let app = &app;
        let ann = &ann;
        async move { set(&list_ids(app, ann, &query).await) }
    };
    assert_eq!(got(vec![("importance", "high")]).await, set([&a, &c]));
    assert_eq!(got(vec![("importance", "none")]).await, set([&d]));
    assert_eq!(got(vec![("importance", "medium")]).await, set([]));
    assert_eq!(got(vec![("tag", "home")]).await, set([&a, &b]));
    assert_eq!(got(vec![("tag", "work")]).await, set([&b, &c]));
    assert_eq!(
        got(vec![("tag", "work"), ("importance", "high")]).await,
        set([&c])
    );
    assert_eq!(got(vec![("tag", "nope")]).await, set([]));

    let (_, page) = list(&app, &ann, &[("tag", "home")]).await;
    assert_eq!(page["total"], 2);
    let b_on_page = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| id(t) == b)
        .unwrap();
    assert_eq!(
        tag_names(b_on_page),
        ["home", "work"],
        "all tags, not only the filtered one"
    );
}

async fn list_sorts_by_each_field_both_ways(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    // Made in the order a, b, c, d; changed in the order c, a, d, b.
    let a = id(&create(
        &app,
        &ann,
        json!({"item": "charlie", "importance": "high", "startTime": "2026-01-01T10:00:00Z", "endTime": "2026-01-01T11:00:00Z"}),
    )
    .await);
    let b = id(&create(
        &app,
        &ann,
        json!({"item": "alpha", "importance": "none", "startTime": "2026-01-01T08:00:00Z", "endTime": "2026-01-01T09:00:00Z"}),
    )
    .await);
    let c = id(&create(
        &app,
        &ann,
        json!({"item": "delta", "importance": "medium", "startTime": "2026-01-01T12:00:00Z"}),
    )
    .await);
    let d = id(&create(
        &app,
        &ann,
        json!({"item": "bravo", "importance": "low", "endTime": "2026-01-01T07:00:00Z"}),
    )
    .await);
    for todo in [&c, &a, &d, &b] {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (status, _) = patch(&app, &ann, todo, json!({})).await;
        assert_eq!(status, 200);
    }

    let cases: [(&str, [&String; 4], [&String; 4]); 6] = [
        ("created_at", [&a, &b, &c, &d], [&d, &c, &b, &a]),
        ("updated_at", [&c, &a, &d, &b], [&b, &d, &a, &c]),
        ("item", [&b, &d, &a, &c], [&c, &a, &d, &b]),
        // Todos without the time come last both ways.
        ("start_time", [&b, &a, &c, &d], [&c, &a, &b, &d]),
        ("end_time", [&d, &b, &a, &c], [&a, &b, &d, &c]),
        // By rank, not by the stored text.
        ("importance", [&b, &d, &c, &a], [&a, &c, &d, &b]),
    ];
    for (field, ascending, descending) in cases {
        let got = list_ids(&app, &ann, &[("sort", field), ("order", "asc")]).await;
        assert_eq!(got, owned(&ascending), "{field} asc");
        let got = list_ids(&app, &ann, &[("sort", field), ("order", "desc")]).await;
        assert_eq!(got, owned(&descending), "{field} desc");
    }
    // camelCase names, and desc by default.
    let got = list_ids(&app, &ann, &[("sort", "startTime")]).await;
    assert_eq!(got, owned(&[&c, &a, &b, &d]));

    // Equal keys are ordered by id, so pages are stable.
    let e = id(&create(&app, &ann, json!({"item": "echo", "importance": "high"})).await);
    let mut high = [a.clone(), e.clone()];
    high.sort_by_key(|id| uuid::Uuid::parse_str(id).unwrap());
    let got = list_ids(&app, &ann, &[("sort", "importance"), ("order", "asc")]).await;
    assert_eq!(&got[3..], &high);
    let first = list_ids(
        &app,
        &ann,
        &[("sort", "importance"), ("order", "desc"), ("limit", "1")],
    )
    .await;
    let second = list_ids(
        &app,
        &ann,
        &[
            ("sort", "importance"),
            ("order", "desc"),
            ("limit", "1"),
            ("offset", "1"),
        ],
    )
    .await;
    assert_eq!(
        [first[0].clone(), second[0].clone()],
        [high[1].clone(), high[0].clone()]
    );
}

async fn bad_list_parameters_answer_422(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let cases: [(&Pairs, &[&str]); 11] = [
        (&[("sort", "id")], &["sort"]),
        (&[("sort", "item; DROP TABLE todo")], &["sort"]),
        (&[("order", "up")], &["order"]),
        (&[("limit", "0")], &["limit"]),
        (&[("limit", "101")], &["limit"]),
        (&[("limit", "ten")], &["limit"]),
        (&[("offset", "-1")], &["offset"]),
        (&[("importance", "urgent")], &["importance"]),
        (&[("createdBefore", "yesterday")], &["createdBefore"]),
        (
            &[
                ("sort", "x"),
                ("limit", "0"),
                ("startTimeFrom", "soon"),
                ("importance", "1"),
            ],
            &["sort", "limit", "startTimeFrom", "importance"],
        ),
        (&[("colour", "red")], &["colour"]),
    ];
    for (query, fields) in cases {
        let (status, problem) = list(&app, &ann, query).await;
        assert_eq!(status, 422, "{query:?}: {problem}");
        assert_eq!(
            error_fields(&problem),
            fields
                .iter()
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>(),
            "{query:?}"
        );
    }
    let (status, _) = list(
        &app,
        &ann,
        &[("limit", "100"), ("sort", "importance"), ("order", "ASC")],
    )
    .await;
    assert_eq!(status, 200);
}

async fn a_page_takes_at_most_three_statements(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    let names = ["home", "work", "errands", "phone", "later"];
    for i in 0..60 {
        let count = 2 + i % 2;
        let tags = (0..count)
            .map(|k| names[(i + k) % names.len()].to_string())
            .collect();
        let new = NewTodo {
            item: format!("todo {i:02}"),
            tags,
            ..NewTodo::default()
        };
        todos::create(db.conn(), ann.id, new).await.expect("create");
    }
    for limit in [5, 50] {
        let query = TodoQuery {
            limit,
            ..TodoQuery::default()
        };
        let (result, statements) =
            app::db::count_statements(todos::list(db.conn(), ann.id, &query)).await;
        let list = result.expect("list");
        let page = list.items;
        assert_eq!(list.total.count, 60);
        assert_eq!(page.len() as u64, limit);
        assert!(page.iter().all(|t| (2..=3).contains(&t.tags.len())));
        // Counted at all (count and page at least), and never one per row.
        assert!(
            (2..=3).contains(&statements),
            "limit {limit}: {statements} statements"
        );
    }
    let query = TodoQuery {
        limit: 50,
        tag: Some("home".into()),
        search: Some("TODO".into()),
        ..TodoQuery::default()
    };
    let (result, statements) =
        app::db::count_statements(todos::list(db.conn(), ann.id, &query)).await;
    let list = result.expect("list");
    let page = list.items;
    assert!(
        list.total.count > 0
            && page
                .iter()
                .all(|t| t.tags.iter().any(|tag| tag.name == "home"))
    );
    // A search of three characters or more on SQLite first looks how often the full-text
    // index holds the term (one bounded count; see domain::search).
    let most = if kind == Kind::Sqlite { 4 } else { 3 };
    assert!(statements <= most, "filtered: {statements} statements");
    db.close().await;
}

/// What the HTTP API refuses or normalizes (tests/it/input.rs), the domain does too, for every
/// other caller.
async fn the_domain_limits_tags_and_keeps_microseconds(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    let names = |count: usize| -> Vec<String> { (0..count).map(|i| format!("t{i}")).collect() };
    let fields_of = |err: TodoError| -> Vec<String> {
        match err {
            TodoError::Invalid(problems) => problems.into_iter().map(|(f, _)| f).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    };

    let too_many = NewTodo {
        item: "many".into(),
        tags: names(todos::MAX_TAGS + 1),
        ..NewTodo::default()
    };
    let err = todos::create(db.conn(), ann.id, too_many)
        .await
        .expect_err("too many tags");
    assert_eq!(fields_of(err), ["tags"]);
    // Within one microsecond (and a leap second): no range.
    let within = NewTodo {
        item: "short".into(),
        start_time: Some(time("2016-12-31T23:59:60.0000005Z")),
        end_time: Some(time("2017-01-01T00:00:00.0000009Z")),
        ..NewTodo::default()
    };
    let err = todos::create(db.conn(), ann.id, within)
        .await
        .expect_err("an empty range");
    assert_eq!(fields_of(err), ["startTime"]);

    let new = NewTodo {
        item: "fifty".into(),
        alarm_time: Some(time("2016-12-31T23:00:00.999999999Z")),
        start_time: Some(time("2016-12-31T23:59:60.1234567Z")),
        end_time: Some(time("2017-01-01T01:00:00.0000009Z")),
        tags: names(todos::MAX_TAGS),
        ..NewTodo::default()
    };
    let made = todos::create(db.conn(), ann.id, new).await.expect("made");
    assert_eq!(made.tags.len(), todos::MAX_TAGS);
    let stored = todos::get(db.conn(), ann.id, made.todo.id).await.unwrap();
    for todo in [&made.todo, &stored.todo] {
        assert_eq!(todo.alarm_time, Some(time("2016-12-31T23:00:00.999999Z")));
        assert_eq!(todo.start_time, Some(time("2017-01-01T00:00:00.123456Z")));
        assert_eq!(todo.end_time, Some(time("2017-01-01T01:00:00Z")));
    }

    let patch = TodoPatch {
        tags: Some(names(todos::MAX_TAGS + 1)),
        ..TodoPatch::default()
    };
    let err = todos::update(db.conn(), ann.id, made.todo.id, patch)
        .await
        .expect_err("too many tags");
    assert_eq!(fields_of(err), ["tags"]);
    let patch = TodoPatch {
        end_time: Some(Some(time("2017-01-01T00:00:00.1234569Z"))),
        ..TodoPatch::default()
    };
    let err = todos::update(db.conn(), ann.id, made.todo.id, patch)
        .await
        .expect_err("an empty range");
    assert_eq!(fields_of(err), ["startTime"]);

    for (query, matches) in [
        (
            TodoQuery {
                start_time_from: Some(time("2017-01-01T00:00:00.1234569Z")),
                ..TodoQuery::default()
            },
            true,
        ),
        (
            TodoQuery {
                end_time_to: Some(time("2017-01-01T01:00:00.0000009Z")),
                ..TodoQuery::default()
            },
            true,
        ),
        (
            TodoQuery {
                start_time_to: Some(time("2016-12-31T23:59:60.1234561Z")),
                ..TodoQuery::default()
            },
            true,
        ),
        (
            TodoQuery {
                start_time_from: Some(time("2016-12-31T23:59:60.123457Z")),
                ..TodoQuery::default()
            },
            false,
        ),
    ] {
        let total = todos::list(db.conn(), ann.id, &query).await.unwrap().total;
        assert_eq!(total.count, u64::from(matches), "{query:?}");
    }
    db.close().await;
}

/// JSON is UTF-8 (RFC 8259 8.1): a body declared in another charset is refused, not misread.
async fn a_json_body_in_another_charset_answers_415(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let body = r#"{"item": "Caf\u00e9"}"#;
    for content_type in [
        "application/json; charset=latin1",
        "application/json; charset=\"ISO-8859-1\"",
        "application/json;charset=utf-16",
    ] {
        let response = app
            .post("/api/todos", &ann)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, problem) = answer(response).await;
        assert_eq!(status, 415, "{content_type}: {problem}");
    }
    let (status, page) = answer(app.get("/api/todos", &ann).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 0, "nothing was stored: {page}");

    for content_type in [
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
    ] {
        let response = app
            .post("/api/todos", &ann)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, todo) = answer(response).await;
        assert_eq!(status, 201, "{content_type}: {todo}");
        assert_eq!(todo["item"], "Café");
    }
}
