//! Typed settings, read once at start.
//!
//! `Settings::load` reads `.env.{APP_ENV}` and then `.env` from the working directory, under the
//! process environment (a variable set in the process wins over both files, and `.env.{APP_ENV}`
//! wins over `.env`). Every value is checked here; nothing deeper in the program reads the
//! environment.

mod database_url;
mod migration;
mod parse;
mod pg_tls;
mod pooler;
mod replicas;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use database_url::{Backend, DatabaseUrl};
pub use migration::MigrationTimeouts;
use parse::Source;
pub(crate) use pg_tls::tool_env as pg_tool_tls_env;
pub use replicas::{ReplicaSettings, ReplicaUrl};

/// A setting whose value cannot be used. Names the variable and the value it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(var: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The deployment environment named by `APP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Testing,
    Production,
}

impl Environment {
    /// The lowercase name used in `APP_ENV` and in `.env.{name}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Testing => "testing",
            Environment::Production => "production",
        }
    }

    fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "testing" | "test" => Ok(Environment::Testing),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err(ConfigError::new(
                "APP_ENV",
                value,
                "expected development, testing or production",
            )),
        }
    }
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl LogFormat {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(ConfigError::new(
                "LOG_FORMAT",
                value,
                "expected text or json",
            )),
        }
    }
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redacted(..)")
    }
}

/// Where the key that signs tokens comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeySource {
    /// `SECRET_KEY`.
    Setting,
    /// `SECRET_KEY` is unset, which only production refuses: a random key kept for this
    /// machine in this file (`LOCAL_SECRET_KEY_PATH`, relative to the working directory), read
    /// or made by [`Settings::load_local_secret_key`]. Until that is called, `secret_key` is a
    /// random key of this process alone.
    LocalFile(PathBuf),
}

/// The key file [`Settings::load_local_secret_key`] put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSecretKey {
    pub path: PathBuf,
    /// Made by this call, rather than kept from an earlier run.
    pub created: bool,
}

/// Connection, pool and tooling settings of the database (the `DATABASE_*` variables).
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    /// Log every SQL statement with its duration.
    pub echo: bool,
    /// Log pool events: open, checkout, checkin, recycle, close, wait.
    pub echo_pool: bool,
    /// Open a fresh connection per checkout and close it on release.
    pub pool_disabled: bool,
    /// Connections kept open.
    pub pool_size: u32,
    /// Extra connections allowed under load; closed as soon as they are returned to a full pool.
    pub max_overflow: u32,
    /// How long a checkout waits for a connection before failing.
    pub pool_timeout: Duration,
    /// How long a connection may live; `None` keeps connections forever.
    pub pool_recycle: Option<Duration>,
    /// Test each connection before handing it out.
    pub pre_ping: bool,
    pub migration_path: PathBuf,
    pub version_table: String,
    /// Lint findings fail `make-migrations`, `upgrade` and `check` (as their `--strict`).
    pub migration_strict: bool,
    /// The folder of the JSON fixtures (`DATABASE_FIXTURE_PATH`); `None` uses those compiled
    /// into the binary.
    pub fixture_path: Option<PathBuf>,
    /// Statements running longer than this are logged as warnings; `None` turns that off (the
    /// tooling commands do, as their bulk statements are slow by nature). Not a variable.
    pub slow_statement_warning: Option<Duration>,
    /// Lock and statement timeouts of each migration, and lock-timeout retries (PostgreSQL).
    pub migration_timeouts: MigrationTimeouts,
    /// Read replicas (`DATABASE_REPLICA_URLS`, `DATABASE_REPLICA_MAX_LAG`).
    pub replicas: ReplicaSettings,
}

impl DatabaseSettings {
    /// The most connections the pool opens at once.
    pub fn max_connections(&self) -> u32 {
        self.pool_size.saturating_add(self.max_overflow)
    }
}

/// Where the HTTP server listens, and what it accepts.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Request bodies larger than this answer 413.
    pub max_body_bytes: usize,
    /// How long `app run` waits, after SIGTERM or Ctrl-C, for requests in flight before it
    /// cuts them off (`APP_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
}

impl HttpSettings {
    /// `host:port`, ready for a listener.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How failed sign-ins are throttled (the `LOGIN_*` variables). The counts live in the
/// database, so every instance sharing it enforces the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Failed sign-ins for one email within `window` after which further sign-ins to it answer
    /// 429, unknown emails included.
    pub max_failures_per_account: u32,
    /// Failed sign-ins from one client address (an IPv6 client: its /64 network) within
    /// `window` after which further sign-ins from it answer 429.
    pub max_failures_per_address: u32,
    /// How long a failed sign-in counts.
    pub window: Duration,
}

/// Every setting of the program.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    /// The key that signs tokens; see [`SecretKeySource`] for where it comes from.
    pub secret_key: Redacted,
    pub secret_key_source: SecretKeySource,
    /// How long an access token from `/api/access/login` is valid.
    pub token_lifetime: Duration,
    /// Limits on failed sign-ins.
    pub login_throttle: LoginThrottle,
    /// A tracing filter: `RUST_LOG` when set, else `LOG_LEVEL`.
    pub log_filter: String,
    pub log_format: LogFormat,
}

/// Defaults of the reference system, kept so its `.env` files work unchanged.
pub mod defaults {
    pub const DATABASE_URL: &str = "sqlite+aiosqlite:///db.sqlite3";
    pub const POOL_SIZE: u32 = 5;
    pub const MAX_POOL_OVERFLOW: u32 = 10;
    pub const POOL_TIMEOUT_SECS: f64 = 30.0;
    pub const POOL_RECYCLE_SECS: i64 = 300;
    pub const MIGRATION_PATH: &str = "crates/app/src/migrations";
    pub const VERSION_TABLE: &str = "ddl_version";
    pub const LOG_LEVEL: &str = "info";
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 8000;
    pub const MAX_BODY_BYTES: u32 = 1024 * 1024;
    pub const ACCESS_TOKEN_EXPIRE_MINUTES: u32 = 60;
    /// Failed sign-ins per email within the window before sign-ins to it answer 429.
    pub const LOGIN_MAX_FAILURES: u32 = 5;
    /// Failed sign-ins per client address within the window before its sign-ins answer 429.
    pub const LOGIN_MAX_FAILURES_PER_ADDRESS: u32 = 20;
    /// Seconds a failed sign-in counts (15 minutes).
    pub const LOGIN_THROTTLE_WINDOW_SECS: f64 = 900.0;
    /// Seconds a stopping server answers the requests in flight before it cuts them off.
    pub const SHUTDOWN_TIMEOUT_SECS: f64 = 10.0;
    /// Where the key made for this machine is kept when SECRET_KEY is unset (outside production).
    pub const LOCAL_SECRET_KEY_PATH: &str = ".app/local_secret_key";
}

impl Settings {
    /// Reads the process environment and the `.env` files of the working directory.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(Path::new("."), std::env::vars().collect())
    }

    /// Reads `process_env` layered over the `.env` files found in `dir`.
    pub fn load_from(
        dir: &Path,
        process_env: HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let app_env = match process_env.get("APP_ENV") {
            Some(value) => Environment::parse(value)?,
            None => Environment::Development,
        };
        let mut merged = read_env_file(&dir.join(".env"))?;
        merged.extend(read_env_file(
            &dir.join(format!(".env.{}", app_env.as_str())),
        )?);
        merged.extend(process_env);
        Self::from_vars(&merged)
    }

    /// Builds settings from variables alone, with no file access.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let src = Source::new(vars);
        let environment = match src.get("APP_ENV") {
            Some(value) => Environment::parse(value)?,
            None => Environment::Development,
        };
        let url = DatabaseUrl::parse(src.get("DATABASE_URL").unwrap_or(defaults::DATABASE_URL))?;
        let replicas = ReplicaSettings::from_source(&src, &url)?;
        let database = DatabaseSettings {
            url,
            echo: src.bool("DATABASE_ECHO", false)?,
            echo_pool: src.bool("DATABASE_ECHO_POOL", false)?,
            pool_disabled: src.bool("DATABASE_POOL_DISABLED", false)?,
            pool_size: src.count("DATABASE_POOL_SIZE", defaults::POOL_SIZE, 1)?,
            max_overflow: src.count(
                "DATABASE_MAX_POOL_OVERFLOW",
                defaults::MAX_POOL_OVERFLOW,
                0,
            )?,
            pool_timeout: src.seconds("DATABASE_POOL_TIMEOUT", defaults::POOL_TIMEOUT_SECS)?,
            pool_recycle: src.recycle("DATABASE_POOL_RECYCLE", defaults::POOL_RECYCLE_SECS)?,
            pre_ping: src.bool("DATABASE_PRE_POOL_PING", false)?,
            migration_path: src.path("DATABASE_MIGRATION_PATH", defaults::MIGRATION_PATH)?,
            version_table: src.identifier(
                "DATABASE_MIGRATION_DDL_VERSION_TABLE",
                defaults::VERSION_TABLE,
            )?,
            migration_strict: src.bool("DATABASE_MIGRATION_STRICT", false)?,
            fixture_path: src.optional_path("DATABASE_FIXTURE_PATH"),
            slow_statement_warning: Some(Duration::from_secs(1)),
            migration_timeouts: MigrationTimeouts::from_source(&src)?,
            replicas,
        };
        let http = HttpSettings {
            host: src.text("APP_HOST", defaults::HOST)?,
            port: src.port("APP_PORT", defaults::PORT)?,
            max_body_bytes: src.count("APP_MAX_BODY_BYTES", defaults::MAX_BODY_BYTES, 1024)?
                as usize,
            shutdown_timeout: src
                .seconds("APP_SHUTDOWN_TIMEOUT", defaults::SHUTDOWN_TIMEOUT_SECS)?,
        };
        let token_minutes = src.count(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            defaults::ACCESS_TOKEN_EXPIRE_MINUTES,
            1,
        )?;
        let login_throttle = LoginThrottle {
            max_failures_per_account: src.count(
                "LOGIN_MAX_FAILURES",
                defaults::LOGIN_MAX_FAILURES,
                1,
            )?,
            max_failures_per_address: src.count(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                defaults::LOGIN_MAX_FAILURES_PER_ADDRESS,
                1,
            )?,
            window: src.seconds(
                "LOGIN_THROTTLE_WINDOW",
                defaults::LOGIN_THROTTLE_WINDOW_SECS,
            )?,
        };
        let (secret_key, secret_key_source) = match src.get("SECRET_KEY") {
            Some(key) if key.len() >= 32 => (Redacted::new(key), SecretKeySource::Setting),
            Some(key) => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    "(hidden)",
                    format!("must be at least 32 characters, got {}", key.len()),
                ));
            }
            None if environment == Environment::Production => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    "",
                    "is required when APP_ENV=production; set it to a random string of 32 or more characters",
                ));
            }
            // Never a constant: a key written in the source signs tokens anyone can forge.
            // This one lives as long as the process; `app run` swaps in the one kept on disk.
            None => (
                local_secret::random_key()
                    .map_err(|err| ConfigError::new("SECRET_KEY", "", err.to_string()))?,
                SecretKeySource::LocalFile(
                    src.path("LOCAL_SECRET_KEY_PATH", defaults::LOCAL_SECRET_KEY_PATH)?,
                ),
            ),
        };
        let log_filter = match src.get("RUST_LOG") {
            Some(filter) => parse::log_filter("RUST_LOG", filter)?,
            None => parse::log_level(
                "LOG_LEVEL",
                src.get("LOG_LEVEL").unwrap_or(defaults::LOG_LEVEL),
            )?,
        };
        let log_format = LogFormat::parse(src.get("LOG_FORMAT").unwrap_or("text"))?;
        Ok(Settings {
            environment,
            database,
            http,
            secret_key,
            secret_key_source,
            token_lifetime: Duration::from_secs(u64::from(token_minutes) * 60),
            login_throttle,
            log_filter,
            log_format,
        })
    }
}

impl Settings {
    /// With [`SecretKeySource::LocalFile`], signs with the key kept in that file: reads it, or
    /// makes it when there is none yet (random, mode 0600 in a folder of mode 0700, linked into
    /// place whole so a second process starting at the same time reads the same key). Tokens
    /// then outlive a restart, and no two machines share a key. With `SECRET_KEY` set, does
    /// nothing and returns `None`. The only setting read from a file other than `.env`s, and
    /// only by the command that signs tokens (`app run`).
    pub fn load_local_secret_key(&mut self) -> Result<Option<LocalSecretKey>, ConfigError> {
        let SecretKeySource::LocalFile(path) = &self.secret_key_source else {
            return Ok(None);
        };
        let (key, created) = local_secret::read_or_create(path).map_err(|reason| {
            ConfigError::new("LOCAL_SECRET_KEY_PATH", &path.display().to_string(), reason)
        })?;
        self.secret_key = key;
        Ok(Some(LocalSecretKey {
            path: path.clone(),
            created,
        }))
    }
}

/// Reads one dotenv file; a missing file is empty, a malformed one is an error naming its line.
fn read_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(err) if err.not_found() => return Ok(HashMap::new()),
        Err(err) => return Err(env_file_error(path, err)),
    };
    let mut vars = HashMap::new();
    for item in iter {
        let (key, value) = item.map_err(|err| env_file_error(path, err))?;
        vars.insert(key, value);
    }
    Ok(vars)
}

fn env_file_error(path: &Path, err: dotenvy::Error) -> ConfigError {
    ConfigError::new(
        "env file",
        &path.display().to_string(),
        format!("cannot be read: {err}"),
    )
}

/// The signing key kept on disk when `SECRET_KEY` is unset outside production (as Rails keeps
/// `tmp/local_secret.txt`).
mod local_secret {
    use std::fs;
    use std::io::{self, Read, Write};
    use std::path::Path;

    use super::Redacted;

    /// 256 random bits, the size of an HS256 key.
    const KEY_BYTES: usize = 32;

    /// A new key: random bytes from the operating system, hex-encoded.
    pub(super) fn random_key() -> io::Result<Redacted> {
        let mut bytes = [0u8; KEY_BYTES];
        fs::File::open("/dev/urandom")
            .and_then(|mut source| source.read_exact(&mut bytes))
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot read random bytes from /dev/urandom ({err}); set SECRET_KEY"),
                )
            })?;
        Ok(Redacted::new(hex::encode(bytes)))
    }

    /// The key kept at `path`, made first when there is none; `true` when made now. The error
    /// is the reason, for a message that names the path.
    pub(super) fn read_or_create(path: &Path) -> Result<(Redacted, bool), String> {
        if let Some(key) = read(path)? {
            return Ok((key, false));
        }
        let key = random_key().map_err(|err| err.to_string())?;
        match create(path, key.expose()) {
            Ok(()) => Ok((key, true)),
            // Another process made it in the meantime: use theirs.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => match read(path)? {
                Some(key) => Ok((key, false)),
                None => Err("disappeared while it was being made".into()),
            },
            Err(err) => Err(format!(
                "cannot be created: {err}; set SECRET_KEY, or LOCAL_SECRET_KEY_PATH to a \
                 writable place"
            )),
        }
    }

    /// The key in the file; `None` when there is no file.
    fn read(path: &Path) -> Result<Option<Redacted>, String> {
        let mut file = match fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot be read: {err}")),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file
                .metadata()
                .map_err(|err| format!("cannot be read: {err}"))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "can be read by others (mode {mode:04o}); run `chmod 600 {}`, or delete it \
                     to make a new key (tokens signed with the old one stop working)",
                    path.display()
                ));
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|err| format!("cannot be read: {err}"))?;
        let key = text.trim();
        if key.len() < 32 {
            return Err(
                "holds no key of 32 or more characters; delete it to make a new one".into(),
            );
        }
        Ok(Some(Redacted::new(key)))
    }

    /// Writes `key` under a temporary name and links it to `path`, which fails when `path`
    /// exists: no reader ever sees half a key, and a key once made is never replaced.
    fn create(path: &Path, key: &str) -> io::Result<()> {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut folder = fs::DirBuilder::new();
        folder.recursive(true);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            folder.mode(0o700);
            options.mode(0o600);
        }
        folder.create(dir)?;
        let name = path.file_name().map_or_else(
            || "local_secret_key".into(),
            |name| name.to_string_lossy().into_owned(),
        );
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // Left over from a run of the same pid that died halfway.
        let _ = fs::remove_file(&temporary);
        let written = options.open(&temporary).and_then(|mut file| {
            file.write_all(format!("{key}\n").as_bytes())?;
            file.sync_all()?;
            fs::hard_link(&temporary, path)
        });
        let _ = fs::remove_file(&temporary);
        written
    }
}
