//! Stopping `app run`: on SIGTERM or Ctrl-C it takes no new connections, answers what it has
//! read (`/health` says it is shutting down), cuts off what is still running after
//! APP_SHUTDOWN_TIMEOUT (rolled back) and exits 0. Each test runs the binary as a process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor};

use crate::helpers::{Kind, TestDb, app_command, free_port, on_both_databases, pg_direct};

/// A key for the runs that set one.
pub const SECRET_KEY: &str = "shutdown-tests-secret-key-0123456789abcdef";

/// An `app run` process, killed if a test leaves it running.
pub struct Server {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `app run --port P args...` in `dir` as `run_app` runs commands (only PATH,
    /// NO_COLOR, the shipped fixtures and `vars` in its environment), and waits until it
    /// answers `/health`.
    pub async fn start(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let host = match args.iter().position(|arg| *arg == "--host") {
            Some(at) => args[at + 1],
            None => "127.0.0.1",
        };
        let port = free_port(host).to_string();
        let mut all_args = vec!["run", "--port", &port];
        all_args.extend_from_slice(args);
        let mut child = app_command(dir, &all_args, vars)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("app runs");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok(response) = server.client.get(server.url("/health")).send().await {
                let _ = response.bytes().await;
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("app exited with {status} at start:\n{}", server.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "app does not answer after 60s:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread may still be copying the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after the signal:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then asserts exit 0 within `within`.
    pub async fn stop(&mut self, within: Duration) {
        self.signal("TERM");
        let status = self.exit_within(within).await;
        assert!(status.success(), "exit {status}:\n{}", self.log());
    }

    /// Signs up `email` and signs in; returns the bearer token.
    pub async fn sign_in(&self, email: &str) -> String {
        let password = "correct-horse-battery";
        let response = self
            .client
            .post(self.url("/api/access/signup"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        self.login(email, password).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/access/login"))
            .form(&[("username", email), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// `GET /api/me` with `token`: the status.
    pub async fn me(&self, token: &str) -> u16 {
        self.client
            .get(self.url("/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Settings for a server on `db`: a pool of one connection, so a request stuck on a lock
/// holds it and `/health` waits behind it.
fn vars<'a>(db: &'a TestDb, timeout: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("APP_ENV", "testing"),
        ("DATABASE_URL", db.url.as_str()),
        ("SECRET_KEY", SECRET_KEY),
        ("DATABASE_POOL_SIZE", "1"),
        ("DATABASE_MAX_POOL_OVERFLOW", "0"),
        ("APP_SHUTDOWN_TIMEOUT", timeout),
        ("LOG_LEVEL", "info"),
    ]
}

/// A lock a todo write of `user` waits for: on PostgreSQL the rows of the user's todos, which
/// a PATCH locks FOR NO KEY UPDATE as it reads its todo; on SQLite the write lock (`BEGIN IMMEDIATE`), which they wait for
/// up to the busy timeout (5 s).
enum Lock {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Lock {
    async fn hold(db: &TestDb, kind: Kind, user: &str) -> Lock {
        match kind {
            Kind::Postgres => {
                let mut conn = pg_direct(db).await;
                conn.execute("BEGIN").await.unwrap();
                let locked = sqlx::query(
                    "SELECT t.id FROM todo t JOIN user_account u ON u.id = t.user_id \
                     WHERE u.email = $1 FOR UPDATE OF t",
                )
                .bind(user)
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert_eq!(locked.len(), 1);
                Lock::Postgres(conn)
            }
            Kind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                conn.execute("BEGIN IMMEDIATE").await.unwrap();
                Lock::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Lock::Postgres(mut conn) => {
                conn.execute("ROLLBACK").await.unwrap();
                conn.close().await.unwrap();
            }
            Lock::Sqlite(mut conn) => {
                conn.execute("ROLLBACK").await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Waits until another session waits for this lock (PostgreSQL), or a moment (SQLite,
    /// which has no view of waiters).
    async fn until_waited_for(&mut self) {
        match self {
            Lock::Postgres(conn) => {
                let started = Instant::now();
                loop {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                    if waiting > 0 {
                        return;
                    }
                    assert!(started.elapsed() < Duration::from_secs(10), "nobody waits");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Lock::Sqlite(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Makes a todo "before" for a new user; returns the token and the todo's id.
async fn user_with_todo(app: &Server, email: &str) -> (String, String) {
    let token = app.sign_in(email).await;
    let response = app
        .client
        .post(app.url("/api/todos"))
        .bearer_auth(&token)
        .json(&json!({"item": "before"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let todo: Value = response.json().await.unwrap();
    (token, todo["id"].as_str().unwrap().to_string())
}

/// `PATCH /api/todos/{id}` to item "after", on a connection of its own, in the background.
fn patch_in_background(
    app: &Server,
    token: &str,
    id: &str,
) -> tokio::task::JoinHandle<reqwest::Result<(u16, String)>> {
    let request = reqwest::Client::new()
        .patch(app.url(&format!("/api/todos/{id}")))
        .bearer_auth(token)
        .json(&json!({"item": "after"}));
    tokio::spawn(async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    })
}

/// The todo's item, read past the app.
async fn item_of(db: &TestDb, kind: Kind, id: &str) -> String {
    let id = uuid::Uuid::parse_str(id).unwrap();
    match kind {
        Kind::Postgres => {
            let mut conn = pg_direct(db).await;
            sqlx::query_scalar("SELECT item FROM todo WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        Kind::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT item FROM todo WHERE id = ?")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

on_both_databases!(
    requests_in_flight_get_their_answers_and_health_says_shutting_down,
    the_deadline_cuts_off_stuck_requests_and_rolls_them_back,
    keep_alive_clients_lose_no_answer,
    a_second_signal_cuts_off_at_once,
);

/// A write waiting for a lock when SIGTERM comes still gets its answer once the lock goes;
/// `/health` answers 503 "shutting down" meanwhile (at once when it was waiting behind the
/// write for the pool's one connection, and on a keep-alive connection opened before); no new
/// connection is taken; the process exits 0 when the write is done.
async fn requests_in_flight_get_their_answers_and_health_says_shutting_down(kind: Kind) {
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = Server::start(dir.path(), &[], &vars(&db, "10")).await;
    let (token, id) = user_with_todo(&app, "ann@example.com").await;

    let mut lock = Lock::hold(&db, kind, "ann@example.com").await;
    let patch = patch_in_background(&app, &token, &id);
    lock.until_waited_for().await;
    let health = tokio::spawn(reqwest::Client::new().get(app.url("/health")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !health.is_finished(),
        "/health waits for the pool's one connection"
    );

    app.signal("TERM");
    let signalled = Instant::now();
    let health = health.await.unwrap().expect("/health is answered");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "shutting down", "{body}");

    // A probe on a keep-alive connection opened before is still answered, and told to go.
    let probe = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(probe.status(), 503);
    assert_eq!(probe.headers()["connection"], "close");
    let body: Value = probe.json().await.unwrap();
    assert_eq!(body["status"], "shutting down", "{body}");
    assert!(
        reqwest::Client::new()
            .get(app.url("/health"))
            .send()
            .await
            .is_err(),
        "takes no new connections"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.is_running(), "waits for the write in flight");
    lock.release().await;
    let (status, body) = patch
        .await
        .unwrap()
        .expect("the write in flight is answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"after\""), "{body}");

    let status = app.exit_within(Duration::from_secs(12)).await;
    assert!(status.success(), "exit {status}:\n{}", app.log());
    assert!(signalled.elapsed() < Duration::from_secs(8));
    let log = app.log();
    assert!(
        log.contains("every request in flight was answered"),
        "{log}"
    );
    assert_eq!(item_of(&db, kind, &id).await, "after");
}

/// A write stuck on a lock for longer than APP_SHUTDOWN_TIMEOUT is cut off: the process exits 0
/// within the timeout and 2 s, says it cut one request off, and the write is rolled back.
async fn the_deadline_cuts_off_stuck_requests_and_rolls_them_back(kind: Kind) {
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = Server::start(dir.path(), &[], &vars(&db, "2")).await;
    let (token, id) = user_with_todo(&app, "ann@example.com").await;

    let mut lock = Lock::hold(&db, kind, "ann@example.com").await;
    let patch = patch_in_background(&app, &token, &id);
    lock.until_waited_for().await;

    app.signal("TERM");
    let signalled = Instant::now();
    let status = app.exit_within(Duration::from_secs(4)).await;
    let elapsed = signalled.elapsed();
    assert!(status.success(), "exit {status}:\n{}", app.log());
    assert!(elapsed >= Duration::from_millis(1900), "waited {elapsed:?}");
    let log = app.log();
    assert!(log.contains("cut off 1 request(s)"), "{log}");
    assert!(
        patch.await.unwrap().is_err(),
        "the cut-off request gets no answer"
    );

    lock.release().await;
    if kind == Kind::Postgres {
        // The server ends the app's sessions once it sees them gone.
        let mut admin = pg_direct(&db).await;
        let started = Instant::now();
        loop {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if others == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "sessions stay");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(item_of(&db, kind, &id).await, "before", "rolled back");
}

/// A second signal during the grace period cuts the stuck write off at once, long before
/// APP_SHUTDOWN_TIMEOUT; the process still exits 0 and the write is not kept.
async fn a_second_signal_cuts_off_at_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let mut app = Server::start(dir.path(), &[], &vars(&db, "30")).await;
    let (token, id) = user_with_todo(&app, "ann@example.com").await;
    let mut lock = Lock::hold(&db, kind, "ann@example.com").await;
    let patch = patch_in_background(&app, &token, &id);
    lock.until_waited_for().await;

    app.signal("INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.is_running());
    app.signal("INT");
    let status = app.exit_within(Duration::from_secs(2)).await;
    assert!(status.success(), "exit {status}:\n{}", app.log());
    let log = app.log();
    assert!(log.contains("cut off 1 request(s)"), "{log}");
    assert!(log.contains("a second signal"), "{log}");
    assert!(patch.await.unwrap().is_err());
    lock.release().await;
    if kind == Kind::Sqlite {
        assert_eq!(item_of(&db, kind, &id).await, "before");
    }
}

/// Clients on keep-alive connections keep sending while Ctrl-C arrives: every request they
/// send is answered (the last one with `Connection: close`), the next finds no listener, and
/// no connection closes under a request; the process exits 0.
async fn keep_alive_clients_lose_no_answer(kind: Kind) {
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = vars(&db, "10");
    vars.retain(|(key, _)| !key.starts_with("DATABASE_"));
    vars.extend([
        ("DATABASE_URL", db.url.as_str()),
        ("RUST_LOG", "info,tower_http=debug"),
    ]);
    let mut app = Server::start(dir.path(), &[], &vars).await;
    let token = app.sign_in("ann@example.com").await;

    let clients: Vec<_> = (0..8)
        .map(|_| {
            // One connection per client, reused for every request.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let url = app.url("/api/me");
            let token = token.clone();
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0usize, Vec::new());
                loop {
                    match client.get(&url).bearer_auth(&token).send().await {
                        Ok(response) => match response.bytes().await {
                            Ok(_) => answered += 1,
                            Err(err) => failed.push(format!("body: {err:?}")),
                        },
                        Err(err) if err.is_connect() => break,
                        Err(err) => failed.push(format!("{err:?}")),
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.signal("INT");
    let status = app.exit_within(Duration::from_secs(12)).await;
    assert!(status.success(), "exit {status}:\n{}", app.log());

    let (mut answered, mut failed) = (0, Vec::new());
    for client in clients {
        let (ok, errors) = client.await.unwrap();
        answered += ok;
        failed.extend(errors);
    }
    let log = app.log();
    let served = log.matches("finished processing request").count();
    // The sign-up and sign-in before, and the first /health.
    assert_eq!(
        answered + 3,
        served,
        "answers that never arrived; failures: {failed:#?}"
    );
    assert!(answered > 50, "the clients were busy: {answered}");
    // Each client learnt of the shutdown from a `Connection: close` answer, then found no
    // listener: nobody sent a request on a connection the server then closed.
    assert!(failed.is_empty(), "requests lost: {failed:#?}");
    assert!(
        log.contains("every request in flight was answered"),
        "{log}"
    );
}
