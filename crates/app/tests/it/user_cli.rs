//! `app user create | promote | demote` as a person or a script runs them.

use std::process::{Command, Output, Stdio};

use app::domain::accounts;
use app::fixtures::SUPERUSER_ROLE;
use sea_orm::DatabaseConnection;

use crate::api::PASSWORD;
use crate::helpers::{Kind, TestDb, fixture_dir};

/// Runs `app` in a temp folder (no stray `.env`), with no terminal on stdin.
fn app(args: &[&str], database_url: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_app"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("APP_ENV", "testing")
        .env("DATABASE_URL", database_url)
        .env("DATABASE_FIXTURE_PATH", fixture_dir())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("app runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failure with `code` and exactly one line on stderr, and returns the line.
fn one_line_failure(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn roles_of(db: &DatabaseConnection, email: &str) -> (bool, Vec<String>) {
    let user = accounts::find_by_email(db, email)
        .await
        .unwrap()
        .expect("the user exists");
    let roles = accounts::roles_of(db, user.id).await.unwrap();
    (
        user.is_superuser,
        roles.into_iter().map(|role| role.slug).collect(),
    )
}

async fn create_with_flags(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let out = app(
        &[
            "user",
            "create",
            "--email",
            "Gus@Example.com",
            "--name",
            "Gus",
            "--password",
            PASSWORD,
        ],
        &test_db.url,
    );
    succeeded(&out);
    assert!(stdout(&out).contains("gus@example.com"), "{}", stdout(&out));

    let out = app(
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--password",
            PASSWORD,
            "--superuser",
            "--format",
            "json",
        ],
        &test_db.url,
    );
    succeeded(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["isSuperuser"], true);
    assert_eq!(
        shown["roles"],
        serde_json::json!(["application-access", "superuser"])
    );

    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    assert_eq!(
        roles_of(db.conn(), "gus@example.com").await,
        (false, vec!["application-access".to_string()])
    );
    let gus = accounts::authenticate(db.conn(), "gus@example.com", PASSWORD)
        .await
        .expect("the password works");
    assert_eq!(gus.name.as_deref(), Some("Gus"));
    assert!(gus.is_active);
    assert_eq!(
        roles_of(db.conn(), "root@example.com").await,
        (
            true,
            vec!["application-access".to_string(), SUPERUSER_ROLE.to_string()]
        )
    );
    db.close().await;

    let line = one_line_failure(
        &app(
            &[
                "user",
                "create",
                "--email",
                "GUS@example.com",
                "--password",
                PASSWORD,
            ],
            &test_db.url,
        ),
        1,
    );
    assert!(
        line.contains("gus@example.com") && line.contains("exists"),
        "{line}"
    );

    let line = one_line_failure(
        &app(
            &[
                "user",
                "create",
                "--email",
                "new@example.com",
                "--password",
                "short",
            ],
            &test_db.url,
        ),
        2,
    );
    assert!(
        line.contains("password") && line.contains("at least 8"),
        "{line}"
    );
}

#[tokio::test]
async fn create_with_flags_postgres() {
    create_with_flags(Kind::Postgres).await;
}

#[tokio::test]
async fn create_with_flags_sqlite() {
    create_with_flags(Kind::Sqlite).await;
}

#[test]
fn create_without_a_terminal_needs_every_value_as_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("unused.sqlite3").display());
    let line = one_line_failure(
        &app(&["user", "create", "--email", "x@example.com"], &url),
        2,
    );
    assert!(line.contains("--password"), "{line}");
    let line = one_line_failure(&app(&["user", "create", "--password", PASSWORD], &url), 2);
    assert!(line.contains("--email"), "{line}");
    assert!(
        !dir.path().join("unused.sqlite3").exists(),
        "nothing was opened before asking"
    );
}

async fn promote_and_demote(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    succeeded(&app(
        &[
            "user",
            "create",
            "--email",
            "hal@example.com",
            "--password",
            PASSWORD,
        ],
        &test_db.url,
    ));
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;

    let out = app(
        &["user", "promote", "--email", "HAL@example.com"],
        &test_db.url,
    );
    succeeded(&out);
    assert!(stdout(&out).contains("superuser"), "{}", stdout(&out));
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await,
        (
            true,
            vec!["application-access".to_string(), SUPERUSER_ROLE.to_string()]
        )
    );
    succeeded(&app(
        &["user", "promote", "--email", "hal@example.com"],
        &test_db.url,
    ));
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await.1.len(),
        2,
        "twice is harmless"
    );

    succeeded(&app(
        &["user", "demote", "--email", "hal@example.com"],
        &test_db.url,
    ));
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await,
        (false, vec!["application-access".to_string()])
    );
    db.close().await;

    for command in ["promote", "demote"] {
        let line = one_line_failure(&app(&["user", command, "--email", "x@y"], &test_db.url), 1);
        assert_eq!(line, "error: no user with email x@y");
    }
}

#[tokio::test]
async fn promote_and_demote_postgres() {
    promote_and_demote(Kind::Postgres).await;
}

#[tokio::test]
async fn promote_and_demote_sqlite() {
    promote_and_demote(Kind::Sqlite).await;
}

#[test]
fn user_help_is_complete() {
    let url = "sqlite::memory:";
    let out = app(&["user", "--help"], url);
    succeeded(&out);
    for word in ["create", "promote", "demote"] {
        assert!(stdout(&out).contains(word), "{word}: {}", stdout(&out));
    }
    let out = app(&["user", "create", "--help"], url);
    succeeded(&out);
    for flag in ["--email", "--name", "--password", "--superuser", "terminal"] {
        assert!(stdout(&out).contains(flag), "{flag}: {}", stdout(&out));
    }
    for command in ["promote", "demote"] {
        let out = app(&["user", command, "--help"], url);
        succeeded(&out);
        assert!(stdout(&out).contains("--email"));
    }
    let out = app(&["--help"], url);
    assert!(stdout(&out).contains("user"));
}
