//! TLS to PostgreSQL, as libpq spells it in a URL: `sslmode` (`disable`, `allow`, `prefer`,
//! `require`, `verify-ca`, `verify-full`), `sslrootcert`, `sslcert`, `sslkey`; plus asyncpg's
//! `ssl=<mode>` spelling (SQLAlchemy URLs such as `postgresql+asyncpg://...?ssl=require`).
//!
//! The driver (sqlx over rustls) reads the libpq names itself; this module turns asyncpg's
//! spelling into them, checks the certificate files up front (a typo is a configuration error
//! at start, not a handshake failure later), and hands the same settings to the libpq tools
//! (`pg_dump`, `psql`, `pg_restore`) by environment so that backups travel as the service does.

use std::path::Path;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// libpq's modes; asyncpg accepts the same words for `ssl`.
const MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// URL parameter (libpq's name, and the other spellings sqlx accepts) and the libpq
/// environment variable that says the same to a child process.
const FILE_PARAMS: [(&[&str], &str); 3] = [
    (&["sslrootcert", "ssl-root-cert", "ssl-ca"], "PGSSLROOTCERT"),
    (&["sslcert", "ssl-cert"], "PGSSLCERT"),
    (&["sslkey", "ssl-key"], "PGSSLKEY"),
];

/// Every libpq variable a tool might inherit that this module decides instead.
const TOOL_VARS: [&str; 5] = [
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGREQUIRESSL",
];

/// Checks the TLS parameters of a `postgres:` URL and rewrites them for the driver: asyncpg's
/// `ssl=<mode>` becomes `sslmode=<mode>`, and `require` with a root certificate becomes
/// `verify-ca` (libpq's rule). Other URLs come back unchanged. The error is a sentence for
/// `DATABASE_URL`'s message.
pub(crate) fn normalize(url: &str) -> Result<String, String> {
    let Ok(parsed) = url::Url::parse(url) else {
        // Not for this module to judge: the driver's parser names what is wrong.
        return Ok(url.to_string());
    };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    // The last one wins, as in the driver.
    let param = |names: &[&str]| {
        pairs
            .iter()
            .rfind(|(key, _)| names.contains(&key.as_str()))
            .map(|(_, value)| value.clone())
    };
    let sslmode = param(&["sslmode", "ssl-mode"]);
    let ssl = param(&["ssl"]);
    for (name, value) in [("sslmode", &sslmode), ("ssl", &ssl)] {
        if let Some(value) = value
            && !MODES.contains(&value.as_str())
        {
            return Err(format!(
                "{name}={value} is not a TLS mode; use one of {}",
                MODES.join(", ")
            ));
        }
    }
    if let (Some(sslmode), Some(ssl)) = (&sslmode, &ssl)
        && sslmode != ssl
    {
        return Err(format!(
            "sslmode={sslmode} and ssl={ssl} disagree; give one of them"
        ));
    }
    for (names, _) in FILE_PARAMS {
        if let Some(path) = param(names)
            && !Path::new(&path).is_file()
        {
            return Err(format!("{}={path}: no such file", names[0]));
        }
    }
    if param(FILE_PARAMS[1].0).is_some() != param(FILE_PARAMS[2].0).is_some() {
        return Err("sslcert and sslkey go together; give both or neither".into());
    }
    let mode = ssl.clone().or(sslmode);
    // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca". The driver
    // alone would ignore the file and check nothing.
    let upgraded = mode.as_deref() == Some("require") && param(FILE_PARAMS[0].0).is_some();
    if ssl.is_none() && !upgraded {
        return Ok(url.to_string());
    }
    let mode = if upgraded {
        "verify-ca".to_string()
    } else {
        mode.unwrap_or_default()
    };
    let mut rewritten = parsed.clone();
    {
        let mut query = rewritten.query_pairs_mut();
        query.clear();
        for (key, value) in &pairs {
            match key.as_str() {
                "ssl" | "sslmode" | "ssl-mode" => {}
                _ => {
                    query.append_pair(key, value);
                }
            }
        }
        query.append_pair("sslmode", &mode);
    }
    Ok(rewritten.to_string())
}

/// The libpq environment that gives a tool the same TLS settings as `options` (which already
/// hold what the URL said, else what `PGSSLMODE` and friends said when it was parsed). Each
/// variable is either set or, when the setting is absent, removed (`None`), so an inherited
/// value cannot contradict the URL.
pub(crate) fn tool_env(options: &PgConnectOptions) -> Vec<(&'static str, Option<String>)> {
    let url = options.to_url_lossy();
    let value_of = |names: &[&str]| {
        url.query_pairs()
            .find(|(key, _)| names.contains(&key.as_ref()))
            .map(|(_, value)| value.into_owned())
    };
    // The driver writes a certificate file as `file: <path>`, and one given inline (PEM in
    // PGSSLROOTCERT) as its text, which is no path libpq could open: that one is left out.
    let path_of = |names: &[&str]| {
        value_of(names).and_then(|value| value.strip_prefix("file: ").map(str::to_string))
    };
    let mut env: Vec<(&'static str, Option<String>)> =
        TOOL_VARS.iter().map(|var| (*var, None)).collect();
    let mut set = |var: &str, value: Option<String>| {
        if let Some(slot) = env.iter_mut().find(|(name, _)| *name == var) {
            slot.1 = value;
        }
    };
    set("PGSSLMODE", value_of(&["sslmode"]));
    for (names, var) in FILE_PARAMS {
        set(var, path_of(names));
    }
    env
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn asyncpg_ssl_becomes_sslmode() {
        let url = normalize("postgres://u:p@db:5432/app?ssl=require&application_name=x").unwrap();
        let options = PgConnectOptions::from_str(&url).unwrap();
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::Require
        ));
        assert!(url.contains("application_name=x"), "{url}");
        assert!(
            !url.contains("ssl=require&") && !url.contains("?ssl="),
            "{url}"
        );
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not read here").unwrap();
        for query in ["sslmode=require", "ssl=require"] {
            let url = format!("postgres://db/app?{query}&sslrootcert={}", ca.display());
            let options = PgConnectOptions::from_str(&normalize(&url).unwrap()).unwrap();
            assert!(matches!(
                options.get_ssl_mode(),
                sqlx::postgres::PgSslMode::VerifyCa
            ));
        }
        let err = normalize(&format!("postgres://db/app?sslcert={}", ca.display())).unwrap_err();
        assert!(err.contains("sslcert and sslkey go together"), "{err}");
    }

    #[test]
    fn a_url_without_ssl_is_kept() {
        let raw = "postgres://u:p%40ss@db/app?sslmode=disable";
        assert_eq!(normalize(raw).unwrap(), raw);
    }

    #[test]
    fn rejects_unknown_modes_and_disagreement() {
        let err = normalize("postgres://db/app?ssl=yes").unwrap_err();
        assert!(err.contains("ssl=yes is not a TLS mode"), "{err}");
        let err = normalize("postgres://db/app?sslmode=verify").unwrap_err();
        assert!(err.contains("sslmode=verify"), "{err}");
        let err = normalize("postgres://db/app?sslmode=disable&ssl=require").unwrap_err();
        assert!(err.contains("disagree"), "{err}");
        assert!(normalize("postgres://db/app?sslmode=require&ssl=require").is_ok());
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let err =
            normalize("postgres://db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err();
        assert_eq!(err, "sslrootcert=/nonexistent/ca.pem: no such file");
    }

    #[test]
    fn tools_get_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not read here").unwrap();
        let url = format!(
            "postgres://db/app?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        let options = PgConnectOptions::from_str(&normalize(&url).unwrap()).unwrap();
        let env = tool_env(&options);
        let get = |var: &str| env.iter().find(|(name, _)| *name == var).unwrap().1.clone();
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT"), Some(ca.display().to_string()));
        assert_eq!(get("PGSSLCERT"), None);
        assert_eq!(get("PGREQUIRESSL"), None);
    }
}
