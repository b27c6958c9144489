//! Paging through long lists: cursors on both databases (every sort, both orders, ties and
//! todos without the sorted time), refused cursors, and totals that stop counting.

use app::domain::paging::EXACT_TOTAL_UP_TO;
use app::domain::tags;
use app::domain::todos::{self, NewTodo, SortField};
use app::models::todo::{self, Importance};
use app::models::user_account_todo_tag;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelBehavior, ActiveValue::Set, EntityTrait};
use serde_json::Value;

use crate::api::{TestApp, TestUser, answer};
use crate::helpers::Kind;
use crate::helpers::on_both_databases;

on_both_databases!(
    cursor_pages_walk_every_sort_both_ways,
    bad_cursors_answer_422,
    totals_stop_counting_past_the_bound,
    accounts_page_by_cursor,
);

fn at(hour: i64) -> Option<DateTime<Utc>> {
    let base = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Some(base + Duration::hours(hour))
}

async fn page(app: &TestApp, user: &TestUser, params: &[(&str, &str)]) -> Value {
    let (status, body) = answer(
        app.get("/api/todos", user)
            .query(params)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{params:?}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items: {page}"))
        .iter()
        .map(|todo| todo["id"].as_str().unwrap().to_string())
        .collect()
}

/// Todos with ties on every sort key and without start or end times, so every part of every
/// order and every tie-break is crossed by pages of three.
async fn seed(app: &TestApp, user: &TestUser, count: usize) {
    let db = app.db.connect(&[]).await;
    let ranks = [
        Importance::High,
        Importance::None,
        Importance::Low,
        Importance::High,
        Importance::Medium,
    ];
    for i in 0..count {
        // Start only (ties in pairs), end only (ties in threes), a full range, or neither:
        // todos without a full range never conflict.
        let (start_time, end_time) = match i % 4 {
            0 => (at((i / 8) as i64), None),
            1 => (None, at((i / 12) as i64)),
            2 => (at(1000 + 2 * i as i64), at(1001 + 2 * i as i64)),
            _ => (None, None),
        };
        let new = NewTodo {
            item: ["same", "Other", "same", "zebra", "Ünïcode"][i % 5].to_string(),
            start_time,
            end_time,
            importance: ranks[i % ranks.len()],
            ..NewTodo::default()
        };
        todos::create(db.conn(), user.id, new)
            .await
            .expect("create");
    }
    db.close().await;
}

async fn cursor_pages_walk_every_sort_both_ways(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let bob = app.user("bob@example.com", false).await;
    seed(&app, &ann, 23).await;
    seed(&app, &bob, 4).await;
    for sort in SortField::NAMES {
        for order in ["asc", "desc"] {
            let base = [("sort", sort), ("order", order)];
            let whole = ids(&page(&app, &ann, &[&base[..], &[("limit", "100")]].concat()).await);
            assert_eq!(whole.len(), 23);

            let mut walked = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut params = vec![("sort", sort), ("order", order), ("limit", "3")];
                if let Some(cursor) = &cursor {
                    params.push(("cursor", cursor.as_str()));
                }
                let body = page(&app, &ann, &params).await;
                assert_eq!(body["total"], 23, "{body}");
                assert_eq!(body["totalIsExact"], true);
                walked.extend(ids(&body));
                pages += 1;
                match body["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
                assert!(pages < 20, "{sort} {order}: the cursor does not move");
            }
            assert_eq!(walked, whole, "{sort} {order}: cursor pages");
            assert_eq!(pages, 8, "{sort} {order}: 7 full pages and one of 2");

            // Offset pages give the same order, and a cursor from one continues it.
            let mut by_offset = Vec::new();
            for offset in (0..23).step_by(5) {
                let offset = offset.to_string();
                let body = page(
                    &app,
                    &ann,
                    &[&base[..], &[("limit", "5"), ("offset", offset.as_str())]].concat(),
                )
                .await;
                by_offset.extend(ids(&body));
            }
            assert_eq!(by_offset, whole, "{sort} {order}: offset pages");
            let deep = page(
                &app,
                &ann,
                &[&base[..], &[("limit", "4"), ("offset", "10")]].concat(),
            )
            .await;
            let next = deep["nextCursor"].as_str().expect("more after 14");
            let rest = page(&app, &ann, &[&base[..], &[("cursor", next)]].concat()).await;
            assert_eq!(
                ids(&rest),
                whole[14..],
                "{sort} {order}: after an offset page"
            );
            assert!(rest["nextCursor"].is_null(), "the last page has no next");
        }
    }
}

async fn bad_cursors_answer_422(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    seed(&app, &ann, 6).await;
    let first = page(&app, &ann, &[("sort", "item"), ("limit", "2")]).await;
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();

    let refused = |params: Vec<(&'static str, String)>, field: &'static str| {
        let app = &app;
        let ann = &ann;
        async move {
            let (status, problem) = answer(
                app.get("/api/todos", ann)
                    .query(&params)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 422, "{params:?}: {problem}");
            assert_eq!(
                crate::api::error_fields(&problem),
                [field],
                "{params:?}: {problem}"
            );
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let item = |cursor: String| vec![("sort", "item".to_string()), ("cursor", cursor)];

    // Altered: one character of the position, or of the tag.
    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut changed = payload.chars().collect::<Vec<_>>();
    changed[3] = if changed[3] == 'A' { 'B' } else { 'A' };
    let altered = format!("{}.{tag}", changed.into_iter().collect::<String>());
    let message = refused(item(altered), "cursor").await;
    assert!(
        message.contains("not a cursor this service issued"),
        "{message}"
    );
    refused(item(format!("{payload}.{}", tag.to_uppercase())), "cursor").await;
    refused(item("not-a-cursor".into()), "cursor").await;

    // Another sort, order or filters than it was made with.
    let message = refused(
        vec![("sort", "created_at".into()), ("cursor", cursor.clone())],
        "cursor",
    )
    .await;
    assert!(message.contains("another sort or order"), "{message}");
    let mut desc = item(cursor.clone());
    desc.push(("order", "asc".into()));
    refused(desc, "cursor").await;
    let mut filtered = item(cursor.clone());
    filtered.push(("importance", "high".into()));
    let message = refused(filtered, "cursor").await;
    assert!(message.contains("other filters"), "{message}");

    // A cursor says where the page starts: no offset with it, not even 0.
    for offset in ["0", "4"] {
        let mut both = item(cursor.clone());
        both.push(("offset", offset.into()));
        refused(both, "offset").await;
    }

    // The untouched cursor still works, with another page size.
    let (status, body) = answer(
        app.get("/api/todos", &ann)
            .query(&[("sort", "item"), ("cursor", &cursor), ("limit", "10")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body).len(), 4);
}

async fn totals_stop_counting_past_the_bound(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    let now = Utc::now();
    let rows: Vec<todo::ActiveModel> = (0..EXACT_TOTAL_UP_TO + 5)
        .map(|i| {
            let mut row = todo::ActiveModel::new();
            row.item = Set(format!("todo {i}"));
            row.created_time = Set(now);
            row.importance = Set(if i < 7 {
                Importance::High
            } else {
                Importance::None
            });
            row.user_id = Set(ann.id);
            row.created_at = Set(now);
            row.updated_at = Set(now);
            row
        })
        .collect();
    for batch in rows.chunks(200) {
        todo::Entity::insert_many(batch.to_vec())
            .exec_without_returning(db.conn())
            .await
            .expect("insert");
    }
    // A tag on every todo and one on two of them.
    let big = tags::create(db.conn(), ann.id, "big", None).await.unwrap();
    let small = tags::create(db.conn(), ann.id, "small", None)
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.id.clone().unwrap()).collect();
    let links: Vec<user_account_todo_tag::ActiveModel> = ids
        .iter()
        .map(|id| (id, big.id))
        .chain(ids[..2].iter().map(|id| (id, small.id)))
        .map(|(todo_id, tag_id)| {
            let mut link = user_account_todo_tag::ActiveModel::new();
            link.todo_id = Set(*todo_id);
            link.tag_id = Set(tag_id);
            link.created_at = Set(now);
            link.updated_at = Set(now);
            link
        })
        .collect();
    for batch in links.chunks(200) {
        user_account_todo_tag::Entity::insert_many(batch.to_vec())
            .exec_without_returning(db.conn())
            .await
            .expect("link");
    }
    db.close().await;

    let (status, tags) = answer(app.get("/api/tags", &ann).send().await.unwrap()).await;
    assert_eq!(status, 200, "{tags}");
    let counts: Vec<(&str, &Value, &Value)> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| {
            (
                tag["name"].as_str().unwrap(),
                &tag["todoCount"],
                &tag["todoCountIsExact"],
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("big", &EXACT_TOTAL_UP_TO.into(), &false.into()),
            ("small", &2.into(), &true.into())
        ]
    );
    let body = page(&app, &ann, &[("tag", "big"), ("limit", "1")]).await;
    assert_eq!(body["totalIsExact"], false, "{body}");

    let body = page(&app, &ann, &[("limit", "5")]).await;
    assert_eq!(body["total"], EXACT_TOTAL_UP_TO, "{body}");
    assert_eq!(body["totalIsExact"], false);
    let body = page(&app, &ann, &[("importance", "high")]).await;
    assert_eq!(
        (&body["total"], &body["totalIsExact"]),
        (&7.into(), &true.into())
    );
    let body = page(&app, &ann, &[("search", "todo 100")]).await;
    // todo 100 and todo 1000..1004
    assert_eq!(
        (&body["total"], &body["totalIsExact"]),
        (&6.into(), &true.into())
    );
}

async fn accounts_page_by_cursor(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    let root = app.user("root@example.com", true).await;
    for i in 0..7 {
        app.user(&format!("user{i}@example.com"), false).await;
    }
    app.user("someone@elsewhere.org", false).await;
    let get = |params: Vec<(&'static str, String)>| {
        let app = &app;
        let root = &root;
        async move {
            answer(
                app.get("/api/users", root)
                    .query(&params)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for search in ["", "example"] {
        let (status, whole) = get(vec![("search", search.into()), ("limit", "100".into())]).await;
        assert_eq!(status, 200, "{whole}");
        let whole = ids(&whole);
        assert_eq!(whole.len(), if search.is_empty() { 9 } else { 8 });
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("search", search.to_string()), ("limit", "2".to_string())];
            if let Some(cursor) = cursor.take() {
                params.push(("cursor", cursor));
            }
            let (status, body) = get(params).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["total"], whole.len(), "{body}");
            assert_eq!(body["totalIsExact"], true);
            walked.extend(ids(&body));
            match body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
            assert!(walked.len() <= whole.len(), "the cursor does not move");
        }
        assert_eq!(walked, whole, "search {search:?}");
    }

    let (_, first) = get(vec![("search", "example".into()), ("limit", "2".into())]).await;
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let (status, problem) = get(vec![("search", "user".into()), ("cursor", cursor.clone())]).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(crate::api::error_fields(&problem), ["cursor"]);
    let (status, problem) = get(vec![
        ("search", "example".into()),
        ("cursor", cursor.clone()),
        ("offset", "2".into()),
    ])
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(crate::api::error_fields(&problem), ["offset"]);
    // A cursor of another list is not one of this list.
    let todos = page(&app, &root, &[("limit", "1")]).await;
    assert!(todos["nextCursor"].is_null(), "root has no todos");
    let ann = app.user("ann@example.com", false).await;
    seed(&app, &ann, 3).await;
    let todos = page(&app, &ann, &[("limit", "1")]).await;
    let foreign = todos["nextCursor"].as_str().unwrap().to_string();
    let (status, problem) = get(vec![("cursor", foreign)]).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(crate::api::error_fields(&problem), ["cursor"]);
}
