//! SQLite statements for each operation.
//!
//! SQLite alters tables in few ways: it creates, drops and renames tables, renames columns
//! (since 3.25), creates and drops indexes, and adds a column that is nullable or has a
//! constant default. Everything else rebuilds the table ([`rebuild`]): a new table with the
//! definition after the operation, the rows copied over, the old table dropped, the new one
//! renamed into its place and its indexes recreated.
//!
//! Dropping the old table would fire, or be refused by, the foreign keys of other tables that
//! point at it, so the runner runs a migration that holds a rebuild
//! ([`super::needs_sqlite_rebuild`]) with `PRAGMA foreign_keys = OFF` around its transaction
//! and checks `PRAGMA foreign_key_check` before committing. SQLite has no comments: comment
//! changes render to nothing.

use std::collections::BTreeMap;

use super::{
    column_def, create_index_sql, create_table_sql, create_table_statements, data_step_comment,
    default_sql, quote_ident, raw_sql,
};
use crate::schema::{Column, DefaultValue, Table};
use crate::{Dialect, Operation, Schema};

const LITE: Dialect = Dialect::Sqlite;

/// The prefix of the table a rebuild builds before renaming it into place.
const REBUILD_PREFIX: &str = "_strata_new_";

/// True when the renderer rebuilds a table for `op` (read against `before`).
pub(super) fn needs_rebuild(op: &Operation, before: &Schema) -> bool {
    match op {
        Operation::AddColumn { column, .. } => !can_add_in_place(column),
        Operation::AlterColumn { table, to } => before
            .table(table)
            .and_then(|t| t.column(&to.name))
            .is_some_and(|from| {
                !crate::sqlite_rebuilds::same_storage(&from.ty, &to.ty)
                    || from.nullable != to.nullable
                    || from.default != to.default
            }),
        Operation::DropColumn { .. }
        | Operation::AddForeignKey { .. }
        | Operation::DropForeignKey { .. }
        | Operation::AddUnique { .. }
        | Operation::DropUnique { .. }
        | Operation::AddCheck { .. }
        | Operation::DropCheck { .. } => true,
        // Constraint names live in the CREATE TABLE text, which only a rebuild rewrites.
        Operation::RenameConstraint { .. } => true,
        _ => false,
    }
}

/// `ALTER TABLE .. ADD COLUMN` refuses a NOT NULL column without a default, and a default
/// that is an expression (`CURRENT_TIMESTAMP`, anything in parentheses).
fn can_add_in_place(column: &Column) -> bool {
    match &column.default {
        Some(DefaultValue::Expr(_)) => false,
        Some(_) => true,
        None => column.nullable,
    }
}

/// The statements for `op`, which fits `before` and gives `after`.
pub(super) fn render(op: &Operation, before: &Schema, after: &Schema) -> Vec<String> {
    if needs_rebuild(op, before) {
        let from = op.table().and_then(|name| before.table(name));
        let to = op.table().and_then(|name| after.table(name));
        return match (from, to) {
            (Some(from), Some(to)) => rebuild(from, to),
            // Unreachable: render checked that the operation fits.
            _ => Vec::new(),
        };
    }
    match op {
        Operation::CreateTable(table) => create_table_statements(table, LITE),
        Operation::DropTable { name } => vec![format!("DROP TABLE {}", quote_ident(name))],
        Operation::RenameTable { from, to } => vec![format!(
            "ALTER TABLE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        )],
        Operation::AddColumn { table, column } => vec![format!(
            "ALTER TABLE {} ADD COLUMN {}",
            quote_ident(table),
            column_def(column, LITE)
        )],
        Operation::RenameColumn { table, from, to } => vec![format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            quote_ident(table),
            quote_ident(from),
            quote_ident(to)
        )],
        Operation::CreateIndex { table, index } => vec![create_index_sql(table, index)],
        Operation::DropIndex { name, .. } => vec![format!("DROP INDEX {}", quote_ident(name))],
        // SQLite has no ALTER INDEX: the index is made again under its new name.
        Operation::RenameIndex { table, from, to } => {
            match after.table(table).and_then(|t| t.indexes.get(to)) {
                Some(index) => vec![
                    format!("DROP INDEX {}", quote_ident(from)),
                    create_index_sql(table, index),
                ],
                // Unreachable: render checked that the operation fits.
                None => Vec::new(),
            }
        }
        Operation::RawSql { up, .. } => raw_sql(&up.sqlite),
        Operation::Data(step) => vec![data_step_comment(&step.name)],
        // A comment-only AlterColumn and SetTableComment: SQLite keeps no comments. The
        // others always rebuild and were handled above.
        Operation::AlterColumn { .. }
        | Operation::SetTableComment { .. }
        | Operation::DropColumn { .. }
        | Operation::AddForeignKey { .. }
        | Operation::DropForeignKey { .. }
        | Operation::AddUnique { .. }
        | Operation::DropUnique { .. }
        | Operation::AddCheck { .. }
        | Operation::DropCheck { .. }
        | Operation::RenameConstraint { .. } => Vec::new(),
    }
}

/// Rebuilds table `from` into `to` (same name): create `_strata_new_<name>` with the new
/// definition, copy the columns both share (in the new order), drop the old table, rename the
/// new one into place and recreate the indexes.
///
/// A column that becomes NOT NULL and has a default is copied as `COALESCE("c", <default>)`,
/// so its NULLs take the default as they do on PostgreSQL.
fn rebuild(from: &Table, to: &Table) -> Vec<String> {
    rebuild_converting(from, to, &BTreeMap::new())
}

/// [`rebuild`], copying each column named in `converted` through its SQL expression (read
/// against a row of the old table) instead of as it is.
pub(super) fn rebuild_converting(
    from: &Table,
    to: &Table,
    converted: &BTreeMap<String, String>,
) -> Vec<String> {
    let name = &to.name;
    let temp = format!("{REBUILD_PREFIX}{name}");
    let mut statements = vec![create_table_sql(to, &temp, LITE, |_| true)];
    let shared: Vec<(&Column, &Column)> = to
        .columns
        .iter()
        .filter_map(|new| from.column(&new.name).map(|old| (old, new)))
        .collect();
    if !shared.is_empty() {
        let targets: Vec<String> = shared
            .iter()
            .map(|(_, new)| quote_ident(&new.name))
            .collect();
        let sources: Vec<String> = shared
            .iter()
            .map(|(old, new)| {
                let source = converted
                    .get(&new.name)
                    .cloned()
                    .unwrap_or_else(|| quote_ident(&new.name));
                match &new.default {
                    Some(default) if old.nullable && !new.nullable => format!(
                        "COALESCE({source}, {})",
                        default_sql(default, &new.ty, LITE)
                    ),
                    _ => source,
                }
            })
            .collect();
        statements.push(format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            quote_ident(&temp),
            targets.join(", "),
            sources.join(", "),
            quote_ident(name)
        ));
    }
    statements.push(format!("DROP TABLE {}", quote_ident(name)));
    statements.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        quote_ident(&temp),
        quote_ident(name)
    ));
    statements.extend(
        to.indexes
            .values()
            .map(|index| create_index_sql(name, index)),
    );
    statements
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use sqlx::{Connection, Executor};

    use crate::render::{needs_sqlite_rebuild, render, render_schema};
    use crate::schema::{
        Check, Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Index, Table, Unique,
    };
    use crate::{Dialect, DialectSql, Operation, Schema};

    fn lite(op: &Operation, before: &Schema) -> Vec<String> {
        render(op, before, Dialect::Sqlite).unwrap()
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
                    .with_column(Column::new("pages", ColumnType::Integer).nullable())
                    .with_column(
                        Column::new("note", ColumnType::Text)
                            .nullable()
                            .comment("free"),
                    )
                    .with_primary_key(["id"])
                    .with_unique(Unique {
                        name: "book_title_key".into(),
                        columns: vec!["title".into()],
                    })
                    .with_index(Index {
                        name: "book_author_idx".into(),
                        columns: vec!["author_id".into()],
                        unique: false,
                    })
                    .with_index(Index {
                        name: "book_pages_idx".into(),
                        columns: vec!["pages".into(), "id".into()],
                        unique: true,
                    }),
            )
    }

    fn author_fk() -> ForeignKey {
        ForeignKey {
            name: "book_author_fk".into(),
            columns: vec!["author_id".into()],
            ref_table: "author".into(),
            ref_columns: vec!["id".into()],
            on_delete: ForeignKeyAction::Cascade,
            on_update: ForeignKeyAction::NoAction,
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

    const CREATE_BOOK: &str = "\"id\" integer NOT NULL, \"author_id\" integer, \
        \"title\" varchar(100) NOT NULL, \"pages\" integer, \"note\" text, PRIMARY KEY (\"id\"), \
        CONSTRAINT \"book_title_key\" UNIQUE (\"title\")";

    /// The statements of a rebuild of `book` whose new definition is `columns_and_keys` and
    /// whose copy statement is `insert`.
    fn rebuild_of_book(columns_and_keys: &str, insert: &str) -> Vec<String> {
        vec![
            format!("CREATE TABLE \"_strata_new_book\" ({columns_and_keys})"),
            insert.to_string(),
            "DROP TABLE \"book\"".to_string(),
            "ALTER TABLE \"_strata_new_book\" RENAME TO \"book\"".to_string(),
            "CREATE INDEX \"book_author_idx\" ON \"book\" (\"author_id\")".to_string(),
            "CREATE UNIQUE INDEX \"book_pages_idx\" ON \"book\" (\"pages\", \"id\")".to_string(),
        ]
    }

    const COPY_ALL: &str = "INSERT INTO \"_strata_new_book\" (\"id\", \"author_id\", \"title\", \
        \"pages\", \"note\") SELECT \"id\", \"author_id\", \"title\", \"pages\", \"note\" \
        FROM \"book\"";

    #[test]
    fn direct_operations() {
        let s = schema();
        let book = || "book".to_string();
        let cases: Vec<(Operation, &str)> = vec![
            (Operation::DropTable { name: book() }, "DROP TABLE \"book\""),
            (
                Operation::RenameTable {
                    from: book(),
                    to: "volume".into(),
                },
                "ALTER TABLE \"book\" RENAME TO \"volume\"",
            ),
            (
                Operation::RenameColumn {
                    table: book(),
                    from: "note".into(),
                    to: "remark".into(),
                },
                "ALTER TABLE \"book\" RENAME COLUMN \"note\" TO \"remark\"",
            ),
            (
                Operation::AddColumn {
                    table: book(),
                    column: Column::new("isbn", ColumnType::String(Some(13))).nullable(),
                },
                "ALTER TABLE \"book\" ADD COLUMN \"isbn\" varchar(13)",
            ),
            (
                Operation::AddColumn {
                    table: book(),
                    column: Column::new("published", ColumnType::Boolean)
                        .default(DefaultValue::Bool(true))
                        .comment("in print"),
                },
                "ALTER TABLE \"book\" ADD COLUMN \"published\" boolean NOT NULL DEFAULT 1",
            ),
            (
                Operation::CreateIndex {
                    table: book(),
                    index: Index {
                        name: "book_note_idx".into(),
                        columns: vec!["note".into()],
                        unique: false,
                    },
                },
                "CREATE INDEX \"book_note_idx\" ON \"book\" (\"note\")",
            ),
            (
                Operation::DropIndex {
                    table: book(),
                    name: "book_author_idx".into(),
                },
                "DROP INDEX \"book_author_idx\"",
            ),
        ];
        for (op, sql) in cases {
            assert!(!needs_sqlite_rebuild(&op, &s), "{op}");
            assert_eq!(lite(&op, &s), [sql], "{op}");
        }
    }

    #[test]
    fn comments_render_to_nothing() {
        let s = schema();
        let ops = [
            Operation::SetTableComment {
                table: "book".into(),
                comment: Some("books".into()),
            },
            Operation::AlterColumn {
                table: "book".into(),
                to: column("note").comment("changed"),
            },
            Operation::AlterColumn {
                table: "book".into(),
                to: column("note"),
            },
        ];
        for op in ops {
            assert!(!needs_sqlite_rebuild(&op, &s), "{op}");
            assert!(lite(&op, &s).is_empty(), "{op}");
        }
    }

    #[test]
    fn raw_sql_uses_the_sqlite_text() {
        let op = Operation::RawSql {
            up: DialectSql {
                postgres: "SELECT 1".into(),
                sqlite: "SELECT 2; SELECT 3".into(),
            },
            down: None,
        };
        assert_eq!(lite(&op, &Schema::new()), ["SELECT 2; SELECT 3"]);
    }

    #[test]
    fn drop_column_rebuilds() {
        let op = Operation::DropColumn {
            table: "book".into(),
            name: "pages".into(),
        };
        assert!(needs_sqlite_rebuild(&op, &schema()));
        // The index on the dropped column goes with it.
        let mut expected = rebuild_of_book(
            "\"id\" integer NOT NULL, \"author_id\" integer, \"title\" varchar(100) NOT NULL, \
             \"note\" text, PRIMARY KEY (\"id\"), CONSTRAINT \"book_title_key\" UNIQUE (\"title\")",
            "INSERT INTO \"_strata_new_book\" (\"id\", \"author_id\", \"title\", \"note\") \
             SELECT \"id\", \"author_id\", \"title\", \"note\" FROM \"book\"",
        );
        expected.pop();
        assert_eq!(lite(&op, &schema()), expected);
    }

    #[test]
    fn alter_column_rebuilds_and_fills_nulls_with_the_default() {
        let op = Operation::AlterColumn {
            table: "book".into(),
            to: Column::new("pages", ColumnType::BigInteger).default(DefaultValue::Int(0)),
        };
        assert!(needs_sqlite_rebuild(&op, &schema()));
        assert_eq!(
            lite(&op, &schema()),
            rebuild_of_book(
                &CREATE_BOOK.replace("\"pages\" integer,", "\"pages\" bigint NOT NULL DEFAULT 0,"),
                &COPY_ALL.replace(
                    "SELECT \"id\", \"author_id\", \"title\", \"pages\"",
                    "SELECT \"id\", \"author_id\", \"title\", COALESCE(\"pages\", 0)"
                ),
            )
        );
        // Made nullable: copied as is.
        let mut to = column("title");
        to.nullable = true;
        let op = Operation::AlterColumn {
            table: "book".into(),
            to,
        };
        assert_eq!(
            lite(&op, &schema()),
            rebuild_of_book(
                &CREATE_BOOK.replace("varchar(100) NOT NULL", "varchar(100)"),
                COPY_ALL
            )
        );
    }

    #[test]
    fn add_column_rebuilds_when_sqlite_refuses_it() {
        let not_null = Operation::AddColumn {
            table: "book".into(),
            column: Column::new("isbn", ColumnType::Text),
        };
        let expression = Operation::AddColumn {
            table: "book".into(),
            column: Column::new("added", ColumnType::Timestamp)
                .nullable()
                .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into())),
        };
        assert!(needs_sqlite_rebuild(&not_null, &schema()));
        assert!(needs_sqlite_rebuild(&expression, &schema()));
        assert_eq!(
            lite(&not_null, &schema()),
            rebuild_of_book(
                &CREATE_BOOK.replace("\"note\" text,", "\"note\" text, \"isbn\" text NOT NULL,"),
                COPY_ALL
            )
        );
        assert_eq!(
            lite(&expression, &schema())[0],
            format!(
                "CREATE TABLE \"_strata_new_book\" ({})",
                CREATE_BOOK.replace(
                    "\"note\" text,",
                    "\"note\" text, \"added\" timestamp_text DEFAULT CURRENT_TIMESTAMP,"
                )
            )
        );
    }

    #[test]
    fn constraint_changes_rebuild() {
        let s = schema();
        let with_fk = |s: &Schema| {
            let mut s = s.clone();
            s.tables
                .get_mut("book")
                .unwrap()
                .foreign_keys
                .insert("book_author_fk".into(), author_fk());
            s
        };
        let fk_clause = ", CONSTRAINT \"book_author_fk\" FOREIGN KEY (\"author_id\") \
            REFERENCES \"author\" (\"id\") ON DELETE CASCADE";
        let op = Operation::AddForeignKey {
            table: "book".into(),
            foreign_key: author_fk(),
        };
        assert!(needs_sqlite_rebuild(&op, &s));
        assert_eq!(
            lite(&op, &s),
            rebuild_of_book(&format!("{CREATE_BOOK}{fk_clause}"), COPY_ALL)
        );
        let op = Operation::DropForeignKey {
            table: "book".into(),
            name: "book_author_fk".into(),
        };
        assert!(needs_sqlite_rebuild(&op, &with_fk(&s)));
        assert_eq!(
            lite(&op, &with_fk(&s)),
            rebuild_of_book(CREATE_BOOK, COPY_ALL)
        );

        let check = Check {
            name: "book_pages_check".into(),
            expr: "pages > 0".into(),
        };
        let op = Operation::AddCheck {
            table: "book".into(),
            check: check.clone(),
        };
        assert!(needs_sqlite_rebuild(&op, &s));
        assert_eq!(
            lite(&op, &s),
            rebuild_of_book(
                &format!("{CREATE_BOOK}, CONSTRAINT \"book_pages_check\" CHECK (pages > 0)"),
                COPY_ALL
            )
        );
        let mut with_check = s.clone();
        op.apply(&mut with_check).unwrap();
        let op = Operation::DropCheck {
            table: "book".into(),
            name: "book_pages_check".into(),
        };
        assert!(needs_sqlite_rebuild(&op, &with_check));
        assert_eq!(
            lite(&op, &with_check),
            rebuild_of_book(CREATE_BOOK, COPY_ALL)
        );

        let op = Operation::AddUnique {
            table: "book".into(),
            unique: Unique {
                name: "book_author_title_key".into(),
                columns: vec!["author_id".into(), "title".into()],
            },
        };
        assert!(needs_sqlite_rebuild(&op, &s));
        assert_eq!(
            lite(&op, &s),
            rebuild_of_book(
                &CREATE_BOOK.replace(
                    "CONSTRAINT \"book_title_key\"",
                    "CONSTRAINT \"book_author_title_key\" UNIQUE (\"author_id\", \"title\"), \
                     CONSTRAINT \"book_title_key\""
                ),
                COPY_ALL
            )
        );
        let op = Operation::DropUnique {
            table: "book".into(),
            name: "book_title_key".into(),
        };
        assert!(needs_sqlite_rebuild(&op, &s));
        assert_eq!(
            lite(&op, &s),
            rebuild_of_book(
                &CREATE_BOOK.replace(", CONSTRAINT \"book_title_key\" UNIQUE (\"title\")", ""),
                COPY_ALL
            )
        );
    }

    async fn exec(conn: &mut SqliteConnection, sql: &str) {
        conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn names(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[tokio::test]
    async fn rebuilds_keep_rows_indexes_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("render.db"))
            .create_if_missing(true)
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();

        let mut s = schema();
        // A second table pointing at book, so dropping book during a rebuild matters.
        s = s.with_table(
            Table::new("review")
                .with_column(Column::new("id", ColumnType::Integer))
                .with_column(Column::new("book_id", ColumnType::Integer))
                .with_primary_key(["id"])
                .with_foreign_key(ForeignKey {
                    name: "review_book_fk".into(),
                    columns: vec!["book_id".into()],
                    ref_table: "book".into(),
                    ref_columns: vec!["id".into()],
                    on_delete: ForeignKeyAction::Cascade,
                    on_update: ForeignKeyAction::NoAction,
                }),
        );
        for sql in render_schema(&s, Dialect::Sqlite) {
            exec(&mut conn, &sql).await;
        }
        exec(
            &mut conn,
            "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bo')",
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO book (id, author_id, title, pages, note) VALUES \
             (1, 1, 'A', NULL, 'n'), (2, 2, 'B', 7, NULL), (3, NULL, 'C', 3, NULL)",
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO review (id, book_id) VALUES (1, 1), (2, 3)",
        )
        .await;

        let ops = [
            Operation::AlterColumn {
                table: "book".into(),
                to: Column::new("pages", ColumnType::Integer).default(DefaultValue::Int(10)),
            },
            Operation::DropColumn {
                table: "book".into(),
                name: "note".into(),
            },
            Operation::AddForeignKey {
                table: "book".into(),
                foreign_key: author_fk(),
            },
            Operation::AddColumn {
                table: "book".into(),
                column: Column::new("added", ColumnType::Timestamp)
                    .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into())),
            },
            Operation::AddCheck {
                table: "book".into(),
                check: Check {
                    name: "book_pages_check".into(),
                    expr: "pages > 0".into(),
                },
            },
        ];
        assert!(ops.iter().all(|op| needs_sqlite_rebuild(op, &s)));
        // What the runner does around a migration that rebuilds.
        exec(&mut conn, "PRAGMA foreign_keys = OFF").await;
        let mut tx = conn.begin().await.unwrap();
        for op in &ops {
            for sql in lite(op, &s) {
                exec(&mut tx, &sql).await;
            }
            op.apply(&mut s).unwrap();
        }
        let broken = names(&mut tx, "SELECT \"table\" FROM pragma_foreign_key_check").await;
        assert!(broken.is_empty(), "{broken:?}");
        tx.commit().await.unwrap();
        exec(&mut conn, "PRAGMA foreign_keys = ON").await;

        let rows: Vec<(i64, Option<i64>, String, i64)> = sqlx::query_as(
            "SELECT id, author_id, title, pages FROM book WHERE added IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                (1, Some(1), "A".to_string(), 10),
                (2, Some(2), "B".to_string(), 7),
                (3, None, "C".to_string(), 3),
            ]
        );
        let mut indexes = names(&mut conn, "SELECT name FROM pragma_index_list('book')").await;
        indexes.sort();
        assert_eq!(
            indexes,
            [
                "book_author_idx",
                "book_pages_idx",
                "sqlite_autoindex_book_1"
            ]
        );
        let fks = names(
            &mut conn,
            "SELECT \"table\" FROM pragma_foreign_key_list('book')",
        )
        .await;
        assert_eq!(fks, ["author"]);
        let columns = names(&mut conn, "SELECT name FROM pragma_table_info('book')").await;
        assert_eq!(columns, ["id", "author_id", "title", "pages", "added"]);
        // The reference from review still holds, and the new keys act.
        let reviews = names(
            &mut conn,
            "SELECT CAST(book_id AS TEXT) FROM review ORDER BY id",
        )
        .await;
        assert_eq!(reviews, ["1", "3"]);
        exec(&mut conn, "DELETE FROM author WHERE id = 1").await;
        let left = names(&mut conn, "SELECT title FROM book ORDER BY id").await;
        assert_eq!(left, ["B", "C"]);
        let reviews = names(&mut conn, "SELECT CAST(book_id AS TEXT) FROM review").await;
        assert_eq!(reviews, ["3"]);
        let refused = conn
            .execute("INSERT INTO book (id, author_id, title, pages) VALUES (9, 1, 'Z', 0)")
            .await;
        assert!(refused.is_err(), "the check and the foreign key hold");
        conn.close().await.unwrap();
    }
}
