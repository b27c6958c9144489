//! When two column defaults mean the same.
//!
//! A boolean default on an integer column is stored as `1`/`0` by both databases (see
//! [`crate::render::default_sql`]) and reads back as an integer, and an integer default of a
//! boolean column reads back as a boolean: the model and the live database then spell one
//! default two ways. Comparing them as stored keeps that from showing as drift.

use crate::schema::{Column, ColumnType, DefaultValue};

/// `default` as the column stores it: a boolean on an integer column is `1`/`0`, and `1`/`0`
/// on a boolean column is a boolean.
pub fn as_stored(default: &DefaultValue, ty: &ColumnType) -> DefaultValue {
    let integer = matches!(
        ty,
        ColumnType::SmallInteger | ColumnType::Integer | ColumnType::BigInteger
    );
    match default {
        DefaultValue::Bool(b) if integer => DefaultValue::Int(i64::from(*b)),
        DefaultValue::Int(i @ (0 | 1)) if *ty == ColumnType::Boolean => DefaultValue::Bool(*i == 1),
        other => other.clone(),
    }
}

/// True when two definitions of a column are the same once their defaults are compared as
/// stored.
pub fn same_column(a: &Column, b: &Column) -> bool {
    a.name == b.name
        && a.ty == b.ty
        && a.nullable == b.nullable
        && a.comment == b.comment
        && same_default(a.default.as_ref(), b.default.as_ref(), &a.ty)
}

/// True when two defaults of a column of type `ty` are stored alike.
pub fn same_default(a: Option<&DefaultValue>, b: Option<&DefaultValue>, ty: &ColumnType) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => as_stored(a, ty) == as_stored(b, ty),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_integers_compare_as_stored() {
        let int = ColumnType::Integer;
        let flag = ColumnType::Boolean;
        let t = DefaultValue::Bool(true);
        let one = DefaultValue::Int(1);
        assert!(same_default(Some(&t), Some(&one), &int));
        assert!(!same_default(
            Some(&DefaultValue::Bool(false)),
            Some(&one),
            &int
        ));
        assert!(same_default(Some(&one), Some(&t), &flag));
        assert!(!same_default(Some(&DefaultValue::Int(2)), Some(&t), &flag));
        assert!(!same_default(Some(&t), Some(&one), &ColumnType::Text));
        assert!(!same_default(Some(&t), None, &int));
        let a = Column::new("n", int.clone()).default(t);
        let b = Column::new("n", int).default(one);
        assert!(same_column(&a, &b));
        assert!(!same_column(&a, &b.clone().nullable()));
    }
}
