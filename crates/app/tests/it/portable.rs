//! `app database dump` and `app database load`: portable copies between and within PostgreSQL
//! and SQLite, and the loads that must be refused or rolled back without touching the target.

use std::path::{Path, PathBuf};

use app::db::Database;
use app::domain::accounts;
use app::domain::todos::{self, NewTodo};
use app::migrate;
use app::models::todo::Importance;
use app::portable::{self, DumpReport, LoadReport, PortableError};
use sea_orm::ConnectionTrait;
use strata::state::Direction;

use crate::api::PASSWORD;
use crate::helpers::{
    Kind, TestDb, on_both_databases, only_line_failure, run_app_on, scalar_i64, succeeded,
};

const TABLES: &[&str] = app::models::TABLES;

/// A database with the schema at head (or `target`) and no rows at all.
async fn migrated_empty(kind: Kind, target: &str) -> TestDb {
    let test_db = TestDb::empty(kind).await;
    let db = test_db.connect(&[]).await;
    let settings = test_db.settings(&[]);
    migrate::run(&db, &settings.database, Direction::Up, target, &mut |_| {})
        .await
        .expect("upgrade");
    db.close().await;
    test_db
}

/// One user with the fixtures' roles, three todos with tags, and values that test the format:
/// quotes, a newline, non-ASCII text, NULLs and times with a fraction.
async fn add_sample_rows(db: &Database) {
    let user = accounts::signup(
        db.conn(),
        "dump@example.com",
        Some("Zoë \"Q\" O'Neil"),
        PASSWORD,
    )
    .await
    .expect("signup");
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T08:30:00.123456Z")
        .unwrap()
        .to_utc();
    for (i, importance) in [Importance::Low, Importance::High, Importance::None]
        .into_iter()
        .enumerate()
    {
        let new = NewTodo {
            item: format!("todo {i}: it's \"quoted\" – ünïcode"),
            description: (i != 1).then(|| format!("line one\nline two {i}")),
            start_time: (i == 0).then_some(start),
            importance,
            tags: vec!["home".into(), format!("wörk {i}")],
            ..NewTodo::default()
        };
        todos::create(db.conn(), user.id, new).await.expect("todo");
    }
}

async fn dump_of(test_db: &TestDb, output: &Path) -> Result<DumpReport, PortableError> {
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let settings = test_db.settings(&[]);
    let hidden = indicatif::ProgressBar::hidden();
    let report = portable::dump(&db, &settings.database, output, &hidden).await;
    db.close().await;
    report
}

async fn load_into(test_db: &TestDb, dump: &Path) -> Result<LoadReport, PortableError> {
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    let settings = test_db.settings(&[]);
    let hidden = indicatif::ProgressBar::hidden();
    let report = portable::load(&db, &settings.database, dump, &hidden).await;
    db.close().await;
    report
}

/// Rows per table, in `TABLES` order.
/// The revision of the newest migration, which a dump of a database at head names.
fn head_revision() -> String {
    let all = app::migrations::all();
    all.last().expect("the app has migrations").revision.clone()
}

async fn row_counts(test_db: &TestDb) -> Vec<i64> {
    let db = test_db.connect(&[]).await;
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push(scalar_i64(&db, &format!("SELECT count(*) FROM {table}")).await);
    }
    db.close().await;
    counts
}

/// 100,000 todos for the sample user, made in SQL (SQLite) so the test spends its time on the
/// dump and load rather than on making rows.
async fn add_many_todos_sqlite(db: &Database, count: u32) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO todo (id, item, description, created_time, alarm_time, start_time, end_time, \
                           importance, user_id, created_at, updated_at) \
         SELECT randomblob(16), 'bulk ' || i, \
                CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || char(10) || 'ü \"q\" ''s' END, \
                strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch'), NULL, \
                CASE WHEN i % 2 = 0 THEN strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i * 7, 'unixepoch') END, \
                NULL, \
                CASE i % 4 WHEN 0 THEN 'none' WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END, \
                (SELECT id FROM user_account WHERE email = 'dump@example.com'), \
                strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch'), \
                strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch') \
         FROM n"
    );
    db.conn()
        .execute_unprepared(&sql)
        .await
        .expect("bulk todos");
}

fn row_file(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!("{table}.jsonl"))
}

#[tokio::test]
async fn round_trips_sqlite_to_postgresql_and_back_with_identical_data() {
    let work = tempfile::tempdir().unwrap();
    let source = TestDb::new(Kind::Sqlite).await;
    let db = source.connect(&[]).await;
    add_sample_rows(&db).await;
    add_many_todos_sqlite(&db, 100_000).await;
    db.close().await;

    let from_sqlite = dump_of(&source, &work.path().join("a"))
        .await
        .expect("dump sqlite");
    let todo = from_sqlite
        .tables
        .iter()
        .find(|t| t.table == "todo")
        .unwrap();
    assert_eq!(todo.rows, 100_003);

    let postgres = migrated_empty(Kind::Postgres, "head").await;
    let loaded = load_into(&postgres, &work.path().join("a"))
        .await
        .expect("load into postgres");
    assert_eq!(
        loaded.tables, from_sqlite.tables,
        "verified counts and checksums"
    );
    assert_eq!(row_counts(&postgres).await, row_counts(&source).await);

    let from_postgres = dump_of(&postgres, &work.path().join("b"))
        .await
        .expect("dump postgres");
    assert_eq!(from_postgres.tables, from_sqlite.tables);
    for table in TABLES {
        assert!(
            std::fs::read(row_file(&work.path().join("a"), table)).unwrap()
                == std::fs::read(row_file(&work.path().join("b"), table)).unwrap(),
            "{table}: the rows files differ"
        );
    }

    let sqlite = migrated_empty(Kind::Sqlite, "head").await;
    let loaded = load_into(&sqlite, &work.path().join("b"))
        .await
        .expect("load into sqlite");
    assert_eq!(loaded.tables, from_sqlite.tables);
    let again = dump_of(&sqlite, &work.path().join("c"))
        .await
        .expect("dump again");
    assert_eq!(again.tables, from_sqlite.tables);

    // The loaded data is the application's: a user can sign in and list what was theirs.
    let db = sqlite.connect(&[]).await;
    let user = accounts::authenticate(db.conn(), "dump@example.com", PASSWORD)
        .await
        .expect("the loaded account signs in");
    let roles = accounts::roles_of(db.conn(), user.id).await.unwrap();
    assert!(!roles.is_empty());
    db.close().await;
}

/// PostgreSQL to SQLite with rows the application wrote on PostgreSQL.
#[tokio::test]
async fn round_trips_postgresql_to_sqlite() {
    let work = tempfile::tempdir().unwrap();
    let source = TestDb::new(Kind::Postgres).await;
    let db = source.connect(&[]).await;
    add_sample_rows(&db).await;
    db.close().await;
    let dumped = dump_of(&source, &work.path().join("pg"))
        .await
        .expect("dump");
    let sqlite = migrated_empty(Kind::Sqlite, "head").await;
    let loaded = load_into(&sqlite, &work.path().join("pg"))
        .await
        .expect("load");
    assert_eq!(loaded.tables, dumped.tables);
    assert_eq!(row_counts(&sqlite).await, row_counts(&source).await);
    let back = dump_of(&sqlite, &work.path().join("sqlite"))
        .await
        .expect("dump");
    assert_eq!(back.tables, dumped.tables);
}

/// A source with sample rows dumped into `work/dump`.
async fn sample_dump(kind: Kind, work: &Path) -> (TestDb, PathBuf) {
    let source = TestDb::new(kind).await;
    let db = source.connect(&[]).await;
    add_sample_rows(&db).await;
    db.close().await;
    let dir = work.join("dump");
    dump_of(&source, &dir).await.expect("dump");
    (source, dir)
}

fn refused(result: Result<LoadReport, PortableError>) -> String {
    match result {
        Err(err @ PortableError::Refused(_)) => err.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn refuses_a_target_that_is_not_empty(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let (_source, dump) = sample_dump(kind, work.path()).await;
    // The fixtures' roles are there.
    let target = TestDb::new(kind).await;
    let before = row_counts(&target).await;
    let message = refused(load_into(&target, &dump).await);
    assert!(
        message.contains("not empty") && message.contains("role"),
        "{message}"
    );
    assert_eq!(row_counts(&target).await, before);
}

async fn refuses_a_damaged_dump(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let (_source, dump) = sample_dump(kind, work.path()).await;
    let target = migrated_empty(kind, "head").await;

    // One character changed in a row: the checksum tells.
    let todo_file = row_file(&dump, "todo");
    let text = std::fs::read_to_string(&todo_file).unwrap();
    std::fs::write(&todo_file, text.replacen("todo 1", "todo 7", 1)).unwrap();
    let message = refused(load_into(&target, &dump).await);
    assert!(
        message.contains("todo.jsonl") && message.contains("damaged"),
        "{message}"
    );
    assert_eq!(row_counts(&target).await, vec![0; 6]);

    // A cut-off file names the line.
    std::fs::write(&todo_file, &text[..text.len() - 10]).unwrap();
    let message = refused(load_into(&target, &dump).await);
    assert!(message.contains("cut off"), "{message}");

    // No manifest: not a finished dump.
    std::fs::write(&todo_file, &text).unwrap();
    std::fs::remove_file(dump.join("manifest.json")).unwrap();
    let message = refused(load_into(&target, &dump).await);
    assert!(message.contains("manifest.json"), "{message}");
    assert_eq!(row_counts(&target).await, vec![0; 6]);
}

async fn refuses_a_dump_of_another_revision(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let (_source, dump) = sample_dump(kind, work.path()).await;
    let target = migrated_empty(kind, "363878e3d4c3").await;
    let message = refused(load_into(&target, &dump).await);
    assert!(
        message.contains(&head_revision()) && message.contains("363878e3d4c3"),
        "{message}"
    );
    assert_eq!(row_counts(&target).await, vec![0; 6]);

    let unmigrated = TestDb::empty(kind).await;
    let message = refused(load_into(&unmigrated, &dump).await);
    assert!(
        message.contains(&format!("app database upgrade {}", head_revision())),
        "{message}"
    );
}

/// A row that breaks a constraint in the last table: every table before it was written, and all
/// of it is rolled back.
async fn rolls_back_a_load_that_fails_part_way(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let (_source, dump) = sample_dump(kind, work.path()).await;
    let target = migrated_empty(kind, "head").await;

    let last = row_file(&dump, "user_account_todo_tag");
    let text = std::fs::read_to_string(&last).unwrap();
    let doubled = format!("{text}{}\n", text.lines().next().unwrap());
    std::fs::write(&last, &doubled).unwrap();
    // Make the manifest agree, as a dump written by a faulty tool would.
    let manifest_path = dump.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    for entry in manifest["tables"].as_array_mut().unwrap() {
        if entry["name"] == "user_account_todo_tag" {
            use sha2::Digest;
            entry["rows"] = (entry["rows"].as_u64().unwrap() + 1).into();
            entry["sha256"] = hex::encode(sha2::Sha256::digest(doubled.as_bytes())).into();
        }
    }
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    let err = load_into(&target, &dump).await.expect_err("duplicate key");
    assert!(matches!(err, PortableError::RolledBack(_)), "{err}");
    assert!(err.to_string().contains("user_account_todo_tag"), "{err}");
    assert_eq!(err.to_string().matches("rolled back").count(), 1, "{err}");
    assert_eq!(row_counts(&target).await, vec![0; 6]);
}

async fn dump_refuses_an_output_that_is_in_use(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let source = TestDb::new(kind).await;
    let taken = work.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let err = dump_of(&source, &taken).await.expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );

    // An empty directory made for the dump is fine, and nothing else is left behind.
    let made = work.path().join("made");
    std::fs::create_dir(&made).unwrap();
    dump_of(&source, &made)
        .await
        .expect("dump into an empty directory");
    let mut names: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["made", "taken"]);
}

on_both_databases!(
    refuses_a_target_that_is_not_empty,
    refuses_a_damaged_dump,
    refuses_a_dump_of_another_revision,
    rolls_back_a_load_that_fails_part_way,
    dump_refuses_an_output_that_is_in_use,
);

/// The commands as a user runs them: a summary on stdout, one line and exit 1 on a refusal.
async fn dump_and_load_from_the_command_line(kind: Kind) {
    let work = tempfile::tempdir().unwrap();
    let source = TestDb::new(kind).await;
    let db = source.connect(&[]).await;
    add_sample_rows(&db).await;
    db.close().await;
    let dump = work.path().join("cli-dump");
    let dump_arg = dump.to_str().unwrap();

    let out = run_app_on(&source.url, &["database", "dump", "--output", dump_arg]);
    let stdout = succeeded(&out);
    let dumped = format!(
        "Dumped {} table(s)",
        app::models::schema::target().tables.len()
    );
    assert!(stdout.contains(&dumped), "{stdout}");
    let at = format!("at revision {}", head_revision());
    assert!(stdout.contains(&at), "{stdout}");
    // Without a terminal: log lines only, no progress bar.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains("rows/s"),
        "{stderr}"
    );

    let out = run_app_on(&source.url, &["database", "dump", "--output", dump_arg]);
    let line = only_line_failure(&out, 1);
    assert!(line.contains("not empty"), "{line}");

    let other = match kind {
        Kind::Postgres => Kind::Sqlite,
        Kind::Sqlite => Kind::Postgres,
    };
    let target = migrated_empty(other, "head").await;
    let out = run_app_on(
        &target.url,
        &["database", "load", dump_arg, "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(
        report["tables"].as_array().unwrap().len(),
        app::models::schema::target().tables.len()
    );

    // Loading twice: the target is not empty any more.
    let before = row_counts(&target).await;
    let line = only_line_failure(&run_app_on(&target.url, &["database", "load", dump_arg]), 1);
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(row_counts(&target).await, before);

    let out = run_app_on(&target.url, &["database", "check"]);
    succeeded(&out);
}

on_both_databases!(dump_and_load_from_the_command_line);
