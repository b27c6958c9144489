//! `pgbouncer=true|false` in a PostgreSQL `DATABASE_URL` (the parameter Prisma users know): the
//! server at the URL is a transaction pooler (PgBouncer in `pool_mode = transaction`), so the
//! driver must use only statements such a pooler can pass on (see `db::pooler`).
//!
//! The parameter is the service's, not the driver's: it is taken out of the URL here, before
//! sqlx reads it (sqlx would log it as unknown) and before the URL reaches a libpq tool (which
//! would refuse it).

/// The parameter's name in the URL.
const PARAM: &str = "pgbouncer";

/// Takes `pgbouncer=<bool>` out of a `postgres:` URL: returns the URL without it and whether
/// it was true. A URL that does not parse, or has no such parameter, comes back unchanged. The
/// error is a sentence for `DATABASE_URL`'s message.
pub(crate) fn take(url: &str) -> Result<(String, bool), String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok((url.to_string(), false));
    };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    // The last one wins, as for the driver's own parameters.
    let Some((_, value)) = pairs.iter().rfind(|(key, _)| key == PARAM) else {
        return Ok((url.to_string(), false));
    };
    let on = match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => true,
        "false" | "0" | "no" | "off" => false,
        _ => return Err(format!("{PARAM}={value} is not true or false")),
    };
    let mut rewritten = parsed.clone();
    let rest: Vec<&(String, String)> = pairs.iter().filter(|(key, _)| key != PARAM).collect();
    if rest.is_empty() {
        rewritten.set_query(None);
    } else {
        let mut query = rewritten.query_pairs_mut();
        query.clear();
        for (key, value) in rest {
            query.append_pair(key, value);
        }
    }
    Ok((rewritten.to_string(), on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_is_read_and_taken_out() {
        let (url, on) = take("postgres://u:p@db:6432/app?pgbouncer=true").unwrap();
        assert!(on);
        assert_eq!(url, "postgres://u:p@db:6432/app");
        let (url, on) =
            take("postgres://db/app?sslmode=require&pgbouncer=false&application_name=x").unwrap();
        assert!(!on);
        assert_eq!(url, "postgres://db/app?sslmode=require&application_name=x");
        let (url, on) = take("postgres://db/app?pgbouncer=false&pgbouncer=TRUE").unwrap();
        assert!(on, "the last one wins");
        assert_eq!(url, "postgres://db/app");
    }

    #[test]
    fn a_url_without_it_is_kept() {
        let raw = "postgres://u:p%40ss@db/app?sslmode=disable";
        assert_eq!(take(raw).unwrap(), (raw.to_string(), false));
    }

    #[test]
    fn other_values_are_refused() {
        let err = take("postgres://db/app?pgbouncer=maybe").unwrap_err();
        assert_eq!(err, "pgbouncer=maybe is not true or false");
    }
}
