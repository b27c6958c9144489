//! `app database backup` and `app database restore` as a user runs them, on both databases.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::backup::{self, BackupFormat, Event, Progress};
use sea_orm::ConnectionTrait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

use crate::api::PASSWORD;
use crate::helpers::{
    Kind, TestDb, on_both_databases, only_line_failure, run_app, scalar_i64, succeeded,
};

const COUNT_USERS: &str = "SELECT COUNT(*) FROM user_account WHERE email LIKE '%@backup.test'";

/// `run_app` in `dir`, where backups land by default, with APP_ENV=testing and
/// DATABASE_URL=`database_url`.
fn app_in(dir: &Path, args: &[&str], database_url: &str) -> Output {
    run_app(
        dir,
        args,
        &[("APP_ENV", "testing"), ("DATABASE_URL", database_url)],
    )
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts success with an empty stderr: without a terminal there is no progress display.
fn succeeded_quietly(out: &Output) -> String {
    let stdout = succeeded(out);
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn count_users(test_db: &TestDb) -> i64 {
    let db = test_db.connect(&[]).await;
    let count = scalar_i64(&db, COUNT_USERS).await;
    db.close().await;
    count
}

async fn delete_users(test_db: &TestDb) {
    let db = test_db.connect(&[]).await;
    for sql in [
        "DELETE FROM user_account_role WHERE user_id IN \
         (SELECT id FROM user_account WHERE email LIKE '%@backup.test')",
        "DELETE FROM user_account WHERE email LIKE '%@backup.test'",
    ] {
        db.conn().execute_raw(db.statement(sql)).await.unwrap();
    }
    db.close().await;
}

fn create_users(dir: &Path, url: &str) {
    for email in ["ann@backup.test", "bob@backup.test"] {
        succeeded(&app_in(
            dir,
            &["user", "create", "--email", email, "--password", PASSWORD],
            url,
        ));
    }
}

async fn backup_and_restore_bring_rows_back(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    assert_eq!(count_users(&test_db).await, 2);

    for format in ["custom", "plain"] {
        let file = dir.path().join(format!("out-{format}.bak"));
        let file_arg = file.to_str().unwrap();
        let out = app_in(
            dir.path(),
            &[
                "database", "backup", "--format", format, "--output", file_arg,
            ],
            &test_db.url,
        );
        let stdout = succeeded_quietly(&out);
        assert!(
            stdout.contains(file_arg) && stdout.contains("bytes"),
            "{stdout}"
        );
        assert!(file.is_file());

        delete_users(&test_db).await;
        assert_eq!(count_users(&test_db).await, 0);

        let out = app_in(dir.path(), &["database", "restore", file_arg], &test_db.url);
        let stdout = succeeded_quietly(&out);
        assert!(stdout.contains("Restored"), "{stdout}");
        assert_eq!(count_users(&test_db).await, 2, "{format}");
        succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
    }
    // Only the two backups are left: no temp files.
    let mut names = entries(dir.path());
    names.retain(|n| !n.starts_with("test.sqlite3"));
    names.sort();
    assert_eq!(names, ["out-custom.bak", "out-plain.bak"]);
}

async fn default_name_in_working_directory(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    succeeded(&app_in(dir.path(), &["database", "backup"], &test_db.url));
    let names = entries(dir.path());
    let expected_ext = match kind {
        Kind::Postgres => ".dump",
        Kind::Sqlite => ".sqlite3",
    };
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("backup-") && names[0].ends_with(expected_ext),
        "{names:?}"
    );
}

async fn schema_format_has_create_table(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let out = app_in(
        dir.path(),
        &[
            "database",
            "backup",
            "--format",
            "schema",
            "--output",
            "schema.sql",
        ],
        &test_db.url,
    );
    succeeded(&out);
    let text = std::fs::read_to_string(dir.path().join("schema.sql")).unwrap();
    assert!(text.contains("CREATE TABLE"), "{text}");
    assert!(text.contains("user_account"), "{text}");
}

async fn failing_backup_leaves_no_file(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("out.bak");
    let out = app_in(
        dir.path(),
        &["database", "backup", "--output", missing.to_str().unwrap()],
        &test_db.url,
    );
    only_line_failure(&out, 1);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    if kind == Kind::Postgres {
        let out = app_in(
            dir.path(),
            &["database", "backup", "--output", "out.dump"],
            "postgres://postgres:s3cret@127.0.0.1:1/nothing",
        );
        let line = only_line_failure(&out, 1);
        assert!(!line.contains("s3cret"), "{line}");
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
}

async fn restoring_a_non_backup_changes_nothing(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    let bogus = dir.path().join("notes.txt");
    std::fs::write(&bogus, "hello, not a backup\n").unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", bogus.to_str().unwrap()],
        &test_db.url,
    );
    let line = only_line_failure(&out, 1);
    assert!(line.contains("not a"), "{line}");
    assert_eq!(count_users(&test_db).await, 2);

    // A SQLite header over garbage: caught by the checks, not half restored.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend(std::iter::repeat_n(0xAB_u8, 8192));
    let fake_path = dir.path().join("fake.sqlite3");
    std::fs::write(&fake_path, fake).unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", fake_path.to_str().unwrap()],
        &test_db.url,
    );
    only_line_failure(&out, 1);
    assert_eq!(count_users(&test_db).await, 2);
    succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
}

/// `upgrade --backup` writes a restorable backup of the database as it was, names it, then
/// upgrades.
async fn upgrade_takes_a_backup_first(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeeded(&app_in(
        dir.path(),
        &["database", "upgrade", "--backup"],
        &test_db.url,
    ));
    let files = entries(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("backup-"), "{files:?}");
    assert!(stdout.contains(&files[0]), "the file is named: {stdout}");
    assert!(stdout.contains("upgraded"), "{stdout}");
    let db = test_db.connect(&[]).await;
    let applied = scalar_i64(&db, "SELECT count(*) FROM ddl_version").await;
    assert_eq!(applied as usize, app::migrations::all().len());
    db.close().await;
    // The backup holds the database from before the upgrade: restored into a fresh database,
    // it has no app tables.
    let backup = dir.path().join(&files[0]);
    let fresh = TestDb::empty(kind).await;
    succeeded(&app_in(
        dir.path(),
        &["database", "restore", backup.to_str().unwrap()],
        &fresh.url,
    ));
    let db = fresh.connect(&[]).await;
    let tables = app::models::schema::existing_tables(db.conn())
        .await
        .unwrap();
    assert!(
        !tables.iter().any(|t| t == "todo"),
        "restored to before the upgrade: {tables:?}"
    );
    db.close().await;
}

async fn execute(test_db: &TestDb, statements: &[&str]) {
    let db = test_db.connect(&[]).await;
    for sql in statements {
        db.conn().execute_raw(db.statement(sql)).await.unwrap();
    }
    db.close().await;
}

async fn tables(test_db: &TestDb) -> Vec<String> {
    let db = test_db.connect(&[]).await;
    let tables = app::models::schema::existing_tables(db.conn())
        .await
        .unwrap();
    db.close().await;
    tables
}

async fn count(test_db: &TestDb, sql: &str) -> i64 {
    let db = test_db.connect(&[]).await;
    let n = scalar_i64(&db, sql).await;
    db.close().await;
    n
}

const COUNT_ANN: &str = "SELECT COUNT(*) FROM user_account WHERE email = 'ann@backup.test'";

/// What happens to the database after a backup: a new table, and a changed row.
async fn change_after_backup(test_db: &TestDb) {
    execute(
        test_db,
        &[
            "CREATE TABLE made_later (id INTEGER PRIMARY KEY, note TEXT)",
            "INSERT INTO made_later (id, note) VALUES (1, 'after the backup')",
            "UPDATE user_account SET email = 'ann@changed.test' WHERE email = 'ann@backup.test'",
        ],
    )
    .await;
    assert!(tables(test_db).await.contains(&"made_later".to_string()));
    assert_eq!(count(test_db, COUNT_ANN).await, 0);
}

fn formats(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Postgres => &["custom", "plain"],
        Kind::Sqlite => &["custom"],
    }
}

/// Restore puts back exactly what the backup holds: what was made or changed later is gone.
async fn restore_replaces_everything(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    for format in formats(kind) {
        let file = dir.path().join(format!("before.{format}"));
        let file_arg = file.to_str().unwrap();
        succeeded(&app_in(
            dir.path(),
            &["database", "backup", "--format", format, "-o", file_arg],
            &test_db.url,
        ));
        change_after_backup(&test_db).await;

        succeeded(&app_in(
            dir.path(),
            &["database", "restore", file_arg],
            &test_db.url,
        ));
        let tables = tables(&test_db).await;
        assert!(
            !tables.contains(&"made_later".to_string()),
            "{format}: {tables:?}"
        );
        assert!(tables.contains(&"todo".to_string()), "{format}: {tables:?}");
        assert_eq!(count(&test_db, COUNT_ANN).await, 1, "{format}");
        assert_eq!(count_users(&test_db).await, 2, "{format}");
        succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
    }
}

/// A backup cut short (or, on PostgreSQL, a script that fails half way) is refused with one
/// line, and the database keeps everything, including what the backup does not know.
async fn broken_backup_changes_nothing(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    create_users(dir.path(), &test_db.url);
    let mut broken = Vec::new();
    for format in formats(kind) {
        let file = dir.path().join(format!("whole.{format}"));
        succeeded(&app_in(
            dir.path(),
            &[
                "database",
                "backup",
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
            ],
            &test_db.url,
        ));
        let bytes = std::fs::read(&file).unwrap();
        let cut = dir.path().join(format!("cut.{format}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        broken.push(cut);
        if *format == "plain" {
            // Complete, but a statement in the middle fails after the schema was emptied.
            let text = String::from_utf8(bytes).unwrap();
            let at = text.find("CREATE TABLE").expect("a CREATE TABLE");
            let failing = format!("{}SELECT no_such_function();\n{}", &text[..at], &text[at..]);
            let path = dir.path().join("failing.plain");
            std::fs::write(&path, failing).unwrap();
            broken.push(path);
        }
    }
    change_after_backup(&test_db).await;

    for file in &broken {
        let out = app_in(
            dir.path(),
            &["database", "restore", file.to_str().unwrap()],
            &test_db.url,
        );
        let line = only_line_failure(&out, 1);
        assert!(
            line.contains(file.to_str().unwrap()) || line.contains("failed"),
            "{line}"
        );
        let tables = tables(&test_db).await;
        assert!(
            tables.contains(&"made_later".to_string()),
            "{}: {tables:?}",
            file.display()
        );
        assert_eq!(count(&test_db, "SELECT COUNT(*) FROM made_later").await, 1);
        assert_eq!(count(&test_db, COUNT_ANN).await, 0);
        assert_eq!(count_users(&test_db).await, 1);
    }
    // Apart from the table made later, the database is as the migrations say.
    execute(&test_db, &["DROP TABLE made_later"]).await;
    succeeded(&app_in(dir.path(), &["database", "check"], &test_db.url));
}

on_both_databases!(
    upgrade_takes_a_backup_first,
    restore_replaces_everything,
    broken_backup_changes_nothing,
    backup_and_restore_bring_rows_back,
    default_name_in_working_directory,
    schema_format_has_create_table,
    failing_backup_leaves_no_file,
    restoring_a_non_backup_changes_nothing,
);

#[test]
fn backup_restore_into_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.sqlite3");
    std::fs::write(&file, b"SQLite format 3\0").unwrap();
    let out = app_in(
        dir.path(),
        &["database", "restore", file.to_str().unwrap()],
        "sqlite::memory:",
    );
    let line = only_line_failure(&out, 1);
    assert!(line.contains("in-memory"), "{line}");
}

#[tokio::test]
async fn backup_without_pg_dump_says_what_to_install() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    // PATH is an empty folder: no pg_dump to find.
    let out = run_app(
        dir.path(),
        &["database", "backup"],
        &[
            ("PATH", dir.path().to_str().unwrap()),
            ("APP_ENV", "testing"),
            ("DATABASE_URL", &test_db.url),
        ],
    );
    let line = only_line_failure(&out, 1);
    assert!(
        line.contains("pg_dump") && line.contains("postgresql-client"),
        "{line}"
    );
    assert!(entries(dir.path()).is_empty());
}

/// Records the progress of a backup and, at its first step, holds the copy until the writer
/// has committed more, so the test knows writes landed while the backup ran.
struct HoldFirstStep {
    commits: Arc<AtomicU64>,
    held: AtomicBool,
    /// Commits made when the copy was first held.
    commits_at_hold: AtomicU64,
    pages: Mutex<Vec<(u64, u64)>>,
}

impl Progress for HoldFirstStep {
    fn on(&self, event: Event<'_>) {
        let Event::Pages { copied, total } = event else {
            return;
        };
        self.pages.lock().unwrap().push((copied, total));
        if copied < total && !self.held.swap(true, Ordering::SeqCst) {
            let at_hold = self.commits.load(Ordering::SeqCst);
            self.commits_at_hold.store(at_hold, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.commits.load(Ordering::SeqCst) < at_hold + 20 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A SQLite backup taken while another connection keeps writing is the database as it was at
/// one commit: it passes the integrity check, its row count matches its own commit counter, and
/// it is a plain rollback-journal file that restore takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_is_consistent_while_writes_go_on() {
    let test_db = TestDb::new(Kind::Sqlite).await;
    let db_path = test_db.url.strip_prefix("sqlite://").unwrap().to_string();
    let writer_options = SqliteConnectOptions::new()
        .filename(&db_path)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    let mut writer = writer_options.connect().await.unwrap();
    // About 12 MiB, so the copy takes a dozen steps of 256 pages.
    sqlx::raw_sql(
        "CREATE TABLE churn (id INTEGER PRIMARY KEY, payload BLOB NOT NULL); \
         CREATE TABLE churn_state (commits INTEGER NOT NULL); \
         INSERT INTO churn_state VALUES (0); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO churn (payload) SELECT randomblob(4000) FROM n;",
    )
    .execute(&mut writer)
    .await
    .unwrap();

    let commits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn({
        let (commits, stop) = (commits.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                sqlx::raw_sql(
                    "BEGIN IMMEDIATE; \
                     INSERT INTO churn (payload) VALUES (randomblob(4000)); \
                     INSERT INTO churn (payload) VALUES (randomblob(4000)); \
                     UPDATE churn_state SET commits = commits + 1; \
                     COMMIT;",
                )
                .execute(&mut writer)
                .await
                .unwrap();
                commits.fetch_add(1, Ordering::SeqCst);
            }
            writer.close().await.unwrap();
        }
    });
    while commits.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.sqlite3");
    let progress = Arc::new(HoldFirstStep {
        commits: commits.clone(),
        held: AtomicBool::new(false),
        commits_at_hold: AtomicU64::new(0),
        pages: Mutex::new(Vec::new()),
    });
    let settings = test_db.settings(&[]);
    let report = backup::backup_with_progress(
        &settings.database,
        BackupFormat::Custom,
        Some(out.clone()),
        progress.clone(),
    )
    .await
    .expect("backup");
    stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();
    assert_eq!(report.path, out);

    // The copy was held mid-way while the writer committed at least 20 more times.
    let at_hold = progress.commits_at_hold.load(Ordering::SeqCst);
    let total_commits = commits.load(Ordering::SeqCst);
    assert!(
        total_commits >= at_hold + 20,
        "{at_hold} -> {total_commits}"
    );
    let pages = progress.pages.lock().unwrap().clone();
    assert!(pages.len() > 5, "several steps: {pages:?}");
    assert!(pages.windows(2).all(|w| w[0].0 <= w[1].0), "{pages:?}");
    let (last_copied, last_total) = *pages.last().unwrap();
    assert_eq!(last_copied, last_total);

    // Nothing but the backup in its folder: no temp, journal or WAL files.
    assert_eq!(entries(dir.path()), ["live.sqlite3"]);
    let header = std::fs::read(&out).unwrap();
    assert_eq!((header[18], header[19]), (1, 1), "a rollback-journal file");

    let mut copy = SqliteConnectOptions::new()
        .filename(&out)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await
        .unwrap();
    assert_eq!(check, ["ok"]);
    let state: i64 = sqlx::query_scalar("SELECT commits FROM churn_state")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM churn")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    copy.close().await.unwrap();
    assert_eq!(rows, 3000 + 2 * state, "one committed state");
    // The copy is the database as of the backup's start, before the writes it waited for.
    assert!(
        state as u64 <= at_hold && state >= 5,
        "{state} commits in the copy; {at_hold} when held"
    );

    // Restore takes it, with the writer gone.
    let restored = backup::restore(&settings.database, &out)
        .await
        .expect("restore");
    assert_eq!(restored.kind, "SQLite database");
    let db = test_db.connect(&[]).await;
    assert_eq!(
        scalar_i64(&db, "SELECT COUNT(*) FROM churn").await,
        3000 + 2 * state
    );
    db.close().await;
}
