//! How `upgrade` and `downgrade` guard each migration on PostgreSQL: the
//! `DATABASE_MIGRATION_LOCK_TIMEOUT`, `DATABASE_MIGRATION_STATEMENT_TIMEOUT` and
//! `DATABASE_MIGRATION_LOCK_RETRIES` variables.

use std::time::Duration;

use super::ConfigError;
use super::parse::Source;

/// Seconds a migration waits for a lock before it is rolled back and retried. Short: while an
/// `ALTER TABLE` waits for its lock, every query on the table queues behind it.
pub const LOCK_TIMEOUT_SECS: f64 = 5.0;
/// Seconds a migration statement may run; 0 is no limit. None by default: a backfill or a
/// table rewrite may take long by nature, and the lock timeout already bounds the waiting.
pub const STATEMENT_TIMEOUT_SECS: f64 = 0.0;
/// Times a migration that hit the lock timeout is run again (after 1, 2, 4, ... s, with jitter).
pub const LOCK_RETRIES: u32 = 5;

/// The migration timeouts; `None` sets no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationTimeouts {
    pub lock_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
    pub lock_retries: u32,
}

impl Default for MigrationTimeouts {
    fn default() -> Self {
        MigrationTimeouts {
            lock_timeout: Some(Duration::from_secs_f64(LOCK_TIMEOUT_SECS)),
            statement_timeout: None,
            lock_retries: LOCK_RETRIES,
        }
    }
}

impl MigrationTimeouts {
    pub(super) fn from_source(src: &Source<'_>) -> Result<Self, ConfigError> {
        Ok(MigrationTimeouts {
            lock_timeout: timeout(src, "DATABASE_MIGRATION_LOCK_TIMEOUT", LOCK_TIMEOUT_SECS)?,
            statement_timeout: timeout(
                src,
                "DATABASE_MIGRATION_STATEMENT_TIMEOUT",
                STATEMENT_TIMEOUT_SECS,
            )?,
            lock_retries: src.count("DATABASE_MIGRATION_LOCK_RETRIES", LOCK_RETRIES, 0)?,
        })
    }
}

/// Seconds (fractions allowed) or 0 for no limit.
fn timeout(src: &Source<'_>, var: &str, default: f64) -> Result<Option<Duration>, ConfigError> {
    let (secs, value) = src.raw_seconds(var, default)?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(ConfigError::new(
            var,
            value,
            "must be a number of seconds from 0 (no limit) to 86400",
        ));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<MigrationTimeouts, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MigrationTimeouts::from_source(&Source::new(&vars))
    }

    #[test]
    fn defaults_bound_the_lock_wait_and_not_the_statements() {
        assert_eq!(read(&[]).unwrap(), MigrationTimeouts::default());
        assert_eq!(
            MigrationTimeouts::default().lock_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(MigrationTimeouts::default().statement_timeout, None);
    }

    #[test]
    fn zero_is_no_limit_and_fractions_are_allowed() {
        let t = read(&[
            ("DATABASE_MIGRATION_LOCK_TIMEOUT", "0"),
            ("DATABASE_MIGRATION_STATEMENT_TIMEOUT", "1.5"),
            ("DATABASE_MIGRATION_LOCK_RETRIES", "0"),
        ])
        .unwrap();
        assert_eq!(t.lock_timeout, None);
        assert_eq!(t.statement_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(t.lock_retries, 0);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("DATABASE_MIGRATION_LOCK_TIMEOUT", "-1"),
            ("DATABASE_MIGRATION_STATEMENT_TIMEOUT", "soon"),
            ("DATABASE_MIGRATION_LOCK_RETRIES", "-2"),
        ] {
            let err = read(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
