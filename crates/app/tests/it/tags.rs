//! `/api/tags` on both databases: counts, unique names per user, deleting detaches, and
//! isolation between users.

use app::domain::tags;
use serde_json::{Value, json};

use crate::api::{TestApp, TestUser, answer};
use crate::helpers::Kind;
use crate::helpers::on_both_databases;

on_both_databases!(
    list_counts_todos_per_tag,
    names_are_unique_per_user,
    bad_tags_answer_422,
    deleting_a_tag_detaches_it_from_todos,
    other_users_tags_answer_404,
    ids_and_tokens_are_checked,
    making_tags_binds_a_bounded_number_of_values,
);

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {value}"))
        .to_string()
}

async fn create_tag(app: &TestApp, user: &TestUser, body: Value) -> (u16, Value) {
    answer(
        app.post("/api/tags", user)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn create_todo(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let (status, todo) = answer(
        app.post("/api/todos", user)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{todo}");
    todo
}

/// The user's tags as (name, todo count).
async fn counts(app: &TestApp, user: &TestUser) -> Vec<(String, u64)> {
    let (status, tags) = answer(app.get("/api/tags", user).send().await.unwrap()).await;
    assert_eq!(status, 200, "{tags}");
    tags.as_array()
        .unwrap()
        .iter()
        .map(|tag| {
            (
                tag["name"].as_str().unwrap().to_string(),
                tag["todoCount"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(name, count)| (name.to_string(), *count))
        .collect()
}

async fn list_counts_todos_per_tag(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    assert_eq!(counts(&app, &ann).await, owned(&[]));

    let response = app
        .post("/api/tags", &ann)
        .json(&json!({"name": " urgent ", "color": "#ff0000"}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (status, urgent) = answer(response).await;
    assert_eq!(status, 201, "{urgent}");
    assert_eq!(location, format!("/api/tags/{}", id(&urgent)));
    assert_eq!(urgent["name"], "urgent");
    assert_eq!(urgent["color"], "#ff0000");
    assert_eq!(urgent["todoCount"], 0);

    create_todo(&app, &ann, json!({"item": "a", "tags": ["home", "work"]})).await;
    create_todo(&app, &ann, json!({"item": "b", "tags": ["home"]})).await;
    let c = create_todo(&app, &ann, json!({"item": "c", "tags": ["home", "urgent"]})).await;
    create_todo(
        &app,
        &bob,
        json!({"item": "bob's", "tags": ["home", "work"]}),
    )
    .await;

    let urgent_on_todo = &c["tags"].as_array().unwrap()[1];
    assert_eq!(id(urgent_on_todo), id(&urgent), "the existing tag is used");
    assert_eq!(urgent_on_todo["color"], "#ff0000");

    assert_eq!(
        counts(&app, &ann).await,
        owned(&[("home", 3), ("urgent", 1), ("work", 1)])
    );
    assert_eq!(counts(&app, &bob).await, owned(&[("home", 1), ("work", 1)]));
}

async fn names_are_unique_per_user(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    let (status, _) = create_tag(&app, &ann, json!({"name": "home"})).await;
    assert_eq!(status, 201);
    for name in ["home", "  home "] {
        let (status, problem) = create_tag(&app, &ann, json!({"name": name})).await;
        assert_eq!(status, 409, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("home"),
            "{problem}"
        );
    }
    // Names are compared as written.
    let (status, _) = create_tag(&app, &ann, json!({"name": "Home"})).await;
    assert_eq!(status, 201);
    // Another user may use the same name.
    let (status, theirs) = create_tag(&app, &bob, json!({"name": "home"})).await;
    assert_eq!(status, 201, "{theirs}");
    assert_eq!(counts(&app, &ann).await, owned(&[("Home", 0), ("home", 0)]));
}

async fn bad_tags_answer_422(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let fields = |problem: &Value| -> Vec<String> {
        let mut fields: Vec<String> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors: {problem}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect();
        fields.sort();
        fields
    };
    let (status, problem) =
        create_tag(&app, &ann, json!({"name": "   ", "color": "c".repeat(101)})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["color", "name"]);
    let (status, problem) = create_tag(&app, &ann, json!({"name": "n".repeat(101)})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["name"]);
    let (status, problem) = create_tag(&app, &ann, json!({"color": "red"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["name"]);
    let (status, _) = create_tag(&app, &ann, json!({"name": "n".repeat(100)})).await;
    assert_eq!(status, 201);
}

async fn deleting_a_tag_detaches_it_from_todos(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let todo = create_todo(&app, &ann, json!({"item": "a", "tags": ["keep", "drop"]})).await;
    let other = create_todo(&app, &ann, json!({"item": "b", "tags": ["drop"]})).await;
    let drop_id = todo["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tag| tag["name"] == "drop")
        .map(id)
        .unwrap();

    let path = format!("/api/tags/{drop_id}");
    let (status, body) = answer(app.delete(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);

    let (status, after) = answer(
        app.get(&format!("/api/todos/{}", id(&todo)), &ann)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "the todo stays");
    let names: Vec<&str> = after["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
    let (status, after) = answer(
        app.get(&format!("/api/todos/{}", id(&other)), &ann)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(after["tags"], json!([]));
    assert_eq!(counts(&app, &ann).await, owned(&[("keep", 1)]));

    let (status, _) = answer(app.delete(&path, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404, "already gone");

    // A todo may take the name again; it is a new tag.
    let again = create_todo(&app, &ann, json!({"item": "c", "tags": ["drop"]})).await;
    assert_ne!(id(&again["tags"][0]), drop_id);
}

async fn other_users_tags_answer_404(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let eve = app.user("eve@example.com", false).await;
    let (_, tag) = create_tag(&app, &ann, json!({"name": "mine"})).await;
    let path = format!("/api/tags/{}", id(&tag));
    let (status, problem) = answer(app.delete(&path, &eve).send().await.unwrap()).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(counts(&app, &eve).await, owned(&[]));
    assert_eq!(counts(&app, &ann).await, owned(&[("mine", 0)]));
}

async fn ids_and_tokens_are_checked(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let (status, problem) = answer(
        app.delete("/api/tags/not-a-uuid", &ann)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let unknown = format!("/api/tags/{}", uuid::Uuid::now_v7());
    let (status, _) = answer(app.delete(&unknown, &ann).send().await.unwrap()).await;
    assert_eq!(status, 404);

    let (_, tag) = create_tag(&app, &ann, json!({"name": "mine"})).await;
    let one = app.url(&format!("/api/tags/{}", id(&tag)));
    let all = app.url("/api/tags");
    let requests = [
        app.client.get(&all),
        app.client.post(&all).json(&json!({"name": "x"})),
        app.client.delete(&one),
        app.client.delete(&one).bearer_auth("forged"),
    ];
    for request in requests {
        let (status, problem) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{problem}");
    }
    assert_eq!(counts(&app, &ann).await, owned(&[("mine", 0)]));
}

async fn making_tags_binds_a_bounded_number_of_values(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    // 11,000 names in one INSERT would bind 66,000 values: over PostgreSQL's 65,535 and
    // SQLite's 32,766. The domain splits them, whatever the HTTP limit on tags per todo.
    let names: Vec<String> = (0..11_000).map(|i| format!("tag {i:05}")).collect();
    let made = tags::ensure_tags(db.conn(), ann.id, &names)
        .await
        .expect("made in batches");
    assert_eq!(made.len(), names.len());
    assert!(
        made.iter().zip(&names).all(|(tag, name)| tag.name == *name),
        "in the order given"
    );

    // Again, the known ones in another order, repeated, and one new name.
    let mut again: Vec<String> = names[5_500..].to_vec();
    again.extend(names.iter().cloned());
    again.push(" new ".into());
    let found = tags::ensure_tags(db.conn(), ann.id, &again)
        .await
        .expect("found in batches");
    assert_eq!(found.len(), names.len() + 1);
    assert_eq!(found[0].name, names[5_500]);
    assert_eq!(found[names.len()].name, "new");
    let same = found.iter().find(|tag| tag.name == names[0]).unwrap();
    assert_eq!(same.id, made[0].id, "an existing tag is kept");
    assert_eq!(
        tags::list(db.conn(), ann.id).await.unwrap().len(),
        names.len() + 1
    );
    db.close().await;
}
