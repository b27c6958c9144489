//! A fresh database per test: PostgreSQL databases copied from a template made once per run,
//! SQLite files in a temp folder; both hold the schema and the fixtures.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use app::config::Settings;
use app::db::Database;
use app::fixtures;
use app::migrate;
use sqlx::{Connection, Executor, PgConnection};
use strata::state::Direction;
use tokio::sync::OnceCell;

pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// The admin URL of the PostgreSQL server the tests use.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// The same server with another database name.
pub fn pg_url_for(database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Installs the app's tracing subscriber, as `main` does, with logging off: its metrics layer
/// turns sqlx's checkout events into `app_db_pool_acquire_wait_seconds`, which tests serving
/// the app in-process would otherwise never see. Once per process; later calls do nothing.
pub fn telemetry() {
    app::telemetry::init("off", app::config::LogFormat::Text);
}

/// Whether this test has the process to itself (nextest runs each test in a process of its
/// own), so process-wide figures such as the checkout-wait histogram hold only its checkouts.
pub fn alone_in_process() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|mode| mode == "process-per-test")
}

/// Settings for tests: the given variables over quiet defaults (the built-in fixtures).
pub fn settings_with(vars: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("APP_ENV".into(), "testing".into());
    map.insert("APP_PORT".into(), "0".into());
    for (key, value) in vars {
        map.insert((*key).to_string(), (*value).to_string());
    }
    Settings::from_vars(&map).expect("test settings are valid")
}

async fn admin_connection() -> PgConnection {
    let url = admin_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(err) => panic!(
            "PostgreSQL does not answer at {url} ({err}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
             or run `make start-infra` and set \
             TEST_DATABASE_URL=postgres://app:app@127.0.0.1:15432/app"
        ),
    }
}

/// A name for the template that changes whenever the migrations or the fixtures change, so a
/// run reuses a template made by an earlier test process of the same build.
fn template_name() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in app::migrations::all() {
        migration.checksum().hash(&mut hasher);
    }
    std::fs::read_to_string(fixture_dir().join("role.json"))
        .expect("role.json is readable")
        .hash(&mut hasher);
    format!("app_test_template_{:016x}", hasher.finish())
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Makes the template database once: schema plus fixtures. Test processes running at the same
/// time serialize on an advisory lock; the template appears under its final name only when
/// complete.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let mut admin = admin_connection().await;
            admin
                .execute("SELECT pg_advisory_lock(727274)")
                .await
                .expect("advisory lock");
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut admin)
                    .await
                    .expect("query pg_database");
            if exists.is_none() {
                let building = format!("{name}_building");
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {building} WITH (FORCE)"
                    )))
                    .await
                    .expect("drop stale template");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
                    .await
                    .expect("create template");
                seed(&pg_url_for(&building)).await;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "ALTER DATABASE {building} RENAME TO {name}"
                    )))
                    .await
                    .expect("rename template");
            }
            admin
                .execute("SELECT pg_advisory_unlock(727274)")
                .await
                .expect("advisory unlock");
            let _ = admin.close().await;
            name
        })
        .await
}

/// Upgrades the database at `url` to head and loads the fixtures.
pub async fn seed(url: &str) {
    let settings = settings_with(&[("DATABASE_URL", url), ("DATABASE_POOL_SIZE", "1")]);
    let db = Database::connect(&settings.database)
        .await
        .expect("connect to seed");
    migrate::run(&db, &settings.database, Direction::Up, "head", &mut |_| {})
        .await
        .expect("upgrade to head");
    fixtures::load_all(db.conn(), settings.database.fixture_path.as_deref())
        .await
        .expect("load fixtures");
    db.close().await;
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    /// The URL to put in DATABASE_URL.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { name: String },
    Sqlite { _dir: tempfile::TempDir },
}

impl TestDb {
    /// A fresh database with the schema and fixtures.
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Postgres => {
                let template = template().await;
                let name = format!("app_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = admin_connection().await;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "CREATE DATABASE {name} TEMPLATE {template}"
                    )))
                    .await
                    .expect("create test database from the template");
                let _ = admin.close().await;
                TestDb {
                    url: pg_url_for(&name),
                    cleanup: Cleanup::Postgres { name },
                }
            }
            Kind::Sqlite => {
                let db = TestDb::empty(kind).await;
                seed(&db.url).await;
                db
            }
        }
    }

    /// A fresh database with no tables.
    pub async fn empty(kind: Kind) -> TestDb {
        match kind {
            Kind::Postgres => {
                let name = format!("app_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = admin_connection().await;
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create empty test database");
                let _ = admin.close().await;
                TestDb {
                    url: pg_url_for(&name),
                    cleanup: Cleanup::Postgres { name },
                }
            }
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.sqlite3").display());
                TestDb {
                    url,
                    cleanup: Cleanup::Sqlite { _dir: dir },
                }
            }
        }
    }

    /// A copy of a database the Python service made (Alembic's version table, its own
    /// tables and names, 2 users with 12 todos each): see `tests/legacy/README.md`.
    pub async fn legacy(kind: Kind) -> TestDb {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/legacy");
        let db = TestDb::empty(kind).await;
        match kind {
            Kind::Postgres => {
                let out = std::process::Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
                    .arg(dir.join("python-service-pg.sql"))
                    .output()
                    .expect("psql runs (install the PostgreSQL client)");
                assert!(
                    out.status.success(),
                    "loading the Python service's dump: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Kind::Sqlite => {
                let path = db.url.trim_start_matches("sqlite://");
                std::fs::copy(dir.join("python-service.sqlite3"), path)
                    .expect("copy the Python service's database");
                let mut permissions = std::fs::metadata(path).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                permissions.set_readonly(false);
                std::fs::set_permissions(path, permissions).unwrap();
            }
        }
        db
    }

    /// Test settings pointing at this database, with extra variables.
    pub fn settings(&self, vars: &[(&str, &str)]) -> Settings {
        let mut all = vec![("DATABASE_URL", self.url.as_str())];
        all.extend_from_slice(vars);
        settings_with(&all)
    }

    /// Connects with the given extra settings.
    pub async fn connect(&self, vars: &[(&str, &str)]) -> Database {
        Database::connect(&self.settings(vars).database)
            .await
            .expect("connect to the test database")
    }

    /// The database's name on the server (PostgreSQL only).
    pub fn pg_name(&self) -> &str {
        match &self.cleanup {
            Cleanup::Postgres { name } => name,
            Cleanup::Sqlite { .. } => panic!("not a PostgreSQL test database"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { name } = &self.cleanup {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // Drop runs inside the test's runtime; a thread of its own may block.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for cleanup");
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                        let _ = admin.execute(sqlx::AssertSqlSafe(sql)).await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs a raw query for one scalar through the app's connection.
pub async fn scalar_i64(db: &Database, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let row = db
        .conn()
        .query_one_raw(db.statement(sql))
        .await
        .expect("query runs")
        .expect("query returns a row");
    row.try_get_by_index::<i64>(0)
        .or_else(|_| row.try_get_by_index::<i32>(0).map(i64::from))
        .expect("an integer")
}

/// A new PostgreSQL connection straight to a test database, outside the app's pool.
pub async fn pg_direct(db: &TestDb) -> PgConnection {
    let options = sqlx::postgres::PgConnectOptions::from_str(&db.url).expect("URL");
    PgConnection::connect_with(&options)
        .await
        .expect("direct connection")
}

/// Runs each named `async fn name(kind: Kind)` as two tests, `name::postgres` and
/// `name::sqlite`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::helpers::Kind;

            #[tokio::test]
            async fn postgres() {
                super::$name(Kind::Postgres).await;
            }

            #[tokio::test]
            async fn sqlite() {
                super::$name(Kind::Sqlite).await;
            }
        }
    )*};
}

pub(crate) use on_both_databases;

/// Runs the `app` binary as a user would: in `dir` (so no stray `.env` is read), with no
/// terminal on stdin, and with only PATH (to find pg_dump and friends), NO_COLOR and `vars`
/// set: the fixtures are the built-in ones, as for a binary run outside the checkout.
pub fn run_app(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    app_command(dir, args, vars).output().expect("app runs")
}

/// The `app` command `run_app` runs, for a test that must start it and watch it run.
pub fn app_command(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_app"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (key, value) in vars {
        command.env(key, value);
    }
    command
}

/// `run_app` in a new temp folder with APP_ENV=testing and DATABASE_URL=`url`.
pub fn run_app_on(url: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    run_app(
        dir.path(),
        args,
        &[("APP_ENV", "testing"), ("DATABASE_URL", url)],
    )
}

/// Asserts the command succeeded and returns its stdout.
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts a failure with exit `code`, exactly one `error:` line on stderr and no panic, and
/// returns the line.
pub fn one_line_failure(out: &std::process::Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// `one_line_failure`, and the error line is all there is on stderr: no warning, log or
/// progress line beside it.
pub fn only_line_failure(out: &std::process::Output, code: i32) -> String {
    let line = one_line_failure(out, code);
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 1, "one line: {err}");
    assert!(line.starts_with("error: "), "{err}");
    line
}

/// A port that was free a moment ago on `host` (bound, then released), for a server a test
/// starts: `--port 0` would not tell the test which port the process got.
pub fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the tests run as root: servers that refuse root (PostgreSQL, PgBouncer) are then
/// started as `postgres` through runuser.
pub fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
