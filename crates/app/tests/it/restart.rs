//! A PostgreSQL restart (or sessions ended from outside) under a running app costs clients no
//! errors: dead pooled connections are flushed and requests that had changed nothing are run
//! again on fresh ones; what cannot be served answers 503 with `Retry-After`, never 500; and
//! every write the app acknowledged is in the database, once.
//!
//! The restart tests restart a cluster of their own: RESTART_TEST_DATABASE_URL names it (a
//! user that may create databases), and `scripts/infra.sh restart` with INFRA_DIR =
//! RESTART_TEST_INFRA_DIR restarts it. `scripts/test.sh` starts one on port 15434 and sets both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use app::startup::Application;
use sqlx::{Connection, Executor, PgConnection};
use tokio::task::JoinSet;

use crate::api::TestApp;
use crate::helpers::{Kind, settings_with, telemetry};

/// The cluster the restart tests may restart, or `None` (with a message) when none is set up.
struct Cluster {
    admin_url: String,
    infra_dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn from_env() -> Option<Cluster> {
        let Ok(admin_url) = std::env::var("RESTART_TEST_DATABASE_URL") else {
            eprintln!(
                "skipped: RESTART_TEST_DATABASE_URL is not set; run ./scripts/test.sh, which \
                 starts a PostgreSQL cluster for this test on 127.0.0.1:15434 and sets it"
            );
            return None;
        };
        let port = url::Url::parse(&admin_url)
            .expect("RESTART_TEST_DATABASE_URL is a URL")
            .port()
            .unwrap_or(5432);
        let infra_dir = std::env::var_os("RESTART_TEST_INFRA_DIR")
            .map_or_else(|| PathBuf::from("/var/tmp/app-test-restart"), PathBuf::from);
        Some(Cluster {
            admin_url,
            infra_dir,
            port,
        })
    }

    /// Restarts the server at once (`pg_ctl restart -m fast -w`: every session is ended) and
    /// returns when it answers again.
    async fn restart(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/infra.sh");
        let mut command = std::process::Command::new(script);
        command
            .arg("restart")
            .env("INFRA_BACKEND", "local")
            .env("INFRA_PORT", self.port.to_string())
            .env("INFRA_DIR", &self.infra_dir);
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("scripts/infra.sh runs");
        assert!(
            out.status.success(),
            "restarting the test cluster in {}: {}{}",
            self.infra_dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new database on this cluster with the schema and the fixtures; dropped on drop.
    async fn database(&self) -> ClusterDb {
        let name = format!("app_restart_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("the restart test cluster answers (see scripts/test.sh)");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&self.admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        let db = ClusterDb {
            url: url.to_string(),
            name,
            admin_url: self.admin_url.clone(),
        };
        let settings = settings_with(&[("DATABASE_URL", &db.url), ("DATABASE_POOL_SIZE", "1")]);
        let conn = app::db::Database::connect(&settings.database)
            .await
            .unwrap();
        app::migrate::run(
            &conn,
            &settings.database,
            app::migrate::Direction::Up,
            "head",
            &mut |_| {},
        )
        .await
        .expect("upgrade to head");
        app::fixtures::load_all(conn.conn(), settings.database.fixture_path.as_deref())
            .await
            .expect("load the fixtures");
        conn.close().await;
        db
    }
}

struct ClusterDb {
    url: String,
    name: String,
    admin_url: String,
}

impl Drop for ClusterDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = self.admin_url.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin.execute(sqlx::AssertSqlSafe(sql)).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Only one test at a time restarts the cluster (nextest runs tests in parallel processes).
fn restart_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("app-restart-test.lock");
    let file = std::fs::File::create(&path).expect("create the lock file");
    file.lock().expect("lock the restart test cluster");
    file
}

/// The app, served in this process, and a signed-in user's token.
struct Client {
    base: String,
    http: reqwest::Client,
    token: String,
}

/// What one request got.
#[derive(Debug, Clone)]
struct Outcome {
    what: &'static str,
    status: u16,
    retry_after: Option<String>,
    problem_json: bool,
    /// The id of the todo a write made, when it was acknowledged.
    made: Option<String>,
    /// The item a write sent.
    item: Option<String>,
}

impl Client {
    async fn spawn(url: &str, vars: &[(&str, &str)]) -> Client {
        telemetry();
        let mut all = vec![
            ("DATABASE_URL", url),
            ("DATABASE_POOL_SIZE", "5"),
            ("DATABASE_MAX_POOL_OVERFLOW", "5"),
            ("DATABASE_POOL_TIMEOUT", "10"),
        ];
        all.extend_from_slice(vars);
        let app = Application::build(settings_with(&all))
            .await
            .expect("the app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let signup = http
            .post(format!("{base}/api/access/signup"))
            .json(&serde_json::json!({"email": "ann@example.com", "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201, "{}", signup.text().await.unwrap());
        let login: serde_json::Value = http
            .post(format!("{base}/api/access/login"))
            .form(&[("username", "ann@example.com"), ("password", "password123")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().expect("a token").to_string();
        Client { base, http, token }
    }

    /// A page of todos, or a new one named `item` when `item` is given.
    async fn request(&self, item: Option<String>) -> Outcome {
        let builder = match &item {
            None => self.http.get(format!("{}/api/todos?limit=5", self.base)),
            Some(item) => self
                .http
                .post(format!("{}/api/todos", self.base))
                .json(&serde_json::json!({"item": item, "tags": ["restart"]})),
        };
        let response = builder
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the app answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after");
        let problem_json = header("content-type").as_deref() == Some("application/problem+json");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let made = (status == 201)
            .then(|| body["id"].as_str().map(str::to_string))
            .flatten();
        Outcome {
            what: if item.is_some() { "write" } else { "read" },
            status,
            retry_after,
            problem_json,
            made,
            item,
        }
    }

    /// `n` requests at once, reads and writes alternating; writes are named `{phase}-{i}`.
    async fn burst(self: &Arc<Self>, phase: &str, n: usize) -> Vec<Outcome> {
        let mut set = JoinSet::new();
        for i in 0..n {
            let client = Arc::clone(self);
            let item = (i % 2 == 1).then(|| format!("{phase}-{i}"));
            set.spawn(async move { client.request(item).await });
        }
        set.join_all().await
    }

    /// Reads and writes one after another, `n` in all.
    async fn sequence(&self, phase: &str, n: usize) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for i in 0..n {
            let item = (i % 2 == 1).then(|| format!("{phase}-{i}"));
            outcomes.push(self.request(item).await);
        }
        outcomes
    }
}

/// How many answers had each status, for messages.
fn tally(outcomes: &[Outcome]) -> HashMap<(&'static str, u16), usize> {
    let mut counts = HashMap::new();
    for outcome in outcomes {
        *counts.entry((outcome.what, outcome.status)).or_default() += 1;
    }
    counts
}

/// No 500 (or other error than 503); every 503 is problem JSON with `Retry-After`.
fn assert_no_server_errors(phase: &str, outcomes: &[Outcome]) {
    for outcome in outcomes {
        assert!(
            matches!(outcome.status, 200 | 201 | 503),
            "{phase}: {outcome:?}; all: {:?}",
            tally(outcomes)
        );
        if outcome.status == 503 {
            assert!(
                outcome.problem_json && outcome.retry_after.is_some(),
                "{phase}: {outcome:?}"
            );
        }
    }
}

fn assert_all_served(phase: &str, outcomes: &[Outcome]) {
    assert_no_server_errors(phase, outcomes);
    assert!(
        outcomes.iter().all(|o| o.status < 300),
        "{phase}: every request is served: {:?}",
        tally(outcomes)
    );
}

/// Every acknowledged write is in the database, and no write is there twice (a retried write
/// must not have been done already).
async fn assert_writes_kept(url: &str, outcomes: &[Outcome]) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id::text, item FROM todo")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let mut items: HashMap<&str, usize> = HashMap::new();
    for (_, item) in &rows {
        *items.entry(item.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = items.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "writes done twice: {twice:?}");
    for outcome in outcomes.iter().filter(|o| o.made.is_some()) {
        let id = outcome.made.as_deref().unwrap();
        assert!(
            rows.iter()
                .any(|(row, item)| row == id && Some(item) == outcome.item.as_ref()),
            "acknowledged write {outcome:?} is missing"
        );
    }
}

/// Restarts the cluster under the app, idle and under load, with `pre_ping` as set.
async fn restart_costs_no_errors(pre_ping: &str) {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let _lock = restart_lock();
    let db = cluster.database().await;
    let client = Arc::new(Client::spawn(&db.url, &[("DATABASE_PRE_POOL_PING", pre_ping)]).await);
    let mut all = Vec::new();

    // Every kept connection open and used.
    let warm = client.burst("warm", 10).await;
    assert_all_served("before the restart", &warm);
    all.extend(warm);

    // Idle: one request after another, each kept connection now dead.
    cluster.restart().await;
    let idle = client.sequence("idle", 12).await;
    assert_all_served("one by one after a restart", &idle);
    all.extend(idle);

    // A burst at once after a restart.
    cluster.restart().await;
    let burst = client.burst("burst", 40).await;
    assert_all_served("a burst after a restart", &burst);
    all.extend(burst);

    // Under load: writers and readers keep going while the server restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = JoinSet::new();
    for worker in 0..6 {
        let client = Arc::clone(&client);
        let stop = Arc::clone(&stop);
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let item = (i % 2 == 0).then(|| format!("load-{worker}-{i}"));
                outcomes.push(client.request(item).await);
                i += 1;
            }
            outcomes
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Instant::now();
    cluster.restart().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let load: Vec<Outcome> = workers.join_all().await.into_iter().flatten().collect();
    assert!(load.len() > 20, "the load ran: {:?}", tally(&load));
    assert_no_server_errors("under load during a restart", &load);
    eprintln!(
        "pre-ping {pre_ping}: under load, {:?} ({:.1}s from the restart)",
        tally(&load),
        restarted.elapsed().as_secs_f64()
    );
    all.extend(load);

    // And afterwards everything is served.
    let after = client.sequence("after", 6).await;
    assert_all_served("after the restarts", &after);
    all.extend(after);

    assert_writes_kept(&db.url, &all).await;
}

#[tokio::test]
async fn a_restart_costs_no_errors_without_pre_ping() {
    restart_costs_no_errors("false").await;
}

#[tokio::test]
async fn a_restart_costs_no_errors_with_pre_ping() {
    restart_costs_no_errors("true").await;
}

/// Ends every session of the app's database from outside, as a DBA, failover or idle timeout
/// would (on the shared test server: only this test's own database).
async fn terminate_sessions(app: &TestApp) {
    let mut admin = crate::helpers::pg_direct(&app.db).await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(app.db.pg_name())
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn ended_sessions_cost_no_errors_one_by_one_and_at_once() {
    let app = TestApp::spawn_with(
        Kind::Postgres,
        &[
            ("DATABASE_POOL_SIZE", "5"),
            ("DATABASE_PRE_POOL_PING", "false"),
        ],
    )
    .await;
    let user = app.user("ann@example.com", false).await;
    let client = Arc::new(Client {
        base: app.base.clone(),
        http: app.client.clone(),
        token: user.token.clone(),
    });
    let mut all = client.burst("warm", 10).await;
    assert_all_served("before", &all);

    terminate_sessions(&app).await;
    let one_by_one = client.sequence("one-by-one", 10).await;
    assert_all_served("one by one after the sessions ended", &one_by_one);
    all.extend(one_by_one);

    let refill = client.burst("refill", 10).await;
    assert_all_served("refilling the pool", &refill);
    all.extend(refill);
    terminate_sessions(&app).await;
    let at_once = client.burst("at-once", 30).await;
    assert_all_served("at once after the sessions ended", &at_once);
    all.extend(at_once);

    let url = app.db.url.clone();
    assert_writes_kept(&url, &all).await;
}
