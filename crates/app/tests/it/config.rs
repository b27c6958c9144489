//! Settings: defaults, every URL form, every bad value, and `.env` layering.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use app::config::{Backend, ConfigError, DatabaseUrl, Environment, Settings};

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
    assert_eq!(db.fixture_path, PathBuf::from("crates/app/fixtures"));
    assert_eq!(s.log_filter, "info");
    assert_eq!(s.http.addr(), "127.0.0.1:8000");
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
    assert_eq!(db.fixture_path, PathBuf::from("db/fixtures"));
    assert_eq!(s.log_filter, "warn");
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
        ("DATABASE_MIGRATION_DDL_VERSION_TABLE", "bad-name"),
        ("DATABASE_MIGRATION_DDL_VERSION_TABLE", "1table"),
        ("APP_ENV", "staging"),
        ("APP_PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("SECRET_KEY", "short"),
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
}
