//! SQL for each dialect, rendered from operations read against the schema before them.
//!
//! [`render`] turns one [`Operation`] into the statements that perform it on a database whose
//! schema is `before`; [`render_schema`] turns a whole [`Schema`] into the statements that
//! create it. Every returned string is one statement without a trailing semicolon, except the
//! SQL of a [`Operation::RawSql`], which is passed on as written and may hold several.
//!
//! # Shapes the rest of the engine relies on
//!
//! * Type names are fixed per dialect ([`column_type_sql`]); introspection maps them back.
//! * `CREATE TABLE "t" (<columns>, PRIMARY KEY (..), CONSTRAINT "u" UNIQUE (..),
//!   CONSTRAINT "c" CHECK (..), CONSTRAINT "fk" FOREIGN KEY (..) REFERENCES "r" (..) ..)` on
//!   one line: columns in table order, then the primary key, the uniques, the checks and the
//!   foreign keys, each group in name order. Indexes and (PostgreSQL only) comments follow as
//!   separate statements.
//!
//! # SQLite table rebuilds
//!
//! SQLite cannot alter a column, drop one with its keys, or add and drop constraints in place.
//! For those operations ([`needs_sqlite_rebuild`]) the SQLite renderer rebuilds the table:
//! it creates `_strata_new_<table>` with the definition after the operation, copies the rows
//! of every column the old and the new table share, drops the old table, renames the new one
//! into its place and recreates its indexes. Rows, indexes and keys survive. Dropping the old
//! table would fire (or be refused by) the foreign keys pointing at it, so **the runner runs a
//! migration holding such an operation with `PRAGMA foreign_keys = OFF` set around its
//! transaction** (the pragma does nothing inside one) and runs `PRAGMA foreign_key_check`
//! before committing, so a broken reference still fails the migration.

mod postgres;
mod sqlite;

use crate::schema::{Check, Column, ColumnType, DefaultValue, ForeignKey, Index, Table, Unique};
use crate::{Dialect, Operation, Schema, StateError};

/// Why an operation cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The operation does not fit the schema it is rendered against (a missing table or
    /// column, a constraint that exists already, ...).
    #[error("cannot render {operation}: {source}")]
    DoesNotFit {
        /// [`Operation::describe`] of the operation.
        operation: String,
        source: StateError,
    },
}

/// SQL statements, in order, that perform `op` on a database whose schema is `before`.
pub fn render(
    op: &Operation,
    before: &Schema,
    dialect: Dialect,
) -> Result<Vec<String>, RenderError> {
    let mut after = before.clone();
    op.apply(&mut after)
        .map_err(|source| RenderError::DoesNotFit {
            operation: op.describe(),
            source,
        })?;
    Ok(match dialect {
        Dialect::Postgres => postgres::render(op, before),
        Dialect::Sqlite => sqlite::render(op, before, &after),
    })
}

/// Statements creating every table of `schema` (dependency order via
/// [`Schema::tables_in_dependency_order`], with their indexes and comments).
///
/// On PostgreSQL a foreign key that points at a table created later (a cycle) is left out of
/// its `CREATE TABLE` and added by `ALTER TABLE .. ADD CONSTRAINT` after every table exists;
/// SQLite accepts such references as they are.
pub fn render_schema(schema: &Schema, dialect: Dialect) -> Vec<String> {
    let mut statements = Vec::new();
    let mut created: Vec<&str> = Vec::new();
    let mut deferred: Vec<String> = Vec::new();
    for name in schema.tables_in_dependency_order() {
        let table = &schema.tables[name];
        let later = |fk: &ForeignKey| {
            dialect == Dialect::Postgres
                && fk.ref_table != table.name
                && schema.tables.contains_key(&fk.ref_table)
                && !created.contains(&fk.ref_table.as_str())
        };
        for fk in table.foreign_keys.values().filter(|fk| later(fk)) {
            deferred.push(postgres::add_constraint(
                &table.name,
                &foreign_key_clause(fk),
            ));
        }
        statements.push(create_table_sql(table, &table.name, dialect, |fk| {
            !later(fk)
        }));
        statements.extend(table_extras(table, dialect));
        created.push(name);
    }
    statements.extend(deferred);
    statements
}

/// `"name"`, with every `"` inside doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type as the dialect spells it; introspection maps these names back.
pub fn column_type_sql(ty: &ColumnType, dialect: Dialect) -> String {
    let pg = dialect == Dialect::Postgres;
    let name = match ty {
        ColumnType::String(Some(n)) => return format!("varchar({n})"),
        ColumnType::Decimal(p, s) if pg => return format!("numeric({p}, {s})"),
        ColumnType::Decimal(p, s) => return format!("decimal({p}, {s})"),
        ColumnType::String(None) => "varchar",
        ColumnType::Text => "text",
        ColumnType::Boolean => "boolean",
        ColumnType::SmallInteger => "smallint",
        ColumnType::Integer => "integer",
        ColumnType::BigInteger => "bigint",
        ColumnType::Real => "real",
        ColumnType::Uuid if pg => "uuid",
        ColumnType::Uuid => "uuid_text",
        ColumnType::Double if pg => "double precision",
        ColumnType::Double => "double",
        ColumnType::Date if pg => "date",
        ColumnType::Date => "date_text",
        ColumnType::Time if pg => "time",
        ColumnType::Time => "time_text",
        ColumnType::Timestamp if pg => "timestamp",
        ColumnType::Timestamp => "timestamp_text",
        ColumnType::TimestampTz if pg => "timestamptz",
        ColumnType::TimestampTz => "timestamp_with_timezone_text",
        ColumnType::Json if pg => "json",
        ColumnType::Json => "json_text",
        ColumnType::JsonBinary if pg => "jsonb",
        ColumnType::JsonBinary => "jsonb_text",
        ColumnType::Binary if pg => "bytea",
        ColumnType::Binary => "blob",
    };
    name.to_string()
}

/// The SQL of a default: booleans are `true`/`false` on PostgreSQL and `1`/`0` on SQLite,
/// integers as they are, strings single-quoted with `'` doubled, expressions as written.
///
/// On PostgreSQL, which does not cast between booleans and integers in a default, a boolean
/// default of an integer column renders as `1`/`0` and an integer default of a boolean
/// column as `true`/`false`.
pub fn default_sql(value: &DefaultValue, ty: &ColumnType, dialect: Dialect) -> String {
    let integer_column = matches!(
        ty,
        ColumnType::SmallInteger | ColumnType::Integer | ColumnType::BigInteger
    );
    match (value, dialect) {
        (DefaultValue::Bool(b), Dialect::Postgres) if !integer_column => b.to_string(),
        (DefaultValue::Bool(b), _) => if *b { "1" } else { "0" }.to_string(),
        (DefaultValue::Int(i), Dialect::Postgres) if *ty == ColumnType::Boolean => {
            (*i != 0).to_string()
        }
        (DefaultValue::Int(i), _) => i.to_string(),
        (DefaultValue::Str(s), _) => quote_literal(s),
        (DefaultValue::Expr(e), _) => e.clone(),
    }
}

/// True when `op` makes the SQLite renderer rebuild a table (the runner must then run the
/// migration with `PRAGMA foreign_keys=OFF` around the transaction and
/// `PRAGMA foreign_key_check` before commit).
pub fn needs_sqlite_rebuild(op: &Operation, before: &Schema) -> bool {
    sqlite::needs_rebuild(op, before)
}

/// The statements that rebuild SQLite table `from` into `to` (same name) in one pass: the new
/// table is created from `to`, the rows of every shared column are copied (through the SQL
/// expression `converted` gives for a column, read against the old row), the old table is
/// dropped, the new one renamed into its place, and `to`'s indexes created. Run it with
/// foreign keys off around the transaction, as for any rebuild.
pub fn sqlite_rebuild(
    from: &Table,
    to: &Table,
    converted: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    sqlite::rebuild_converting(from, to, converted)
}

/// `'text'`, with every `'` inside doubled.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"a", "b"`.
fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"c" <type>[ NOT NULL][ DEFAULT <d>]`.
fn column_def(column: &Column, dialect: Dialect) -> String {
    let mut sql = format!(
        "{} {}",
        quote_ident(&column.name),
        column_type_sql(&column.ty, dialect)
    );
    if !column.nullable {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(" DEFAULT ");
        sql.push_str(&default_sql(default, &column.ty, dialect));
    }
    sql
}

fn unique_clause(unique: &Unique) -> String {
    format!(
        "CONSTRAINT {} UNIQUE ({})",
        quote_ident(&unique.name),
        column_list(&unique.columns)
    )
}

fn check_clause(check: &Check) -> String {
    format!(
        "CONSTRAINT {} CHECK ({})",
        quote_ident(&check.name),
        check.expr
    )
}

/// `CONSTRAINT "fk" FOREIGN KEY (..) REFERENCES "t" (..)[ ON DELETE ..][ ON UPDATE ..]`.
fn foreign_key_clause(fk: &ForeignKey) -> String {
    let mut sql = format!(
        "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}",
        quote_ident(&fk.name),
        column_list(&fk.columns),
        quote_ident(&fk.ref_table)
    );
    if !fk.ref_columns.is_empty() {
        sql.push_str(&format!(" ({})", column_list(&fk.ref_columns)));
    }
    for (event, action) in [("DELETE", fk.on_delete), ("UPDATE", fk.on_update)] {
        if action != crate::ForeignKeyAction::NoAction {
            sql.push_str(&format!(" ON {event} {}", action.sql()));
        }
    }
    sql
}

/// `CREATE TABLE "<name>" (..)` with the definition of `table`, keeping the foreign keys
/// `keep_fk` accepts. `name` differs from `table.name` for a SQLite rebuild.
fn create_table_sql(
    table: &Table,
    name: &str,
    dialect: Dialect,
    keep_fk: impl Fn(&ForeignKey) -> bool,
) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| column_def(c, dialect))
        .collect();
    if !table.primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", column_list(&table.primary_key)));
    }
    parts.extend(table.uniques.values().map(unique_clause));
    parts.extend(table.checks.values().map(check_clause));
    parts.extend(
        table
            .foreign_keys
            .values()
            .filter(|fk| keep_fk(fk))
            .map(foreign_key_clause),
    );
    format!("CREATE TABLE {} ({})", quote_ident(name), parts.join(", "))
}

/// `CREATE [UNIQUE ]INDEX "name" ON "t" ("a", "b")`.
fn create_index_sql(table: &str, index: &Index) -> String {
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        quote_ident(table),
        column_list(&index.columns)
    )
}

/// The statements that follow a `CREATE TABLE`: its indexes, then (PostgreSQL) its comments.
fn table_extras(table: &Table, dialect: Dialect) -> Vec<String> {
    let mut statements: Vec<String> = table
        .indexes
        .values()
        .map(|index| create_index_sql(&table.name, index))
        .collect();
    if dialect == Dialect::Postgres {
        statements.extend(postgres::comment_statements(table));
    }
    statements
}

/// `CREATE TABLE` of `table` with every key, then its indexes and comments.
fn create_table_statements(table: &Table, dialect: Dialect) -> Vec<String> {
    let mut statements = vec![create_table_sql(table, &table.name, dialect, |_| true)];
    statements.extend(table_extras(table, dialect));
    statements
}

/// The comment that stands for a Rust data step in printed SQL (it has no SQL of its own).
pub fn data_step_comment(name: &str) -> String {
    format!("-- Rust data step: {name} (runs only when migrating online)")
}

/// The statements of a raw SQL step: the SQL as written, or none when it is blank.
fn raw_sql(sql: &str) -> Vec<String> {
    if sql.trim().is_empty() {
        Vec::new()
    } else {
        vec![sql.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataStep, DialectSql, ForeignKeyAction};

    fn both(f: impl Fn(Dialect) -> String) -> (String, String) {
        (f(Dialect::Postgres), f(Dialect::Sqlite))
    }

    #[test]
    fn quotes_identifiers_and_literals() {
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn type_names_per_dialect() {
        use ColumnType::*;
        let cases = [
            (Uuid, "uuid", "uuid_text"),
            (String(Some(40)), "varchar(40)", "varchar(40)"),
            (String(None), "varchar", "varchar"),
            (Text, "text", "text"),
            (Boolean, "boolean", "boolean"),
            (SmallInteger, "smallint", "smallint"),
            (Integer, "integer", "integer"),
            (BigInteger, "bigint", "bigint"),
            (Real, "real", "real"),
            (Double, "double precision", "double"),
            (Decimal(10, 2), "numeric(10, 2)", "decimal(10, 2)"),
            (Date, "date", "date_text"),
            (Time, "time", "time_text"),
            (Timestamp, "timestamp", "timestamp_text"),
            (TimestampTz, "timestamptz", "timestamp_with_timezone_text"),
            (Json, "json", "json_text"),
            (JsonBinary, "jsonb", "jsonb_text"),
            (Binary, "bytea", "blob"),
        ];
        for (ty, pg, lite) in cases {
            assert_eq!(
                both(|d| column_type_sql(&ty, d)),
                (pg.to_string(), lite.to_string()),
                "{ty}"
            );
        }
    }

    #[test]
    fn defaults_per_dialect() {
        let cases = [
            (DefaultValue::Bool(true), ColumnType::Boolean, "true", "1"),
            (DefaultValue::Bool(false), ColumnType::Boolean, "false", "0"),
            (DefaultValue::Int(-7), ColumnType::Integer, "-7", "-7"),
            (
                DefaultValue::Str("it's".into()),
                ColumnType::Text,
                "'it''s'",
                "'it''s'",
            ),
            (
                DefaultValue::Expr("CURRENT_TIMESTAMP".into()),
                ColumnType::Timestamp,
                "CURRENT_TIMESTAMP",
                "CURRENT_TIMESTAMP",
            ),
            // PostgreSQL does not cast booleans and integers in a default.
            (DefaultValue::Bool(true), ColumnType::SmallInteger, "1", "1"),
            (DefaultValue::Int(0), ColumnType::Boolean, "false", "0"),
        ];
        for (value, ty, pg, lite) in cases {
            assert_eq!(
                both(|d| default_sql(&value, &ty, d)),
                (pg.to_string(), lite.to_string()),
                "{value:?} on {ty}"
            );
        }
    }

    fn author() -> Table {
        Table::new("author")
            .with_column(Column::new("id", ColumnType::Integer))
            .with_column(Column::new("name", ColumnType::String(Some(100))).comment("full name"))
            .with_primary_key(["id"])
            .with_comment("who writes")
    }

    fn book() -> Table {
        Table::new("book")
            .with_column(Column::new("id", ColumnType::Uuid))
            .with_column(Column::new("author_id", ColumnType::Integer).nullable())
            .with_column(Column::new("title", ColumnType::Text))
            .with_column(Column::new("pages", ColumnType::Integer).default(DefaultValue::Int(0)))
            .with_primary_key(["id"])
            .with_unique(Unique {
                name: "book_title_key".into(),
                columns: vec!["author_id".into(), "title".into()],
            })
            .with_check(Check {
                name: "book_pages_check".into(),
                expr: "pages >= 0".into(),
            })
            .with_foreign_key(ForeignKey {
                name: "book_author_fk".into(),
                columns: vec!["author_id".into()],
                ref_table: "author".into(),
                ref_columns: vec!["id".into()],
                on_delete: ForeignKeyAction::Cascade,
                on_update: ForeignKeyAction::NoAction,
            })
            .with_index(Index {
                name: "book_title_idx".into(),
                columns: vec!["title".into()],
                unique: false,
            })
    }

    #[test]
    fn create_table_on_both_dialects() {
        let op = Operation::CreateTable(book());
        let pg = render(&op, &Schema::new(), Dialect::Postgres).unwrap();
        assert_eq!(
            pg,
            [
                "CREATE TABLE \"book\" (\"id\" uuid NOT NULL, \"author_id\" integer, \
                 \"title\" text NOT NULL, \"pages\" integer NOT NULL DEFAULT 0, \
                 PRIMARY KEY (\"id\"), \
                 CONSTRAINT \"book_title_key\" UNIQUE (\"author_id\", \"title\"), \
                 CONSTRAINT \"book_pages_check\" CHECK (pages >= 0), \
                 CONSTRAINT \"book_author_fk\" FOREIGN KEY (\"author_id\") \
                 REFERENCES \"author\" (\"id\") ON DELETE CASCADE)",
                "CREATE INDEX \"book_title_idx\" ON \"book\" (\"title\")",
            ]
        );
        let lite = render(&op, &Schema::new(), Dialect::Sqlite).unwrap();
        assert_eq!(
            lite[0],
            "CREATE TABLE \"book\" (\"id\" uuid_text NOT NULL, \"author_id\" integer, \
             \"title\" text NOT NULL, \"pages\" integer NOT NULL DEFAULT 0, \
             PRIMARY KEY (\"id\"), \
             CONSTRAINT \"book_title_key\" UNIQUE (\"author_id\", \"title\"), \
             CONSTRAINT \"book_pages_check\" CHECK (pages >= 0), \
             CONSTRAINT \"book_author_fk\" FOREIGN KEY (\"author_id\") \
             REFERENCES \"author\" (\"id\") ON DELETE CASCADE)"
        );
        assert_eq!(lite[1..], pg[1..]);
    }

    #[test]
    fn create_table_comments_only_on_postgres() {
        let op = Operation::CreateTable(author());
        assert_eq!(
            render(&op, &Schema::new(), Dialect::Postgres).unwrap(),
            [
                "CREATE TABLE \"author\" (\"id\" integer NOT NULL, \
                 \"name\" varchar(100) NOT NULL, PRIMARY KEY (\"id\"))",
                "COMMENT ON TABLE \"author\" IS 'who writes'",
                "COMMENT ON COLUMN \"author\".\"name\" IS 'full name'",
            ]
        );
        assert_eq!(
            render(&op, &Schema::new(), Dialect::Sqlite).unwrap(),
            ["CREATE TABLE \"author\" (\"id\" integer NOT NULL, \
              \"name\" varchar(100) NOT NULL, PRIMARY KEY (\"id\"))"]
        );
    }

    #[test]
    fn foreign_key_actions_skip_no_action() {
        let mut fk = ForeignKey {
            name: "f".into(),
            columns: vec!["a".into(), "b".into()],
            ref_table: "t".into(),
            ref_columns: vec!["x".into(), "y".into()],
            on_delete: ForeignKeyAction::NoAction,
            on_update: ForeignKeyAction::NoAction,
        };
        assert_eq!(
            foreign_key_clause(&fk),
            "CONSTRAINT \"f\" FOREIGN KEY (\"a\", \"b\") REFERENCES \"t\" (\"x\", \"y\")"
        );
        fk.on_delete = ForeignKeyAction::SetNull;
        fk.on_update = ForeignKeyAction::Restrict;
        assert!(foreign_key_clause(&fk).ends_with(" ON DELETE SET NULL ON UPDATE RESTRICT"));
    }

    #[test]
    fn schema_in_dependency_order() {
        let schema = Schema::new().with_table(book()).with_table(author());
        let pg = render_schema(&schema, Dialect::Postgres);
        assert!(pg[0].starts_with("CREATE TABLE \"author\""));
        assert_eq!(pg[1], "COMMENT ON TABLE \"author\" IS 'who writes'");
        assert!(pg[3].starts_with("CREATE TABLE \"book\""));
        assert_eq!(pg.len(), 5);
        let lite = render_schema(&schema, Dialect::Sqlite);
        assert!(lite[0].starts_with("CREATE TABLE \"author\""));
        assert!(lite[1].starts_with("CREATE TABLE \"book\""));
        assert_eq!(lite.len(), 3);
    }

    #[test]
    fn schema_cycle_defers_foreign_keys_on_postgres() {
        let fk = |name: &str, to: &str| ForeignKey {
            name: name.into(),
            columns: vec!["other".into()],
            ref_table: to.into(),
            ref_columns: vec!["id".into()],
            on_delete: ForeignKeyAction::NoAction,
            on_update: ForeignKeyAction::NoAction,
        };
        let table = |name: &str, to: &str| {
            Table::new(name)
                .with_column(Column::new("id", ColumnType::Integer))
                .with_column(Column::new("other", ColumnType::Integer).nullable())
                .with_primary_key(["id"])
                .with_foreign_key(fk(&format!("{name}_fk"), to))
        };
        let schema = Schema::new()
            .with_table(table("a", "b"))
            .with_table(table("b", "a"));
        assert_eq!(
            render_schema(&schema, Dialect::Postgres),
            [
                "CREATE TABLE \"a\" (\"id\" integer NOT NULL, \"other\" integer, \
                 PRIMARY KEY (\"id\"))",
                "CREATE TABLE \"b\" (\"id\" integer NOT NULL, \"other\" integer, \
                 PRIMARY KEY (\"id\"), CONSTRAINT \"b_fk\" FOREIGN KEY (\"other\") \
                 REFERENCES \"a\" (\"id\"))",
                "ALTER TABLE \"a\" ADD CONSTRAINT \"a_fk\" FOREIGN KEY (\"other\") \
                 REFERENCES \"b\" (\"id\")",
            ]
        );
        let lite = render_schema(&schema, Dialect::Sqlite);
        assert_eq!(lite.len(), 2);
        assert!(lite[0].contains("CONSTRAINT \"a_fk\""));
    }

    #[test]
    fn raw_sql_and_data_steps() {
        let op = Operation::RawSql {
            up: DialectSql {
                postgres: "UPDATE a SET x = 1; UPDATE b SET y = 2;".into(),
                sqlite: "  ".into(),
            },
            down: None,
        };
        assert_eq!(
            render(&op, &Schema::new(), Dialect::Postgres).unwrap(),
            ["UPDATE a SET x = 1; UPDATE b SET y = 2;"]
        );
        assert!(
            render(&op, &Schema::new(), Dialect::Sqlite)
                .unwrap()
                .is_empty()
        );

        fn step<'a>(_: &'a mut crate::runner::DataContext<'_>) -> crate::ops::DataFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        let op = Operation::Data(DataStep::new("fill names", step));
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            assert_eq!(
                render(&op, &Schema::new(), dialect).unwrap(),
                ["-- Rust data step: fill names (runs only when migrating online)"]
            );
        }
    }

    #[test]
    fn an_operation_that_does_not_fit_is_an_error() {
        let op = Operation::DropColumn {
            table: "nope".into(),
            name: "x".into(),
        };
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let err = render(&op, &Schema::new(), dialect).unwrap_err();
            assert_eq!(
                err,
                RenderError::DoesNotFit {
                    operation: "- drop column nope.x".into(),
                    source: StateError::NoTable("nope".into()),
                }
            );
            assert_eq!(
                err.to_string(),
                "cannot render - drop column nope.x: table nope does not exist"
            );
        }
    }
}
