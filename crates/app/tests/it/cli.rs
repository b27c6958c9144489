//! The `app` binary as a user runs it: help, one-line errors with exit codes, ping, fixtures,
//! echo logs and graceful shutdown.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Kind, TestDb, fixture_dir, one_line_failure, run_app, succeeded};

/// Default URL of the project-local PostgreSQL (`make start-infra`), which checks passwords.
const AUTH_DATABASE_URL: &str = "postgres://app:app@127.0.0.1:15432/app";

/// `run_app` in a new temp folder with only `vars` set: APP_ENV is left at its default.
fn app(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    run_app(dir.path(), args, vars)
}

#[test]
fn help_is_complete() {
    let text = succeeded(&app(&["--help"], &[]));
    for word in ["run", "database", "DATABASE_URL", "APP_ENV"] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
    for args in [
        &["run", "--help"][..],
        &["database", "--help"],
        &["database", "ping", "--help"],
        &["database", "load-fixtures", "--help"],
    ] {
        let text = succeeded(&app(args, &[]));
        assert!(text.contains("Usage: app"), "{args:?}");
    }
    let text = String::from_utf8_lossy(&app(&["run", "--help"], &[]).stdout).into_owned();
    assert!(text.contains("--host") && text.contains("--port"));
}

#[test]
fn usage_errors_exit_2() {
    let out = app(&["database", "frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = app(&["run", "--port", "http"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_bad_setting_stops_with_one_line_and_exit_2() {
    for (var, value) in [
        ("DATABASE_POOL_SIZE", "abc"),
        ("DATABASE_POOL_SIZE", "-1"),
        ("DATABASE_URL", "mysql://root@localhost/app"),
        ("DATABASE_POOL_TIMEOUT", "forever"),
    ] {
        let out = app(&["database", "ping"], &[(var, value)]);
        let line = one_line_failure(&out, 2);
        assert!(line.contains(var) && line.contains(value), "{line}");
    }
}

#[test]
fn a_bad_setting_in_an_env_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env.development"), "DATABASE_ECHO=loud\n").unwrap();
    let out = run_app(dir.path(), &["database", "ping"], &[]);
    let line = one_line_failure(&out, 2);
    assert!(line.contains("DATABASE_ECHO=\"loud\""), "{line}");
}

#[test]
fn ping_sqlite_prints_backend_version_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_app(dir.path(), &["database", "ping"], &[]);
    let text = succeeded(&out);
    assert!(
        text.contains("sqlite") && text.contains("round trip") && text.contains("ms"),
        "{text}"
    );
    assert!(
        dir.path().join("db.sqlite3").exists(),
        "the default URL is a file in the working directory"
    );

    let out = run_app(dir.path(), &["database", "ping", "--format", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["backend"], "sqlite");
    assert!(json["serverVersion"].as_str().unwrap().starts_with('3'));
    assert!(json["roundTripMs"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn ping_postgres_in_both_url_styles() {
    let test_db = TestDb::empty(Kind::Postgres).await;
    let asyncpg = test_db
        .url
        .replacen("postgres://", "postgresql+asyncpg://", 1);
    for url in [test_db.url.as_str(), asyncpg.as_str()] {
        let out = app(
            &["database", "ping", "--format", "json"],
            &[("DATABASE_URL", url)],
        );
        succeeded(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["backend"], "postgresql");
        assert!(!json["serverVersion"].as_str().unwrap().is_empty());
    }
}

#[test]
fn ping_an_unreachable_server_fails_in_one_line() {
    let out = app(
        &["database", "ping"],
        &[
            (
                "DATABASE_URL",
                "postgresql+asyncpg://app:secret@127.0.0.1:1/app",
            ),
            ("DATABASE_POOL_TIMEOUT", "3"),
        ],
    );
    let line = one_line_failure(&out, 1);
    assert!(
        line.contains("cannot connect to postgresql+asyncpg://app:***@127.0.0.1:1/app"),
        "{line}"
    );
    assert!(!line.contains("secret"), "{line}");
}

#[tokio::test]
async fn ping_with_a_wrong_password_fails_in_one_line() {
    let auth_url =
        std::env::var("TEST_AUTH_DATABASE_URL").unwrap_or_else(|_| AUTH_DATABASE_URL.into());
    let right = app(&["database", "ping"], &[("DATABASE_URL", &auth_url)]);
    assert!(
        right.status.success(),
        "this test needs a PostgreSQL that checks passwords at {auth_url}: run `make start-infra` \
         (scripts/test.sh does) or set TEST_AUTH_DATABASE_URL; {}",
        String::from_utf8_lossy(&right.stderr)
    );
    let mut wrong = url::Url::parse(&auth_url).unwrap();
    wrong.set_password(Some("wrong-password")).unwrap();
    let out = app(&["database", "ping"], &[("DATABASE_URL", wrong.as_str())]);
    let line = one_line_failure(&out, 1);
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("wrong-password"), "{line}");
}

#[test]
fn ping_a_missing_sqlite_directory_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite+aiosqlite:///{}/nope/app.db", dir.path().display());
    let out = app(&["database", "ping"], &[("DATABASE_URL", &url)]);
    let line = one_line_failure(&out, 1);
    assert!(
        line.contains("directory") && line.contains("does not exist"),
        "{line}"
    );
}

#[test]
fn ping_a_file_that_is_not_a_database_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(
        &file,
        "these are not the tables you are looking for\n".repeat(100),
    )
    .unwrap();
    let url = format!("sqlite://{}", file.display());
    let out = app(&["database", "ping"], &[("DATABASE_URL", &url)]);
    let line = one_line_failure(&out, 1);
    assert!(line.contains("is not a SQLite database"), "{line}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("these are not"),
        "the file is left as it was"
    );
}

#[tokio::test]
async fn load_fixtures_twice_changes_nothing() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let test_db = TestDb::new(kind).await;
        let out = app(
            &["database", "load-fixtures", "--format", "json"],
            &[("DATABASE_URL", &test_db.url)],
        );
        succeeded(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json[0]["unchanged"], 2, "{kind:?}");
        assert_eq!(json[0]["inserted"], 0, "{kind:?}");
    }
}

/// The shipped fixtures are compiled in: from a folder with no checkout around it and no
/// DATABASE_FIXTURE_PATH, `load-fixtures` loads the same roles as the checkout's file holds.
#[test]
fn fixtures_are_built_in_so_app_runs_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(&run_app(dir.path(), &["database", "upgrade"], &[]));
    let out = run_app(
        dir.path(),
        &["database", "load-fixtures", "--format", "json"],
        &[],
    );
    let stdout = succeeded(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let shipped: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("role.json")).unwrap())
            .unwrap();
    assert_eq!(json[0]["inserted"], shipped.len(), "{stdout}");
    assert_eq!(json[0]["file"], "built-in role.json", "{stdout}");
}

#[test]
fn a_malformed_fixture_is_one_line_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("role.json"),
        "[\n  {\"slug\": \"a\",\n  \"name\": }\n]",
    )
    .unwrap();
    let fixtures = dir.path().display().to_string();
    let out = run_app(
        dir.path(),
        &["database", "load-fixtures"],
        &[("DATABASE_FIXTURE_PATH", &fixtures)],
    );
    let line = one_line_failure(&out, 1);
    assert!(line.contains("role.json:3:"), "{line}");
}

#[test]
fn echo_logs_statements_and_pool_events() {
    let out = app(
        &["database", "ping"],
        &[
            ("DATABASE_ECHO", "true"),
            ("DATABASE_ECHO_POOL", "true"),
            ("DATABASE_POOL_SIZE", "1"),
        ],
    );
    succeeded(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app::db::sql") && err.contains("SELECT sqlite_version()"),
        "{err}"
    );
    assert!(err.contains("elapsed_ms"), "{err}");
    assert!(err.contains("pool open"), "{err}");
    assert!(err.contains("pool checkin"), "{err}");

    let quiet = app(&["database", "ping"], &[]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("app::db::sql"),
        "echo is off by default"
    );
}

#[test]
fn run_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_app"))
        .args(["run", "--port", &port.to_string()])
        .current_dir(dir.path())
        .env_clear()
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let answer = std::process::Command::new("curl")
            .args(["-s", "-f", &url])
            .output();
        if let Ok(out) = answer
            && out.status.success()
        {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the server did not answer /health"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["schema"]["state"], "ready",
        "an empty database got the schema"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("SIGTERM received") && err.contains("stopped"),
        "{err}"
    );
}

#[test]
fn completions_for_each_shell_need_no_settings() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef app"),
        ("fish", "complete -c app"),
    ] {
        // A bad setting in the environment does not stop a completion script.
        let out = app(&["completions", shell], &[("DATABASE_POOL_SIZE", "many")]);
        let script = succeeded(&out);
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("load-fixtures"),
            "{shell} completes subcommands"
        );
    }
    let out = app(&["completions", "tcsh"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// Logs to a pipe carry no color codes (NO_COLOR unset here); LOG_FORMAT=json
/// writes one JSON object per line with the event's fields at the top level.
#[test]
fn logs_are_plain_in_a_pipe_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut command =
        crate::helpers::app_command(dir.path(), &["database", "ping"], &[("LOG_LEVEL", "debug")]);
    command.env_remove("NO_COLOR");
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("database connected"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape codes in a pipe: {stderr:?}"
    );

    let out = app(
        &["database", "ping"],
        &[("LOG_LEVEL", "debug"), ("LOG_FORMAT", "json")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let connected = events
        .iter()
        .find(|event| event["message"] == "database connected")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(connected["level"], "DEBUG");
    assert!(connected["timestamp"].is_string(), "{connected}");
    assert!(connected["target"].is_string(), "{connected}");

    let bad = app(&["database", "ping"], &[("LOG_FORMAT", "xml")]);
    let line = crate::helpers::only_line_failure(&bad, 2);
    assert!(line.contains("LOG_FORMAT"), "{line}");
}
