//! Settings: defaults, every URL form, every bad value, and `.env` layering.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use app::config::{Backend, ConfigError, DatabaseUrl, Environment, SecretKeySource, Settings};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_vars(&vars(pairs))
}

fn error_for(var: &str, value: &str) -> ConfigError {
    load(&[(var, value)]).expect_err(&format!("{var}={value} must be refused"))
}

#[test]
fn defaults_match_the_reference() {
    let s = load(&[]).unwrap();
    assert_eq!(s.environment, Environment::Development);
    let db = &s.database;
    assert!(
        matches!(&db.url, DatabaseUrl::Sqlite { path: Some(p) } if p == &PathBuf::from("db.sqlite3"))
    );
    assert!(!db.echo && !db.echo_pool && !db.pool_disabled && !db.pre_ping);
    assert_eq!(db.pool_size, 5);
    assert_eq!(db.max_overflow, 10);
    assert_eq!(db.max_connections(), 15);
    assert_eq!(db.pool_timeout, Duration::from_secs(30));
    assert_eq!(db.pool_recycle, Some(Duration::from_secs(300)));
    assert_eq!(
        db.migration_path,
        PathBuf::from("crates/app/src/migrations")
    );
    assert_eq!(db.version_table, "ddl_version");
    assert_eq!(db.fixture_path, None, "the built-in fixtures");
    assert_eq!(s.log_filter, "info");
    assert_eq!(s.http.addr(), "127.0.0.1:8000");
    let throttle = &s.login_throttle;
    assert_eq!(throttle.max_failures_per_account, 5);
    assert_eq!(throttle.max_failures_per_address, 20);
    assert_eq!(throttle.window, Duration::from_secs(900));
}

#[test]
fn every_value_is_read() {
    let s = load(&[
        ("APP_ENV", "production"),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ("DATABASE_URL", "postgresql+asyncpg://app:pw@db:5433/todo"),
        ("DATABASE_ECHO", "true"),
        ("DATABASE_ECHO_POOL", "1"),
        ("DATABASE_POOL_DISABLED", "yes"),
        ("DATABASE_POOL_SIZE", "20"),
        ("DATABASE_MAX_POOL_OVERFLOW", "30"),
        ("DATABASE_POOL_TIMEOUT", "2.5"),
        ("DATABASE_POOL_RECYCLE", "-1"),
        ("DATABASE_PRE_POOL_PING", "on"),
        ("DATABASE_MIGRATION_PATH", "db/migrations"),
        ("DATABASE_MIGRATION_DDL_VERSION_TABLE", "schema_version"),
        ("DATABASE_FIXTURE_PATH", "db/fixtures"),
        ("LOG_LEVEL", "WARNING"),
        ("LOGIN_MAX_FAILURES", "3"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "50"),
        ("LOGIN_THROTTLE_WINDOW", "2.5"),
    ])
    .unwrap();
    assert_eq!(s.environment, Environment::Production);
    assert_eq!(s.secret_key.expose(), "0123456789abcdef0123456789abcdef");
    let db = &s.database;
    assert_eq!(db.url.backend(), Backend::Postgresql);
    assert!(db.echo && db.echo_pool && db.pool_disabled && db.pre_ping);
    assert_eq!((db.pool_size, db.max_overflow), (20, 30));
    assert_eq!(db.pool_timeout, Duration::from_millis(2500));
    assert_eq!(db.pool_recycle, None);
    assert_eq!(db.migration_path, PathBuf::from("db/migrations"));
    assert_eq!(db.version_table, "schema_version");
    assert_eq!(db.fixture_path, Some(PathBuf::from("db/fixtures")));
    assert_eq!(s.log_filter, "warn");
    assert_eq!(s.login_throttle.max_failures_per_account, 3);
    assert_eq!(s.login_throttle.max_failures_per_address, 50);
    assert_eq!(s.login_throttle.window, Duration::from_millis(2500));
}

#[test]
fn rust_log_wins_over_log_level() {
    let s = load(&[("LOG_LEVEL", "error"), ("RUST_LOG", "app=debug,sqlx=warn")]).unwrap();
    assert_eq!(s.log_filter, "app=debug,sqlx=warn");
}

#[test]
fn every_url_form_is_accepted() {
    let cases: &[(&str, Backend, Option<&str>)] = &[
        (
            "postgresql+asyncpg://u:p@h:5432/db",
            Backend::Postgresql,
            None,
        ),
        ("postgresql+psycopg://u:p@h/db", Backend::Postgresql, None),
        ("postgres://u@h/db", Backend::Postgresql, None),
        (
            "postgresql://u:p@127.0.0.1:15432/app",
            Backend::Postgresql,
            None,
        ),
        (
            "sqlite+aiosqlite:///db.sqlite3",
            Backend::Sqlite,
            Some("db.sqlite3"),
        ),
        (
            "sqlite+aiosqlite:////var/lib/app.db",
            Backend::Sqlite,
            Some("/var/lib/app.db"),
        ),
        (
            "sqlite+aiosqlite:///:memory:",
            Backend::Sqlite,
            Some(":memory:"),
        ),
        ("sqlite://data/app.db", Backend::Sqlite, Some("data/app.db")),
        ("sqlite:///tmp/app.db", Backend::Sqlite, Some("/tmp/app.db")),
        ("sqlite:app.db", Backend::Sqlite, Some("app.db")),
        ("sqlite::memory:", Backend::Sqlite, Some(":memory:")),
    ];
    for (raw, backend, path) in cases {
        let url = DatabaseUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(url.backend(), *backend, "{raw}");
        if let (DatabaseUrl::Sqlite { path: got }, Some(want)) = (&url, path) {
            match got {
                None => assert_eq!(*want, ":memory:", "{raw}"),
                Some(got) => assert_eq!(got, &PathBuf::from(want), "{raw}"),
            }
        }
    }
}

#[test]
fn postgres_url_keeps_user_host_port_and_database() {
    let DatabaseUrl::Postgres {
        options, display, ..
    } = DatabaseUrl::parse("postgresql+asyncpg://app:secret@db.internal:15432/todo").unwrap()
    else {
        panic!("not postgres")
    };
    assert_eq!(options.get_host(), "db.internal");
    assert_eq!(options.get_port(), 15432);
    assert_eq!(options.get_username(), "app");
    assert_eq!(options.get_database(), Some("todo"));
    assert_eq!(
        display,
        "postgresql+asyncpg://app:***@db.internal:15432/todo"
    );
}

/// `pgbouncer=true` turns the pooler rules on and the driver's statement cache off; without
/// it, or with `false`, nothing changes.
#[test]
fn pgbouncer_true_marks_a_transaction_pooler() {
    for (url, pooler) in [
        (
            "postgresql+asyncpg://app:secret@bouncer:6432/todo?pgbouncer=true",
            true,
        ),
        (
            "postgres://bouncer:6432/todo?sslmode=disable&pgbouncer=1",
            true,
        ),
        ("postgres://db/todo?pgbouncer=false", false),
        ("postgres://db/todo", false),
        ("sqlite::memory:", false),
    ] {
        let parsed = DatabaseUrl::parse(url).unwrap();
        assert_eq!(parsed.pgbouncer(), pooler, "{url}");
        if let DatabaseUrl::Postgres { options, .. } = &parsed {
            let driver = sqlx::ConnectOptions::to_url_lossy(&**options);
            let cache = driver
                .query_pairs()
                .find(|(key, _)| key == "statement-cache-capacity")
                .map(|(_, value)| value.into_owned());
            let expected = if pooler { "0" } else { "100" };
            assert_eq!(cache.as_deref(), Some(expected), "{url}: {driver}");
        }
    }
}

#[test]
fn bad_values_name_the_variable_and_the_value() {
    let cases = [
        ("DATABASE_POOL_SIZE", "abc"),
        ("DATABASE_POOL_SIZE", "-1"),
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_POOL_SIZE", "99999999999"),
        ("DATABASE_MAX_POOL_OVERFLOW", "-3"),
        ("DATABASE_MAX_POOL_OVERFLOW", "ten"),
        ("DATABASE_POOL_TIMEOUT", "0"),
        ("DATABASE_POOL_TIMEOUT", "-2"),
        ("DATABASE_POOL_TIMEOUT", "soon"),
        ("DATABASE_POOL_TIMEOUT", "NaN"),
        ("DATABASE_POOL_RECYCLE", "-5"),
        ("DATABASE_POOL_RECYCLE", "0"),
        ("DATABASE_POOL_RECYCLE", "1.5"),
        ("DATABASE_ECHO", "maybe"),
        ("DATABASE_ECHO_POOL", "2"),
        ("DATABASE_POOL_DISABLED", "nope"),
        ("DATABASE_PRE_POOL_PING", "t"),
        ("DATABASE_URL", "mysql://root@localhost/app"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "sqlite+aiosqlite://db.sqlite3"),
        ("DATABASE_URL", "sqlite://"),
        ("DATABASE_URL", "postgresql+asyncpg://u@h:notaport/db"),
        ("DATABASE_URL", "postgresql://u@h:6432/db?pgbouncer=maybe"),
        ("DATABASE_MIGRATION_DDL_VERSION_TABLE", "bad-name"),
        ("DATABASE_MIGRATION_DDL_VERSION_TABLE", "1table"),
        ("APP_ENV", "staging"),
        ("APP_PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("SECRET_KEY", "short"),
        ("LOGIN_MAX_FAILURES", "0"),
        ("LOGIN_MAX_FAILURES", "many"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "-1"),
        ("LOGIN_THROTTLE_WINDOW", "0"),
        ("LOGIN_THROTTLE_WINDOW", "15m"),
    ];
    for (var, value) in cases {
        let err = error_for(var, value);
        assert_eq!(err.var, var, "{var}={value}: {err}");
        let line = err.to_string();
        assert!(line.starts_with(&format!("{var}=")), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
        if var != "SECRET_KEY" {
            assert!(line.contains(value), "names the value: {line}");
        } else {
            assert!(!line.contains(value), "never shows a secret: {line}");
        }
    }
}

#[test]
fn a_bad_postgres_url_hides_its_password() {
    let err = error_for(
        "DATABASE_URL",
        "postgresql+asyncpg://app:hunter2@h:notaport/db",
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("app:***@"), "{err}");
}

#[test]
fn production_requires_a_secret_key() {
    let err = load(&[("APP_ENV", "production")]).unwrap_err();
    assert_eq!(err.var, "SECRET_KEY");
    assert!(load(&[("APP_ENV", "development")]).is_ok());
}

#[test]
fn env_files_layer_under_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_POOL_SIZE=7\nDATABASE_MAX_POOL_OVERFLOW=3\nDATABASE_POOL_TIMEOUT=9\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env.testing"),
        "DATABASE_POOL_SIZE=8\nDATABASE_MAX_POOL_OVERFLOW=4\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env.development"),
        "DATABASE_POOL_SIZE=11\n",
    )
    .unwrap();

    let s = Settings::load_from(
        dir.path(),
        vars(&[("APP_ENV", "testing"), ("DATABASE_MAX_POOL_OVERFLOW", "5")]),
    )
    .unwrap();
    assert_eq!(s.database.pool_size, 8, ".env.testing wins over .env");
    assert_eq!(
        s.database.max_overflow, 5,
        "the process wins over both files"
    );
    assert_eq!(
        s.database.pool_timeout,
        Duration::from_secs(9),
        ".env is the fallback"
    );

    let s = Settings::load_from(dir.path(), vars(&[])).unwrap();
    assert_eq!(s.database.pool_size, 11, "APP_ENV defaults to development");
}

#[test]
fn a_bad_value_in_an_env_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env.development"),
        "DATABASE_POOL_SIZE=lots\n",
    )
    .unwrap();
    let err = Settings::load_from(dir.path(), vars(&[])).unwrap_err();
    assert_eq!(err.var, "DATABASE_POOL_SIZE");
}

#[test]
fn shipped_env_files_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for env in ["development", "testing"] {
        let s = Settings::load_from(&root, vars(&[("APP_ENV", env)]))
            .unwrap_or_else(|e| panic!(".env.{env}: {e}"));
        assert_eq!(s.environment.as_str(), env);
    }
    let example = std::fs::read_to_string(root.join(".env.production.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env.production"),
        example.replace("SECRET_KEY=", "SECRET_KEY=0123456789abcdef0123456789abcdef"),
    )
    .unwrap();
    let s = Settings::load_from(dir.path(), vars(&[("APP_ENV", "production")])).unwrap();
    let db = &s.database;
    assert_eq!((db.pool_size, db.max_overflow), (20, 30));
    assert_eq!(db.pool_timeout, Duration::from_secs(60));
    assert_eq!(db.pool_recycle, Some(Duration::from_secs(3600)));
    assert!(db.pre_ping);
    assert_eq!(
        s.login_throttle,
        app::config::LoginThrottle {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(900),
        },
        "the example spells out the defaults"
    );
}

#[test]
fn shutdown_timeout_defaults_to_ten_seconds() {
    assert_eq!(
        load(&[]).unwrap().http.shutdown_timeout,
        Duration::from_secs(10)
    );
    let s = load(&[("APP_SHUTDOWN_TIMEOUT", "2.5")]).unwrap();
    assert_eq!(s.http.shutdown_timeout, Duration::from_millis(2500));
    for value in ["0", "-1", "soon"] {
        let err = error_for("APP_SHUTDOWN_TIMEOUT", value);
        assert_eq!(err.var, "APP_SHUTDOWN_TIMEOUT", "{err}");
        assert!(err.to_string().contains(value), "{err}");
    }
}

#[test]
fn without_secret_key_the_key_is_random_never_a_constant() {
    let (a, b) = (load(&[]).unwrap(), load(&[]).unwrap());
    assert_ne!(a.secret_key, b.secret_key, "a new key each time");
    assert!(a.secret_key.expose().len() >= 32);
    assert_eq!(
        a.secret_key_source,
        SecretKeySource::LocalFile(PathBuf::from(".app/local_secret_key"))
    );
    let s = load(&[("SECRET_KEY", "0123456789abcdef0123456789abcdef")]).unwrap();
    assert_eq!(s.secret_key_source, SecretKeySource::Setting);
}

#[cfg(unix)]
#[test]
fn the_local_secret_key_is_made_once_and_only_its_owner_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/local_secret_key");
    let path_var = path.display().to_string();
    let settings = || load(&[("LOCAL_SECRET_KEY_PATH", &path_var)]).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let mut first = settings();
    let made = first.load_local_secret_key().unwrap().unwrap();
    assert!(made.created);
    assert_eq!(made.path, path);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let kept = std::fs::read_to_string(&path).unwrap();
    assert_eq!(kept.trim(), first.secret_key.expose());
    assert!(kept.trim().len() >= 32);

    let mut second = settings();
    assert!(!second.load_local_secret_key().unwrap().unwrap().created);
    assert_eq!(second.secret_key, first.secret_key, "the same key");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = settings().load_local_secret_key().unwrap_err();
    assert_eq!(err.var, "LOCAL_SECRET_KEY_PATH");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(
        !err.to_string().contains(first.secret_key.expose()),
        "{err}"
    );

    std::fs::write(&path, "short\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = settings().load_local_secret_key().unwrap_err();
    assert!(err.to_string().contains("delete it"), "{err}");

    let other = dir.path().join("unused");
    let mut with_key = load(&[
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ("LOCAL_SECRET_KEY_PATH", &other.display().to_string()),
    ])
    .unwrap();
    assert_eq!(with_key.load_local_secret_key().unwrap(), None);
    assert!(!other.exists(), "no file when SECRET_KEY is set");
}

/// `app run` twice in one folder with no SECRET_KEY (development, the default): the second run
/// accepts the first run's token, as the key is kept in `.app/local_secret_key` (mode 0600);
/// a run in another folder has another key and refuses it.
#[cfg(unix)]
#[tokio::test]
async fn runs_without_secret_key_share_the_key_kept_in_the_working_directory() {
    use crate::shutdown::Server;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let stop = Duration::from_secs(12);

    let mut first = Server::start(dir.path(), &[], &[]).await;
    let token = first.sign_in("ann@example.com").await;
    assert_eq!(first.me(&token).await, 200);
    first.stop(stop).await;
    let log = first.log();
    assert!(
        log.lines().any(|l| l.contains("INFO")
            && l.contains("made a new signing key")
            && l.contains(".app/local_secret_key")),
        "{log}"
    );
    let key_file = dir.path().join(".app/local_secret_key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();

    let mut second = Server::start(dir.path(), &[], &[]).await;
    assert_eq!(
        second.me(&token).await,
        200,
        "the first run's token still works"
    );
    second.stop(stop).await;
    assert!(
        second.log().contains("signing with the key kept"),
        "{}",
        second.log()
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "kept, not remade"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let same_db = format!(
        "sqlite+aiosqlite:///{}",
        dir.path().join("db.sqlite3").display()
    );
    let mut third = Server::start(elsewhere.path(), &[], &[("DATABASE_URL", &same_db)]).await;
    assert_eq!(third.me(&token).await, 401, "another folder, another key");
    third.stop(stop).await;
    assert_ne!(
        std::fs::read_to_string(elsewhere.path().join(".app/local_secret_key")).unwrap(),
        key
    );
}

/// `app run --host 0.0.0.0` outside production warns in one line; on loopback, or in
/// production, it does not.
#[tokio::test]
async fn listening_beyond_loopback_outside_production_warns() {
    use crate::helpers::{Kind, TestDb};
    use crate::shutdown::Server;
    let db = TestDb::new(Kind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let warning = "reachable from other machines";
    for (env, host, warns) in [
        ("testing", "0.0.0.0", true),
        ("testing", "127.0.0.1", false),
        ("production", "0.0.0.0", false),
    ] {
        let vars = [
            ("APP_ENV", env),
            ("DATABASE_URL", db.url.as_str()),
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
            ("LOG_LEVEL", "info"),
        ];
        let mut app = Server::start(dir.path(), &["--host", host], &vars).await;
        app.stop(Duration::from_secs(12)).await;
        let log = app.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(warning)).collect();
        if warns {
            assert_eq!(lines.len(), 1, "{log}");
            assert!(lines[0].contains("WARN"), "{log}");
            assert!(lines[0].contains("APP_ENV=testing"), "{log}");
            assert!(lines[0].contains("APP_ENV=production"), "{log}");
        } else {
            assert!(lines.is_empty(), "{env} {host}: {log}");
        }
    }
}
