//! Indexed search: the same results as a plain scan that lowercases both sides (as
//! PostgreSQL's `lower()` does), on both databases, and the plans that show the indexes used.

use std::collections::BTreeSet;

use app::domain::search;
use app::models::todo;
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait};
use serde_json::{Value, json};

use crate::api::{TestApp, TestUser};
use crate::helpers::{Kind, on_both_databases};

on_both_databases!(
    todo_search_matches_a_scan,
    account_search_matches_a_scan,
    search_reads_the_index
);

const ITEMS: [&str; 14] = [
    "Buy MILK",
    "milkshake",
    "ÉCOLE primaire",
    "petite école",
    "Straße fegen",
    "ΣΊΣΥΦΟΣ rock",
    "Ärger vermeiden",
    "100% juice",
    "a_b",
    "ab",
    "back\\slash",
    "say \"hi\" AND bye*",
    "Ωmega",
    "x",
];

const TERMS: [&str; 24] = [
    "milk",
    "MiLk",
    "école",
    "ÉCOLE",
    "éc",
    "É",
    "STRASSE",
    "straße",
    "σίσυ",
    "ΣΊΣ",
    "ärger",
    "ÄRG",
    "%",
    "% j",
    "_",
    "a_",
    "\\",
    "k\\s",
    "!",
    "\"hi\" and",
    "bye*",
    "ω",
    "ab",
    "zzz",
];

/// Lowercase one character at a time, as PostgreSQL's `lower()` does (Rust's `to_lowercase`
/// of a string also gives a final sigma its own form).
fn lower(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// The items a plain scan finds: the lowercase item contains the lowercase term.
fn scan<'a>(items: impl IntoIterator<Item = &'a str>, term: &str) -> BTreeSet<String> {
    let term = lower(term);
    items
        .into_iter()
        .filter(|item| lower(item).contains(&term))
        .map(str::to_string)
        .collect()
}

async fn found_items(app: &TestApp, user: &TestUser, term: &str) -> BTreeSet<String> {
    let response = app
        .get("/api/todos", user)
        .query(&[("search", term), ("limit", "100")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "search {term:?}");
    let page: Value = response.json().await.unwrap();
    let items: BTreeSet<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["item"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page["total"], items.len(), "search {term:?}: {page}");
    items
}

async fn todo_search_matches_a_scan(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    let mut ids = std::collections::HashMap::new();
    for item in ITEMS {
        let response = app
            .post("/api/todos", &ann)
            .json(&json!({"item": item}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{item}");
        let body: Value = response.json().await.unwrap();
        ids.insert(item, body["id"].as_str().unwrap().to_string());
    }
    // Another user's todos never show.
    let response = app
        .post("/api/todos", &bob)
        .json(&json!({"item": "Bob's milk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    for term in TERMS {
        assert_eq!(
            found_items(&app, &ann, term).await,
            scan(ITEMS, term),
            "{kind:?} search {term:?}"
        );
    }

    // The index follows changes: a renamed todo is found by its new name only, a deleted
    // one not at all.
    let response = app
        .patch(&format!("/api/todos/{}", ids["Buy MILK"]), &ann)
        .json(&json!({"item": "Buy OAT drink"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .delete(&format!("/api/todos/{}", ids["milkshake"]), &ann)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let now: Vec<&str> = ITEMS
        .iter()
        .copied()
        .filter(|i| !["Buy MILK", "milkshake"].contains(i))
        .chain(["Buy OAT drink"])
        .collect();
    for term in ["milk", "oat drink", "OAT", "ÉCOLE"] {
        assert_eq!(
            found_items(&app, &ann, term).await,
            scan(now.iter().copied(), term),
            "{kind:?} search {term:?} after a change"
        );
    }
}

async fn account_search_matches_a_scan(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.user("admin@example.com", true).await;
    let people = [
        ("zoe@example.com", "Zoë ÉCOLE"),
        ("under_score@example.org", "100% Real"),
        ("sofia@example.com", "back\\slash Σοφία"),
        ("plain@example.com", "Plain"),
    ];
    for (email, name) in people {
        let response = app
            .post("/api/users", &admin)
            .json(&json!({"email": email, "name": name, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{email}");
    }
    let mut everyone: Vec<(String, Option<String>)> = people
        .iter()
        .map(|(e, n)| (e.to_string(), Some(n.to_string())))
        .collect();
    everyone.push(("admin@example.com".into(), None));
    for term in [
        "zoË",
        "école",
        "É",
        "%",
        "_",
        "\\",
        "ΣΟΦ",
        "σ",
        "EXAMPLE.ORG",
        "e.c",
        "plain",
        "ai",
        "!",
    ] {
        let response = app
            .get("/api/users", &admin)
            .query(&[("search", term), ("limit", "100")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "search {term:?}");
        let page: Value = response.json().await.unwrap();
        let got: BTreeSet<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_string())
            .collect();
        let term = lower(term);
        let expected: BTreeSet<String> = everyone
            .iter()
            .filter(|(email, name)| {
                lower(email).contains(&term)
                    || name.as_deref().is_some_and(|n| lower(n).contains(&term))
            })
            .map(|(email, _)| email.clone())
            .collect();
        assert_eq!(got, expected, "{kind:?} users search {term:?}");
    }
}

/// Rows enough that PostgreSQL's planner prefers the trigram index for a rare term.
const BIG: u32 = 100_000;

async fn search_reads_the_index(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    // One connection, so the session setting below holds for the EXPLAIN after it.
    let db = app
        .db
        .connect(&[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ])
        .await;
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let seed = match kind {
        Kind::Postgres => format!(
            "INSERT INTO todo (id, item, created_time, importance, user_id, created_at, \
             updated_at) SELECT gen_random_uuid(), 'todo number ' || g, now(), 'none', \
             '{user}', now(), now() FROM generate_series(1, {BIG}) g",
            user = ann.id
        ),
        Kind::Sqlite => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {BIG}) \
             INSERT INTO todo (id, item, created_time, importance, user_id, created_at, \
             updated_at) SELECT randomblob(16), 'todo number ' || n, \
             '2026-01-01T00:00:00+00:00', 'none', X'{user}', '2026-01-01T00:00:00+00:00', \
             '2026-01-01T00:00:00+00:00' FROM g",
            user = ann.id.simple()
        ),
    };
    conn.execute_unprepared(&seed).await.expect("seed todos");
    conn.execute_unprepared("ANALYZE").await.expect("analyze");

    let statement = todo::Entity::find()
        .filter(todo::Column::UserId.eq(ann.id))
        .filter(search::contains(backend, search::TODO_ITEM, "number 12345"))
        .build(backend);
    let text = plan(conn, statement).await;
    let index = match kind {
        Kind::Postgres => "ix_todo_item_trgm",
        Kind::Sqlite => "VIRTUAL TABLE INDEX",
    };
    assert!(
        text.contains(index),
        "{kind:?} plan without {index}:\n{text}"
    );
    if kind == Kind::Sqlite {
        assert!(text.contains("todo_item_fts"), "{text}");
    }
    let found = found_items(&app, &ann, "NUMBER 12345").await;
    assert_eq!(found, BTreeSet::from(["todo number 12345".to_string()]));
    // A term most rows hold: SQLite reads the user's rows instead of the whole index.
    // (`total` stops counting past 1,000.)
    for (term, total) in [
        ("NUMBER 1999", 11),
        ("todo Number", u64::from(BIG).min(1000)),
    ] {
        let response = app
            .get("/api/todos", &ann)
            .query(&[("search", term), ("limit", "5")])
            .send()
            .await
            .unwrap();
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["total"], total, "{kind:?} search {term:?}");
        assert_eq!(page["items"].as_array().unwrap().len(), 5);
    }

    // Accounts: a handful of rows, so PostgreSQL is told not to scan to show the index serves.
    if kind == Kind::Postgres {
        conn.execute_unprepared("SET enable_seqscan = off")
            .await
            .unwrap();
    }
    let statement = app::models::user_account::Entity::find()
        .filter(search::contains(
            backend,
            search::ACCOUNT_EMAIL_OR_NAME,
            "ann@ex",
        ))
        .build(backend);
    let text = plan(conn, statement).await;
    let index = match kind {
        Kind::Postgres => "ix_user_account_email_trgm",
        Kind::Sqlite => "user_account_search_fts",
    };
    assert!(
        text.contains(index),
        "{kind:?} plan without {index}:\n{text}"
    );
}

/// The plan of `statement` as text: EXPLAIN on PostgreSQL, EXPLAIN QUERY PLAN on SQLite.
async fn plan(conn: &app::db::DbConn, statement: sea_orm::Statement) -> String {
    let backend = conn.get_database_backend();
    let (explain, column) = match backend {
        DbBackend::Postgres => (format!("EXPLAIN {}", statement.sql), 0),
        _ => (format!("EXPLAIN QUERY PLAN {}", statement.sql), 3),
    };
    let values = statement.values.map(|v| v.0).unwrap_or_default();
    let statement = sea_orm::Statement::from_sql_and_values(backend, explain, values);
    let rows = conn.query_all_raw(statement).await.expect("explain runs");
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(column).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}
