//! TLS to PostgreSQL, against a cluster of its own that each test starts: `ssl = on` with a
//! certificate for `localhost` and 127.0.0.1 signed by a CA that `openssl` makes in the test,
//! and a `pg_hba.conf` that accepts only `hostssl` connections. The cluster listens on a free
//! port on 127.0.0.1 and 127.0.0.2 (a loopback address the certificate does not name) and is
//! stopped when the test ends. The server on 5432 is not touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::helpers::{free_port, one_line_failure, run_app, running_as_root, succeeded};

/// A running TLS-only cluster; stopped (and its folder removed) when dropped.
struct TlsCluster {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The folder with initdb and pg_ctl: `pg_config --bindir`, else the newest Debian one.
pub(crate) fn server_bin() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = from_pg_config {
        return dir;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
                .filter(|dir| dir.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    debian
        .pop()
        .expect("initdb and pg_ctl: install the PostgreSQL server (apt-get install postgresql)")
}

/// `program` as the user that owns the cluster: `postgres` when running as root (the server
/// refuses root), else the current user; run from `dir`.
pub(crate) fn as_owner(dir: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(dir).stdin(Stdio::null());
    command
}

pub(crate) fn ran(command: &mut Command) -> Output {
    let out = command.output().expect("command runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the folder to postgres");
        }
        let bin = server_bin();
        let port = free_port("127.0.0.1");
        let cluster = TlsCluster { port, dir, bin };
        cluster.make_certificates();
        let path = cluster.dir.path();
        ran(as_owner(path, cluster.bin.join("initdb"))
            .args(["-D", "data", "-U", "postgres", "--auth=trust"])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]));
        let config = format!(
            "\nlisten_addresses = '127.0.0.1,127.0.0.2'\nport = {port}\n\
             unix_socket_directories = '{socket}'\nfsync = off\nmax_connections = 40\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n",
            socket = path.display(),
            dir = path.display(),
        );
        append(&path.join("data/postgresql.conf"), &config);
        // Only encrypted TCP connections: `sslmode=disable` must be refused.
        std::fs::write(
            path.join("data/pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all 127.0.0.2/32 trust\n",
        )
        .expect("write pg_hba.conf");
        ran(as_owner(path, cluster.bin.join("pg_ctl"))
            .args(["-D", "data", "-l", "server.log", "-w", "-t", "60", "start"])
            .stdout(Stdio::null()));
        cluster
    }

    /// A CA, a server certificate it signs for `localhost` and 127.0.0.1, and another CA that
    /// signed nothing here.
    fn make_certificates(&self) {
        let path = self.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [("ca", "/CN=app test CA"), ("other-ca", "/CN=another CA")] {
            ran(as_owner(path, "openssl")
                .args(["req", "-x509", "-days", "2", "-subj", subject])
                .args(ec)
                .args([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                ])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        }
        std::fs::write(
            path.join("server.ext"),
            "basicConstraints = CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost, IP:127.0.0.1\n",
        )
        .expect("write server.ext");
        ran(as_owner(path, "openssl")
            .args(["req", "-subj", "/CN=localhost"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"]));
        ran(as_owner(path, "openssl")
            .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "server.ext", "-out", "server.crt"]));
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A URL for the `postgres` database at `host`, with `query` appended.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/postgres?{query}",
            self.port
        )
    }

    /// The accounts' emails, read through the cluster's Unix socket.
    fn emails(&self) -> Vec<String> {
        let out = ran(Command::new("psql")
            .args(["-X", "-At", "-U", "postgres", "-d", "postgres"])
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "SELECT email FROM user_account ORDER BY email"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = as_owner(self.dir.path(), self.bin.join("pg_ctl"))
            .args(["-D", "data", "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub(crate) fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut handle = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .expect("open for append");
    handle.write_all(text.as_bytes()).expect("append");
}

/// `app` with APP_ENV=testing, DATABASE_URL=`url` and `vars`, in `dir`.
fn app_at(dir: &Path, url: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut all = vec![("APP_ENV", "testing"), ("DATABASE_URL", url)];
    all.extend_from_slice(vars);
    run_app(dir, args, &all)
}

fn ping(cluster: &TlsCluster, url: &str) -> Output {
    app_at(
        cluster.dir.path(),
        url,
        &["database", "ping", "--format", "json"],
        &[],
    )
}

/// Asserts the ping went through and the server saw the session encrypted.
fn pinged_encrypted(cluster: &TlsCluster, url: &str) {
    let out = ping(cluster, url);
    let stdout = succeeded(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let encryption = json["encryption"].as_str().unwrap_or_default();
    assert!(encryption.starts_with("TLSv1."), "{url}: {stdout}");
}

#[test]
fn require_verify_ca_and_verify_full_connect_encrypted() {
    let cluster = TlsCluster::start();
    let ca = cluster.file("ca.crt");
    pinged_encrypted(&cluster, &cluster.url("127.0.0.1", "sslmode=require"));
    // The default, as with libpq, is `prefer`: encrypted when the server offers it.
    pinged_encrypted(&cluster, &cluster.url("127.0.0.1", ""));
    // asyncpg's spelling, in the SQLAlchemy form of the URL.
    let asyncpg = format!(
        "postgresql+asyncpg://postgres@127.0.0.1:{}/postgres?ssl=require",
        cluster.port
    );
    pinged_encrypted(&cluster, &asyncpg);
    for host in ["127.0.0.1", "localhost"] {
        let query = format!("sslmode=verify-full&sslrootcert={ca}");
        pinged_encrypted(&cluster, &cluster.url(host, &query));
    }
    let query = format!("ssl=verify-full&sslrootcert={ca}");
    pinged_encrypted(&cluster, &cluster.url("localhost", &query));
    // verify-ca checks the chain, not the name: 127.0.0.2 is not in the certificate.
    let query = format!("sslmode=verify-ca&sslrootcert={ca}");
    pinged_encrypted(&cluster, &cluster.url("127.0.0.2", &query));
    // The service itself starts through TLS too: migrations, then a write.
    let url = cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let dir = cluster.dir.path();
    succeeded(&app_at(dir, &url, &["database", "upgrade"], &[]));
    let out = app_at(dir, &url, &["database", "doctor"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TLSv1."),
        "doctor names the encryption: {stdout}"
    );
}

#[test]
fn a_wrong_ca_a_wrong_host_name_or_no_tls_fail_in_one_line() {
    let cluster = TlsCluster::start();
    let other_ca = cluster.file("other-ca.crt");
    let ca = cluster.file("ca.crt");

    let url = cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    );
    let line = one_line_failure(&ping(&cluster, &url), 1);
    assert!(line.contains("certificate"), "{line}");
    assert!(
        line.contains("UnknownIssuer") || line.contains("issuer"),
        "{line}"
    );

    let url = cluster.url(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let line = one_line_failure(&ping(&cluster, &url), 1);
    assert!(
        line.contains("certificate") && line.contains("127.0.0.2"),
        "{line}"
    );

    let line = one_line_failure(
        &ping(&cluster, &cluster.url("127.0.0.1", "sslmode=disable")),
        1,
    );
    assert!(line.contains("no encryption"), "{line}");

    // Settings that cannot work are configuration errors (exit 2), named before connecting.
    let url = cluster.url(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=missing-ca.crt",
    );
    let line = one_line_failure(&ping(&cluster, &url), 2);
    assert!(
        line.contains("sslrootcert=missing-ca.crt: no such file"),
        "{line}"
    );
    assert!(line.contains("DATABASE_URL"), "{line}");

    let line = one_line_failure(&ping(&cluster, &cluster.url("127.0.0.1", "ssl=on")), 2);
    assert!(line.contains("ssl=on is not a TLS mode"), "{line}");
    assert!(!cluster.log().contains("PANIC"));
}

/// `pg_dump` and `psql` get the URL's TLS settings, over whatever `PGSSLMODE` the process
/// inherited: with `PGSSLMODE=disable` around it, a backup and a restore from a URL that says
/// `sslmode=verify-full` still go through (the server accepts only TLS).
#[test]
fn backup_and_restore_go_through_tls_with_the_urls_settings() {
    let cluster = TlsCluster::start();
    let ca = cluster.file("ca.crt");
    let url = cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let dir = cluster.dir.path();
    let inherited = [
        ("PGSSLMODE", "disable"),
        ("PGSSLROOTCERT", "/nonexistent.crt"),
    ];
    succeeded(&app_at(dir, &url, &["database", "upgrade"], &inherited));
    succeeded(&app_at(
        dir,
        &url,
        &["database", "load-fixtures"],
        &inherited,
    ));
    let create = |email: &str| {
        let args = [
            "user",
            "create",
            "--email",
            email,
            "--password",
            crate::api::PASSWORD,
        ];
        succeeded(&app_at(dir, &url, &args, &inherited));
    };
    create("ann@tls.test");
    for format in ["custom", "plain"] {
        let file = dir.join(format!("tls-{format}.bak"));
        let file = file.to_str().unwrap();
        succeeded(&app_at(
            dir,
            &url,
            &["database", "backup", "--format", format, "--output", file],
            &inherited,
        ));
        create(&format!("{format}@tls.test"));
        assert_eq!(
            cluster.emails(),
            ["ann@tls.test", &format!("{format}@tls.test")]
        );
        let out = app_at(dir, &url, &["database", "restore", file], &inherited);
        assert!(succeeded(&out).contains("Restored"));
        assert_eq!(cluster.emails(), ["ann@tls.test"], "{format}");
    }
}
