//! `app user create | promote | demote` as a person or a script runs them.

use app::domain::accounts;
use app::fixtures::SUPERUSER_ROLE;

use crate::api::PASSWORD;
use crate::helpers::{Kind, TestDb, only_line_failure, run_app_on, succeeded};

async fn roles_of(db: &app::db::DbConn, email: &str) -> (bool, Vec<String>) {
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
    let out = run_app_on(
        &test_db.url,
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
    );
    let text = succeeded(&out);
    assert!(text.contains("gus@example.com"), "{text}");

    let out = run_app_on(
        &test_db.url,
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

    let line = only_line_failure(
        &run_app_on(
            &test_db.url,
            &[
                "user",
                "create",
                "--email",
                "GUS@example.com",
                "--password",
                PASSWORD,
            ],
        ),
        1,
    );
    assert!(
        line.contains("gus@example.com") && line.contains("exists"),
        "{line}"
    );

    let line = only_line_failure(
        &run_app_on(
            &test_db.url,
            &[
                "user",
                "create",
                "--email",
                "new@example.com",
                "--password",
                "short",
            ],
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
    let line = only_line_failure(
        &run_app_on(&url, &["user", "create", "--email", "x@example.com"]),
        2,
    );
    assert!(line.contains("--password"), "{line}");
    let line = only_line_failure(
        &run_app_on(&url, &["user", "create", "--password", PASSWORD]),
        2,
    );
    assert!(line.contains("--email"), "{line}");
    assert!(
        !dir.path().join("unused.sqlite3").exists(),
        "nothing was opened before asking"
    );
}

async fn promote_and_demote(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    succeeded(&run_app_on(
        &test_db.url,
        &[
            "user",
            "create",
            "--email",
            "hal@example.com",
            "--password",
            PASSWORD,
        ],
    ));
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;

    let out = run_app_on(
        &test_db.url,
        &["user", "promote", "--email", "HAL@example.com"],
    );
    let text = succeeded(&out);
    assert!(text.contains("superuser"), "{text}");
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await,
        (
            true,
            vec!["application-access".to_string(), SUPERUSER_ROLE.to_string()]
        )
    );
    succeeded(&run_app_on(
        &test_db.url,
        &["user", "promote", "--email", "hal@example.com"],
    ));
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await.1.len(),
        2,
        "twice is harmless"
    );

    // Another superuser, so that Hal is not the last one.
    succeeded(&run_app_on(
        &test_db.url,
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--password",
            PASSWORD,
            "--superuser",
        ],
    ));
    succeeded(&run_app_on(
        &test_db.url,
        &["user", "demote", "--email", "hal@example.com"],
    ));
    assert_eq!(
        roles_of(db.conn(), "hal@example.com").await,
        (false, vec!["application-access".to_string()])
    );
    db.close().await;

    for command in ["promote", "demote"] {
        let line = only_line_failure(
            &run_app_on(&test_db.url, &["user", command, "--email", "x@y"]),
            1,
        );
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

async fn demote_keeps_the_last_active_superuser(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    for (email, superuser) in [("root@example.com", true), ("ida@example.com", false)] {
        let mut args = vec!["user", "create", "--email", email, "--password", PASSWORD];
        if superuser {
            args.push("--superuser");
        }
        succeeded(&run_app_on(&test_db.url, &args));
    }

    let line = only_line_failure(
        &run_app_on(
            &test_db.url,
            &["user", "demote", "--email", "root@example.com"],
        ),
        1,
    );
    assert!(
        line.contains("root@example.com is the last active superuser"),
        "{line}"
    );
    let db = test_db.connect(&[("DATABASE_POOL_SIZE", "1")]).await;
    assert_eq!(
        roles_of(db.conn(), "root@example.com").await,
        (
            true,
            vec!["application-access".to_string(), SUPERUSER_ROLE.to_string()]
        ),
        "nothing changed"
    );

    // With a second one, either may go (but not both).
    succeeded(&run_app_on(
        &test_db.url,
        &["user", "promote", "--email", "ida@example.com"],
    ));
    succeeded(&run_app_on(
        &test_db.url,
        &["user", "demote", "--email", "root@example.com"],
    ));
    assert!(!roles_of(db.conn(), "root@example.com").await.0);
    let line = only_line_failure(
        &run_app_on(
            &test_db.url,
            &["user", "demote", "--email", "ida@example.com"],
        ),
        1,
    );
    assert!(line.contains("last active superuser"), "{line}");
    db.close().await;
}

#[tokio::test]
async fn demote_keeps_the_last_active_superuser_postgres() {
    demote_keeps_the_last_active_superuser(Kind::Postgres).await;
}

#[tokio::test]
async fn demote_keeps_the_last_active_superuser_sqlite() {
    demote_keeps_the_last_active_superuser(Kind::Sqlite).await;
}

#[test]
fn user_help_is_complete() {
    let url = "sqlite::memory:";
    let out = run_app_on(url, &["user", "--help"]);
    let text = succeeded(&out);
    for word in ["create", "promote", "demote"] {
        assert!(text.contains(word), "{word}: {text}");
    }
    let out = run_app_on(url, &["user", "create", "--help"]);
    let text = succeeded(&out);
    for flag in ["--email", "--name", "--password", "--superuser", "terminal"] {
        assert!(text.contains(flag), "{flag}: {text}");
    }
    for command in ["promote", "demote"] {
        let out = run_app_on(url, &["user", command, "--help"]);
        assert!(succeeded(&out).contains("--email"));
    }
    let out = run_app_on(url, &["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("user"));
}
