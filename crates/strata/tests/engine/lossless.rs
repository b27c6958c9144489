//! Data is never lost silently: narrowing a column on PostgreSQL fails, naming the rows, where
//! the cast would cut them (SQLite keeps every value as stored), and on SQLite rows whose
//! foreign keys point nowhere fail a rebuild by table and rowid, with the pragma restored and
//! the migrations that committed named.

use std::collections::BTreeSet;

use strata::prelude::*;
use strata::state::History;

use crate::support::{
    TestDb, applied_set, down, on_both_dialects, scalar_i64, snapshot, text_lines, up,
};

on_both_dialects!(narrowing_never_cuts_silently);

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

async fn narrowing_never_cuts_silently(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let history = History::new(vec![
        Migration::new("n01", &[], "todo", "t").operations(vec![create_table(
            Table::new("todo")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("item", ColumnType::String(Some(100))))
                .with_column(col("price", ColumnType::Decimal(10, 2)).nullable())
                .with_primary_key(["id"]),
        )]),
        Migration::new("n02", &["n01"], "longer items", "t").operations(vec![alter_column(
            "todo",
            col("item", ColumnType::String(Some(200))),
        )]),
        Migration::new("n03", &["n02"], "coarser prices", "t").operations(vec![alter_column(
            "todo",
            col("price", ColumnType::Decimal(10, 1)).nullable(),
        )]),
    ])
    .unwrap();
    up(&mut conn, &history, "n02").await.unwrap();
    let long = "x".repeat(150);
    conn.execute(&format!(
        "INSERT INTO todo (id, item, price) VALUES (1, 'short', 1.5), (7, '{long}', 2.25), \
         (9, '{long}', NULL)"
    ))
    .await
    .unwrap();

    let narrowed = down(&mut conn, &history, "n01").await;
    match dialect {
        Dialect::Postgres => {
            let err = narrowed.expect_err("a value would be cut").to_string();
            assert!(
                err.contains("cannot change column todo.item from varchar(200) to varchar(100)"),
                "names the table and column: {err}"
            );
            assert!(err.contains("2 row(s)"), "{err}");
            assert!(err.contains("(id: 7, 9)"), "names the rows' keys: {err}");
            assert_eq!(
                applied_set(&mut conn).await,
                BTreeSet::from(["n01".to_string(), "n02".to_string()]),
                "rolled back"
            );
        }
        // SQLite ignores declared lengths: the value is kept whole.
        Dialect::Sqlite => {
            narrowed.expect("SQLite keeps every value");
        }
    }
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT CAST(max(length(item)) AS bigint) FROM todo"
        )
        .await,
        150,
        "nothing was cut"
    );

    if dialect == Dialect::Postgres {
        // Rounding is refused the same way; once the values fit, the change goes through.
        let before = snapshot(&mut conn).await;
        let err = up(&mut conn, &history, "head")
            .await
            .expect_err("2.25 would be rounded")
            .to_string();
        assert!(
            err.contains("todo.price") && err.contains("(id: 7)"),
            "{err}"
        );
        assert_eq!(snapshot(&mut conn).await, before, "nothing changed");
        conn.execute("UPDATE todo SET price = 2.3 WHERE id = 7")
            .await
            .unwrap();
        up(&mut conn, &history, "head").await.unwrap();
        assert_eq!(
            text_lines(
                &mut conn,
                "SELECT CAST(price AS text) FROM todo WHERE id = 7"
            )
            .await,
            ["2.3"]
        );
        // Widening draws no guard.
        let plan = strata::runner::plan_migration(
            &history,
            history.get("n02").unwrap(),
            strata::state::Direction::Up,
            dialect,
            crate::support::VERSION_TABLE,
        )
        .unwrap();
        assert!(
            plan.step_sql().iter().all(|s| !s.starts_with("DO ")),
            "{:?}",
            plan.step_sql()
        );
    }
}

#[tokio::test]
async fn orphaned_rows_are_named_and_the_pragma_comes_back() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let history = History::new(vec![
        Migration::new("o01", &[], "parent and child", "t").operations(vec![
            create_table(
                Table::new("parent")
                    .with_column(col("id", ColumnType::Integer))
                    .with_primary_key(["id"]),
            ),
            create_table(
                Table::new("child")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("parent_id", ColumnType::Integer))
                    .with_column(col("n", ColumnType::Integer))
                    .with_primary_key(["id"])
                    .with_foreign_key(ForeignKey::new(
                        "child_parent_fk",
                        &["parent_id"],
                        "parent",
                        &["id"],
                    )),
            ),
        ]),
        Migration::new("o02", &["o01"], "a note on parents", "t").operations(vec![add_column(
            "parent",
            col("note", ColumnType::Text).nullable(),
        )]),
        Migration::new("o03", &["o02"], "bigger n", "t").operations(vec![alter_column(
            "child",
            col("n", ColumnType::BigInteger),
        )]),
    ])
    .unwrap();
    up(&mut conn, &history, "o01").await.unwrap();
    // Rows made while foreign keys were off (an import, an old bug) point nowhere.
    conn.execute(
        "PRAGMA foreign_keys = OFF; \
         INSERT INTO parent (id) VALUES (1); \
         INSERT INTO child (id, parent_id, n) VALUES (10, 1, 0), (11, 5, 0), (12, 6, 0); \
         PRAGMA foreign_keys = ON",
    )
    .await
    .unwrap();

    let err = up(&mut conn, &history, "head")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("o03") && err.contains("table child rowid 11, 12 (pointing at parent)"),
        "names the table and rows: {err}"
    );
    assert!(
        err.contains("1 migration committed (o02), so the database is now at o02"),
        "says what committed: {err}"
    );
    assert_eq!(
        applied_set(&mut conn).await,
        BTreeSet::from(["o01".to_string(), "o02".to_string()])
    );
    assert_eq!(
        scalar_i64(&mut conn, "PRAGMA foreign_keys").await,
        1,
        "foreign keys are back on"
    );
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT lower(type) FROM pragma_table_info('child') WHERE name = 'n'"
        )
        .await,
        ["integer"],
        "the rebuild was rolled back"
    );
}

on_both_dialects!(truncation_when_the_migration_asks_for_it);

async fn truncation_when_the_migration_asks_for_it(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let short = col("item", ColumnType::String(Some(100)));
    let history = History::new(vec![
        Migration::new("t01", &[], "todo", "t").operations(vec![create_table(
            Table::new("todo")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("item", ColumnType::String(Some(200))))
                .with_primary_key(["id"]),
        )]),
        Migration::new("t02", &["t01"], "shorter items, cut", "t").operations(vec![
            truncate_to_fit("todo", &short),
            alter_column("todo", short.clone()),
        ]),
    ])
    .unwrap();
    up(&mut conn, &history, "t01").await.unwrap();
    conn.execute(&format!(
        "INSERT INTO todo (id, item) VALUES (1, 'short'), (2, '{}')",
        "y".repeat(150)
    ))
    .await
    .unwrap();
    up(&mut conn, &history, "head").await.unwrap();
    let expected = match dialect {
        Dialect::Postgres => 100,
        // SQLite keeps the value as stored.
        Dialect::Sqlite => 150,
    };
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT CAST(max(length(item)) AS bigint) FROM todo"
        )
        .await,
        expected
    );
    assert_eq!(
        text_lines(&mut conn, "SELECT item FROM todo WHERE id = 1").await,
        ["short"]
    );
    // And back: nothing to restore, nothing refused.
    down(&mut conn, &history, "t01").await.unwrap();
}
