//! Read replicas with read-your-writes, against a topology each test starts: a primary made by
//! initdb and a streaming replica made from it by `pg_basebackup -R`, which applies the WAL it
//! receives only after `recovery_min_apply_delay = 2s`, so it lags behind every write. Both
//! listen on free loopback ports and are stopped when the test ends. The server on 5432 is not
//! touched.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use app::startup::Application;
use sqlx::{Connection, Executor, PgConnection};

use crate::api::PASSWORD;
use crate::helpers::{free_port, running_as_root, seed, settings_with, telemetry};
use crate::tls::{append, as_owner, ran, server_bin};

/// How long the replica holds back each transaction it received.
const APPLY_DELAY: &str = "2s";
const SECRET_KEY: &str = "replica-test-secret-key-of-enough-length";

/// A primary and its delayed streaming replica; both stopped when dropped.
struct Topology {
    dir: tempfile::TempDir,
    bin: PathBuf,
    primary_port: u16,
    replica_port: u16,
}

impl Topology {
    fn start() -> Topology {
        let dir = tempfile::tempdir().expect("temp dir");
        if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the folder to postgres");
        }
        let topology = Topology {
            dir,
            bin: server_bin(),
            primary_port: free_port("127.0.0.1"),
            replica_port: free_port("127.0.0.1"),
        };
        let path = topology.dir.path();
        ran(as_owner(path, topology.bin.join("initdb"))
            .args(["-D", "primary", "-U", "postgres", "--auth=trust"])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]));
        append(
            &path.join("primary/postgresql.conf"),
            &format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 fsync = off\nmax_connections = 60\nwal_level = replica\nmax_wal_senders = 4\n",
                topology.primary_port,
                path.display()
            ),
        );
        topology.pg_ctl("primary", "start");
        topology
    }

    /// Copies the primary (with the app's database already in it) into a replica that streams
    /// from it, and starts it.
    fn start_replica(&self) {
        let path = self.dir.path();
        ran(as_owner(path, self.bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &self.primary_port.to_string()])
            .args(["-U", "postgres", "-D", "replica", "-R", "-X", "stream"])
            .args(["-c", "fast", "--no-sync"]));
        append(
            &path.join("replica/postgresql.conf"),
            &format!(
                "\nport = {}\nhot_standby = on\nrecovery_min_apply_delay = '{APPLY_DELAY}'\n",
                self.replica_port
            ),
        );
        self.pg_ctl("replica", "start");
    }

    fn pg_ctl(&self, data: &str, action: &str) {
        let log = format!("{data}.log");
        let mut command = as_owner(self.dir.path(), self.bin.join("pg_ctl"));
        command.args(["-D", data, "-w", "-t", "60"]);
        if action == "start" {
            command.args(["-l", &log, "start"]);
        } else {
            command.args(["-m", "immediate", "stop"]);
        }
        ran(command.stdout(Stdio::null()));
    }

    fn url(port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for data in ["replica", "primary"] {
            if self.dir.path().join(data).join("postmaster.pid").exists() {
                let _ = as_owner(self.dir.path(), self.bin.join("pg_ctl"))
                    .args(["-D", data, "-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// An app instance on the primary that reads from the replica; its base URL.
async fn instance(topology: &Topology, max_lag: &str) -> String {
    let primary = Topology::url(topology.primary_port, "app");
    let replica = Topology::url(topology.replica_port, "app");
    let settings = settings_with(&[
        ("DATABASE_URL", &primary),
        ("DATABASE_REPLICA_URLS", &replica),
        ("DATABASE_REPLICA_MAX_LAG", max_lag),
        ("SECRET_KEY", SECRET_KEY),
    ]);
    let app = Application::build(settings).await.expect("the app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// The value of one sample of `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, sample: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sample} in {text}"))
}

async fn replica_reads(client: &reqwest::Client, base: &str) -> f64 {
    metric(client, base, "app_db_reads_total{target=\"replica\"}").await
}

async fn primary_reads(client: &reqwest::Client, base: &str) -> f64 {
    metric(client, base, "app_db_reads_total{target=\"primary\"}").await
}

async fn health(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Signs up (through `base`) and signs in; the token.
async fn sign_up(client: &reqwest::Client, base: &str, email: &str) -> String {
    let created = client
        .post(format!("{base}/api/access/signup"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let signed_in: serde_json::Value = client
        .post(format!("{base}/api/access/login"))
        .form(&[("username", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    signed_in["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {signed_in}"))
        .to_string()
}

/// The items of the user's todos, read through `base`.
async fn items(client: &reqwest::Client, base: &str, token: &str) -> Vec<String> {
    let response = client
        .get(format!("{base}/api/todos?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: serde_json::Value = response.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|todo| todo["item"].as_str().unwrap().to_string())
        .collect()
}

async fn create_todo(client: &reqwest::Client, base: &str, token: &str, item: &str) {
    let response = client
        .post(format!("{base}/api/todos"))
        .bearer_auth(token)
        .json(&serde_json::json!({"item": item}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// Waits up to `limit` for `check` to hold.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn on_replica_count(replica: &mut PgConnection, item: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM todo WHERE item = $1")
        .bind(item)
        .fetch_one(replica)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_reads_without_losing_the_readers_writes() {
    telemetry();
    let topology = Topology::start();
    {
        let admin_url = Topology::url(topology.primary_port, "postgres");
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        admin.execute("CREATE DATABASE app").await.unwrap();
        let _ = admin.close().await;
    }
    seed(&Topology::url(topology.primary_port, "app")).await;
    topology.start_replica();
    let mut replica = PgConnection::connect(&Topology::url(topology.replica_port, "app"))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    // Two instances that read from the replica whatever its lag, and one that skips it once
    // it lags a second.
    let a = instance(&topology, "60").await;
    let b = instance(&topology, "60").await;
    let strict = instance(&topology, "1").await;
    eventually(Duration::from_secs(5), "the replica is seen up", || async {
        health(&client, &b).await["replicas"][0]["state"] == "up"
    })
    .await;
    let ann = sign_up(&client, &a, "ann@example.com").await;
    let bob = sign_up(&client, &a, "bob@example.com").await;
    // The lag is known once the replica has replayed a transaction since it started.
    eventually(
        Duration::from_secs(6),
        "the sign-ups are replayed",
        || async { health(&client, &b).await["replicas"][0]["state"] == "up" },
    )
    .await;

    // (1) A write through one instance, read at once through another: the replica does not
    // have it yet (it applies 2 s late), so the read goes to the primary and sees it.
    create_todo(&client, &a, &ann, "written through a").await;
    assert_eq!(
        on_replica_count(&mut replica, "written through a").await,
        0,
        "the replica lags behind the write"
    );
    assert_eq!(
        health(&client, &b).await["replicas"][0]["state"],
        "up",
        "within DATABASE_REPLICA_MAX_LAG of b"
    );
    let primary_before = primary_reads(&client, &b).await;
    assert_eq!(items(&client, &b, &ann).await, ["written through a"]);
    assert!(primary_reads(&client, &b).await > primary_before);

    // (2) Once the replica has replayed the write, the same reads go to the replica.
    eventually(
        Duration::from_secs(8),
        "b reads from the replica",
        || async {
            let before = replica_reads(&client, &b).await;
            let seen = items(&client, &b, &ann).await;
            assert_eq!(seen, ["written through a"], "never an older answer");
            replica_reads(&client, &b).await > before
        },
    )
    .await;

    // (4) While writes keep coming, the replica lags more than a second behind: the strict
    // instance skips it (and says so), the lenient one still reads Bob's data from it.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (client, a, ann, writing) = (client.clone(), a.clone(), ann.clone(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                n += 1;
                create_todo(&client, &a, &ann, &format!("busy {n}")).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    eventually(
        Duration::from_secs(6),
        "the strict instance sees lag",
        || async {
            let health = health(&client, &strict).await;
            health["replicas"][0]["state"] == "lagging"
        },
    )
    .await;
    let health_now = health(&client, &strict).await;
    assert_eq!(health_now["status"], "ok", "{health_now}");
    assert_eq!(health_now["degraded"], true, "{health_now}");
    assert!(
        health_now["replicas"][0]["lagSeconds"].as_f64().unwrap() > 1.0,
        "{health_now}"
    );
    let lag = metric(
        &client,
        &strict,
        &format!(
            "app_db_replica_lag_seconds{{replica=\"127.0.0.1:{}/app\"}}",
            topology.replica_port
        ),
    )
    .await;
    assert!(lag > 1.0, "{lag}");
    let replica_before = replica_reads(&client, &strict).await;
    assert!(items(&client, &strict, &bob).await.is_empty());
    assert_eq!(replica_reads(&client, &strict).await, replica_before);
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();

    // (3) The replica stops: reads still answer, from the primary, and /health shows it down.
    drop(replica);
    topology.pg_ctl("replica", "stop");
    let expected = items(&client, &a, &ann).await;
    for base in [&a, &b, &strict] {
        assert_eq!(items(&client, base, &ann).await, expected);
        let me = client
            .get(format!("{base}/api/me"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    eventually(
        Duration::from_secs(5),
        "b sees the replica down",
        || async { health(&client, &b).await["replicas"][0]["state"] == "down" },
    )
    .await;
    let health_now = health(&client, &b).await;
    assert_eq!(health_now["status"], "ok", "{health_now}");
    assert_eq!(health_now["degraded"], true, "{health_now}");
    assert!(
        health_now["replicas"][0]["error"].is_string(),
        "{health_now}"
    );
    assert_eq!(
        metric(
            &client,
            &b,
            &format!(
                "app_db_replica_up{{replica=\"127.0.0.1:{}/app\"}}",
                topology.replica_port
            )
        )
        .await,
        0.0
    );
}
