//! A real PgBouncer in `pool_mode = transaction` in front of the test server, started by the
//! test that needs it and stopped with it, and `upgrade` through it.
//!
//! PgBouncer 1.18 (Debian 12's package) keeps no prepared statements in transaction mode and
//! hands each transaction whatever server connection is free: what the migration runner must
//! survive. The pool is two server connections, so four clients really share them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::startup::Application;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::api::{PASSWORD, TestApp};
use crate::doctor::{doctor, finding};
use crate::helpers::{Kind, TestDb, admin_url, app_command, free_port, running_as_root, succeeded};

/// Set to 1 to let the PgBouncer tests pass without PgBouncer (CI installs it).
const SKIP_VAR: &str = "APP_TEST_SKIP_PGBOUNCER";

/// A running PgBouncer; stopped when dropped.
pub struct PgBouncer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The executable: `PGBOUNCER`, else Debian's path, else the one on PATH.
fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGBOUNCER") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbouncer"))
            .find(|candidate| candidate.exists())
    })
}

impl PgBouncer {
    /// Starts PgBouncer in front of the test server; `None` only when it is missing and
    /// `APP_TEST_SKIP_PGBOUNCER=1` allows skipping. Without it a missing PgBouncer fails.
    pub fn start() -> Option<PgBouncer> {
        let Some(exe) = executable() else {
            if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
                eprintln!("pgbouncer is not installed; skipped ({SKIP_VAR}=1)");
                return None;
            }
            panic!(
                "pgbouncer is not installed: install it (Debian/Ubuntu: apt-get install pgbouncer; \
                 CI does) or point PGBOUNCER at it; {SKIP_VAR}=1 skips these tests"
            );
        };
        let server = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        let host = server.host_str().unwrap_or("127.0.0.1").to_string();
        let server_port = server.port().unwrap_or(5432);
        let user = match server.username() {
            "" => "postgres".to_string(),
            user => user.to_string(),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port("127.0.0.1");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = transaction\n\
             default_pool_size = 2\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 50\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            auth = path("users.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), config).expect("write config");
        std::fs::write(dir.path().join("users.txt"), format!("\"{user}\" \"\"\n"))
            .expect("write auth file");
        // PgBouncer refuses to run as root: as root it runs as `postgres`, which must be able
        // to read the folder and write its log and pid file there.
        let as_root = running_as_root();
        if as_root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the folder to postgres");
        }
        let mut command = if as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&exe);
            command
        } else {
            Command::new(&exe)
        };
        let child = command
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", exe.display()));
        let bouncer = PgBouncer { port, child, dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {port}: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(bouncer)
    }

    /// A URL for `database` through this PgBouncer.
    pub fn url_for(&self, database: &str) -> String {
        let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // The pid file names PgBouncer itself (under runuser the child is runuser).
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        // runuser ends when PgBouncer does; kill it only if that takes too long.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Four `app database upgrade` processes at once through PgBouncer (transaction mode, two
/// server connections) on an empty database: all exit 0, each revision is applied once, and no
/// advisory lock stays held.
#[tokio::test]
async fn four_concurrent_upgrades_through_pgbouncer_apply_each_revision_once() {
    let Some(bouncer) = PgBouncer::start() else {
        return;
    };
    let db = TestDb::empty(Kind::Postgres).await;
    let url = bouncer.url_for(db.pg_name());
    let dir = tempfile::tempdir().expect("temp dir");
    let upgraders: Vec<Child> = (0..4)
        .map(|_| {
            app_command(
                dir.path(),
                &["database", "upgrade"],
                &[("APP_ENV", "testing"), ("DATABASE_URL", &url)],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("app runs")
        })
        .collect();
    for upgrader in upgraders {
        let out = upgrader.wait_with_output().expect("app ends");
        succeeded(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("prepared statement") && !stderr.contains("duplicate key"),
            "{stderr}"
        );
    }
    let mut direct = PgConnection::connect(&crate::helpers::pg_url_for(db.pg_name()))
        .await
        .expect("direct connection");
    let rows = direct
        .fetch_all("SELECT version_num, count(*) FROM ddl_version GROUP BY version_num")
        .await
        .expect("read the version table");
    let migrations = app::migrate::history().unwrap().migrations().len();
    assert_eq!(rows.len(), migrations, "every revision recorded");
    for row in &rows {
        assert_eq!(row.get::<i64, _>(1), 1, "recorded once");
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut direct)
    .await
    .unwrap();
    assert_eq!(held, 0, "no advisory lock left held: {}", bouncer.log());
    // Everything else that an operator runs around an upgrade works through it too.
    for args in [
        &["database", "current"][..],
        &["database", "upgrade"][..],
        &["database", "check"][..],
    ] {
        let out = app_command(
            dir.path(),
            args,
            &[("APP_ENV", "testing"), ("DATABASE_URL", &url)],
        )
        .output()
        .expect("app runs");
        succeeded(&out);
    }
    let _ = direct.close().await;
}

/// What a load run saw: requests answered as expected, and every other outcome (a 5xx, a
/// transport error, an unexpected status), described.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    failures: Vec<String>,
}

impl Tally {
    fn server_errors(&self) -> usize {
        self.failures
            .iter()
            .filter(|failure| failure.starts_with("5") || failure.starts_with("transport"))
            .count()
    }
}

/// One client of the load: a request, the status it must get, its JSON body.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Sends `request` and returns its body when the status is `expected`; anything else is
    /// written down in `tally` and ends the client's round.
    async fn expect(
        &self,
        tally: &Mutex<Tally>,
        what: &str,
        request: reqwest::RequestBuilder,
        expected: u16,
    ) -> Option<serde_json::Value> {
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if status == expected {
                    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
                } else {
                    Err(format!("{status} {what}: {text}"))
                }
            }
            Err(err) => Err(format!("transport {what}: {err}")),
        };
        let mut tally = tally.lock().unwrap();
        match outcome {
            Ok(body) => {
                tally.answered += 1;
                Some(body)
            }
            Err(failure) => {
                tally.failures.push(failure);
                None
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One user's life: sign up, log in, tags, todos with time ranges (list, filter, show,
    /// change, delete), log out. `None` when a request went wrong (already in the tally).
    async fn user_round(&self, tally: &Mutex<Tally>, name: &str) -> Option<()> {
        let email = format!("{name}@example.com");
        let http = &self.http;
        self.expect(
            tally,
            "signup",
            http.post(self.url("/api/access/signup"))
                .json(&json!({"email": email, "password": PASSWORD, "name": name})),
            201,
        )
        .await?;
        let token = self
            .expect(
                tally,
                "login",
                http.post(self.url("/api/access/login"))
                    .form(&[("username", email.as_str()), ("password", PASSWORD)]),
                200,
            )
            .await?["access_token"]
            .as_str()?
            .to_string();
        let get = |path: &str| http.get(self.url(path)).bearer_auth(&token);
        let post = |path: &str| http.post(self.url(path)).bearer_auth(&token);
        self.expect(tally, "me", get("/api/me"), 200).await?;
        let tag = self
            .expect(
                tally,
                "create tag",
                post("/api/tags").json(&json!({"name": "errands", "color": "#ff8800"})),
                201,
            )
            .await?;
        self.expect(tally, "list tags", get("/api/tags"), 200)
            .await?;
        let mut ids = Vec::new();
        for hour in [9, 11] {
            let todo = self
                .expect(
                    tally,
                    "create todo",
                    post("/api/todos").json(&json!({
                        "item": format!("task at {hour}"),
                        "tags": ["errands", format!("h{hour}")],
                        "importance": "high",
                        "startTime": format!("2026-03-01T{hour:02}:00:00Z"),
                        "endTime": format!("2026-03-01T{:02}:30:00Z", hour),
                    })),
                    201,
                )
                .await?;
            ids.push(todo["id"].as_str()?.to_string());
        }
        let page = self
            .expect(
                tally,
                "list todos in a time range",
                get("/api/todos?startTimeFrom=2026-03-01T10:00:00Z&endTimeTo=2026-03-01T12:00:00Z&search=TASK&importance=high"),
                200,
            )
            .await?;
        if page["total"] != 1 {
            tally
                .lock()
                .unwrap()
                .failures
                .push(format!("range filter: {page}"));
            return None;
        }
        let id = &ids[0];
        self.expect(tally, "show todo", get(&format!("/api/todos/{id}")), 200)
            .await?;
        self.expect(
            tally,
            "change todo",
            http.patch(self.url(&format!("/api/todos/{id}")))
                .bearer_auth(&token)
                .json(&json!({"item": "moved", "tags": ["other"], "startTime": "2026-03-01T12:00:00Z", "endTime": "2026-03-01T13:00:00Z"})),
            200,
        )
        .await?;
        self.expect(
            tally,
            "overlapping todo",
            post("/api/todos").json(&json!({"item": "clash", "startTime": "2026-03-01T12:30:00Z", "endTime": "2026-03-01T12:45:00Z"})),
            409,
        )
        .await?;
        self.expect(
            tally,
            "delete todo",
            http.delete(self.url(&format!("/api/todos/{id}")))
                .bearer_auth(&token),
            204,
        )
        .await?;
        self.expect(
            tally,
            "delete tag",
            http.delete(self.url(&format!("/api/tags/{}", tag["id"].as_str()?)))
                .bearer_auth(&token),
            204,
        )
        .await?;
        self.expect(tally, "logout", post("/api/access/logout"), 204)
            .await?;
        self.expect(tally, "me after logout", get("/api/me"), 401)
            .await?;
        Some(())
    }

    /// A superuser's round: users (list, create, show, change, delete), roles (assign,
    /// revoke), health and metrics.
    async fn admin_round(&self, tally: &Mutex<Tally>, token: &str, name: &str) -> Option<()> {
        let http = &self.http;
        let email = format!("{name}@example.com");
        self.expect(tally, "health", http.get(self.url("/health")), 200)
            .await?;
        self.expect(tally, "metrics", http.get(self.url("/metrics")), 200)
            .await?;
        self.expect(
            tally,
            "list users",
            http.get(self.url("/api/users?limit=5")).bearer_auth(token),
            200,
        )
        .await?;
        let user = self
            .expect(
                tally,
                "create user",
                http.post(self.url("/api/users"))
                    .bearer_auth(token)
                    .json(&json!({"email": email, "password": PASSWORD, "name": name})),
                201,
            )
            .await?;
        let path = format!("/api/users/{}", user["id"].as_str()?);
        self.expect(
            tally,
            "show user",
            http.get(self.url(&path)).bearer_auth(token),
            200,
        )
        .await?;
        self.expect(
            tally,
            "change user",
            http.patch(self.url(&path))
                .bearer_auth(token)
                .json(&json!({"name": "renamed"})),
            200,
        )
        .await?;
        for action in ["assign", "revoke"] {
            self.expect(
                tally,
                action,
                http.post(self.url(&format!("/api/roles/superuser/{action}")))
                    .bearer_auth(token)
                    .json(&json!({"email": email})),
                200,
            )
            .await?;
        }
        self.expect(
            tally,
            "delete user",
            http.delete(self.url(&path)).bearer_auth(token),
            204,
        )
        .await?;
        Some(())
    }
}

/// `clients` clients against the server at `base` for `length`: all but one go through user
/// rounds, one through superuser rounds.
async fn drive(base: &str, admin_token: &str, clients: usize, length: Duration) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let client = Client {
                http: reqwest::Client::new(),
                base: base.to_string(),
            };
            let tally = Arc::clone(&tally);
            let admin_token = admin_token.to_string();
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    let name = format!("c{n}r{round}");
                    if n == 0 {
                        client.admin_round(&tally, &admin_token, &name).await;
                    } else {
                        client.user_round(&tally, &name).await;
                    }
                    round += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a load client panicked");
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

/// The service through PgBouncer in transaction mode (two server connections) with
/// `pgbouncer=true`: 24 clients drive every route for three seconds and get no 5xx and no
/// transport error; without the parameter the same service fails through it.
#[tokio::test]
async fn the_service_through_pgbouncer_needs_pgbouncer_true_and_then_serves_every_route() {
    let Some(bouncer) = PgBouncer::start() else {
        return;
    };
    let db = TestDb::new(Kind::Postgres).await;
    let through = format!("{}?pgbouncer=true", bouncer.url_for(db.pg_name()));
    // Every client comes from 127.0.0.1, and sign-ins in flight count against the address.
    let app = TestApp::spawn_on(
        db,
        &[
            ("DATABASE_URL", &through),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", "10000"),
        ],
    )
    .await;
    let admin = app.user("root@example.com", true).await;
    let tally = drive(&app.base, &admin.token, 24, Duration::from_secs(3)).await;
    assert!(
        tally.failures.is_empty(),
        "{} failures of {} requests, first: {:#?}",
        tally.failures.len(),
        tally.failures.len() + tally.answered,
        &tally.failures[..tally.failures.len().min(5)],
    );
    assert!(
        tally.answered > 200,
        "a real load: {} requests",
        tally.answered
    );
    eprintln!(
        "with pgbouncer=true: {} requests, no failure",
        tally.answered
    );

    // The same server without the parameter: sqlx's named statements meet on PgBouncer's
    // server connections ("prepared statement sqlx_s_1 already exists").
    let without = app
        .settings
        .database
        .url
        .to_string()
        .replace("?pgbouncer=true", "");
    let mut settings = app.settings.clone();
    settings.database.url = app::config::DatabaseUrl::parse(&without).unwrap();
    let failed = match Application::build(settings).await {
        Err(err) => {
            let message = err.to_string();
            eprintln!("without pgbouncer=true the service does not start: {message}");
            assert!(message.contains("prepared statement"), "{message}");
            true
        }
        Ok(plain) => {
            let base = format!("http://127.0.0.1:{}", plain.port());
            tokio::spawn(plain.run_until_stopped());
            let tally = drive(&base, &admin.token, 24, Duration::from_secs(2)).await;
            eprintln!(
                "without pgbouncer=true: {} server errors of {} requests, first: {:?}",
                tally.server_errors(),
                tally.answered + tally.failures.len(),
                tally.failures.first()
            );
            tally.server_errors() > 0
        }
    };
    assert!(
        failed,
        "without pgbouncer=true the service fails through PgBouncer"
    );
}

/// `doctor` sees PgBouncer in transaction mode: without `pgbouncer=true` its `pooler` finding
/// fails and names the fix; with it, and straight to PostgreSQL, the finding is ok.
#[tokio::test]
async fn doctor_reports_a_transaction_pooler_without_pgbouncer_true() {
    let Some(bouncer) = PgBouncer::start() else {
        return;
    };
    let db = TestDb::new(Kind::Postgres).await;
    let through = bouncer.url_for(db.pg_name());

    let (out, report) = doctor(&through);
    let pooler = finding(&report, "pooler");
    assert_eq!(pooler["status"], "fail", "{report:#}");
    assert!(
        pooler["detail"]
            .as_str()
            .unwrap()
            .contains("lacks pgbouncer=true"),
        "{pooler}"
    );
    assert!(
        pooler["hint"]
            .as_str()
            .unwrap()
            .contains("add pgbouncer=true"),
        "{pooler}"
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");

    let (_, report) = doctor(&format!("{through}?pgbouncer=true"));
    let pooler = finding(&report, "pooler");
    assert_eq!(pooler["status"], "ok", "{report:#}");
    assert!(
        pooler["detail"]
            .as_str()
            .unwrap()
            .contains("a transaction pooler is in between"),
        "{pooler}"
    );
    assert_ne!(
        report["status"], "fail",
        "every check works through it: {report:#}"
    );

    let (_, report) = doctor(&db.url);
    let pooler = finding(&report, "pooler");
    assert_eq!(pooler["status"], "ok", "{report:#}");
    assert!(
        pooler["detail"]
            .as_str()
            .unwrap()
            .contains("no transaction pooler seen"),
        "{pooler}"
    );
}
