//! The schema model: plain data describing tables, columns, keys, indexes and checks.
//!
//! A [`Schema`] is what the engine knows of a database at one revision. It is built by
//! replaying operations, by introspecting a live database, or by the application from its
//! models, and the three are compared with the same `PartialEq`. Maps are `BTreeMap`s so that
//! every walk over a schema is in a stable order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Column types the engine renders for both dialects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    Uuid,
    /// `varchar(n)`; `None` is unbounded.
    String(Option<u32>),
    Text,
    Boolean,
    SmallInteger,
    Integer,
    BigInteger,
    Real,
    Double,
    /// `numeric(precision, scale)`.
    Decimal(u32, u32),
    Date,
    Time,
    /// Timestamp without time zone.
    Timestamp,
    /// Timestamp with time zone (`timestamptz`); stored as RFC 3339 text on SQLite.
    TimestampTz,
    Json,
    JsonBinary,
    Binary,
}

impl ColumnType {
    /// True when every value of `self` fits in `to` without loss.
    pub fn widens_to(&self, to: &ColumnType) -> bool {
        use ColumnType::*;
        match (self, to) {
            (a, b) if a == b => true,
            (String(Some(a)), String(Some(b))) => a <= b,
            (String(_), String(None) | Text) => true,
            (SmallInteger, Integer | BigInteger) | (Integer, BigInteger) => true,
            (Real, Double) => true,
            (Timestamp, TimestampTz) => true,
            (Json, JsonBinary) => true,
            (Decimal(p1, s1), Decimal(p2, s2)) => p2 - s2 >= p1 - s1 && s2 >= s1,
            _ => false,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String(Some(n)) => write!(f, "String({n})"),
            ColumnType::String(None) => write!(f, "String"),
            ColumnType::Decimal(p, s) => write!(f, "Decimal({p}, {s})"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A column default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DefaultValue {
    Bool(bool),
    Int(i64),
    /// A string literal, quoted when rendered.
    Str(String),
    /// SQL written as is, such as `CURRENT_TIMESTAMP`.
    Expr(String),
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Bool(b) => write!(f, "{b}"),
            DefaultValue::Int(i) => write!(f, "{i}"),
            DefaultValue::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            DefaultValue::Expr(e) => f.write_str(e),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub default: Option<DefaultValue>,
    pub comment: Option<String>,
}

impl Column {
    /// A NOT NULL column without default or comment.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable: false,
            default: None,
            comment: None,
        }
    }

    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }

    pub fn default(mut self, value: DefaultValue) -> Self {
        self.default = Some(value);
        self
    }

    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }
}

/// What a foreign key does when the row it points at is deleted or its key updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ForeignKeyAction {
    #[default]
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl ForeignKeyAction {
    pub fn sql(self) -> &'static str {
        match self {
            ForeignKeyAction::NoAction => "NO ACTION",
            ForeignKeyAction::Restrict => "RESTRICT",
            ForeignKeyAction::Cascade => "CASCADE",
            ForeignKeyAction::SetNull => "SET NULL",
            ForeignKeyAction::SetDefault => "SET DEFAULT",
        }
    }

    /// Parses the words PostgreSQL and SQLite report (`CASCADE`, `SET NULL`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().replace('_', " ").as_str() {
            "NO ACTION" | "" => Some(ForeignKeyAction::NoAction),
            "RESTRICT" => Some(ForeignKeyAction::Restrict),
            "CASCADE" => Some(ForeignKeyAction::Cascade),
            "SET NULL" => Some(ForeignKeyAction::SetNull),
            "SET DEFAULT" => Some(ForeignKeyAction::SetDefault),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub on_delete: ForeignKeyAction,
    pub on_update: ForeignKeyAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unique {
    pub name: String,
    pub columns: Vec<String>,
}

/// A CHECK constraint; `expr` is SQL valid on both dialects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    /// In table order.
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub foreign_keys: BTreeMap<String, ForeignKey>,
    pub uniques: BTreeMap<String, Unique>,
    pub checks: BTreeMap<String, Check>,
    pub indexes: BTreeMap<String, Index>,
    pub comment: Option<String>,
}

impl Table {
    pub fn new(name: impl Into<String>) -> Self {
        Table {
            name: name.into(),
            ..Table::default()
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name == name)
    }

    /// Builder: appends a column.
    pub fn with_column(mut self, column: Column) -> Self {
        self.columns.push(column);
        self
    }

    pub fn with_primary_key<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.primary_key = columns.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_foreign_key(mut self, fk: ForeignKey) -> Self {
        self.foreign_keys.insert(fk.name.clone(), fk);
        self
    }

    pub fn with_unique(mut self, unique: Unique) -> Self {
        self.uniques.insert(unique.name.clone(), unique);
        self
    }

    pub fn with_check(mut self, check: Check) -> Self {
        self.checks.insert(check.name.clone(), check);
        self
    }

    pub fn with_index(mut self, index: Index) -> Self {
        self.indexes.insert(index.name.clone(), index);
        self
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// True when some key, unique, index or check names `column`.
    pub fn column_is_referenced(&self, column: &str) -> bool {
        let named = |cols: &[String]| cols.iter().any(|c| c == column);
        named(&self.primary_key)
            || self.foreign_keys.values().any(|fk| named(&fk.columns))
            || self.uniques.values().any(|u| named(&u.columns))
            || self.indexes.values().any(|i| named(&i.columns))
            || self.checks.values().any(|c| c.expr.contains(column))
    }
}

/// Every table of a database at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
}

impl Schema {
    pub fn new() -> Self {
        Schema::default()
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn with_table(mut self, table: Table) -> Self {
        self.tables.insert(table.name.clone(), table);
        self
    }

    /// The same schema with every table and column comment removed (SQLite keeps none).
    pub fn without_comments(&self) -> Schema {
        let mut schema = self.clone();
        for table in schema.tables.values_mut() {
            table.comment = None;
            for column in &mut table.columns {
                column.comment = None;
            }
        }
        schema
    }

    /// Table names with every table after the tables its foreign keys point at; ties and
    /// cycles fall back to name order, so the result is stable.
    pub fn tables_in_dependency_order(&self) -> Vec<&str> {
        let mut ordered: Vec<&str> = Vec::new();
        let mut remaining: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        while !remaining.is_empty() {
            let ready = remaining.iter().position(|name| {
                self.tables[*name].foreign_keys.values().all(|fk| {
                    fk.ref_table == *name
                        || ordered.contains(&fk.ref_table.as_str())
                        || !self.tables.contains_key(&fk.ref_table)
                })
            });
            // A cycle: take the first by name and go on.
            let next = remaining.remove(ready.unwrap_or(0));
            ordered.push(next);
        }
        ordered
    }
}
