//! `DATABASE_URL` in both the reference's SQLAlchemy style and sqlx's style.
//!
//! | written                                  | means                                   |
//! |------------------------------------------|-----------------------------------------|
//! | `postgresql+asyncpg://u:p@h:5432/db`     | PostgreSQL (also `+psycopg`, `+psycopg2`) |
//! | `postgresql://...`, `postgres://...`     | PostgreSQL                              |
//! | `sqlite+aiosqlite:///db.sqlite3`         | SQLite file `db.sqlite3`, relative      |
//! | `sqlite+aiosqlite:////var/db.sqlite3`    | SQLite file `/var/db.sqlite3`, absolute |
//! | `sqlite+aiosqlite:///:memory:`           | SQLite in memory                        |
//! | `sqlite://db.sqlite3`, `sqlite:db.sqlite3` | SQLite file, as sqlx reads it         |
//! | `sqlite::memory:`                        | SQLite in memory                        |
//!
//! TLS: libpq's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, or asyncpg's `ssl=<mode>`
//! (see `pg_tls`). A transaction pooler in front of PostgreSQL: `pgbouncer=true` (see `pooler`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::ConfigError;
use super::pg_tls;
use super::pooler;

const VAR: &str = "DATABASE_URL";

/// Which kind of database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgresql,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgresql => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated `DATABASE_URL`.
#[derive(Clone)]
pub enum DatabaseUrl {
    Postgres {
        options: Box<PgConnectOptions>,
        /// The URL with its password hidden, for messages and logs.
        display: String,
        /// The password, for tools run as child processes (`app database backup`), which get
        /// it by environment; never shown.
        password: Option<String>,
        /// `pgbouncer=true`: the server is a transaction pooler, and the driver uses only
        /// statements one accepts (no named prepared statement outside a transaction).
        pgbouncer: bool,
    },
    /// `path: None` is an in-memory database.
    Sqlite { path: Option<PathBuf> },
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres { display, .. } => f.write_str(display),
            DatabaseUrl::Sqlite { path: None } => f.write_str("sqlite::memory:"),
            DatabaseUrl::Sqlite { path: Some(path) } => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl DatabaseUrl {
    /// Parses any of the accepted forms; the error names `DATABASE_URL` and hides the password.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        let display = redact_password(raw);
        let invalid = |reason: String| ConfigError::new(VAR, &display, reason);
        let Some((scheme, rest)) = raw.split_once(':') else {
            return Err(invalid(
                "expected a URL such as postgresql+asyncpg://user:pass@host:5432/db or sqlite+aiosqlite:///db.sqlite3".into(),
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres"
            | "postgresql"
            | "postgresql+asyncpg"
            | "postgresql+psycopg"
            | "postgresql+psycopg2" => {
                let (url, pgbouncer) =
                    pooler::take(&format!("postgres:{rest}")).map_err(&invalid)?;
                let url = pg_tls::normalize(&url).map_err(&invalid)?;
                let mut options = PgConnectOptions::from_str(&url)
                    .map_err(|err| invalid(format!("not a PostgreSQL URL: {err}")))?;
                if pgbouncer {
                    // A statement cached on one server connection is not on the next one the
                    // pooler hands out.
                    options = options.statement_cache_capacity(0);
                }
                let password = url::Url::parse(&url)
                    .ok()
                    .and_then(|parsed| parsed.password().map(percent_decode));
                Ok(DatabaseUrl::Postgres {
                    options: Box::new(options),
                    display,
                    password,
                    pgbouncer,
                })
            }
            "sqlite+aiosqlite" | "sqlite+pysqlite" => {
                // SQLAlchemy: `sqlite:///rel` is relative, `sqlite:////abs` absolute.
                let path = rest.strip_prefix("///").ok_or_else(|| {
                    invalid("expected three slashes, as in sqlite+aiosqlite:///db.sqlite3".into())
                })?;
                Self::sqlite(path).map_err(invalid)
            }
            "sqlite" => {
                // sqlx: `sqlite://path`, `sqlite:path`, `sqlite::memory:`.
                let path = rest.strip_prefix("//").unwrap_or(rest);
                Self::sqlite(path).map_err(invalid)
            }
            _ => Err(invalid(format!(
                "unknown scheme {scheme:?}; use postgresql+asyncpg://, postgresql://, postgres://, sqlite+aiosqlite:/// or sqlite://"
            ))),
        }
    }

    fn sqlite(path: &str) -> Result<Self, String> {
        if path.contains('?') {
            return Err("query parameters are not supported in SQLite URLs".into());
        }
        match path {
            "" => Err("the SQLite URL names no file".into()),
            ":memory:" => Ok(DatabaseUrl::Sqlite { path: None }),
            path => Ok(DatabaseUrl::Sqlite {
                path: Some(PathBuf::from(path)),
            }),
        }
    }

    /// Whether the URL says the server is a transaction pooler (`pgbouncer=true`).
    pub fn pgbouncer(&self) -> bool {
        matches!(
            self,
            DatabaseUrl::Postgres {
                pgbouncer: true,
                ..
            }
        )
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Postgres { .. } => Backend::Postgresql,
            DatabaseUrl::Sqlite { .. } => Backend::Sqlite,
        }
    }
}

/// Decodes `%XX` escapes (as in a URL's user info); other bytes are kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces the password of `scheme://user:password@host` with `***`.
fn redact_password(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = raw[authority_start..]
        .find('/')
        .map_or(raw.len(), |i| authority_start + i);
    let authority = &raw[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return raw.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!(
            "{}{user}:***{}",
            &raw[..authority_start],
            &raw[authority_start + at..]
        ),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_decoded_password_for_backup_tools() {
        let url = DatabaseUrl::parse("postgresql://app:p%40ss+w@db:5432/app").unwrap();
        let DatabaseUrl::Postgres { password, .. } = &url else {
            panic!("PostgreSQL")
        };
        assert_eq!(password.as_deref(), Some("p@ss+w"));
        assert!(!format!("{url:?}").contains("p@ss"));
    }

    #[test]
    fn hides_the_password() {
        assert_eq!(
            redact_password("postgresql+asyncpg://app:s3cret@db:5432/app"),
            "postgresql+asyncpg://app:***@db:5432/app"
        );
        assert_eq!(
            redact_password("postgres://app@db/app"),
            "postgres://app@db/app"
        );
        assert_eq!(redact_password("sqlite:///x.db"), "sqlite:///x.db");
    }
}
