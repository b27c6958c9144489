//! Switching over from the Python service: `app database adopt` on copies of the databases it
//! made, as an operator would run it, and everything that must refuse before it.

use std::collections::BTreeMap;

use app::migrate;
use chrono::{DateTime, Utc};
use strata::runner::Conn;

use crate::access::login;
use crate::api::{TestApp, answer};
use crate::helpers::{
    Kind, TestDb, on_both_databases, one_line_failure, run_app, run_app_on, succeeded,
};

const PASSWORD: &str = "python-service-1";

/// Runs SQL (several statements allowed) straight on the database.
async fn exec(test_db: &TestDb, sql: &str) {
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let mut conn = migrate::connection(&db).await.expect("a connection");
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    db.close().await;
}

/// Rows of text cells.
async fn rows(test_db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let mut conn = migrate::connection(&db).await.expect("a connection");
    let rows = conn
        .fetch_text(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    db.close().await;
    rows
}

fn text(cell: &Option<String>) -> String {
    cell.clone().unwrap_or_default()
}

/// Every table's definition and every row, as text: equal before and after means nothing
/// changed.
async fn fingerprint(test_db: &TestDb) -> String {
    fingerprint_of(test_db, None).await
}

/// [`fingerprint`] of some tables only.
async fn fingerprint_of(test_db: &TestDb, only: Option<&[&str]>) -> String {
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let mut conn = migrate::connection(&db).await.expect("a connection");
    let schema = match &mut conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &[]).await,
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &[]).await,
    }
    .expect("introspection");
    let mut out = String::new();
    for (name, table) in &schema.tables {
        if only.is_some_and(|only| !only.contains(&name.as_str())) {
            continue;
        }
        out.push_str(&format!("{table:?}\n"));
        let sql = match conn.dialect() {
            strata::Dialect::Postgres => {
                format!("SELECT string_agg(t::text, '|' ORDER BY t::text) FROM \"{name}\" t")
            }
            strata::Dialect::Sqlite => {
                let cells: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| format!("quote(\"{}\")", c.name))
                    .collect();
                format!(
                    "SELECT group_concat(r, '|') FROM (SELECT {} AS r FROM \"{name}\" ORDER BY 1)",
                    cells.join(" || ',' || ")
                )
            }
        };
        let rows = conn.fetch_text(&sql).await.expect("rows as text");
        out.push_str(&format!("{name}: {:?}\n", rows));
    }
    db.close().await;
    out
}

/// ann0 becomes a superuser (flag and role), ann1 inactive; ann1 gets rows in three tables
/// `app` does not own (OAuth account, an agent session with a message).
async fn prepare_legacy_users(test_db: &TestDb, kind: Kind) {
    let (uuid, now, yes, no) = match kind {
        Kind::Postgres => ("gen_random_uuid()", "now()", "true", "false"),
        Kind::Sqlite => ("randomblob(16)", "'2026-11-30 10:00:00.000000'", "1", "0"),
    };
    exec(
        test_db,
        &format!(
            "UPDATE user_account SET is_superuser = {yes} WHERE email = 'ann0@example.com';
             INSERT INTO user_account_role (id, user_id, role_id, assigned_at, created_at, updated_at)
               SELECT {uuid}, u.id, r.id, {now}, {now}, {now} FROM user_account u, role r
               WHERE u.email = 'ann0@example.com' AND r.slug = 'superuser';
             UPDATE user_account SET is_active = {no} WHERE email = 'ann1@example.com';
             INSERT INTO user_account_oauth (id, user_id, oauth_name, access_token, account_id, account_email, created_at, updated_at)
               SELECT {uuid}, id, 'github', 'token-1', 'gh-1', email, {now}, {now} FROM user_account WHERE email = 'ann1@example.com';
             INSERT INTO agent_session (id, session_id, is_active, user_id, created_at, updated_at)
               SELECT {uuid}, 'session-1', {yes}, id, {now}, {now} FROM user_account WHERE email = 'ann1@example.com';
             INSERT INTO session_message (id, role, content, session_id, created_at, updated_at)
               SELECT {uuid}, 'user', 'hello', id, {now}, {now} FROM agent_session WHERE session_id = 'session-1';"
        ),
    )
    .await;
}

/// A todo as the Python service left it.
#[derive(Debug)]
struct OldTodo {
    owner: String,
    description: Option<String>,
    created_time: DateTime<Utc>,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    importance: String,
    tags: Vec<String>,
}

/// Reads a stored time as either database keeps it (PostgreSQL text output or SQLite's naive
/// `YYYY-MM-DD HH:MM:SS.ffffff`), as UTC.
fn parse_time(stored: &str) -> DateTime<Utc> {
    if let Ok(t) = DateTime::parse_from_str(stored, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return t.to_utc();
    }
    chrono::NaiveDateTime::parse_from_str(stored, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{stored}: {e}"))
        .and_utc()
}

/// Every todo by item, read before the adoption.
async fn old_todos(test_db: &TestDb) -> BTreeMap<String, OldTodo> {
    let mut todos = BTreeMap::new();
    for row in rows(
        test_db,
        "SELECT t.item, u.email, t.description, CAST(t.created_time AS text), CAST(t.start_time AS text), \
         CAST(t.end_time AS text), t.importance FROM todo t JOIN user_account u ON u.id = t.user_id",
    )
    .await
    {
        todos.insert(
            text(&row[0]),
            OldTodo {
                owner: text(&row[1]),
                description: row[2].clone(),
                created_time: parse_time(&text(&row[3])),
                start_time: parse_time(&text(&row[4])),
                end_time: parse_time(&text(&row[5])),
                importance: text(&row[6]),
                tags: Vec::new(),
            },
        );
    }
    for row in rows(
        test_db,
        "SELECT t.item, g.name FROM todo t JOIN user_account_todo_tag l ON l.todo_id = t.id \
         JOIN tag g ON g.id = l.tag_id",
    )
    .await
    {
        let todo = todos.get_mut(&text(&row[0])).expect("a tagged todo");
        todo.tags.push(text(&row[1]));
    }
    for todo in todos.values_mut() {
        todo.tags.sort();
    }
    todos
}

fn bearer(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn recognizes_the_python_service_and_points_at_adopt(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    let before = fingerprint(&test_db).await;

    let current = succeeded(&run_app_on(&test_db.url, &["database", "current"]));
    assert!(current.contains("f1g2h3i4j5k6"), "{current}");
    assert!(current.contains("its head"), "{current}");
    assert!(current.contains("app database adopt"), "{current}");
    let json = succeeded(&run_app_on(
        &test_db.url,
        &["database", "current", "--format", "json"],
    ));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["foreign"]["tool"], "alembic");
    assert_eq!(json["foreign"]["pythonServiceHead"], true);
    assert_eq!(json["atHead"], false);

    let dump_dir = tempfile::tempdir().unwrap();
    let dump_to = dump_dir.path().join("dump");
    let refusing: [&[&str]; 5] = [
        &["database", "upgrade"],
        &["database", "downgrade"],
        &["database", "stamp", "head"],
        &["database", "check"],
        &["database", "dump", "--output", dump_to.to_str().unwrap()],
    ];
    for args in refusing {
        let line = one_line_failure(&run_app_on(&test_db.url, args), 1);
        assert!(line.contains("app database adopt"), "{args:?}: {line}");
        assert!(!line.contains("column"), "no raw SQL error: {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let run = run_app(
        dir.path(),
        &["run", "--port", "0"],
        &[("APP_ENV", "development"), ("DATABASE_URL", &test_db.url)],
    );
    let line = one_line_failure(&run, 1);
    assert!(line.contains("app database adopt"), "{line}");
    assert_eq!(fingerprint(&test_db).await, before, "nothing changed");
}

async fn adopt_keeps_users_todos_and_other_tables(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    prepare_legacy_users(&test_db, kind).await;
    let before = old_todos(&test_db).await;
    assert_eq!(before.len(), 24);
    let unmanaged = ["user_account_oauth", "agent_session", "session_message"];
    let left_alone = fingerprint_of(&test_db, Some(&unmanaged)).await;
    for table in unmanaged {
        let count = rows(
            &test_db,
            &format!("SELECT CAST(count(*) AS text) FROM {table}"),
        )
        .await;
        assert_eq!(text(&count[0][0]), "1", "{table}");
    }

    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("APP_ENV", "testing"),
        ("DATABASE_URL", test_db.url.as_str()),
    ];
    let adopted = succeeded(&run_app(dir.path(), &["database", "adopt", "--yes"], &vars));
    assert!(adopted.contains("todo (24 rows"), "{adopted}");
    assert!(adopted.contains("user_account_oauth"), "{adopted}");
    assert!(
        adopted.contains("app database restore backup-"),
        "{adopted}"
    );
    assert!(
        adopted.contains("Adopted alembic revision f1g2h3i4j5k6"),
        "{adopted}"
    );

    let check = succeeded(&run_app(dir.path(), &["database", "check"], &vars));
    assert!(check.contains("database matches the migrations"), "{check}");
    assert!(check.contains("not managed"), "{check}");
    let current = succeeded(&run_app(dir.path(), &["database", "current"], &vars));
    assert!(current.contains("(head)"), "{current}");
    assert!(
        current.contains("adopted from alembic revision f1g2h3i4j5k6"),
        "{current}"
    );
    let history = succeeded(&run_app(dir.path(), &["database", "history"], &vars));
    assert!(history.contains("adopted"), "{history}");
    let again = succeeded(&run_app(dir.path(), &["database", "adopt", "--yes"], &vars));
    assert!(again.contains("Nothing to do"), "{again}");
    // Past the adopted revision only the backup goes back; nothing is undone on the way.
    let down = one_line_failure(
        &run_app(dir.path(), &["database", "downgrade", "base"], &vars),
        1,
    );
    assert!(down.contains("app database restore backup-"), "{down}");
    assert!(
        succeeded(&run_app(dir.path(), &["database", "current"], &vars)).contains("(head)"),
        "the refused downgrade changed nothing"
    );

    assert_eq!(
        fingerprint_of(&test_db, Some(&unmanaged)).await,
        left_alone,
        "the tables app does not own are untouched"
    );

    let app = TestApp::spawn_on(test_db, &[]).await;
    let (status, body) = login(&app, "ann1@example.com", PASSWORD).await;
    assert_eq!(status, 403, "an inactive user is refused: {body}");
    let (status, body) = login(&app, "ann0@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let (_, me) = answer(
        bearer(&app, reqwest::Method::GET, "/api/me", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["isSuperuser"], true);
    assert!(
        crate::api::role_slugs(&me).contains(&"superuser".to_string()),
        "{me}"
    );

    let (status, page) = answer(
        bearer(&app, reqwest::Method::GET, "/api/todos?limit=100", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    let time = |v: &serde_json::Value| {
        DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    for todo in items {
        let old = &before[todo["item"].as_str().unwrap()];
        assert_eq!(old.owner, "ann0@example.com");
        assert_eq!(todo["description"].as_str(), old.description.as_deref());
        assert_eq!(
            time(&todo["createdTime"]),
            old.created_time,
            "to the microsecond"
        );
        assert_eq!(time(&todo["startTime"]), old.start_time);
        assert_eq!(time(&todo["endTime"]), old.end_time);
        assert_eq!(todo["importance"], old.importance.to_lowercase());
        let mut tags: Vec<String> = todo["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        tags.sort();
        assert_eq!(tags, old.tags, "{}", todo["item"]);
    }

    let first = items.last().unwrap();
    let start = time(&first["startTime"]) + chrono::Duration::minutes(5);
    let (status, conflict) = answer(
        bearer(&app, reqwest::Method::POST, "/api/todos", &token)
            .json(&serde_json::json!({
                "item": "overlaps an old todo",
                "startTime": start.to_rfc3339(),
                "endTime": (start + chrono::Duration::minutes(10)).to_rfc3339(),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert!(
        conflict["conflicts"]
            .as_array()
            .unwrap()
            .contains(&first["id"])
    );

    // app deletes a user: the Python service's own tables follow by their cascades.
    let (status, users) = answer(
        bearer(&app, reqwest::Method::GET, "/api/users?search=ann1", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{users}");
    let ann1_id = users["items"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = answer(
        bearer(
            &app,
            reqwest::Method::DELETE,
            &format!("/api/users/{ann1_id}"),
            &token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 204);
    for table in unmanaged {
        let left = rows(
            &app.db,
            &format!("SELECT CAST(count(*) AS text) FROM {table}"),
        )
        .await;
        assert_eq!(
            text(&left[0][0]),
            "0",
            "{table} rows of the deleted user are gone"
        );
    }
}

async fn refuses_another_alembic_revision(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    exec(
        &test_db,
        "UPDATE ddl_version SET version_num = 'e5d4c3b2a1f0'",
    )
    .await;
    let before = fingerprint(&test_db).await;
    let line = one_line_failure(
        &run_app_on(&test_db.url, &["database", "adopt", "--yes"]),
        1,
    );
    assert!(line.contains("e5d4c3b2a1f0"), "{line}");
    assert!(line.contains("f1g2h3i4j5k6"), "{line}");
    assert!(line.contains("alembic upgrade head"), "{line}");
    let current = succeeded(&run_app_on(&test_db.url, &["database", "current"]));
    assert!(current.contains("not its head"), "{current}");
    assert_eq!(fingerprint(&test_db).await, before, "nothing changed");
}

async fn refuses_an_empty_database_and_has_nothing_to_do_on_its_own(kind: Kind) {
    let empty = TestDb::empty(kind).await;
    let line = one_line_failure(&run_app_on(&empty.url, &["database", "adopt", "--yes"]), 1);
    assert!(line.contains("empty"), "{line}");
    assert!(line.contains("app database upgrade"), "{line}");

    let managed = TestDb::new(kind).await;
    let out = succeeded(&run_app_on(&managed.url, &["database", "adopt", "--yes"]));
    assert!(out.contains("Nothing to do"), "{out}");
}

async fn refuses_a_value_it_cannot_convert(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    exec(
        &test_db,
        "UPDATE todo SET importance = 'URGENT' WHERE item LIKE 'ann task 0-1 %'",
    )
    .await;
    let before = fingerprint(&test_db).await;
    let line = one_line_failure(
        &run_app_on(&test_db.url, &["database", "adopt", "--yes"]),
        1,
    );
    assert!(line.contains("todo.importance"), "{line}");
    assert!(line.contains("1 row(s)"), "{line}");
    assert!(line.contains("URGENT"), "{line}");
    assert_eq!(fingerprint(&test_db).await, before, "nothing changed");
}

/// A view on a column the plan drops (PostgreSQL) or on a table it rebuilds (SQLite) makes a
/// statement in the middle of the plan fail.
async fn a_failure_in_the_middle_leaves_the_database_as_it_was(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    exec(
        &test_db,
        "CREATE VIEW todo_sentinels AS SELECT item, sa_orm_sentinel FROM todo",
    )
    .await;
    let before = fingerprint(&test_db).await;
    let line = one_line_failure(
        &run_app_on(&test_db.url, &["database", "adopt", "--yes", "--no-backup"]),
        1,
    );
    assert!(line.contains("rolled back"), "{line}");
    assert!(line.contains("as it was"), "{line}");
    assert_eq!(fingerprint(&test_db).await, before, "nothing changed");
    let current = succeeded(&run_app_on(&test_db.url, &["database", "current"]));
    assert!(current.contains("f1g2h3i4j5k6"), "{current}");
}

async fn sql_and_json_show_the_plan(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    let before = fingerprint(&test_db).await;
    let sql = succeeded(&run_app_on(&test_db.url, &["database", "adopt", "--sql"]));
    let begin = match kind {
        Kind::Postgres => "BEGIN;",
        Kind::Sqlite => "BEGIN IMMEDIATE;",
    };
    assert!(sql.contains(begin), "{sql}");
    assert!(
        sql.trim_end().ends_with("COMMIT;") || sql.contains("COMMIT;\nPRAGMA foreign_keys = ON;"),
        "{sql}"
    );
    assert!(sql.contains("DROP TABLE \"ddl_version\""), "{sql}");
    assert!(sql.contains("lower(\"importance\")"), "{sql}");
    assert!(
        !sql.contains("user_account_oauth\" ("),
        "unmanaged tables are not touched: {sql}"
    );
    assert_eq!(fingerprint(&test_db).await, before, "--sql changes nothing");

    let out = succeeded(&run_app_on(
        &test_db.url,
        &[
            "database",
            "adopt",
            "--format",
            "json",
            "--yes",
            "--no-backup",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(json["adopted"], true);
    assert_eq!(json["plan"]["fromRevision"], "f1g2h3i4j5k6");
    // The plan brings the tables to the revision before the first migration of raw SQL (the
    // exclusion constraint on todo); the tables of later migrations come with the upgrade that
    // follows.
    let made_after_the_plan = ["write_position"];
    assert_eq!(
        json["plan"]["tables"].as_array().unwrap().len(),
        app::models::schema::target().tables.len() - made_after_the_plan.len()
    );
    assert_eq!(json["plan"]["leftAlone"].as_array().unwrap().len(), 6);
    assert!(json["backup"].is_null());
}

async fn health_says_why_a_python_service_database_is_not_ready(kind: Kind) {
    let app = TestApp::spawn(kind).await;
    exec(
        &app.db,
        "DROP TABLE ddl_version; CREATE TABLE ddl_version (version_num varchar(32) NOT NULL PRIMARY KEY); \
         INSERT INTO ddl_version VALUES ('f1g2h3i4j5k6')",
    )
    .await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["schema"]["state"], "needs-adoption", "{body}");
    assert!(
        body["schema"]["detail"]
            .as_str()
            .unwrap()
            .contains("app database adopt"),
        "{body}"
    );
}

/// The way back: the backup adopt wrote restores the Python service's database as it was.
async fn the_backup_gives_the_python_service_its_database_back(kind: Kind) {
    let test_db = TestDb::legacy(kind).await;
    let before = fingerprint(&test_db).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("APP_ENV", "testing"),
        ("DATABASE_URL", test_db.url.as_str()),
    ];
    let adopted = succeeded(&run_app(dir.path(), &["database", "adopt", "--yes"], &vars));
    let backup = adopted
        .lines()
        .find_map(|line| line.strip_prefix("Backup written before adopting: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the backup is named: {adopted}"))
        .to_string();
    assert!(
        adopted.contains(&format!("app database restore {backup}")),
        "{adopted}"
    );
    assert_ne!(fingerprint(&test_db).await, before);

    succeeded(&run_app(
        dir.path(),
        &["database", "restore", &backup],
        &vars,
    ));
    assert_eq!(
        fingerprint(&test_db).await,
        before,
        "as the Python service left it"
    );
    let current = succeeded(&run_app(dir.path(), &["database", "current"], &vars));
    assert!(
        current.contains("f1g2h3i4j5k6 (alembic revision"),
        "{current}"
    );
}

on_both_databases!(
    the_backup_gives_the_python_service_its_database_back,
    recognizes_the_python_service_and_points_at_adopt,
    adopt_keeps_users_todos_and_other_tables,
    refuses_another_alembic_revision,
    refuses_an_empty_database_and_has_nothing_to_do_on_its_own,
    refuses_a_value_it_cannot_convert,
    a_failure_in_the_middle_leaves_the_database_as_it_was,
    sql_and_json_show_the_plan,
    health_says_why_a_python_service_database_is_not_ready,
);
