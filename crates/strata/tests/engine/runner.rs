//! The runner and every operation on real PostgreSQL and SQLite: each operation up and down
//! checked by introspection, the SQLite rebuild, failures, checksums, the offline script,
//! stamp, merges and concurrent upgraders.

use std::collections::BTreeSet;

use strata::ops::DataFuture;
use strata::prelude::*;
use strata::runner::{self, DataContext, Event, Plan, RunError, Statement};
use strata::state::{Direction, History, HistoryError};

use crate::support::{
    TestDb, VERSION_TABLE, applied_set, assert_matches_history, assert_no_drift, down, live_schema,
    on_both_dialects, scalar_i64, up,
};

on_both_dialects!(
    every_operation_up_and_down,
    a_failing_statement_keeps_the_previous_revision,
    a_changed_applied_migration_is_refused,
    offline_sql_equals_what_runs,
    stamp_sets_the_revision_without_running,
    branches_must_be_merged,
    eight_concurrent_upgraders_apply_once,
);

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

/// A history that uses every kind of operation at least once.
fn every_operation() -> History {
    History::new(vec![
        Migration::new("e01", &[], "parent and child tables", "t").operations(vec![
            create_table(
                Table::new("author")
                    .with_column(col("id", ColumnType::Uuid))
                    .with_column(col("name", ColumnType::String(Some(100))))
                    .with_column(
                        col("active", ColumnType::Boolean).default(DefaultValue::Bool(true)),
                    )
                    .with_primary_key(["id"])
                    .with_unique(Unique::new("uq_author_name", &["name"])),
            ),
            create_table(
                Table::new("book")
                    .with_column(col("id", ColumnType::Uuid))
                    .with_column(col("title", ColumnType::String(Some(200))))
                    .with_column(col("pages", ColumnType::Integer).nullable())
                    .with_column(col("author_id", ColumnType::Uuid))
                    .with_column(col("created_at", ColumnType::TimestampTz))
                    .with_primary_key(["id"])
                    .with_foreign_key(
                        ForeignKey::new(
                            "fk_book_author_id_author",
                            &["author_id"],
                            "author",
                            &["id"],
                        )
                        .on_delete(ForeignKeyAction::Cascade),
                    )
                    .with_index(Index::new("ix_book_title", &["title"])),
            ),
        ]),
        Migration::new("e02", &["e01"], "columns", "t").operations(vec![
            add_column("book", col("isbn", ColumnType::String(Some(20))).nullable()),
            add_column(
                "book",
                col("rating", ColumnType::SmallInteger).default(DefaultValue::Int(0)),
            ),
            alter_column(
                "book",
                col("pages", ColumnType::BigInteger).default(DefaultValue::Int(1)),
            ),
            rename_column("book", "isbn", "isbn13"),
            drop_column("author", "active"),
        ]),
        Migration::new("e03", &["e02"], "indexes and constraints", "t").operations(vec![
            create_unique_index("book", "ix_book_isbn13", &["isbn13"]),
            create_index(
                "book",
                "ix_book_author_id_created_at",
                &["author_id", "created_at"],
            ),
            drop_index("book", "ix_book_title"),
            add_check("book", "ck_book_rating", "rating >= 0"),
            add_unique("book", "uq_book_title_author_id", &["title", "author_id"]),
            drop_unique("author", "uq_author_name"),
            drop_foreign_key("book", "fk_book_author_id_author"),
            add_foreign_key(
                "book",
                ForeignKey::new(
                    "fk_book_author_id_author_restrict",
                    &["author_id"],
                    "author",
                    &["id"],
                )
                .on_delete(ForeignKeyAction::Restrict),
            ),
            set_table_comment("book", Some("books we own")),
        ]),
        Migration::new("e04", &["e03"], "renames, raw SQL and drops", "t").operations(vec![
            rename_table("author", "writer"),
            drop_check("book", "ck_book_rating"),
            raw_sql_reversible(
                DialectSql::both("CREATE TABLE note (id integer PRIMARY KEY)"),
                DialectSql::both("DROP TABLE note"),
            ),
            raw_sql_reversible(
                DialectSql::both("DROP TABLE note"),
                DialectSql::both("CREATE TABLE note (id integer PRIMARY KEY)"),
            ),
            create_table(
                Table::new("shelf")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("label", ColumnType::Text).nullable())
                    .with_primary_key(["id"]),
            ),
            drop_table("shelf"),
        ]),
        Migration::new("e05", &["e04"], "a Rust data step", "t").operations(vec![
            add_column("writer", col("note", ColumnType::Text).nullable()),
            run_data(
                DataStep::new("add the first writer", add_first_writer)
                    .with_down(remove_first_writer),
            ),
        ]),
    ])
    .unwrap()
}

fn first_writer_id(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "'00000000-0000-7000-8000-000000000001'",
        Dialect::Sqlite => "x'00000000000070008000000000000001'",
    }
}

fn add_first_writer<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        let sql = format!(
            "INSERT INTO writer (id, name, note) VALUES ({}, 'First', 'added by a data step')",
            first_writer_id(cx.dialect())
        );
        cx.execute(&sql).await.map(|_| ())
    })
}

fn remove_first_writer<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        let sql = format!(
            "DELETE FROM writer WHERE id = {}",
            first_writer_id(cx.dialect())
        );
        cx.execute(&sql).await.map(|_| ())
    })
}

async fn every_operation_up_and_down(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = every_operation();
    let revisions: Vec<String> = history
        .migrations()
        .iter()
        .map(|m| m.revision.clone())
        .collect();
    for (i, rev) in revisions.iter().enumerate() {
        let done = up(&mut conn, &history, "+1")
            .await
            .unwrap_or_else(|e| panic!("up {rev}: {e}"));
        assert_eq!(done, std::slice::from_ref(rev));
        assert_matches_history(&mut conn, &history, &format!("after upgrade {i}")).await;
    }
    let notes = conn.fetch_text("SELECT note FROM writer").await.unwrap();
    assert_eq!(
        notes,
        vec![vec![Some("added by a data step".to_string())]],
        "the data step ran"
    );
    let at_head = live_schema(&mut conn).await;
    for rev in revisions.iter().rev() {
        let done = down(&mut conn, &history, "-1")
            .await
            .unwrap_or_else(|e| panic!("down {rev}: {e}"));
        assert_eq!(done, std::slice::from_ref(rev));
        assert_matches_history(&mut conn, &history, &format!("after downgrade {rev}")).await;
    }
    assert!(
        live_schema(&mut conn).await.tables.is_empty(),
        "downgrade to base leaves nothing"
    );
    // And back up again in one go.
    up(&mut conn, &history, "head").await.unwrap();
    let again = live_schema(&mut conn).await;
    assert_no_drift(&at_head, &again, dialect, "upgrading again");
}

#[tokio::test]
async fn sqlite_rebuild_keeps_rows_indexes_and_keys() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let history = every_operation();
    up(&mut conn, &history, "e01").await.unwrap();
    conn.execute(
        "INSERT INTO author (id, name) VALUES (x'01', 'Ann'), (x'02', 'Bob'); \
         INSERT INTO book (id, title, pages, author_id, created_at) VALUES \
         (x'11', 'One', 10, x'01', '2026-01-01T00:00:00Z'), (x'12', 'Two', NULL, x'02', '2026-01-02T00:00:00Z')",
    )
    .await
    .unwrap();
    // e02 alters book.pages (a rebuild) and drops author.active (a rebuild).
    up(&mut conn, &history, "e02").await.unwrap();
    assert_eq!(scalar_i64(&mut conn, "SELECT count(*) FROM book").await, 2);
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM author").await,
        2
    );
    assert_eq!(
        scalar_i64(&mut conn, "SELECT pages FROM book WHERE title = 'One'").await,
        10
    );
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM pragma_index_list('book') WHERE name = 'ix_book_title'"
        )
        .await,
        1,
        "the index survives the rebuild"
    );
    // The foreign key still holds and still cascades.
    assert!(
        conn.execute("INSERT INTO book (id, title, author_id, created_at) VALUES (x'13', 'Orphan', x'99', 'x')")
            .await
            .is_err(),
        "the foreign key survives the rebuild"
    );
    conn.execute("DELETE FROM author WHERE name = 'Ann'")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM book").await,
        1,
        "ON DELETE CASCADE survives"
    );
    assert_eq!(
        scalar_i64(&mut conn, "PRAGMA foreign_keys").await,
        1,
        "foreign keys are back on"
    );
    assert_matches_history(&mut conn, &history, "after rebuilds").await;
}

async fn a_failing_statement_keeps_the_previous_revision(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = History::new(vec![
        Migration::new("f01", &[], "good", "t").operations(vec![create_table(
            Table::new("kept")
                .with_column(col("id", ColumnType::Integer))
                .with_primary_key(["id"]),
        )]),
        Migration::new("f02", &["f01"], "bad", "t").operations(vec![
            create_table(
                Table::new("lost")
                    .with_column(col("id", ColumnType::Integer))
                    .with_primary_key(["id"]),
            ),
            raw_sql(DialectSql::both("INSERT INTO no_such_table VALUES (1)")),
        ]),
    ])
    .unwrap();
    let err = up(&mut conn, &history, "head")
        .await
        .expect_err("f02 fails");
    let text = err.to_string();
    assert!(
        text.contains("f02") && text.contains("bad"),
        "names the migration: {text}"
    );
    assert!(
        text.contains("INSERT INTO no_such_table"),
        "names the statement: {text}"
    );
    assert_eq!(
        applied_set(&mut conn).await,
        BTreeSet::from(["f01".to_string()])
    );
    let live = live_schema(&mut conn).await;
    assert!(live.table("kept").is_some());
    assert!(
        live.table("lost").is_none(),
        "the failed migration left nothing behind"
    );
}

async fn a_changed_applied_migration_is_refused(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = every_operation();
    up(&mut conn, &history, "e02").await.unwrap();
    let mut changed: Vec<Migration> = history.migrations().to_vec();
    changed[1].operations.push(add_column(
        "book",
        col("extra", ColumnType::Text).nullable(),
    ));
    let changed = History::new(changed).unwrap();
    let err = up(&mut conn, &changed, "head").await.expect_err("refused");
    assert!(
        matches!(err, RunError::ChecksumMismatch { ref revision, .. } if revision == "e02"),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
    // Cosmetic changes (message, creation time) are not changes.
    let mut cosmetic: Vec<Migration> = history.migrations().to_vec();
    cosmetic[0].message = "renamed message".into();
    cosmetic[0].created = "later".into();
    up(&mut conn, &History::new(cosmetic).unwrap(), "head")
        .await
        .unwrap();
}

async fn offline_sql_equals_what_runs(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = every_operation();
    for direction in [Direction::Up, Direction::Down] {
        let start = applied_set(&mut conn).await;
        let target = if direction == Direction::Up {
            "head"
        } else {
            "base"
        };
        let plan = Plan::new(&history, &start, direction, target, dialect, VERSION_TABLE).unwrap();
        let expected: Vec<String> = plan
            .migrations
            .iter()
            .flat_map(|m| plan.statements(m))
            .filter_map(|s| match s {
                Statement::Sql(sql) => Some(sql.to_string()),
                Statement::ForeignKeyCheck => Some(runner::FOREIGN_KEY_CHECK.to_string()),
                Statement::Data(_) | Statement::Dependents(_) => None,
            })
            .collect();
        let script = plan.to_sql();
        let step = if direction == Direction::Up {
            "add the first writer"
        } else {
            "undo add the first writer"
        };
        assert!(
            script.contains(&format!("-- Rust data step: {step}")),
            "{script}"
        );
        for sql in &expected {
            assert!(script.contains(sql.as_str()), "--sql shows {sql}");
        }
        let mut executed = Vec::new();
        runner::run(
            &mut conn,
            &history,
            VERSION_TABLE,
            direction,
            target,
            &mut |event| {
                if let Event::Statement { sql } = event {
                    executed.push(sql.to_string());
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(
            executed, expected,
            "{direction:?}: online ran exactly the offline script"
        );
    }
}

async fn stamp_sets_the_revision_without_running(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = every_operation();
    runner::stamp(&mut conn, &history, VERSION_TABLE, "e02")
        .await
        .unwrap();
    assert_eq!(
        applied_set(&mut conn).await,
        BTreeSet::from(["e01".into(), "e02".into()])
    );
    assert!(
        live_schema(&mut conn).await.tables.is_empty(),
        "nothing ran"
    );
    runner::stamp(&mut conn, &history, VERSION_TABLE, "head")
        .await
        .unwrap();
    assert_eq!(applied_set(&mut conn).await.len(), 5);
    runner::stamp(&mut conn, &history, VERSION_TABLE, "base")
        .await
        .unwrap();
    assert!(applied_set(&mut conn).await.is_empty());
    assert!(matches!(
        runner::stamp(&mut conn, &history, VERSION_TABLE, "nope").await,
        Err(RunError::History(HistoryError::UnknownRevision(_)))
    ));
}

async fn branches_must_be_merged(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let base = Migration::new("b01", &[], "base", "t").operations(vec![create_table(
        Table::new("a")
            .with_column(col("id", ColumnType::Integer))
            .with_primary_key(["id"]),
    )]);
    let left = Migration::new("b02", &["b01"], "left", "t")
        .operations(vec![add_column("a", col("l", ColumnType::Text).nullable())]);
    let right = Migration::new("b03", &["b01"], "right", "t")
        .operations(vec![add_column("a", col("r", ColumnType::Text).nullable())]);
    let branched = History::new(vec![base.clone(), left.clone(), right.clone()]).unwrap();
    assert_eq!(branched.heads(), ["b02", "b03"]);
    let err = up(&mut conn, &branched, "head")
        .await
        .expect_err("two heads");
    assert!(err.to_string().contains("merge"), "{err}");
    let merge = Migration::new("b04", &["b02", "b03"], "merge", "t");
    let merged = History::new(vec![base, left, right, merge]).unwrap();
    assert_eq!(up(&mut conn, &merged, "head").await.unwrap().len(), 4);
    let live = live_schema(&mut conn).await;
    let a = live.table("a").unwrap();
    assert!(a.column("l").is_some() && a.column("r").is_some());
    assert_eq!(down(&mut conn, &merged, "b01").await.unwrap().len(), 3);
    assert_matches_history(&mut conn, &merged, "after downgrading the merge").await;
}

/// Eight upgraders at once, each on a connection of its own: the lock lets each revision be
/// applied once, and the upgraders that come later find nothing left to do.
async fn eight_concurrent_upgraders_apply_once(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut upgraders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut conn = db.connect().await;
        upgraders.spawn(async move { up(&mut conn, &every_operation(), "head").await });
    }
    let mut ran = 0;
    while let Some(joined) = upgraders.join_next().await {
        let done = joined
            .expect("the upgrader's task ends")
            .unwrap_or_else(|e| panic!("an upgrader failed: {e}"));
        ran += done.len();
    }
    let history = every_operation();
    assert_eq!(
        ran,
        history.migrations().len(),
        "each revision applied exactly once"
    );
    let mut conn = db.connect().await;
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM ddl_version").await,
        history.migrations().len() as i64
    );
}
