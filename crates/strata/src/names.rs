//! Names PostgreSQL would cut.
//!
//! PostgreSQL keeps 63 bytes of an identifier (`NAMEDATALEN - 1`) and truncates longer ones
//! with a mere NOTICE, so a longer name in the models would be created under another name and
//! then read back as drift forever (and two long names may collide once cut). Autogenerate
//! refuses them instead, naming each.

use crate::schema::Schema;

/// The longest identifier PostgreSQL keeps, in bytes.
pub const POSTGRES_MAX_IDENTIFIER_BYTES: usize = 63;

/// One line per table, column, index or constraint of `schema` whose name is longer than
/// PostgreSQL keeps, in a stable order; empty when every name fits.
pub fn too_long(schema: &Schema) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |kind: &str, name: &str, place: String| {
        if name.len() > POSTGRES_MAX_IDENTIFIER_BYTES {
            problems.push(format!(
                "{kind} {name}{place} is {} bytes long, longer than the {POSTGRES_MAX_IDENTIFIER_BYTES} PostgreSQL keeps; choose a shorter name",
                name.len()
            ));
        }
    };
    for table in schema.tables.values() {
        check("table", &table.name, String::new());
        let on = || format!(" (on table {})", table.name);
        for column in &table.columns {
            check("column", &column.name, on());
        }
        for name in table.indexes.keys() {
            check("index", name, on());
        }
        for name in table.uniques.keys() {
            check("unique constraint", name, on());
        }
        for name in table.checks.keys() {
            check("check constraint", name, on());
        }
        for name in table.foreign_keys.keys() {
            check("foreign key", name, on());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Check, Column, ColumnType, Index, Table};

    #[test]
    fn names_over_63_bytes_are_named() {
        let long = "x".repeat(64);
        let fits = "y".repeat(63);
        let schema = Schema::new().with_table(
            Table::new("t")
                .with_column(Column::new(&fits, ColumnType::Text))
                .with_column(Column::new(&long, ColumnType::Text))
                .with_index(Index {
                    name: format!("ix_{long}"),
                    columns: vec![long.clone()],
                    unique: false,
                })
                .with_check(Check {
                    name: format!("ck_{long}"),
                    expr: "true".into(),
                }),
        );
        let problems = too_long(&schema);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with(&format!("column {long} (on table t) is 64 bytes")));
        assert!(problems[1].starts_with(&format!("index ix_{long} (on table t)")));
        assert!(problems[2].starts_with(&format!("check constraint ck_{long} (on table t)")));
        // Bytes, not characters: 32 two-byte characters are 64 bytes.
        let wide = "é".repeat(32);
        let schema = Schema::new().with_table(Table::new(&wide));
        assert_eq!(too_long(&schema).len(), 1);
        assert!(too_long(&Schema::new().with_table(Table::new(&fits))).is_empty());
    }
}
