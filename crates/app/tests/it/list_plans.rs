//! Every documented sort of a user's todos is served by its index on PostgreSQL: EXPLAIN of
//! the statements the service really sends, for a first page and for cursor pages deep in the
//! list, over a table with realistic statistics (ANALYZE, nothing forced off), shows an index
//! scan of the sort's index, no sequential scan of `todo` and no Sort node.

use app::db::Database;
use app::domain::accounts;
use app::domain::todos::{self, SortField, SortOrder, TodoQuery};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use crate::api::TestApp;
use crate::helpers::Kind;

/// Todos of the user whose lists are explained; others own as many again.
const TODOS: u64 = 40_000;

/// One user's todos in bulk: a third with a start time only, some with an end time only,
/// the rest with neither (never a full range, so no overlap); items repeat, ranks cycle.
async fn seed(db: &Database, user: Uuid, count: u64, seed: u64) {
    let sql = format!(
        "INSERT INTO todo (id, item, created_time, start_time, end_time, importance, user_id, \
         created_at, updated_at) \
         SELECT gen_random_uuid(), 'todo ' || ((i * {seed}) % 5000), now(), \
         CASE WHEN i % 3 = 0 THEN timestamptz '2026-01-01' + i * interval '1 minute' END, \
         CASE WHEN i % 3 <> 0 AND i % 4 = 0 THEN timestamptz '2026-01-01' + i * interval '1 minute' END, \
         (ARRAY['none','low','medium','high'])[1 + i % 4], '{user}', \
         now() - i * interval '1 second', now() - ((i * 7919) % 100000) * interval '1 second' \
         FROM generate_series(1, {count}) AS i"
    );
    db.conn()
        .execute_unprepared(&sql)
        .await
        .expect("seed todos");
}

/// The plan of `statement`, one line per row of EXPLAIN.
async fn plan(db: &Database, statement: &Statement) -> String {
    let explain = Statement {
        sql: format!("EXPLAIN {}", statement.sql),
        ..statement.clone()
    };
    db.conn()
        .query_all_raw(explain)
        .await
        .expect("EXPLAIN")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a plan line"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The statements among `statements` that read a page of `table` (not the count, not the
/// tags or roles of the rows).
fn page_reads(statements: Vec<Statement>, table: &str) -> Vec<Statement> {
    let from = format!(r#"FROM "{table}""#);
    let pages: Vec<Statement> = statements
        .into_iter()
        .filter(|s| s.sql.contains("ORDER BY") && s.sql.contains(&from))
        .collect();
    assert!(!pages.is_empty(), "no page statement on {table}");
    pages
}

/// The page statements of one list of todos.
async fn page_statements(db: &Database, user: Uuid, query: &TodoQuery) -> Vec<Statement> {
    let (result, statements) =
        app::db::capture_statements(todos::list(db.conn(), user, query)).await;
    result.expect("list");
    page_reads(statements, "todo")
}

/// Fails unless `plan` reads through `index`, with no sequential scan and no Sort node.
fn assert_uses_index(plan: &str, index: &str, context: &str) {
    assert!(plan.contains(&format!("using {index}")), "{context}");
    assert!(!plan.contains("Seq Scan"), "{context}");
    assert!(
        !plan
            .lines()
            .any(|line| line.contains("Sort  (") || line.contains("Sort Key")),
        "{context}"
    );
}

fn column(sort: SortField) -> &'static str {
    match sort {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Item => "item",
        SortField::StartTime => "start_time",
        SortField::EndTime => "end_time",
        SortField::Importance => "importance",
    }
}

#[tokio::test]
async fn every_sort_pages_through_its_index_on_postgres() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let ann = app.user("ann@example.com", false).await;
    let db = app.db.connect(&[]).await;
    seed(&db, ann.id, TODOS, 1).await;
    for (n, email) in ["bob@example.com", "cy@example.com", "di@example.com"]
        .into_iter()
        .enumerate()
    {
        let other = app.user(email, false).await;
        seed(&db, other.id, TODOS / 3, 7 + n as u64).await;
    }
    db.conn()
        .execute_unprepared("ANALYZE todo")
        .await
        .expect("ANALYZE");

    let mut checked = 0;
    for name in SortField::NAMES {
        let sort = SortField::parse(name).unwrap();
        for order in [SortOrder::Asc, SortOrder::Desc] {
            let first = TodoQuery {
                limit: 50,
                sort,
                order,
                ..TodoQuery::default()
            };
            let mut statements = page_statements(&db, ann.id, &first).await;
            // Cursors deep in the list: one in the todos with the sorted time, one (for the
            // time sorts) among those without.
            for offset in [5_000, 30_000] {
                let at_offset = TodoQuery {
                    limit: 1,
                    offset,
                    ..first.clone()
                };
                let list = todos::list(db.conn(), ann.id, &at_offset).await.unwrap();
                let after = TodoQuery {
                    after: Some(list.next.expect("more todos")),
                    ..first.clone()
                };
                statements.extend(page_statements(&db, ann.id, &after).await);
            }
            let index = format!("ix_todo_user_id_{}_id", column(sort));
            for statement in &statements {
                let plan = plan(&db, statement).await;
                let context = format!("{name} {order:?}: {}\n{plan}", statement.sql);
                assert!(plan.contains(&format!("using {index}")), "{context}");
                assert!(!plan.contains("Seq Scan"), "{context}");
                assert!(
                    !plan
                        .lines()
                        .any(|line| line.contains("Sort  (") || line.contains("Sort Key")),
                    "{context}"
                );
                checked += 1;
            }
        }
    }
    // Every sort, both ways, a first page and two cursor pages: at least 36 statements.
    assert!(checked >= 36, "{checked} statements explained");
    db.close().await;
}

#[tokio::test]
async fn the_account_list_pages_through_its_index_on_postgres() {
    let app = TestApp::spawn(Kind::Postgres).await;
    let db = app.db.connect(&[]).await;
    db.conn()
        .execute_unprepared(
            "INSERT INTO user_account (id, email, is_active, is_superuser, is_verified, \
             joined_at, login_count, created_at, updated_at) \
             SELECT gen_random_uuid(), 'user' || i || '@example.com', true, false, false, \
             current_date, 0, now() - ((i * 7919) % 50000) * interval '1 second', now() \
             FROM generate_series(1, 30000) AS i",
        )
        .await
        .expect("seed accounts");
    db.conn()
        .execute_unprepared("ANALYZE user_account")
        .await
        .expect("ANALYZE");

    let (first, statements) =
        app::db::capture_statements(accounts::list_users(db.conn(), None, 50, 0, None)).await;
    let mut pages = page_reads(statements, "user_account");
    assert!(!first.expect("list").total.exact, "30,000 accounts");
    let deep = accounts::list_users(db.conn(), None, 1, 20_000, None)
        .await
        .expect("list");
    let after = deep.next.expect("more accounts");
    let (result, statements) =
        app::db::capture_statements(accounts::list_users(db.conn(), None, 50, 0, Some(&after)))
            .await;
    assert_eq!(result.expect("list").items.len(), 50);
    pages.extend(page_reads(statements, "user_account"));
    for statement in &pages {
        let plan = plan(&db, statement).await;
        let context = format!("{}\n{plan}", statement.sql);
        assert_uses_index(&plan, "ix_user_account_created_at_id", &context);
    }
    db.close().await;
}
