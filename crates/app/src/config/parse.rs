//! Parsers for single setting values; each error names the variable and the value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;

/// A view of the merged variables that parses typed values out of them.
pub(super) struct Source<'a> {
    vars: &'a HashMap<String, String>,
}

impl<'a> Source<'a> {
    pub(super) fn new(vars: &'a HashMap<String, String>) -> Self {
        Self { vars }
    }

    /// The raw value; an empty value counts as unset, as in the reference's `.env` files.
    pub(super) fn get(&self, var: &str) -> Option<&'a str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|value| !value.trim().is_empty())
    }

    pub(super) fn bool(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                var,
                value,
                "expected true or false (also 1/0, yes/no, on/off)",
            )),
        }
    }

    /// A whole number of at least `min`.
    pub(super) fn count(&self, var: &str, default: u32, min: u32) -> Result<u32, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default);
        };
        let number: i64 = value
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(var, value, "expected a whole number"))?;
        if number < i64::from(min) {
            return Err(ConfigError::new(
                var,
                value,
                format!("must be at least {min}"),
            ));
        }
        u32::try_from(number)
            .map_err(|_| ConfigError::new(var, value, format!("must be at most {}", u32::MAX)))
    }

    /// The number of seconds `var` gives (fractions allowed), `default` when unset, and the
    /// text it was read from (empty when unset) for messages; range checks are the caller's.
    pub(super) fn raw_seconds(&self, var: &str, default: f64) -> Result<(f64, &str), ConfigError> {
        match self.get(var) {
            None => Ok((default, "")),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .map(|secs| (secs, value))
                .map_err(|_| ConfigError::new(var, value, "expected a number of seconds")),
        }
    }

    /// A positive number of seconds, fractions allowed.
    pub(super) fn seconds(&self, var: &str, default: f64) -> Result<Duration, ConfigError> {
        let (secs, value) = self.raw_seconds(var, default)?;
        if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
            return Err(ConfigError::new(
                var,
                value,
                "must be a number of seconds greater than 0",
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Whole seconds a connection may live; -1 means forever (as in the reference).
    pub(super) fn recycle(&self, var: &str, default: i64) -> Result<Option<Duration>, ConfigError> {
        let (raw, secs) = match self.get(var) {
            None => ("", default),
            Some(value) => (
                value,
                value.trim().parse::<i64>().map_err(|_| {
                    ConfigError::new(
                        var,
                        value,
                        "expected a whole number of seconds, or -1 for never",
                    )
                })?,
            ),
        };
        match secs {
            -1 => Ok(None),
            secs if secs > 0 => Ok(Some(Duration::from_secs(secs.unsigned_abs()))),
            _ => Err(ConfigError::new(
                var,
                raw,
                "must be a positive number of seconds, or -1 for never",
            )),
        }
    }

    pub(super) fn port(&self, var: &str, default: u16) -> Result<u16, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default);
        };
        value
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(var, value, "expected a port number from 0 to 65535"))
    }

    pub(super) fn text(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.get(var).unwrap_or(default).trim().to_string())
    }

    pub(super) fn path(&self, var: &str, default: &str) -> Result<PathBuf, ConfigError> {
        Ok(PathBuf::from(self.get(var).unwrap_or(default).trim()))
    }

    /// A path, or `None` when the variable is unset or empty.
    pub(super) fn optional_path(&self, var: &str) -> Option<PathBuf> {
        self.get(var)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    }

    /// A plain SQL identifier: letters, digits and underscores, not starting with a digit.
    pub(super) fn identifier(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.get(var).unwrap_or(default).trim();
        let mut chars = value.chars();
        let valid_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || value.len() > 63
        {
            return Err(ConfigError::new(
                var,
                value,
                "expected a table name of letters, digits and underscores (at most 63)",
            ));
        }
        Ok(value.to_string())
    }
}

/// Checks a tracing filter such as `info` or `app=debug,sqlx=warn`.
pub(super) fn log_filter(var: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map_err(|err| ConfigError::new(var, value, format!("not a log level or filter: {err}")))?;
    Ok(value.to_string())
}

/// A level name as the reference accepts it (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`,
/// or their numbers 10-50), turned into a tracing level.
pub(super) fn log_level(var: &str, value: &str) -> Result<String, ConfigError> {
    let level = match value.trim().to_ascii_lowercase().as_str() {
        "trace" | "5" => "trace",
        "debug" | "10" => "debug",
        "info" | "20" => "info",
        "warn" | "warning" | "30" => "warn",
        "error" | "critical" | "fatal" | "40" | "50" => "error",
        "off" => "off",
        _ => {
            return Err(ConfigError::new(
                var,
                value,
                "expected one of trace, debug, info, warning, error, critical",
            ));
        }
    };
    Ok(level.to_string())
}
