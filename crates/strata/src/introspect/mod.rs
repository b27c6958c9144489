//! Reading a live database back into a [`Schema`].
//!
//! [`postgres`] and [`sqlite`] read every table of the current schema (`public`, or whatever
//! `current_schema()` is, on PostgreSQL; `main` on SQLite) and normalize what the server
//! reports to the model the renderer writes from, so that a freshly migrated database reads
//! back as exactly the schema the migrations describe.
//!
//! Two things do not round-trip byte for byte:
//!
//! * PostgreSQL rewrites CHECK expressions (`"rank" >= 0` comes back as `(rank >= 0)`), so
//!   the [`Check::expr`](crate::Check) read from PostgreSQL is the server's text; compare it
//!   with expected checks rewritten the same way ([`crate::checks::canonical_postgres_checks`]),
//!   or by name only. SQLite keeps the text as written and gives it back.
//! * Column order within an index is kept, but sort order (`DESC`), partial-index predicates
//!   and `INCLUDE` columns are not part of the model and are dropped.

mod postgres;
mod sqlite;
mod unrepresentable;

pub use postgres::postgres;
pub use sqlite::sqlite;

use crate::schema::{ColumnType, DefaultValue};

/// Why a database could not be read into a [`Schema`](crate::Schema).
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    #[error("introspection query failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "table {table}: column {table}.{column} has type {ty}, which the engine cannot represent"
    )]
    UnknownType {
        table: String,
        column: String,
        ty: String,
    },
    /// The database reported something the model cannot hold (an unknown foreign key
    /// action, a foreign key to a table without a primary key, ...).
    #[error("table {table}: {detail}")]
    Unsupported { table: String, detail: String },
}

/// True for tables introspection never reports: the caller's `exclude` list and the
/// engine's own `_strata_*` tables.
fn skipped(name: &str, exclude: &[&str]) -> bool {
    name.starts_with("_strata_") || exclude.contains(&name)
}

/// Maps a type name as PostgreSQL's `format_type` or SQLite's declared type gives it to the
/// model; case and spacing are ignored. `None` when the type is unknown or ambiguous.
fn parse_type(raw: &str) -> Option<ColumnType> {
    // Lower case, single spaces, no spaces next to parentheses or commas.
    let mut norm = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        let glue = norm.ends_with(['(', ',']) || word.starts_with([')', '(', ',']);
        if !norm.is_empty() && !glue {
            norm.push(' ');
        }
        norm.push_str(&word.to_ascii_lowercase());
    }
    let (base, args): (&str, Vec<u32>) = match norm.find('(') {
        None => (norm.as_str(), Vec::new()),
        Some(open) => {
            let inner = norm[open + 1..].strip_suffix(')')?;
            let args = inner
                .split(',')
                .map(|a| a.trim().parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            (norm[..open].trim_end(), args)
        }
    };
    use ColumnType as T;
    let ty = match (base, args.as_slice()) {
        ("uuid" | "uuid_text", []) => T::Uuid,
        ("varchar" | "character varying", []) => T::String(None),
        ("varchar" | "character varying", [n]) => T::String(Some(*n)),
        ("text", []) => T::Text,
        ("boolean" | "bool", []) => T::Boolean,
        ("smallint" | "int2", []) => T::SmallInteger,
        ("integer" | "int" | "int4", []) => T::Integer,
        ("bigint" | "int8", []) => T::BigInteger,
        ("real" | "float4", []) => T::Real,
        ("double" | "double precision" | "float8", []) => T::Double,
        ("decimal" | "numeric", [p]) => T::Decimal(*p, 0),
        ("decimal" | "numeric", [p, s]) => T::Decimal(*p, *s),
        ("date" | "date_text", []) => T::Date,
        ("time" | "time_text" | "time without time zone", []) => T::Time,
        ("timestamp" | "timestamp_text" | "timestamp without time zone" | "datetime", []) => {
            T::Timestamp
        }
        ("timestamptz" | "timestamp_with_timezone_text" | "timestamp with time zone", []) => {
            T::TimestampTz
        }
        ("json" | "json_text", []) => T::Json,
        ("jsonb" | "jsonb_text", []) => T::JsonBinary,
        ("bytea" | "blob", []) => T::Binary,
        // SQLite keeps declared types as written: other tools declare fixed-size binary.
        ("binary" | "varbinary", [_]) => T::Binary,
        _ => return None,
    };
    Some(ty)
}

/// Normalizes a column default as the server reports it to the model.
///
/// Top-level casts are stripped (`'none'::character varying`), quoted literals become
/// [`DefaultValue::Str`] (or `Int` on numeric columns, `Bool` on boolean ones), `true`/`false`
/// become `Bool`, integers `Int` (`1`/`0` on a boolean column become `Bool`), `NULL` is no
/// default, and anything else is kept as [`DefaultValue::Expr`] as the server shows it, with
/// `CURRENT_TIMESTAMP`-like keywords upper-cased.
fn normalize_default(raw: &str, ty: &ColumnType) -> Option<DefaultValue> {
    let raw = raw.trim();
    let tokens = tokenize(raw);
    if tokens.is_empty() {
        return None;
    }
    let mut lit: &[Token] = &tokens;
    if let Some(cast) = top_level_cast(lit) {
        lit = &lit[..cast];
    }
    while lit.len() >= 2
        && lit[0].kind == Kind::Open
        && matching_close(lit, 0) == Some(lit.len() - 1)
    {
        lit = &lit[1..lit.len() - 1];
    }
    let numeric = matches!(
        ty,
        ColumnType::SmallInteger
            | ColumnType::Integer
            | ColumnType::BigInteger
            | ColumnType::Real
            | ColumnType::Double
            | ColumnType::Decimal(..)
    );
    match lit {
        [t] if t.kind == Kind::Str => {
            let s = t.value.as_str();
            if *ty == ColumnType::Boolean {
                match s.to_ascii_lowercase().as_str() {
                    "true" | "t" => return Some(DefaultValue::Bool(true)),
                    "false" | "f" => return Some(DefaultValue::Bool(false)),
                    _ => {}
                }
            }
            // PostgreSQL quotes some numbers (`'-5'::integer`, `'0.5'::real`).
            if numeric {
                if let Ok(i) = s.trim().parse() {
                    return Some(DefaultValue::Int(i));
                }
                if s.trim().parse::<f64>().is_ok() {
                    return Some(DefaultValue::Expr(s.trim().to_string()));
                }
            }
            Some(DefaultValue::Str(t.value.clone()))
        }
        [t] if t.kind == Kind::Word && t.value.eq_ignore_ascii_case("null") => None,
        [t] if t.kind == Kind::Word && t.value.eq_ignore_ascii_case("true") => {
            Some(DefaultValue::Bool(true))
        }
        [t] if t.kind == Kind::Word && t.value.eq_ignore_ascii_case("false") => {
            Some(DefaultValue::Bool(false))
        }
        _ => {
            let text = &raw[lit.first()?.start..lit.last()?.end];
            match text.parse::<i64>() {
                Ok(b @ (0 | 1)) if *ty == ColumnType::Boolean => Some(DefaultValue::Bool(b == 1)),
                Ok(i) => Some(DefaultValue::Int(i)),
                Err(_) => Some(DefaultValue::Expr(upper_keywords(raw, &tokens))),
            }
        }
    }
}

/// `raw` with SQL's niladic date/time keywords upper-cased, so that `current_timestamp`
/// and `CURRENT_TIMESTAMP` compare equal.
fn upper_keywords(raw: &str, tokens: &[Token]) -> String {
    const KEYWORDS: [&str; 5] = [
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "LOCALTIMESTAMP",
        "LOCALTIME",
    ];
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    for t in tokens {
        if t.kind == Kind::Word && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&t.value)) {
            out.push_str(&raw[at..t.start]);
            out.push_str(&t.value.to_ascii_uppercase());
            at = t.end;
        }
    }
    out.push_str(&raw[at..]);
    out
}

/// Index of the first top-level `::` when everything after it is a type name.
fn top_level_cast(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Punct if depth == 0 && t.value == "::" => {
                let type_only = tokens[i + 1..].iter().all(|t| match t.kind {
                    Kind::Word | Kind::Ident | Kind::Open | Kind::Close | Kind::Comma => true,
                    Kind::Punct => matches!(t.value.as_str(), "::" | "[" | "]"),
                    Kind::Str => false,
                });
                return type_only.then_some(i);
            }
            _ => {}
        }
    }
    None
}

/// The kinds of token [`tokenize`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bare word: keyword, unquoted identifier or number.
    Word,
    /// A quoted identifier: `"..."`, `` `...` `` or `[...]`.
    Ident,
    /// A string literal `'...'`.
    Str,
    Open,
    Close,
    Comma,
    /// Any other punctuation; `::` is one token.
    Punct,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Byte range in the source text.
    start: usize,
    end: usize,
    /// Words and punctuation as written; identifiers and strings without quotes, with
    /// doubled quotes undone.
    value: String,
}

impl Token {
    /// The name this token spells when used as an identifier.
    fn ident(&self) -> Option<&str> {
        matches!(self.kind, Kind::Word | Kind::Ident | Kind::Str).then_some(self.value.as_str())
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.value.eq_ignore_ascii_case(keyword)
    }
}

/// Splits SQL into tokens, skipping whitespace and comments. Lenient: an unterminated quote
/// or comment runs to the end of the text.
fn tokenize(sql: &str) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let start = i;
        let (kind, value) = match b {
            _ if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
                continue;
            }
            b'\'' | b'"' | b'`' => {
                let (value, end) = quoted(sql, i, b as char);
                i = end;
                let kind = if b == b'\'' { Kind::Str } else { Kind::Ident };
                (kind, value)
            }
            b'[' => {
                let end = sql[i + 1..].find(']').map_or(bytes.len(), |n| i + 1 + n);
                let value = sql[i + 1..end].to_string();
                i = (end + 1).min(bytes.len());
                (Kind::Ident, value)
            }
            b'(' => {
                i += 1;
                (Kind::Open, "(".to_string())
            }
            b')' => {
                i += 1;
                (Kind::Close, ")".to_string())
            }
            b',' => {
                i += 1;
                (Kind::Comma, ",".to_string())
            }
            b':' if next == Some(b':') => {
                i += 2;
                (Kind::Punct, "::".to_string())
            }
            _ if is_word(b) => {
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                (Kind::Word, sql[start..i].to_string())
            }
            _ => {
                i += 1;
                (Kind::Punct, sql[start..i].to_string())
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
            value,
        });
    }
    tokens
}

/// Reads a quoted token starting at `start` (the opening quote); returns its unescaped
/// content and the byte offset after the closing quote.
fn quoted(sql: &str, start: usize, quote: char) -> (String, usize) {
    let mut value = String::new();
    let mut at = start + 1;
    loop {
        match sql[at..].find(quote) {
            None => {
                value.push_str(&sql[at..]);
                return (value, sql.len());
            }
            Some(n) => {
                let q = at + n;
                value.push_str(&sql[at..q]);
                if sql[q + 1..].starts_with(quote) {
                    value.push(quote);
                    at = q + 2;
                } else {
                    return (value, q + 1);
                }
            }
        }
    }
}

/// Index of the `)` closing the `(` at `open`.
fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits tokens at commas outside parentheses.
fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut from = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Comma if depth == 0 => {
                parts.push(&tokens[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[from..]);
    parts
}

/// The inside of the first parenthesized group at or after `from`, and the index of its
/// closing parenthesis.
fn group_after(tokens: &[Token], from: usize) -> Option<(&[Token], usize)> {
    let open = from
        + tokens
            .get(from..)?
            .iter()
            .position(|t| t.kind == Kind::Open)?;
    let close = matching_close(tokens, open)?;
    Some((&tokens[open + 1..close], close))
}

/// The expression inside `CHECK (...)` as PostgreSQL's `pg_get_constraintdef` prints it.
pub(crate) fn check_body(def: &str) -> String {
    let tokens = tokenize(def);
    let start = usize::from(tokens.first().is_some_and(|t| t.is_keyword("CHECK")));
    match group_after(&tokens, start) {
        Some((inner, _)) if !inner.is_empty() => {
            def[inner[0].start..inner[inner.len() - 1].end].to_string()
        }
        _ => def.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    #[test]
    fn parses_types_of_both_dialects() {
        let cases = [
            ("uuid", Uuid),
            ("UUID_TEXT", Uuid),
            ("character varying(20)", String(Some(20))),
            ("varchar ( 255 )", String(Some(255))),
            ("VARCHAR", String(None)),
            ("double precision", Double),
            ("DOUBLE", Double),
            ("numeric(12,2)", Decimal(12, 2)),
            ("decimal(10, 3)", Decimal(10, 3)),
            ("timestamp with time zone", TimestampTz),
            ("timestamp_with_timezone_text", TimestampTz),
            ("timestamp without time zone", Timestamp),
            ("datetime", Timestamp),
            ("time without time zone", Time),
            ("INT", Integer),
            ("int8", BigInteger),
            ("bool", Boolean),
            ("blob", Binary),
        ];
        for (raw, ty) in cases {
            assert_eq!(parse_type(raw), Some(ty), "{raw}");
        }
        for raw in [
            "",
            "numeric",
            "point",
            "integer[]",
            "timestamp(3) with time zone",
        ] {
            assert_eq!(parse_type(raw), None, "{raw}");
        }
    }

    #[test]
    fn normalizes_defaults() {
        let d = normalize_default;
        assert_eq!(
            d("'it''s'::character varying", &String(Some(3))),
            Some(DefaultValue::Str("it's".into()))
        );
        assert_eq!(d("'-9'::integer", &BigInteger), Some(DefaultValue::Int(-9)));
        assert_eq!(d("-9", &BigInteger), Some(DefaultValue::Int(-9)));
        assert_eq!(d("(0)", &Decimal(3, 1)), Some(DefaultValue::Int(0)));
        assert_eq!(d("1", &Boolean), Some(DefaultValue::Bool(true)));
        assert_eq!(d("FALSE", &Boolean), Some(DefaultValue::Bool(false)));
        assert_eq!(d("NULL::text", &Text), None);
        assert_eq!(d("1.5", &Double), Some(DefaultValue::Expr("1.5".into())));
        assert_eq!(
            d("'0.5'::real", &Real),
            Some(DefaultValue::Expr("0.5".into()))
        );
        assert_eq!(d("'n/a'", &Integer), Some(DefaultValue::Str("n/a".into())));
        assert_eq!(
            d("current_timestamp", &Timestamp),
            Some(DefaultValue::Expr("CURRENT_TIMESTAMP".into()))
        );
        assert_eq!(
            d("(now() + '1 day'::interval)", &TimestampTz),
            Some(DefaultValue::Expr("(now() + '1 day'::interval)".into()))
        );
    }

    #[test]
    fn tokenizes_quotes_and_comments() {
        let sql = "\"a\"\"b\" [c d] `e` 'f''g' -- x\n /* y */ h::int(1, 2)";
        let values: Vec<_> = tokenize(sql).into_iter().map(|t| t.value).collect();
        assert_eq!(
            values,
            [
                "a\"b", "c d", "e", "f'g", "h", "::", "int", "(", "1", ",", "2", ")"
            ]
        );
        assert_eq!(
            check_body("CHECK (((a >= 0) AND (b <> ')')))"),
            "((a >= 0) AND (b <> ')'))"
        );
    }
}
