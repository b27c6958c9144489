//! One column value: read from either database, written as canonical JSON, and turned back into
//! a parameter to insert.
//!
//! The JSON form is the same whichever database a value came from, so the checksum of a table's
//! rows is too: times are UTC with exactly six fraction digits (what PostgreSQL keeps), UUIDs are
//! lower-case and hyphenated, binary is hex, JSON documents are their compact text (so a JSON
//! `null` and an SQL NULL stay apart), and non-finite floats are the strings `NaN`, `Infinity`
//! and `-Infinity`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::QueryResult;
use sea_orm::sea_query::{Alias, Expr, Func, Value};
use serde_json::Value as Json;
use strata::schema::ColumnType;

const DATE: &str = "%Y-%m-%d";
const TIME: &str = "%H:%M:%S%.6f";
const TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// The SELECT expression for a column: decimals are read as text, since neither driver is built
/// with a decimal type; everything else as it is.
pub fn select_expr(quoted_column: &str, ty: &ColumnType) -> String {
    match ty {
        ColumnType::Decimal(..) => format!("CAST({quoted_column} AS TEXT)"),
        _ => quoted_column.to_string(),
    }
}

/// Reads column `idx` of `row` as canonical JSON.
pub fn read(row: &QueryResult, idx: usize, ty: &ColumnType) -> Result<Json, sea_orm::DbErr> {
    use ColumnType as T;
    Ok(match ty {
        T::Uuid => or_null(get::<uuid::Uuid>(row, idx)?, |v| {
            Json::String(v.to_string())
        }),
        T::String(_) | T::Text => or_null(get::<String>(row, idx)?, Json::String),
        T::Boolean => or_null(get::<bool>(row, idx)?, Json::Bool),
        T::SmallInteger => or_null(get::<i16>(row, idx)?, Json::from),
        T::Integer => or_null(get::<i32>(row, idx)?, Json::from),
        T::BigInteger => or_null(get::<i64>(row, idx)?, Json::from),
        T::Real => or_null(get::<f32>(row, idx)?, |v| float(f64::from(v))),
        T::Double => or_null(get::<f64>(row, idx)?, float),
        T::Decimal(..) => or_null(get::<String>(row, idx)?, |v| {
            Json::String(normalize_decimal(&v))
        }),
        T::Date => or_null(get::<NaiveDate>(row, idx)?, |v| text(v.format(DATE))),
        T::Time => or_null(get::<NaiveTime>(row, idx)?, |v| text(v.format(TIME))),
        T::Timestamp => or_null(get::<NaiveDateTime>(row, idx)?, |v| {
            let mut utc = utc_text(v.and_utc());
            utc.pop();
            Json::String(utc)
        }),
        T::TimestampTz => or_null(get::<DateTime<Utc>>(row, idx)?, |v| {
            Json::String(utc_text(v))
        }),
        T::Json | T::JsonBinary => or_null(get::<Json>(row, idx)?, |v| Json::String(v.to_string())),
        T::Binary => or_null(get::<Vec<u8>>(row, idx)?, |v| Json::String(hex::encode(v))),
    })
}

/// The insert expression for a canonical JSON value of a column of type `ty`, or why the value
/// does not fit the column.
pub fn to_expr(value: &Json, ty: &ColumnType) -> Result<Expr, String> {
    use ColumnType as T;
    let value = if value.is_null() { None } else { Some(value) };
    let expr = match ty {
        T::Uuid => Value::Uuid(parse(value, |s| uuid::Uuid::parse_str(s).ok())?).into(),
        T::String(_) | T::Text => Value::String(parse(value, |s| Some(s.to_string()))?).into(),
        T::Boolean => {
            Value::Bool(value.map(|v| v.as_bool().ok_or("a boolean")).transpose()?).into()
        }
        T::SmallInteger => Value::SmallInt(integer(value)?).into(),
        T::Integer => Value::Int(integer(value)?).into(),
        T::BigInteger => Value::BigInt(integer(value)?).into(),
        // An f32 widened to f64 and written in shortest form narrows back exactly.
        T::Real => Value::Float(value.map(unfloat).transpose()?.map(|v| v as f32)).into(),
        T::Double => Value::Double(value.map(unfloat).transpose()?).into(),
        T::Decimal(..) => Func::cast_as(
            Value::String(parse(value, |s| {
                s.parse::<f64>().is_ok().then(|| s.to_string())
            })?),
            Alias::new("numeric"),
        )
        .into(),
        T::Date => {
            Value::ChronoDate(parse(value, |s| NaiveDate::parse_from_str(s, DATE).ok())?).into()
        }
        T::Time => {
            Value::ChronoTime(parse(value, |s| NaiveTime::parse_from_str(s, TIME).ok())?).into()
        }
        T::Timestamp => Value::ChronoDateTime(parse(value, |s| {
            NaiveDateTime::parse_from_str(s, TIMESTAMP).ok()
        })?)
        .into(),
        T::TimestampTz => Value::ChronoDateTimeUtc(parse(value, |s| {
            DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())
        })?)
        .into(),
        T::Json | T::JsonBinary => {
            Value::Json(parse(value, |s| serde_json::from_str::<Json>(s).ok())?.map(Box::new))
                .into()
        }
        T::Binary => Value::Bytes(parse(value, |s| hex::decode(s).ok())?).into(),
    };
    Ok(expr)
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, idx: usize) -> Result<Option<T>, sea_orm::DbErr> {
    row.try_get_by_index::<Option<T>>(idx)
}

fn or_null<T>(value: Option<T>, to_json: impl FnOnce(T) -> Json) -> Json {
    value.map(to_json).unwrap_or(Json::Null)
}

/// `2026-11-27T10:00:00.123456Z`: RFC 3339 in UTC with microseconds (the common case, formatted
/// without a format string to parse per value).
fn utc_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn text(formatted: impl std::fmt::Display) -> Json {
    Json::String(formatted.to_string())
}

fn float(value: f64) -> Json {
    serde_json::Number::from_f64(value)
        .map(Json::Number)
        .unwrap_or_else(|| {
            Json::String(
                if value.is_nan() {
                    "NaN"
                } else if value > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_string(),
            )
        })
}

fn unfloat(value: &Json) -> Result<f64, &'static str> {
    match value {
        Json::Number(n) => n.as_f64().ok_or("a number"),
        Json::String(s) if s == "NaN" => Ok(f64::NAN),
        Json::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Json::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err("a number"),
    }
}

fn integer<T: TryFrom<i64>>(value: Option<&Json>) -> Result<Option<T>, &'static str> {
    value
        .map(|v| {
            v.as_i64()
                .and_then(|i| T::try_from(i).ok())
                .ok_or("an integer in the column's range")
        })
        .transpose()
}

/// A string value parsed by `from_text`; the error names what was expected.
fn parse<T>(
    value: Option<&Json>,
    from_text: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, &'static str> {
    value
        .map(|v| {
            v.as_str()
                .and_then(from_text)
                .ok_or("a string in the column's format")
        })
        .transpose()
}

/// `12.50` and `12.5` are the same number: PostgreSQL pads to the scale, SQLite does not.
fn normalize_decimal(text: &str) -> String {
    if text.contains('.') && !text.contains(['e', 'E']) {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_without_trailing_zeros() {
        assert_eq!(normalize_decimal("12.50"), "12.5");
        assert_eq!(normalize_decimal("12.00"), "12");
        assert_eq!(normalize_decimal("1200"), "1200");
        assert_eq!(normalize_decimal("1.5e10"), "1.5e10");
    }

    #[test]
    fn non_finite_floats_round_trip_as_strings() {
        for v in [f64::INFINITY, f64::NEG_INFINITY, 1.25] {
            assert_eq!(unfloat(&float(v)).unwrap(), v);
        }
        assert!(unfloat(&float(f64::NAN)).unwrap().is_nan());
    }

    #[test]
    fn values_that_do_not_fit_are_refused() {
        assert!(to_expr(&Json::from(70_000), &ColumnType::SmallInteger).is_err());
        assert!(to_expr(&Json::from("not-a-uuid"), &ColumnType::Uuid).is_err());
        assert!(to_expr(&Json::from("2026-11-27 10:00"), &ColumnType::TimestampTz).is_err());
        assert!(
            to_expr(
                &Json::from("2026-11-27T10:00:00.000001Z"),
                &ColumnType::TimestampTz
            )
            .is_ok()
        );
        assert!(to_expr(&Json::Null, &ColumnType::Uuid).is_ok());
    }
}
