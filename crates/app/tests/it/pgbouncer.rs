//! A real PgBouncer in `pool_mode = transaction` in front of the test server, started by the
//! test that needs it and stopped with it, and `upgrade` through it.
//!
//! PgBouncer 1.18 (Debian 12's package) keeps no prepared statements in transaction mode and
//! hands each transaction whatever server connection is free: what the migration runner must
//! survive. The pool is two server connections, so four clients really share them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, Row};

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
