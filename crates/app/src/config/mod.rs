//! Typed settings, read once at start.
//!
//! `Settings::load` reads `.env.{APP_ENV}` and then `.env` from the working directory, under the
//! process environment (a variable set in the process wins over both files, and `.env.{APP_ENV}`
//! wins over `.env`). Every value is checked here; nothing deeper in the program reads the
//! environment.

mod database_url;
mod parse;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use database_url::{Backend, DatabaseUrl};
use parse::Source;

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
    pub fixture_path: PathBuf,
    /// Statements running longer than this are logged as warnings; `None` turns that off (the
    /// tooling commands do, as their bulk statements are slow by nature). Not a variable.
    pub slow_statement_warning: Option<Duration>,
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

/// Every setting of the program.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub secret_key: Redacted,
    /// How long an access token from `/api/access/login` is valid.
    pub token_lifetime: Duration,
    /// A tracing filter: `RUST_LOG` when set, else `LOG_LEVEL`.
    pub log_filter: String,
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
    pub const FIXTURE_PATH: &str = "crates/app/fixtures";
    pub const LOG_LEVEL: &str = "info";
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 8000;
    pub const MAX_BODY_BYTES: u32 = 1024 * 1024;
    pub const ACCESS_TOKEN_EXPIRE_MINUTES: u32 = 60;
    /// Used outside production when SECRET_KEY is unset; tokens signed with it are not secret.
    pub const DEVELOPMENT_SECRET_KEY: &str = "development-only-secret-key-do-not-use-in-production";
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
        let database = DatabaseSettings {
            url: DatabaseUrl::parse(src.get("DATABASE_URL").unwrap_or(defaults::DATABASE_URL))?,
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
            fixture_path: src.path("DATABASE_FIXTURE_PATH", defaults::FIXTURE_PATH)?,
            slow_statement_warning: Some(Duration::from_secs(1)),
        };
        let http = HttpSettings {
            host: src.text("APP_HOST", defaults::HOST)?,
            port: src.port("APP_PORT", defaults::PORT)?,
            max_body_bytes: src.count("APP_MAX_BODY_BYTES", defaults::MAX_BODY_BYTES, 1024)?
                as usize,
        };
        let token_minutes = src.count(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            defaults::ACCESS_TOKEN_EXPIRE_MINUTES,
            1,
        )?;
        let secret_key = match src.get("SECRET_KEY") {
            Some(key) if key.len() >= 32 => Redacted::new(key),
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
            None => Redacted::new(defaults::DEVELOPMENT_SECRET_KEY),
        };
        let log_filter = match src.get("RUST_LOG") {
            Some(filter) => parse::log_filter("RUST_LOG", filter)?,
            None => parse::log_level(
                "LOG_LEVEL",
                src.get("LOG_LEVEL").unwrap_or(defaults::LOG_LEVEL),
            )?,
        };
        Ok(Settings {
            environment,
            database,
            http,
            secret_key,
            token_lifetime: Duration::from_secs(u64::from(token_minutes) * 60),
            log_filter,
        })
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
