//! `DATABASE_REPLICA_URLS` and the settings of read replicas.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use super::parse::Source;
use super::{ConfigError, DatabaseUrl};

const VAR: &str = "DATABASE_REPLICA_URLS";

/// Seconds a replica may lag behind the primary before reads skip it.
pub const DEFAULT_MAX_LAG_SECS: f64 = 5.0;

/// Streaming replicas of the primary that read-only requests may read from.
#[derive(Debug, Clone, Default)]
pub struct ReplicaSettings {
    /// One per URL, in the order given.
    pub replicas: Vec<ReplicaUrl>,
    /// A replica lagging more than this is skipped (`DATABASE_REPLICA_MAX_LAG`).
    pub max_lag: Duration,
}

/// One replica's connection options (the same forms and TLS parameters as `DATABASE_URL`).
#[derive(Debug, Clone)]
pub struct ReplicaUrl {
    pub options: PgConnectOptions,
    /// `pgbouncer=true`: the replica is reached through a transaction pooler.
    pub pgbouncer: bool,
    /// `host:port/database`: no user or password, for `/health`, metrics and logs.
    pub name: String,
}

impl ReplicaSettings {
    /// Reads the replica settings; replicas need a PostgreSQL primary.
    pub(super) fn from_source(
        src: &Source<'_>,
        primary: &DatabaseUrl,
    ) -> Result<Self, ConfigError> {
        let (max_lag_secs, raw) =
            src.raw_seconds("DATABASE_REPLICA_MAX_LAG", DEFAULT_MAX_LAG_SECS)?;
        if !max_lag_secs.is_finite() || !(0.0..=86_400.0).contains(&max_lag_secs) {
            return Err(ConfigError::new(
                "DATABASE_REPLICA_MAX_LAG",
                raw,
                "must be a number of seconds from 0 to 86400",
            ));
        }
        let max_lag = Duration::from_secs_f64(max_lag_secs);
        let Some(value) = src.get(VAR) else {
            return Ok(ReplicaSettings {
                replicas: Vec::new(),
                max_lag,
            });
        };
        let mut replicas = Vec::new();
        for raw in value
            .split(',')
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
        {
            // The URL's own parser, with its messages; they name this variable instead.
            let parsed = DatabaseUrl::parse(raw)
                .map_err(|err| ConfigError::new(VAR, &err.value, err.reason))?;
            let DatabaseUrl::Postgres {
                options,
                display,
                pgbouncer,
                ..
            } = parsed
            else {
                return Err(ConfigError::new(
                    VAR,
                    &parsed.to_string(),
                    "a replica must be a PostgreSQL URL (postgresql://...)",
                ));
            };
            let name = name_of(&options);
            if replicas.iter().any(|known: &ReplicaUrl| known.name == name) {
                return Err(ConfigError::new(
                    VAR,
                    &display,
                    format!("{name} is listed twice"),
                ));
            }
            replicas.push(ReplicaUrl {
                options: *options,
                pgbouncer,
                name,
            });
        }
        if !replicas.is_empty() && !matches!(primary, DatabaseUrl::Postgres { .. }) {
            return Err(ConfigError::new(
                VAR,
                value,
                "read replicas need a PostgreSQL DATABASE_URL; SQLite has none",
            ));
        }
        Ok(ReplicaSettings { replicas, max_lag })
    }
}

/// `host:port/database` of a connection (a socket folder stands for the host).
fn name_of(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Settings;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, crate::config::ConfigError> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("APP_ENV".into(), "testing".into());
        Settings::from_vars(&map)
    }

    #[test]
    fn replica_urls_are_read_in_order_without_passwords() {
        let settings = settings(&[
            ("DATABASE_URL", "postgresql+asyncpg://app:secret@db:5432/app"),
            (
                "DATABASE_REPLICA_URLS",
                "postgresql+asyncpg://app:secret@r1:5433/app, postgres://app@r2/app?sslmode=require",
            ),
            ("DATABASE_REPLICA_MAX_LAG", "2.5"),
        ])
        .unwrap();
        let replicas = &settings.database.replicas;
        let names: Vec<&str> = replicas.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["r1:5433/app", "r2:5432/app"]);
        assert_eq!(replicas.max_lag.as_secs_f64(), 2.5);
    }

    #[test]
    fn no_replicas_by_default_and_a_five_second_lag_limit() {
        let settings = settings(&[]).unwrap();
        assert!(settings.database.replicas.replicas.is_empty());
        assert_eq!(settings.database.replicas.max_lag.as_secs(), 5);
    }

    #[test]
    fn bad_replica_settings_name_the_variable_and_hide_passwords() {
        let sqlite = settings(&[
            ("DATABASE_URL", "sqlite::memory:"),
            ("DATABASE_REPLICA_URLS", "postgres://u@r1/app"),
        ])
        .unwrap_err();
        assert_eq!(sqlite.var, "DATABASE_REPLICA_URLS");
        assert!(sqlite.reason.contains("SQLite"), "{sqlite}");
        let malformed = settings(&[
            ("DATABASE_URL", "postgres://u@db/app"),
            ("DATABASE_REPLICA_URLS", "mysql://u:hunter2@r1/app"),
        ])
        .unwrap_err();
        assert_eq!(malformed.var, "DATABASE_REPLICA_URLS");
        assert!(!malformed.to_string().contains("hunter2"), "{malformed}");
        let not_pg = settings(&[
            ("DATABASE_URL", "postgres://u@db/app"),
            ("DATABASE_REPLICA_URLS", "sqlite:///r.db"),
        ])
        .unwrap_err();
        assert!(not_pg.reason.contains("PostgreSQL"), "{not_pg}");
        let twice = settings(&[
            ("DATABASE_URL", "postgres://u@db/app"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://u@r1/app,postgres://v@r1/app",
            ),
        ])
        .unwrap_err();
        assert!(twice.reason.contains("twice"), "{twice}");
        let lag = settings(&[("DATABASE_REPLICA_MAX_LAG", "-1")]).unwrap_err();
        assert_eq!(lag.var, "DATABASE_REPLICA_MAX_LAG");
    }
}
