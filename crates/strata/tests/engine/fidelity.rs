//! Schema fidelity on real PostgreSQL and SQLite: a check built from an enum gaining a value,
//! edited checks seen by `check`, a dropped column taking its checks along and its downgrade
//! restoring everything, a renamed table's objects renamed with it, boolean defaults on
//! integer columns, and columns the engine cannot represent named instead of misread.

use strata::autodetect::{self, AcceptRenames, NoRenames};
use strata::prelude::*;
use strata::runner::Conn;
use strata::state::History;

use crate::support::{
    TestDb, VERSION_TABLE, applied_set, assert_matches_history, down, live_schema,
    on_both_dialects, scalar_i64, text_lines, up,
};

on_both_dialects!(
    an_enum_gaining_a_value_is_a_migration,
    dropping_a_column_takes_its_checks_and_the_downgrade_restores_all,
    a_renamed_table_takes_its_object_names_along,
    a_boolean_default_on_an_integer_column_is_no_drift,
);

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

/// Differences between the live database and the schema the applied migrations expect, checks
/// compared by expression (what `check` reports).
async fn drift(conn: &mut Conn, history: &History) -> Vec<String> {
    let expected = history.schema_with(&applied_set(conn).await).unwrap();
    drift_from(conn, &expected).await
}

async fn drift_from(conn: &mut Conn, expected: &Schema) -> Vec<String> {
    let live = live_schema(conn).await;
    let diff = strata::checks::live_drift(conn, expected, &live)
        .await
        .unwrap();
    autodetect::describe_differences(&diff)
}

/// The `task` table whose importance is kept to `values` by an enum-derived check.
fn tasks(values: &[&str]) -> Schema {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    Schema::new().with_table(
        Table::new("task")
            .with_column(col("id", ColumnType::Integer))
            .with_column(
                col("importance", ColumnType::String(Some(10)))
                    .default(DefaultValue::Str("none".into())),
            )
            .with_primary_key(["id"])
            .with_check(Check::new(
                "ck_task_importance",
                Check::one_of_expr("importance", &values),
            )),
    )
}

async fn exec(conn: &mut Conn, sql: &str) -> Result<u64, String> {
    conn.execute(sql).await.map_err(|e| e.to_string())
}

async fn an_enum_gaining_a_value_is_a_migration(dialect: Dialect) {
    let first = Migration::new("f01", &[], "tasks", "t").operations(vec![create_table(
        tasks(&["none", "low"]).tables["task"].clone(),
    )]);
    let history = History::new(vec![first.clone()]).unwrap();
    // The variant `high` is added to the enum: autodetect writes the check again.
    let target = tasks(&["none", "low", "high"]);
    let diff = autodetect::diff(&history.head_schema().unwrap(), &target, &mut NoRenames);
    assert_eq!(
        autodetect::describe_differences(&diff),
        [
            "- drop check constraint ck_task_importance on task",
            "+ add check constraint ck_task_importance on task \
             (importance IN ('none', 'low', 'high'))",
        ]
    );
    let before = history.head_schema().unwrap();
    let mut after_drop = before.clone();
    diff.operations[0].apply(&mut after_drop).unwrap();
    let add = strata::render::render(&diff.operations[1], &after_drop, dialect).unwrap();
    if dialect == Dialect::Postgres {
        assert_eq!(
            add,
            [
                "ALTER TABLE \"task\" ADD CONSTRAINT \"ck_task_importance\" \
                 CHECK (importance IN ('none', 'low', 'high')) NOT VALID",
                "ALTER TABLE \"task\" VALIDATE CONSTRAINT \"ck_task_importance\"",
            ]
        );
    }
    let second =
        Migration::new("f02", &["f01"], "importance high", "t").operations(diff.operations);
    let history = History::new(vec![first, second]).unwrap();

    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    up(&mut conn, &history, "f01").await.unwrap();
    exec(
        &mut conn,
        "INSERT INTO task (id, importance) VALUES (1, 'none'), (2, 'low')",
    )
    .await
    .unwrap();
    assert!(
        exec(
            &mut conn,
            "INSERT INTO task (id, importance) VALUES (3, 'high')"
        )
        .await
        .is_err()
    );
    up(&mut conn, &history, "head").await.unwrap();
    exec(
        &mut conn,
        "INSERT INTO task (id, importance) VALUES (3, 'high')",
    )
    .await
    .unwrap();
    assert!(
        exec(
            &mut conn,
            "INSERT INTO task (id, importance) VALUES (4, 'bogus')"
        )
        .await
        .is_err()
    );
    assert_eq!(scalar_i64(&mut conn, "SELECT COUNT(*) FROM task").await, 3);
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    if dialect == Dialect::Postgres {
        // What a dump and restore does: the check made again from its printed form, which
        // PostgreSQL then prints otherwise. Still no drift.
        let def = text_lines(
            &mut conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conname = 'ck_task_importance'",
        )
        .await
        .remove(0);
        exec(
            &mut conn,
            "ALTER TABLE task DROP CONSTRAINT ck_task_importance",
        )
        .await
        .unwrap();
        let add = format!("ALTER TABLE task ADD CONSTRAINT ck_task_importance {def}");
        exec(&mut conn, &add).await.unwrap();
        let reprinted = text_lines(
            &mut conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conname = 'ck_task_importance'",
        )
        .await
        .remove(0);
        assert_ne!(
            def, reprinted,
            "the reprinted form differs (else the test proves little)"
        );
        assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    }
    // The live check is the new one: against the old expectation, `check` sees the edit.
    let old = History::new(vec![history.migrations()[0].clone()])
        .unwrap()
        .head_schema()
        .unwrap();
    assert_eq!(
        drift_from(&mut conn, &old).await.len(),
        2,
        "an edited check must show as drift"
    );
    assert_eq!(
        autodetect::diff(&history.head_schema().unwrap(), &target, &mut NoRenames).operations,
        []
    );

    // Down again, once the row the old check refuses is gone.
    exec(&mut conn, "DELETE FROM task WHERE importance = 'high'")
        .await
        .unwrap();
    down(&mut conn, &history, "f01").await.unwrap();
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    if dialect == Dialect::Postgres {
        // A read-only session makes no temporary table: checks then compare by name, and
        // `check` still answers.
        exec(&mut conn, "SET default_transaction_read_only = on")
            .await
            .unwrap();
        assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
        exec(&mut conn, "SET default_transaction_read_only = off")
            .await
            .unwrap();
    }
    assert!(
        exec(
            &mut conn,
            "INSERT INTO task (id, importance) VALUES (3, 'high')"
        )
        .await
        .is_err()
    );
}

/// `item` with a column `rank` that an index, a unique, a check and a foreign key use.
fn items() -> Vec<Operation> {
    vec![
        create_table(
            Table::new("level")
                .with_column(col("rank", ColumnType::Integer))
                .with_primary_key(["rank"]),
        ),
        create_table(
            Table::new("item")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("name", ColumnType::String(Some(50))))
                // Nullable: a NOT NULL column without default cannot come back over rows.
                .with_column(col("rank", ColumnType::Integer).nullable())
                .with_primary_key(["id"])
                .with_index(Index::new("ix_item_rank_name", &["rank", "name"]))
                .with_unique(Unique::new("uq_item_name_rank", &["name", "rank"]))
                .with_check(Check::new("ck_item_rank", "rank >= 0"))
                .with_check(Check::new("ck_item_name", "name <> ''"))
                .with_foreign_key(ForeignKey::new(
                    "fk_item_rank_level",
                    &["rank"],
                    "level",
                    &["rank"],
                )),
        ),
    ]
}

async fn dropping_a_column_takes_its_checks_and_the_downgrade_restores_all(dialect: Dialect) {
    let history = History::new(vec![
        Migration::new("d01", &[], "items", "t").operations(items()),
        Migration::new("d02", &["d01"], "no rank", "t")
            .operations(vec![drop_column("item", "rank")]),
    ])
    .unwrap();
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    up(&mut conn, &history, "d01").await.unwrap();
    exec(&mut conn, "INSERT INTO level (rank) VALUES (1), (2)")
        .await
        .unwrap();
    exec(
        &mut conn,
        "INSERT INTO item (id, name, rank) VALUES (1, 'a', 1), (2, 'b', 2)",
    )
    .await
    .unwrap();
    up(&mut conn, &history, "head").await.unwrap();
    assert_matches_history(&mut conn, &history, "after dropping item.rank").await;
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    let item = history.head_schema().unwrap().tables["item"].clone();
    assert_eq!(item.checks.keys().collect::<Vec<_>>(), ["ck_item_name"]);
    // The other check still holds.
    assert!(
        exec(&mut conn, "INSERT INTO item (id, name) VALUES (3, '')")
            .await
            .is_err()
    );

    // The derived downgrade brings back the column and its index, unique, check and key.
    down(&mut conn, &history, "d01").await.unwrap();
    assert_matches_history(&mut conn, &history, "after restoring item.rank").await;
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    let live = live_schema(&mut conn).await;
    let item = &live.tables["item"];
    assert!(item.indexes.contains_key("ix_item_rank_name"), "{item:#?}");
    assert!(item.uniques.contains_key("uq_item_name_rank"), "{item:#?}");
    assert!(item.checks.contains_key("ck_item_rank"), "{item:#?}");
    assert!(
        item.foreign_keys.contains_key("fk_item_rank_level"),
        "{item:#?}"
    );
    assert_eq!(scalar_i64(&mut conn, "SELECT COUNT(*) FROM item").await, 2);
}

/// `todo` (with objects named after it) and `todo_tag`, whose key names `todo`; `name` is what
/// `todo` is called.
fn todos(name: &str) -> Schema {
    Schema::new()
        .with_table(
            Table::new("owner")
                .with_column(col("id", ColumnType::Integer))
                .with_primary_key(["id"]),
        )
        .with_table(
            Table::new(name)
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("title", ColumnType::String(Some(50))))
                .with_column(col("code", ColumnType::String(Some(10))))
                .with_column(col("rank", ColumnType::Integer))
                .with_column(col("owner_id", ColumnType::Integer))
                .with_primary_key(["id"])
                .with_index(Index::new(format!("ix_{name}_title"), &["title"]))
                .with_unique(Unique::new(format!("uq_{name}_code"), &["code"]))
                .with_check(Check::new(format!("ck_{name}_rank"), "rank >= 0"))
                .with_foreign_key(ForeignKey::new(
                    format!("fk_{name}_owner_id_owner"),
                    &["owner_id"],
                    "owner",
                    &["id"],
                )),
        )
        .with_table(
            Table::new("todo_tag")
                .with_column(col("todo_id", ColumnType::Integer))
                .with_column(col("tag", ColumnType::String(Some(20))))
                .with_primary_key(["todo_id", "tag"])
                .with_foreign_key(
                    ForeignKey::new(
                        format!("fk_todo_tag_todo_id_{name}"),
                        &["todo_id"],
                        name,
                        &["id"],
                    )
                    .on_delete(ForeignKeyAction::Cascade),
                ),
        )
}

async fn a_renamed_table_takes_its_object_names_along(dialect: Dialect) {
    let start = todos("todo");
    let first = Migration::new("r01", &[], "todos", "t").operations(
        (start.tables_in_dependency_order().into_iter())
            .map(|t| create_table(start.tables[t].clone()))
            .collect(),
    );
    let before = History::new(vec![first.clone()])
        .unwrap()
        .head_schema()
        .unwrap();
    let target = todos("task");
    let diff = autodetect::diff(&before, &target, &mut AcceptRenames);
    assert_eq!(
        autodetect::describe_differences(&diff),
        [
            "~ rename table todo to task",
            "~ rename index ix_todo_title on task to ix_task_title",
            "~ rename constraint uq_todo_code on task to uq_task_code",
            "~ rename constraint ck_todo_rank on task to ck_task_rank",
            "~ rename constraint fk_todo_owner_id_owner on task to fk_task_owner_id_owner",
            "~ rename constraint fk_todo_tag_todo_id_todo on todo_tag to fk_todo_tag_todo_id_task",
        ]
    );
    if dialect == Dialect::Postgres {
        let mut state = before.clone();
        diff.operations[0].apply(&mut state).unwrap();
        assert_eq!(
            strata::render::render(&diff.operations[1], &state, dialect).unwrap(),
            ["ALTER INDEX \"ix_todo_title\" RENAME TO \"ix_task_title\""]
        );
        diff.operations[1].apply(&mut state).unwrap();
        assert_eq!(
            strata::render::render(&diff.operations[2], &state, dialect).unwrap(),
            ["ALTER TABLE \"task\" RENAME CONSTRAINT \"uq_todo_code\" TO \"uq_task_code\""]
        );
    }
    let history = History::new(vec![
        first,
        Migration::new("r02", &["r01"], "todo is task", "t").operations(diff.operations),
    ])
    .unwrap();
    // Right after, autogenerate has nothing to say.
    let again = autodetect::diff(&history.head_schema().unwrap(), &target, &mut AcceptRenames);
    assert!(again.is_empty(), "{again:#?}");

    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    up(&mut conn, &history, "r01").await.unwrap();
    exec(&mut conn, "INSERT INTO owner (id) VALUES (1)")
        .await
        .unwrap();
    exec(
        &mut conn,
        "INSERT INTO todo (id, title, code, rank, owner_id) VALUES (1, 'a', 'A', 0, 1)",
    )
    .await
    .unwrap();
    exec(
        &mut conn,
        "INSERT INTO todo_tag (todo_id, tag) VALUES (1, 'x')",
    )
    .await
    .unwrap();
    up(&mut conn, &history, "head").await.unwrap();
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    assert_eq!(drift_from(&mut conn, &target).await, Vec::<String>::new());
    assert_matches_history(&mut conn, &history, "after the rename").await;
    assert_eq!(scalar_i64(&mut conn, "SELECT COUNT(*) FROM task").await, 1);
    if dialect == Dialect::Postgres {
        // The primary key PostgreSQL named after the table follows it too.
        let keys = "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'p' \
                    AND conname IN ('task_pkey', 'todo_pkey') \
                    AND conrelid = CAST('task' AS regclass) AND conname = 'task_pkey'";
        assert_eq!(scalar_i64(&mut conn, keys).await, 1);
    }
    // The constraints still hold under their new names.
    let err = exec(
        &mut conn,
        "INSERT INTO task (id, title, code, rank, owner_id) VALUES (2, 'b', 'A', 0, 1)",
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("uq_task_code") || err.contains("UNIQUE"),
        "{err}"
    );
    down(&mut conn, &history, "r01").await.unwrap();
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    if dialect == Dialect::Postgres {
        let keys = "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'p' \
                    AND conrelid = CAST('todo' AS regclass) AND conname = 'todo_pkey'";
        assert_eq!(scalar_i64(&mut conn, keys).await, 1);
    }
    assert_eq!(
        scalar_i64(&mut conn, "SELECT COUNT(*) FROM todo_tag").await,
        1
    );
}

async fn a_boolean_default_on_an_integer_column_is_no_drift(dialect: Dialect) {
    let table = Table::new("flags")
        .with_column(col("id", ColumnType::Integer))
        .with_column(col("on_off", ColumnType::Integer).default(DefaultValue::Bool(true)))
        .with_column(col("off_on", ColumnType::SmallInteger).default(DefaultValue::Bool(false)))
        .with_primary_key(["id"]);
    let history = History::new(vec![
        Migration::new("b01", &[], "flags", "t").operations(vec![create_table(table)]),
    ])
    .unwrap();
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    up(&mut conn, &history, "head").await.unwrap();
    assert_eq!(drift(&mut conn, &history).await, Vec::<String>::new());
    assert_matches_history(&mut conn, &history, "boolean defaults").await;
    exec(&mut conn, "INSERT INTO flags (id) VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT CAST(on_off + 10 * off_on AS bigint) FROM flags"
        )
        .await,
        1
    );
}

/// Columns the model cannot hold are named, not read as something else.
#[tokio::test]
async fn unrepresentable_columns_are_named() {
    let cases = [
        (
            "CREATE TABLE odd (id integer PRIMARY KEY, tags text[])",
            "odd.tags",
            "text[]",
        ),
        (
            "CREATE TYPE mood AS ENUM ('happy', 'sad'); \
             CREATE TABLE odd (id integer PRIMARY KEY, feeling mood)",
            "odd.feeling",
            "mood",
        ),
        (
            "CREATE TABLE odd (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
            "odd.id",
            "identity",
        ),
        (
            "CREATE TABLE odd (id integer PRIMARY KEY, twice integer GENERATED ALWAYS AS (id * 2) STORED)",
            "odd.twice",
            "generated",
        ),
    ];
    for (ddl, column, what) in cases {
        let db = TestDb::fresh(Dialect::Postgres).await;
        let mut conn = db.connect().await;
        for statement in ddl.split("; ") {
            exec(&mut conn, statement).await.unwrap();
        }
        let Conn::Postgres(pg) = &mut conn else {
            unreachable!()
        };
        let err = strata::introspect::postgres(pg, &[VERSION_TABLE])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(column) && err.contains(what), "{ddl}: {err}");
        assert!(err.contains("cannot represent"), "{err}");
    }
    // SQLite keeps declared types as written: one the model lacks is named too, and so are
    // generated and AUTOINCREMENT columns.
    let cases = [
        (
            "CREATE TABLE odd (id integer PRIMARY KEY, shape geometry)",
            "odd.shape",
            "geometry",
        ),
        (
            "CREATE TABLE odd (id integer PRIMARY KEY, twice integer GENERATED ALWAYS AS (id * 2))",
            "odd.twice",
            "generated",
        ),
        (
            "CREATE TABLE odd (name text, id integer PRIMARY KEY AUTOINCREMENT)",
            "odd.id",
            "AUTOINCREMENT",
        ),
    ];
    for (ddl, column, what) in cases {
        let db = TestDb::fresh(Dialect::Sqlite).await;
        let mut conn = db.connect().await;
        exec(&mut conn, ddl).await.unwrap();
        let err = match &mut conn {
            Conn::Sqlite(c) => strata::introspect::sqlite(c, &[VERSION_TABLE]).await,
            Conn::Postgres(_) => unreachable!(),
        }
        .unwrap_err()
        .to_string();
        assert!(err.contains(column) && err.contains(what), "{ddl}: {err}");
        assert!(err.contains("cannot represent"), "{err}");
    }
}
