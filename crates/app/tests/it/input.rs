//! Bad input never answers 5xx, and both databases answer it the same: the NUL character in
//! any text, too many tags in one request, and times finer than a microsecond or in a leap
//! second (see "Input limits" in the README).

use app::cli::CliError;
use app::domain::accounts::{self, AccountError, NewUser};
use app::domain::tags::{self, TagError};
use app::domain::todos::{self, NewTodo, TodoError, TodoQuery};
use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};

use crate::access::{login, signup};
use crate::api::{PASSWORD, TestApp, TestUser, answer, error_fields};
use crate::helpers::Kind;
use crate::helpers::on_both_databases;

on_both_databases!(
    nul_in_any_text_answers_422_naming_the_field,
    nul_in_a_query_or_path_is_refused,
    the_domain_refuses_nul,
    too_many_tags_answer_422_and_the_limit_works,
    times_are_kept_to_the_microsecond,
    leap_seconds_are_read_as_the_next_second,
);

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("a time, not {text:?}: {err}"))
        .with_timezone(&Utc)
}

/// The time in `field` of an answer, as an instant.
fn time_of(todo: &Value, field: &str) -> DateTime<Utc> {
    time(
        todo[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {todo}")),
    )
}

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {value}"))
        .to_string()
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    answer(request.send().await.unwrap()).await
}

/// Asserts a 422 naming exactly `field`, for the NUL character.
fn assert_nul_refused(case: &str, (status, problem): (u16, Value), field: &str) {
    assert_eq!(status, 422, "{case}: {problem}");
    assert_eq!(error_fields(&problem), [field], "{case}: {problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("NUL"), "{case}: {problem}");
}

async fn todo_page(app: &TestApp, user: &TestUser, query: &[(&str, &str)]) -> Value {
    let (status, page) = send(app.get("/api/todos", user).query(query)).await;
    assert_eq!(status, 200, "{query:?}: {page}");
    page
}

fn page_items(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|todo| todo["item"].as_str().unwrap().to_string())
        .collect()
}

async fn nul_in_any_text_answers_422_naming_the_field(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let admin = app.user("admin@example.com", true).await;
    let (status, keep) = send(
        app.post("/api/todos", &ann)
            .json(&json!({"item": "keep", "description": "as is", "tags": ["home"]})),
    )
    .await;
    assert_eq!(status, 201, "{keep}");
    let keep_path = format!("/api/todos/{}", id(&keep));
    let ann_path = format!("/api/users/{}", ann.id);

    let todo_cases: [(&str, Value, &str); 5] = [
        ("item", json!({"item": "a\u{0}b"}), "item"),
        (
            "description",
            json!({"item": "ok", "description": "x\u{0}"}),
            "description",
        ),
        (
            "a tag",
            json!({"item": "ok", "tags": ["fine", "b\u{0}d"]}),
            "tags[1]",
        ),
        ("a lone NUL", json!({"item": "\u{0}"}), "item"),
        (
            "NUL and nothing else wrong",
            json!({"item": "ok", "importance": "high", "tags": ["\u{0}"]}),
            "tags[0]",
        ),
    ];
    for (case, body, field) in todo_cases {
        let answer = send(app.post("/api/todos", &ann).json(&body)).await;
        assert_nul_refused(&format!("POST todo, {case}"), answer, field);
    }
    for (body, field) in [
        (json!({"item": "a\u{0}"}), "item"),
        (json!({"description": "\u{0}"}), "description"),
        (json!({"tags": ["home", "\u{0}x"]}), "tags[1]"),
    ] {
        let answer = send(app.patch(&keep_path, &ann).json(&body)).await;
        assert_nul_refused(&format!("PATCH todo {body}"), answer, field);
    }
    for (body, field) in [
        (json!({"name": "a\u{0}"}), "name"),
        (json!({"name": "ok", "color": "#ff\u{0}"}), "color"),
    ] {
        let answer = send(app.post("/api/tags", &ann).json(&body)).await;
        assert_nul_refused(&format!("POST tag {body}"), answer, field);
    }

    let answer = signup(
        &app,
        &json!({"email": "new@example.com", "name": "N\u{0}", "password": PASSWORD}),
    )
    .await;
    assert_nul_refused("signup name", answer, "name");
    let answer = signup(
        &app,
        &json!({"email": "new\u{0}@example.com", "password": PASSWORD}),
    )
    .await;
    assert_nul_refused("signup email", answer, "email");
    let answer = send(
        app.post("/api/users", &admin)
            .json(&json!({"email": "other@example.com", "name": "\u{0}", "password": PASSWORD})),
    )
    .await;
    assert_nul_refused("create user name", answer, "name");
    let answer = send(
        app.patch(&ann_path, &admin)
            .json(&json!({"name": "x\u{0}"})),
    )
    .await;
    assert_nul_refused("patch user name", answer, "name");
    for action in ["assign", "revoke"] {
        let answer = send(
            app.post(&format!("/api/roles/superuser/{action}"), &admin)
                .json(&json!({"email": "ann@example.com\u{0}"})),
        )
        .await;
        assert_nul_refused(&format!("{action} email"), answer, "email");
    }
    let answer = login(&app, "ann@example.com\u{0}", PASSWORD).await;
    assert_nul_refused("login username", answer, "username");

    // Nothing was stored or changed.
    let page = todo_page(&app, &ann, &[]).await;
    assert_eq!(page_items(&page), ["keep"], "{page}");
    assert_eq!(page["items"][0]["description"], "as is");
    assert_eq!(page["items"][0]["tags"][0]["name"], "home");
    let (_, tags) = send(app.get("/api/tags", &ann)).await;
    assert_eq!(tags.as_array().map(Vec::len), Some(1), "{tags}");
    let (status, _) = login(&app, "new@example.com", PASSWORD).await;
    assert_eq!(status, 401, "the sign-up made no account");
    let (_, users) = send(app.get("/api/users", &admin)).await;
    assert_eq!(users["total"], 2, "{users}");
    let (_, me) = send(app.get("/api/me", &ann)).await;
    assert_eq!(me["name"], "User ann@example.com");
    assert_eq!(me["isSuperuser"], false);
}

async fn nul_in_a_query_or_path_is_refused(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let admin = app.user("admin@example.com", true).await;
    for (param, value) in [
        ("search", "a\u{0}"),
        ("tag", "\u{0}"),
        ("startTimeFrom", "2026-03-01T10:00:00Z\u{0}"),
        ("sort", "item\u{0}"),
    ] {
        let answer = send(app.get("/api/todos", &ann).query(&[(param, value)])).await;
        assert_nul_refused(&format!("todo list {param}"), answer, param);
    }
    let answer = send(
        app.get("/api/users", &admin)
            .query(&[("search", "ann\u{0}")]),
    )
    .await;
    assert_nul_refused("user list search", answer, "search");

    // A path segment: the role's slug.
    let (status, problem) = send(
        app.post("/api/roles/super%00user/assign", &admin)
            .json(&json!({"email": "ann@example.com"})),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("NUL"),
        "{problem}"
    );
}

async fn the_domain_refuses_nul(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;

    // What `app user create --name` sends.
    let err = accounts::create_user(
        db.conn(),
        NewUser {
            email: "nul@example.com".into(),
            name: Some("Ann\u{0}".into()),
            password: PASSWORD.into(),
            is_active: true,
            ..NewUser::default()
        },
    )
    .await
    .expect_err("a NUL in the name is refused");
    let AccountError::Invalid(fields) = &err else {
        panic!("not a validation error: {err:?}");
    };
    assert_eq!(fields.len(), 1, "{err}");
    assert_eq!(fields[0].field, "name");
    let err = CliError::from(err);
    assert_eq!(err.exit_code(), std::process::ExitCode::from(2));
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert!(!err.to_string().contains('\u{0}'), "{err:?}");
    // No account can have such an email; looking one up is not an error.
    let found = accounts::find_by_email(db.conn(), "ann@example.com\u{0}")
        .await
        .expect("a lookup, not a database error");
    assert!(found.is_none());

    let err = todos::create(
        db.conn(),
        ann.id,
        NewTodo {
            item: "a\u{0}".into(),
            description: Some("\u{0}".into()),
            tags: vec!["\u{0}".into()],
            ..NewTodo::default()
        },
    )
    .await
    .expect_err("refused");
    let TodoError::Invalid(problems) = &err else {
        panic!("not a validation error: {err:?}");
    };
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["item", "description", "tags[0]"]);
    let query = TodoQuery {
        search: Some("\u{0}".into()),
        tag: Some("\u{0}".into()),
        ..TodoQuery::default()
    };
    let err = todos::list(db.conn(), ann.id, &query)
        .await
        .expect_err("refused");
    let TodoError::Invalid(problems) = &err else {
        panic!("not a validation error: {err:?}");
    };
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["search", "tag"]);

    let err = tags::create(db.conn(), ann.id, "a\u{0}", Some("\u{0}"))
        .await
        .expect_err("refused");
    let TagError::Invalid(problems) = &err else {
        panic!("not a validation error: {err:?}");
    };
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["name", "color"]);
    db.close().await;
}

/// The documented limit of tags per todo.
const TAG_LIMIT: usize = 50;

fn tag_list(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:05}")).collect()
}

async fn too_many_tags_answer_422_and_the_limit_works(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    // 10,923 tags once overflowed PostgreSQL's bound parameters (5,462 SQLite's).
    for count in [10_923, 5_462, TAG_LIMIT + 1] {
        let body = json!({"item": "many", "tags": tag_list("t", count)});
        let (status, problem) = send(app.post("/api/todos", &ann).json(&body)).await;
        assert_eq!(status, 422, "{count} tags: {problem}");
        assert_eq!(error_fields(&problem), ["tags"], "{count} tags");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("at most 50"), "{message}");
    }
    let (status, todo) = send(
        app.post("/api/todos", &ann)
            .json(&json!({"item": "fifty", "tags": tag_list("t", TAG_LIMIT)})),
    )
    .await;
    assert_eq!(status, 201, "{todo}");
    assert_eq!(todo["tags"].as_array().unwrap().len(), TAG_LIMIT);

    let path = format!("/api/todos/{}", id(&todo));
    for count in [10_923, TAG_LIMIT + 1] {
        let (status, problem) = send(
            app.patch(&path, &ann)
                .json(&json!({"tags": tag_list("p", count)})),
        )
        .await;
        assert_eq!(status, 422, "{count} tags: {problem}");
        assert_eq!(error_fields(&problem), ["tags"]);
    }
    // Repeats count as given: 50 names, one tag.
    let (status, todo) = send(
        app.patch(&path, &ann)
            .json(&json!({"tags": vec!["same"; TAG_LIMIT]})),
    )
    .await;
    assert_eq!(status, 200, "{todo}");
    assert_eq!(todo["tags"].as_array().unwrap().len(), 1);
    let (status, todo) = send(
        app.patch(&path, &ann)
            .json(&json!({"tags": tag_list("p", TAG_LIMIT)})),
    )
    .await;
    assert_eq!(status, 200, "{todo}");
    assert_eq!(todo["tags"].as_array().unwrap().len(), TAG_LIMIT);

    // Only the accepted requests made tags: t00000..t00049, same, p00000..p00049.
    let (_, tags) = send(app.get("/api/tags", &ann)).await;
    assert_eq!(
        tags.as_array().map(Vec::len),
        Some(2 * TAG_LIMIT + 1),
        "{tags}"
    );
    let page = todo_page(&app, &ann, &[]).await;
    assert_eq!(page["total"], 1, "{page}");
}

async fn times_are_kept_to_the_microsecond(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;

    // 0.8 us apart, within one microsecond: the same time on both databases.
    let (status, problem) = send(app.post("/api/todos", &ann).json(&json!({
        "item": "too short",
        "startTime": "2026-03-01T10:00:00.0000001Z",
        "endTime": "2026-03-01T10:00:00.0000009Z"
    })))
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), ["startTime"]);

    let (status, todo) = send(app.post("/api/todos", &ann).json(&json!({
        "item": "fine",
        "alarmTime": "2026-03-01T09:00:00.5000009Z",
        "startTime": "2026-03-01T10:00:00.123456789Z",
        "endTime": "2026-03-01T11:00:00.000000999+00:00"
    })))
    .await;
    assert_eq!(status, 201, "{todo}");
    let expected = [
        ("alarmTime", time("2026-03-01T09:00:00.5Z")),
        ("startTime", time("2026-03-01T10:00:00.123456Z")),
        ("endTime", time("2026-03-01T11:00:00Z")),
    ];
    let path = format!("/api/todos/{}", id(&todo));
    let (status, stored) = send(app.get(&path, &ann)).await;
    assert_eq!(status, 200, "{stored}");
    for (field, want) in expected {
        assert_eq!(time_of(&todo, field), want, "answered {field}: {todo}");
        assert_eq!(time_of(&stored, field), want, "stored {field}: {stored}");
    }

    // A PATCH is read the same way: an end within the start's microsecond is no range.
    let (status, problem) = send(
        app.patch(&path, &ann)
            .json(&json!({"endTime": "2026-03-01T10:00:00.1234569Z"})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), ["startTime"]);
    let (status, moved) = send(
        app.patch(&path, &ann)
            .json(&json!({"startTime": "2026-03-01T10:30:00.0000005Z"})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(time_of(&moved, "startTime"), time("2026-03-01T10:30:00Z"));

    // Filters are read to the microsecond too, and match the stored times the same way.
    for (param, value, matches) in [
        ("startTimeFrom", "2026-03-01T10:30:00.0000009Z", true),
        ("startTimeTo", "2026-03-01T10:30:00.0000001Z", true),
        ("startTimeFrom", "2026-03-01T10:30:00.000001Z", false),
        ("endTimeTo", "2026-03-01T11:00:00.0000009Z", true),
        ("endTimeFrom", "2026-03-01T11:00:00.0000009Z", true),
    ] {
        let page = todo_page(&app, &ann, &[(param, value)]).await;
        let want: &[&str] = if matches { &["fine"] } else { &[] };
        assert_eq!(page_items(&page), want, "{param}={value}");
    }
    let created = time_of(&todo, "createdAt");
    assert_eq!(created.nanosecond() % 1_000, 0);
    let just_after = (created + chrono::TimeDelta::nanoseconds(900)).to_rfc3339();
    let page = todo_page(&app, &ann, &[("createdBefore", &just_after)]).await;
    assert_eq!(page_items(&page), Vec::<String>::new(), "createdBefore");
    let page = todo_page(&app, &ann, &[("createdAfter", &just_after)]).await;
    assert_eq!(page_items(&page), Vec::<String>::new(), "createdAfter");
}

async fn leap_seconds_are_read_as_the_next_second(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;

    let (status, leap) = send(app.post("/api/todos", &ann).json(&json!({
        "item": "leap",
        "startTime": "2016-12-31T23:59:60Z",
        "endTime": "2016-12-31T23:59:60.5Z",
        "alarmTime": "2017-01-01T08:59:60.25+09:00"
    })))
    .await;
    assert_eq!(status, 201, "{leap}");
    let (status, stored) = send(app.get(&format!("/api/todos/{}", id(&leap)), &ann)).await;
    assert_eq!(status, 200, "{stored}");
    for (field, want) in [
        ("startTime", "2017-01-01T00:00:00Z"),
        ("endTime", "2017-01-01T00:00:00.5Z"),
        ("alarmTime", "2017-01-01T00:00:00.25Z"),
    ] {
        assert_eq!(
            time_of(&leap, field),
            time(want),
            "answered {field}: {leap}"
        );
        assert_eq!(
            time_of(&stored, field),
            time(want),
            "stored {field}: {stored}"
        );
        let text = stored[field].as_str().unwrap();
        assert!(!text.contains(":60"), "{field}: {text}");
    }

    // The second before ends where the leap todo starts: no overlap.
    let (status, before) = send(app.post("/api/todos", &ann).json(&json!({
        "item": "before",
        "startTime": "2016-12-31T23:59:59Z",
        "endTime": "2016-12-31T23:59:60Z"
    })))
    .await;
    assert_eq!(status, 201, "{before}");
    // Inside the leap todo's half second: a conflict.
    let (status, problem) = send(app.post("/api/todos", &ann).json(&json!({
        "item": "inside",
        "startTime": "2016-12-31T23:59:60.1Z",
        "endTime": "2017-01-01T00:00:00.2Z"
    })))
    .await;
    assert_eq!(status, 409, "{problem}");

    for (param, want) in [
        ("startTimeFrom", "leap"),
        ("endTimeTo", "before"),
        ("createdAfter", ""),
    ] {
        let page = todo_page(
            &app,
            &ann,
            &[(param, "2016-12-31T23:59:60Z"), ("sort", "startTime")],
        )
        .await;
        let items = page_items(&page);
        match want {
            "" => assert_eq!(items.len(), 2, "{param}: {page}"),
            want => assert_eq!(items, [want], "{param}: {page}"),
        }
    }
}
