//! PostgreSQL statements for each operation.
//!
//! Every operation maps onto `ALTER TABLE` and friends; nothing is rebuilt. An altered column
//! gets only the clauses for what changed.

use super::{
    check_clause, column_def, column_type_sql, create_index_sql, create_table_statements,
    data_step_comment, default_sql, foreign_key_clause, quote_ident, quote_literal, raw_sql,
    unique_clause,
};
use crate::schema::{Column, Table};
use crate::{Dialect, Operation, Schema};

const PG: Dialect = Dialect::Postgres;

/// The statements for `op`, which fits `before`.
pub(super) fn render(op: &Operation, before: &Schema) -> Vec<String> {
    match op {
        Operation::CreateTable(table) => create_table_statements(table, PG),
        Operation::DropTable { name } => vec![format!("DROP TABLE {}", quote_ident(name))],
        Operation::RenameTable { from, to } => vec![
            format!(
                "ALTER TABLE {} RENAME TO {}",
                quote_ident(from),
                quote_ident(to)
            ),
            primary_key_follows(from, to),
        ],
        Operation::AddColumn { table, column } => {
            let mut statements = vec![format!(
                "ALTER TABLE {} ADD COLUMN {}",
                quote_ident(table),
                column_def(column, PG)
            )];
            if let Some(comment) = &column.comment {
                statements.push(column_comment(table, &column.name, Some(comment)));
            }
            statements
        }
        Operation::DropColumn { table, name } => vec![format!(
            "ALTER TABLE {} DROP COLUMN {}",
            quote_ident(table),
            quote_ident(name)
        )],
        Operation::AlterColumn { table, to } => {
            match before
                .table(table)
                .and_then(|t| Some((t, t.column(&to.name)?)))
            {
                Some((t, from)) => {
                    // Fails the migration rather than cut or round stored values.
                    let mut statements: Vec<String> =
                        crate::narrowing_guard::postgres_guard(t, from, to)
                            .into_iter()
                            .collect();
                    statements.extend(alter_column(table, from, to));
                    statements
                }
                // Unreachable: render checked that the operation fits.
                None => Vec::new(),
            }
        }
        Operation::RenameColumn { table, from, to } => vec![format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            quote_ident(table),
            quote_ident(from),
            quote_ident(to)
        )],
        Operation::CreateIndex { table, index } => vec![create_index_sql(table, index)],
        Operation::DropIndex { name, .. } => vec![format!("DROP INDEX {}", quote_ident(name))],
        Operation::AddForeignKey { table, foreign_key } => {
            vec![add_constraint(table, &foreign_key_clause(foreign_key))]
        }
        Operation::AddUnique { table, unique } => {
            vec![add_constraint(table, &unique_clause(unique))]
        }
        // Added NOT VALID, then validated: the add itself scans nothing, and VALIDATE reads
        // the rows under SHARE UPDATE EXCLUSIVE. Inside one transaction the add's lock is
        // still held until commit; a step run outside the transaction gains the difference.
        Operation::AddCheck { table, check } => vec![
            format!("{} NOT VALID", add_constraint(table, &check_clause(check))),
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                quote_ident(table),
                quote_ident(&check.name)
            ),
        ],
        Operation::DropForeignKey { table, name }
        | Operation::DropUnique { table, name }
        | Operation::DropCheck { table, name } => vec![format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote_ident(table),
            quote_ident(name)
        )],
        Operation::RenameIndex { from, to, .. } => vec![format!(
            "ALTER INDEX {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        )],
        Operation::RenameConstraint { table, from, to } => vec![format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            quote_ident(table),
            quote_ident(from),
            quote_ident(to)
        )],
        Operation::SetTableComment { table, comment } => {
            vec![table_comment(table, comment.as_deref())]
        }
        Operation::RawSql { up, .. } => raw_sql(&up.postgres),
        Operation::Data(step) => vec![data_step_comment(&step.name)],
    }
}

/// Renames the primary key PostgreSQL named after the table (`<from>_pkey`) to `<to>_pkey`,
/// when it has that name: the model holds no primary key names, so a key named otherwise (or
/// cut to 63 bytes) is left as it is.
fn primary_key_follows(from: &str, to: &str) -> String {
    let old = format!("{from}_pkey");
    format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {}::regclass \
         AND contype = 'p' AND conname = {}) THEN ALTER TABLE {} RENAME CONSTRAINT {} TO {}; \
         END IF; END $$",
        quote_literal(&quote_ident(to)),
        quote_literal(&old),
        quote_ident(to),
        quote_ident(&old),
        quote_ident(&format!("{to}_pkey"))
    )
}

/// `ALTER TABLE "t" ADD <constraint>`.
pub(super) fn add_constraint(table: &str, constraint: &str) -> String {
    format!("ALTER TABLE {} ADD {constraint}", quote_ident(table))
}

/// `COMMENT ON` statements for the table and each commented column, in column order.
pub(super) fn comment_statements(table: &Table) -> Vec<String> {
    let table_comment = table
        .comment
        .as_deref()
        .map(|c| self::table_comment(&table.name, Some(c)));
    let column_comments = table.columns.iter().filter_map(|column| {
        column
            .comment
            .as_deref()
            .map(|c| column_comment(&table.name, &column.name, Some(c)))
    });
    table_comment.into_iter().chain(column_comments).collect()
}

fn table_comment(table: &str, comment: Option<&str>) -> String {
    format!(
        "COMMENT ON TABLE {} IS {}",
        quote_ident(table),
        comment.map_or_else(|| "NULL".to_string(), quote_literal)
    )
}

fn column_comment(table: &str, column: &str, comment: Option<&str>) -> String {
    format!(
        "COMMENT ON COLUMN {}.{} IS {}",
        quote_ident(table),
        quote_ident(column),
        comment.map_or_else(|| "NULL".to_string(), quote_literal)
    )
}

/// Only what changed from `from` to `to`, in an order that works:
///
/// 1. a type change drops the old default first (it may not cast to the new type), changes
///    the type with `USING "c"::<type>` and sets the new default after;
/// 2. otherwise a changed default is set or dropped;
/// 3. a column becoming NOT NULL with a default first has its NULLs set to that default,
///    then gets `SET NOT NULL` (or `DROP NOT NULL` the other way);
/// 4. a changed comment is set, or removed with `IS NULL`.
fn alter_column(table: &str, from: &Column, to: &Column) -> Vec<String> {
    let alter = |clause: String| {
        format!(
            "ALTER TABLE {} ALTER COLUMN {} {clause}",
            quote_ident(table),
            quote_ident(&to.name)
        )
    };
    let set_default = |to: &Column| {
        to.default
            .as_ref()
            .map(|d| alter(format!("SET DEFAULT {}", default_sql(d, &to.ty, PG))))
    };
    let mut statements = Vec::new();
    if from.ty != to.ty {
        if from.default.is_some() {
            statements.push(alter("DROP DEFAULT".into()));
        }
        let ty = column_type_sql(&to.ty, PG);
        statements.push(alter(format!(
            "TYPE {ty} USING {}::{ty}",
            quote_ident(&to.name)
        )));
        statements.extend(set_default(to));
    } else if from.default != to.default {
        statements.push(set_default(to).unwrap_or_else(|| alter("DROP DEFAULT".into())));
    }
    if from.nullable != to.nullable {
        if to.nullable {
            statements.push(alter("DROP NOT NULL".into()));
        } else {
            if let Some(default) = &to.default {
                statements.push(format!(
                    "UPDATE {} SET {} = {} WHERE {} IS NULL",
                    quote_ident(table),
                    quote_ident(&to.name),
                    default_sql(default, &to.ty, PG),
                    quote_ident(&to.name)
                ));
            }
            statements.push(alter("SET NOT NULL".into()));
        }
    }
    if from.comment != to.comment {
        statements.push(column_comment(table, &to.name, to.comment.as_deref()));
    }
    statements
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;
    use sqlx::postgres::PgConnection;

    use crate::render::{render, render_schema};
    use crate::schema::{
        Check, Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Index, Table, Unique,
    };
    use crate::testing::PostgresDatabase;
    use crate::{Dialect, DialectSql, Operation, Schema};

    fn pg(op: &Operation, before: &Schema) -> Vec<String> {
        render(op, before, Dialect::Postgres).unwrap()
    }

    fn schema() -> Schema {
        Schema::new()
            .with_table(
                Table::new("author")
                    .with_column(Column::new("id", ColumnType::Integer))
                    .with_column(Column::new("name", ColumnType::Text))
                    .with_primary_key(["id"]),
            )
            .with_table(
                Table::new("book")
                    .with_column(Column::new("id", ColumnType::Integer))
                    .with_column(Column::new("author_id", ColumnType::Integer).nullable())
                    .with_column(Column::new("title", ColumnType::String(Some(100))))
                    .with_column(
                        Column::new("pages", ColumnType::Integer)
                            .nullable()
                            .default(DefaultValue::Int(1)),
                    )
                    .with_column(Column::new("note", ColumnType::Text).nullable())
                    .with_primary_key(["id"])
                    .with_unique(Unique {
                        name: "book_title_key".into(),
                        columns: vec!["title".into()],
                    })
                    .with_check(Check {
                        name: "book_pages_check".into(),
                        expr: "pages > 0".into(),
                    })
                    .with_index(Index {
                        name: "book_author_idx".into(),
                        columns: vec!["author_id".into()],
                        unique: false,
                    }),
            )
    }

    fn author_fk() -> ForeignKey {
        ForeignKey {
            name: "book_author_fk".into(),
            columns: vec!["author_id".into()],
            ref_table: "author".into(),
            ref_columns: vec!["id".into()],
            on_delete: ForeignKeyAction::SetNull,
            on_update: ForeignKeyAction::Cascade,
        }
    }

    fn column(name: &str) -> Column {
        schema()
            .table("book")
            .unwrap()
            .column(name)
            .unwrap()
            .clone()
    }

    #[test]
    fn table_operations() {
        let s = schema();
        assert_eq!(
            pg(
                &Operation::DropTable {
                    name: "book".into()
                },
                &s
            ),
            ["DROP TABLE \"book\""]
        );
        assert_eq!(
            pg(
                &Operation::RenameTable {
                    from: "book".into(),
                    to: "volume".into()
                },
                &s
            ),
            [
                "ALTER TABLE \"book\" RENAME TO \"volume\"",
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = \
                 '\"volume\"'::regclass AND contype = 'p' AND conname = 'book_pkey') THEN \
                 ALTER TABLE \"volume\" RENAME CONSTRAINT \"book_pkey\" TO \"volume_pkey\"; \
                 END IF; END $$",
            ]
        );
        assert_eq!(
            pg(
                &Operation::SetTableComment {
                    table: "book".into(),
                    comment: Some("what's read".into())
                },
                &s
            ),
            ["COMMENT ON TABLE \"book\" IS 'what''s read'"]
        );
        assert_eq!(
            pg(
                &Operation::SetTableComment {
                    table: "book".into(),
                    comment: None
                },
                &s
            ),
            ["COMMENT ON TABLE \"book\" IS NULL"]
        );
    }

    #[test]
    fn column_operations() {
        let s = schema();
        assert_eq!(
            pg(
                &Operation::AddColumn {
                    table: "book".into(),
                    column: Column::new("isbn", ColumnType::String(Some(13)))
                        .default(DefaultValue::Str("".into()))
                        .comment("ISBN-13")
                },
                &s
            ),
            [
                "ALTER TABLE \"book\" ADD COLUMN \"isbn\" varchar(13) NOT NULL DEFAULT ''",
                "COMMENT ON COLUMN \"book\".\"isbn\" IS 'ISBN-13'",
            ]
        );
        assert_eq!(
            pg(
                &Operation::DropColumn {
                    table: "book".into(),
                    name: "note".into()
                },
                &s
            ),
            ["ALTER TABLE \"book\" DROP COLUMN \"note\""]
        );
        assert_eq!(
            pg(
                &Operation::RenameColumn {
                    table: "book".into(),
                    from: "note".into(),
                    to: "remark".into()
                },
                &s
            ),
            ["ALTER TABLE \"book\" RENAME COLUMN \"note\" TO \"remark\""]
        );
    }

    fn alter(to: Column) -> Vec<String> {
        pg(
            &Operation::AlterColumn {
                table: "book".into(),
                to,
            },
            &schema(),
        )
    }

    #[test]
    fn alter_column_emits_only_what_changed() {
        assert!(alter(column("pages")).is_empty());
        let mut to = column("pages");
        to.default = Some(DefaultValue::Int(2));
        assert_eq!(
            alter(to.clone()),
            ["ALTER TABLE \"book\" ALTER COLUMN \"pages\" SET DEFAULT 2"]
        );
        to.default = None;
        assert_eq!(
            alter(to),
            ["ALTER TABLE \"book\" ALTER COLUMN \"pages\" DROP DEFAULT"]
        );
        assert_eq!(
            alter(column("note").comment("it's a note")),
            ["COMMENT ON COLUMN \"book\".\"note\" IS 'it''s a note'"]
        );
        let mut to = column("title");
        to.nullable = true;
        assert_eq!(
            alter(to),
            ["ALTER TABLE \"book\" ALTER COLUMN \"title\" DROP NOT NULL"]
        );
        let mut to = column("note");
        to.nullable = false;
        assert_eq!(
            alter(to),
            ["ALTER TABLE \"book\" ALTER COLUMN \"note\" SET NOT NULL"]
        );
    }

    #[test]
    fn alter_column_to_not_null_with_default_backfills() {
        let mut to = column("pages");
        to.nullable = false;
        assert_eq!(
            alter(to),
            [
                "UPDATE \"book\" SET \"pages\" = 1 WHERE \"pages\" IS NULL",
                "ALTER TABLE \"book\" ALTER COLUMN \"pages\" SET NOT NULL",
            ]
        );
    }

    #[test]
    fn alter_column_type_moves_the_default_around_it() {
        let to = Column::new("pages", ColumnType::BigInteger)
            .default(DefaultValue::Int(5))
            .comment("page count");
        assert_eq!(
            alter(to),
            [
                "ALTER TABLE \"book\" ALTER COLUMN \"pages\" DROP DEFAULT",
                "ALTER TABLE \"book\" ALTER COLUMN \"pages\" TYPE bigint USING \"pages\"::bigint",
                "ALTER TABLE \"book\" ALTER COLUMN \"pages\" SET DEFAULT 5",
                "UPDATE \"book\" SET \"pages\" = 5 WHERE \"pages\" IS NULL",
                "ALTER TABLE \"book\" ALTER COLUMN \"pages\" SET NOT NULL",
                "COMMENT ON COLUMN \"book\".\"pages\" IS 'page count'",
            ]
        );
        let mut to = column("title");
        to.ty = ColumnType::Text;
        assert_eq!(
            alter(to),
            ["ALTER TABLE \"book\" ALTER COLUMN \"title\" TYPE text USING \"title\"::text"]
        );
        let mut to = column("note");
        to.comment = Some("x".into());
        to.comment = None;
        assert!(alter(to).is_empty());
    }

    #[test]
    fn index_and_constraint_operations() {
        let s = schema();
        let table = || "book".to_string();
        let cases: Vec<(Operation, &str)> = vec![
            (
                Operation::CreateIndex {
                    table: table(),
                    index: Index {
                        name: "book_title_pages_idx".into(),
                        columns: vec!["title".into(), "pages".into()],
                        unique: true,
                    },
                },
                "CREATE UNIQUE INDEX \"book_title_pages_idx\" ON \"book\" (\"title\", \"pages\")",
            ),
            (
                Operation::DropIndex {
                    table: table(),
                    name: "book_author_idx".into(),
                },
                "DROP INDEX \"book_author_idx\"",
            ),
            (
                Operation::AddForeignKey {
                    table: table(),
                    foreign_key: author_fk(),
                },
                "ALTER TABLE \"book\" ADD CONSTRAINT \"book_author_fk\" FOREIGN KEY \
                 (\"author_id\") REFERENCES \"author\" (\"id\") ON DELETE SET NULL \
                 ON UPDATE CASCADE",
            ),
            (
                Operation::AddUnique {
                    table: table(),
                    unique: Unique {
                        name: "book_author_title_key".into(),
                        columns: vec!["author_id".into(), "title".into()],
                    },
                },
                "ALTER TABLE \"book\" ADD CONSTRAINT \"book_author_title_key\" \
                 UNIQUE (\"author_id\", \"title\")",
            ),
            (
                Operation::DropUnique {
                    table: table(),
                    name: "book_title_key".into(),
                },
                "ALTER TABLE \"book\" DROP CONSTRAINT \"book_title_key\"",
            ),
            (
                Operation::DropCheck {
                    table: table(),
                    name: "book_pages_check".into(),
                },
                "ALTER TABLE \"book\" DROP CONSTRAINT \"book_pages_check\"",
            ),
        ];
        for (op, sql) in cases {
            assert_eq!(pg(&op, &s), [sql], "{op}");
        }
        // A check on an existing table: added NOT VALID, then validated.
        let add_check = Operation::AddCheck {
            table: table(),
            check: Check {
                name: "book_title_check".into(),
                expr: "title <> ''".into(),
            },
        };
        assert_eq!(
            pg(&add_check, &s),
            [
                "ALTER TABLE \"book\" ADD CONSTRAINT \"book_title_check\" CHECK (title <> '') NOT VALID",
                "ALTER TABLE \"book\" VALIDATE CONSTRAINT \"book_title_check\"",
            ]
        );
        let mut with_fk = s.clone();
        let add = Operation::AddForeignKey {
            table: table(),
            foreign_key: author_fk(),
        };
        add.apply(&mut with_fk).unwrap();
        assert_eq!(
            pg(
                &Operation::DropForeignKey {
                    table: table(),
                    name: "book_author_fk".into()
                },
                &with_fk
            ),
            ["ALTER TABLE \"book\" DROP CONSTRAINT \"book_author_fk\""]
        );
    }

    #[test]
    fn raw_sql_uses_the_postgres_text() {
        let op = Operation::RawSql {
            up: DialectSql {
                postgres: "SELECT 1".into(),
                sqlite: "SELECT 2".into(),
            },
            down: None,
        };
        assert_eq!(pg(&op, &Schema::new()), ["SELECT 1"]);
    }

    async fn exec(conn: &mut PgConnection, sql: &str) -> Result<u64, String> {
        conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| format!("{sql}: {e}"))
    }

    /// Renders every operation against the schema it moves forward and runs the statements.
    async fn run_ops(
        conn: &mut PgConnection,
        schema: &mut Schema,
        ops: &[Operation],
    ) -> Result<(), String> {
        for op in ops {
            for sql in render(op, schema, Dialect::Postgres).map_err(|e| e.to_string())? {
                exec(conn, &sql).await?;
            }
            op.apply(schema).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// An assertion in the scenario's `Result` style: the first mismatch ends it, saying what
    /// it got and wanted.
    fn same<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want:?}"))
        }
    }

    async fn scenario(conn: &mut PgConnection) -> Result<(), String> {
        let mut s = schema();
        s.tables.get_mut("book").unwrap().comment = Some("books".into());
        for sql in render_schema(&s, Dialect::Postgres) {
            exec(conn, &sql).await?;
        }
        exec(
            conn,
            "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bo')",
        )
        .await?;
        exec(
            conn,
            "INSERT INTO book (id, author_id, title, pages, note) VALUES \
             (1, 1, 'A', NULL, 'n'), (2, 2, 'B', 7, NULL), (3, NULL, 'C', 3, NULL)",
        )
        .await?;
        let ops = vec![
            Operation::AlterColumn {
                table: "book".into(),
                to: Column::new("pages", ColumnType::BigInteger)
                    .default(DefaultValue::Int(10))
                    .comment("page count"),
            },
            Operation::AlterColumn {
                table: "book".into(),
                to: Column::new("title", ColumnType::Text).nullable(),
            },
            Operation::AddColumn {
                table: "book".into(),
                column: Column::new("published", ColumnType::Boolean)
                    .default(DefaultValue::Bool(false))
                    .comment("in print"),
            },
            Operation::AddColumn {
                table: "book".into(),
                column: Column::new("added", ColumnType::TimestampTz)
                    .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into())),
            },
            Operation::DropColumn {
                table: "book".into(),
                name: "note".into(),
            },
            Operation::AddForeignKey {
                table: "book".into(),
                foreign_key: author_fk(),
            },
            Operation::AddUnique {
                table: "book".into(),
                unique: Unique {
                    name: "book_author_title_key".into(),
                    columns: vec!["author_id".into(), "title".into()],
                },
            },
            Operation::AddCheck {
                table: "book".into(),
                check: Check {
                    name: "book_title_check".into(),
                    expr: "title <> ''".into(),
                },
            },
            Operation::CreateIndex {
                table: "book".into(),
                index: Index {
                    name: "book_added_idx".into(),
                    columns: vec!["added".into()],
                    unique: false,
                },
            },
            Operation::DropForeignKey {
                table: "book".into(),
                name: "book_author_fk".into(),
            },
            Operation::DropUnique {
                table: "book".into(),
                name: "book_title_key".into(),
            },
            Operation::DropCheck {
                table: "book".into(),
                name: "book_pages_check".into(),
            },
            Operation::DropIndex {
                table: "book".into(),
                name: "book_author_idx".into(),
            },
            Operation::RenameColumn {
                table: "book".into(),
                from: "title".into(),
                to: "name".into(),
            },
            Operation::SetTableComment {
                table: "book".into(),
                comment: None,
            },
            Operation::RenameTable {
                from: "book".into(),
                to: "volume".into(),
            },
        ];
        run_ops(conn, &mut s, &ops).await?;

        let rows: Vec<(i32, i64, bool)> =
            sqlx::query_as("SELECT id, pages, published FROM volume ORDER BY id")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
        same(rows, vec![(1, 10, false), (2, 7, false), (3, 3, false)])?;
        let nullable: String = sqlx::query_scalar(
            "SELECT is_nullable FROM information_schema.columns \
             WHERE table_name = 'volume' AND column_name = 'pages'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
        same(nullable.as_str(), "NO")?;
        let comment: Option<String> = sqlx::query_scalar(
            "SELECT col_description(attrelid, attnum) FROM pg_attribute \
             WHERE attrelid = 'volume'::regclass AND attname = 'pages'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
        same(comment.as_deref(), Some("page count"))?;
        let constraints: Vec<String> = sqlx::query_scalar(
            "SELECT conname::text FROM pg_constraint \
             WHERE conrelid = 'volume'::regclass ORDER BY conname",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
        same(
            constraints,
            vec![
                "book_author_title_key".to_string(),
                "book_title_check".into(),
                // The primary key PostgreSQL named after the table follows the rename.
                "volume_pkey".into(),
            ],
        )?;
        // The default of the dropped-and-reset type change is the new one.
        exec(conn, "INSERT INTO volume (id, name) VALUES (4, 'D')").await?;
        let pages: i64 = sqlx::query_scalar("SELECT pages FROM volume WHERE id = 4")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        same(pages, 10)
    }

    #[tokio::test]
    async fn statements_run_on_postgres() {
        let db = PostgresDatabase::create().await;
        let mut conn = db.connect().await;
        scenario(&mut conn).await.unwrap();
    }
}
