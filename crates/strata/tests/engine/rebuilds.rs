//! SQLite table rebuilds on real SQLite: what only the database knows of a table (views,
//! triggers, partial and expression indexes) survives them, what cannot survive is refused by
//! name with nothing changed, a table is rebuilt once per migration and only when SQLite needs
//! it, and `--sql` shows the foreign-key check the online run makes.

use strata::prelude::*;
use strata::runner::{FOREIGN_KEY_CHECK, Plan, Statement};
use strata::state::{Direction, History};

use crate::support::{
    TestDb, VERSION_TABLE, applied_set, assert_matches_history, down, scalar_i64, snapshot,
    text_lines, up,
};

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

/// `item` with rows, then what the schema model does not describe, made by raw SQL: a view,
/// a view on that view, a trigger on `item`, a trigger on another table that writes `item`,
/// a partial index and an expression index.
fn base() -> Vec<Migration> {
    vec![
        Migration::new("r01", &[], "items", "t").operations(vec![
            create_table(
                Table::new("item")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("name", ColumnType::String(Some(100))))
                    .with_column(col("qty", ColumnType::Integer).nullable())
                    .with_column(col("note", ColumnType::Text).nullable())
                    .with_primary_key(["id"])
                    .with_check(Check::new("item_qty_check", "qty >= 0")),
            ),
            create_table(
                Table::new("audit")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("what", ColumnType::Text))
                    .with_primary_key(["id"]),
            ),
        ]),
        Migration::new("r02", &["r01"], "what the model does not describe", "t").operations(
            vec![raw_sql(DialectSql::new(
                "SELECT 1",
                "CREATE VIEW item_names AS SELECT id, name FROM item; \
                 CREATE VIEW long_item_names AS SELECT name FROM item_names WHERE length(name) > 3; \
                 CREATE TRIGGER item_added AFTER INSERT ON item BEGIN \
                   INSERT INTO audit (what) VALUES ('added ' || NEW.name); END; \
                 CREATE TRIGGER audit_echo AFTER INSERT ON audit WHEN NEW.what = 'echo' BEGIN \
                   UPDATE item SET qty = coalesce(qty, 0) + 1 WHERE id = 1; END; \
                 CREATE INDEX item_big ON item (qty) WHERE qty > 100; \
                 CREATE INDEX item_lower_name ON item (lower(name)); \
                 INSERT INTO item (id, name, qty, note) VALUES \
                   (1, 'apple', 5, 'red'), (2, 'banana', NULL, NULL), (3, 'cherry', 500, 'x');",
            ))],
        ),
    ]
}

/// The objects of `sqlite_master` besides tables, as `type name`.
async fn extras(conn: &mut strata::runner::Conn) -> Vec<String> {
    text_lines(
        conn,
        "SELECT type || ' ' || name FROM sqlite_master \
         WHERE type IN ('view', 'trigger', 'index') AND sql IS NOT NULL ORDER BY type, name",
    )
    .await
}

/// How many times the plan of `revision` creates a rebuild table.
fn rebuild_count(history: &History, revision: &str, direction: Direction) -> usize {
    let migration = history.get(revision).unwrap();
    let plan = strata::runner::plan_migration(
        history,
        migration,
        direction,
        Dialect::Sqlite,
        VERSION_TABLE,
    )
    .unwrap();
    plan.step_sql()
        .iter()
        .filter(|sql| sql.starts_with("CREATE TABLE \"_strata_new_"))
        .count()
}

#[tokio::test]
async fn a_rebuild_keeps_views_triggers_and_indexes_the_model_does_not_describe() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let mut migrations = base();
    // A NOT NULL with a default, a new CHECK (drop then add) and a dropped column: three
    // operations SQLite rebuilds for, done as one rebuild.
    migrations.push(
        Migration::new("r03", &["r02"], "rebuild item", "t").operations(vec![
            alter_column(
                "item",
                col("qty", ColumnType::Integer).default(DefaultValue::Int(0)),
            ),
            drop_check("item", "item_qty_check"),
            add_check("item", "item_qty_check", "qty >= 0 AND qty < 100000"),
            drop_column("item", "note"),
        ]),
    );
    let history = History::new(migrations).unwrap();
    assert_eq!(rebuild_count(&history, "r03", Direction::Up), 1);
    assert_eq!(rebuild_count(&history, "r03", Direction::Down), 1);
    up(&mut conn, &history, "r02").await.unwrap();
    let before = extras(&mut conn).await;
    assert_eq!(before.len(), 6, "{before:?}");

    up(&mut conn, &history, "head").await.unwrap();
    assert_eq!(extras(&mut conn).await, before, "every object is back");
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT CAST(id AS text) || ' ' || name FROM item_names ORDER BY id"
        )
        .await,
        ["1 apple", "2 banana", "3 cherry"]
    );
    assert_eq!(
        text_lines(&mut conn, "SELECT name FROM long_item_names ORDER BY name").await,
        ["apple", "banana", "cherry"]
    );
    assert_eq!(
        scalar_i64(&mut conn, "SELECT qty FROM item WHERE id = 2").await,
        0,
        "the NULL took the default"
    );
    // The trigger on item fires, and so does the one on audit that writes item.
    conn.execute("INSERT INTO item (id, name, qty) VALUES (4, 'date', 1)")
        .await
        .unwrap();
    conn.execute("INSERT INTO audit (what) VALUES ('echo')")
        .await
        .unwrap();
    assert_eq!(
        text_lines(&mut conn, "SELECT what FROM audit ORDER BY id").await,
        [
            "added apple",
            "added banana",
            "added cherry",
            "added date",
            "echo"
        ]
    );
    assert_eq!(
        scalar_i64(&mut conn, "SELECT qty FROM item WHERE id = 1").await,
        6
    );
    // The partial and expression indexes answer queries (INDEXED BY fails if they cannot).
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM item INDEXED BY item_lower_name WHERE lower(name) = 'apple'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM item INDEXED BY item_big WHERE qty > 100"
        )
        .await,
        1
    );
    assert!(
        conn.execute("INSERT INTO item (id, name, qty) VALUES (9, 'x', 100000)")
            .await
            .is_err(),
        "the new CHECK holds"
    );
    assert_eq!(scalar_i64(&mut conn, "PRAGMA foreign_keys").await, 1);
    // (The hand-made indexes are not in the model, so the drift check would list them.)
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT name FROM pragma_table_info('item') ORDER BY cid"
        )
        .await,
        ["id", "name", "qty"]
    );

    // And back: the column returns, the objects stay.
    down(&mut conn, &history, "r02").await.unwrap();
    assert_eq!(extras(&mut conn).await, before);
    assert_eq!(
        text_lines(&mut conn, "SELECT name FROM long_item_names ORDER BY name").await,
        ["apple", "banana", "cherry", "date"]
    );
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT name FROM pragma_table_info('item') ORDER BY cid"
        )
        .await,
        ["id", "name", "qty", "note"]
    );
}

async fn refused_by_name(object_sql: &str, name: &str) {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let mut migrations = base();
    migrations.push(
        Migration::new("r03", &["r02"], "uses note", "t")
            .operations(vec![raw_sql(DialectSql::new("SELECT 1", object_sql))]),
    );
    migrations.push(
        Migration::new("r04", &["r03"], "drop note", "t")
            .operations(vec![drop_column("item", "note")]),
    );
    let history = History::new(migrations).unwrap();
    up(&mut conn, &history, "r03").await.unwrap();
    let before = snapshot(&mut conn).await;
    let err = up(&mut conn, &history, "head")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(name), "names the object: {err}");
    assert!(err.contains("r04"), "names the migration: {err}");
    assert_eq!(snapshot(&mut conn).await, before, "nothing changed");
    assert_eq!(scalar_i64(&mut conn, "PRAGMA foreign_keys").await, 1);
    assert!(applied_set(&mut conn).await.contains("r03"));
    assert!(!applied_set(&mut conn).await.contains("r04"));
}

#[tokio::test]
async fn a_view_using_a_dropped_column_is_refused_by_name() {
    refused_by_name(
        "CREATE VIEW item_notes AS SELECT id, note FROM item",
        "view item_notes",
    )
    .await;
}

#[tokio::test]
async fn a_trigger_using_a_dropped_column_is_refused_by_name() {
    refused_by_name(
        "CREATE TRIGGER item_note_log AFTER UPDATE ON item BEGIN \
         INSERT INTO audit (what) VALUES (NEW.note); END",
        "trigger item_note_log",
    )
    .await;
}

#[tokio::test]
async fn an_index_on_a_dropped_column_is_refused_by_name() {
    refused_by_name(
        "CREATE INDEX item_noted ON item (id) WHERE note IS NOT NULL",
        "index item_noted",
    )
    .await;
}

#[tokio::test]
async fn lengths_rebuild_nothing_and_show_no_drift() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    // Without the hand-made objects, which the drift check would list.
    let mut migrations = base();
    migrations.truncate(1);
    migrations.push(
        Migration::new("r03", &["r01"], "longer names", "t").operations(vec![alter_column(
            "item",
            col("name", ColumnType::String(Some(200))),
        )]),
    );
    migrations.push(
        Migration::new("r04", &["r03"], "names as text", "t")
            .operations(vec![alter_column("item", col("name", ColumnType::Text))]),
    );
    let history = History::new(migrations).unwrap();
    for revision in ["r03", "r04"] {
        for direction in [Direction::Up, Direction::Down] {
            assert_eq!(
                rebuild_count(&history, revision, direction),
                0,
                "{revision}"
            );
        }
    }
    up(&mut conn, &history, "head").await.unwrap();
    // SQLite keeps the declared type; the check compares text types as one.
    assert_matches_history(&mut conn, &history, "after widening").await;
    conn.execute(&format!(
        "INSERT INTO item (id, name) VALUES (10, '{}')",
        "n".repeat(150)
    ))
    .await
    .unwrap();
    down(&mut conn, &history, "r01").await.unwrap();
    assert_eq!(
        scalar_i64(&mut conn, "SELECT length(name) FROM item WHERE id = 10").await,
        150,
        "SQLite keeps a value longer than the declared length"
    );
    assert_matches_history(&mut conn, &history, "after narrowing").await;
}

#[tokio::test]
async fn sql_shows_the_foreign_key_check_and_the_dependents() {
    let mut migrations = base();
    migrations.push(
        Migration::new("r03", &["r02"], "drop note", "t")
            .operations(vec![drop_column("item", "note")]),
    );
    let history = History::new(migrations).unwrap();
    let plan = Plan::new(
        &history,
        &Default::default(),
        Direction::Up,
        "head",
        Dialect::Sqlite,
        VERSION_TABLE,
    )
    .unwrap();
    let rebuild = &plan.migrations[2];
    let statements = plan.statements(rebuild);
    let check_at = statements
        .iter()
        .position(|s| *s == Statement::ForeignKeyCheck)
        .expect("the plan checks foreign keys");
    assert_eq!(
        statements[check_at + 2],
        Statement::Sql("COMMIT"),
        "just before the version row and COMMIT"
    );
    let script = plan.to_sql();
    assert!(
        script.contains(&format!("{FOREIGN_KEY_CHECK};\n")),
        "{script}"
    );
    assert!(
        script.contains(
            "-- At run time: views, triggers and indexes on table item that the migrations do not \
             describe are dropped here and re-created after the rebuild"
        ),
        "{script}"
    );
    // Without a rebuild there is no check.
    assert!(
        !plan
            .statements(&plan.migrations[0])
            .contains(&Statement::ForeignKeyCheck)
    );
}

/// An FTS5 index whose content is the rebuilt table refers to its rows by rowid, which the
/// copy renumbers: after the rebuild it finds the right rows, its triggers still fire, and
/// introspection (hence drift) sees neither it nor its shadow tables.
#[tokio::test]
async fn a_rebuild_keeps_an_external_content_fts5_index_in_step() {
    let db = TestDb::fresh(Dialect::Sqlite).await;
    let mut conn = db.connect().await;
    let migrations = vec![
        Migration::new("f01", &[], "notes", "t").operations(vec![create_table(
            Table::new("note")
                .with_column(col("id", ColumnType::String(Some(10))))
                .with_column(col("body", ColumnType::String(Some(100))))
                .with_column(col("extra", ColumnType::Text).nullable())
                .with_primary_key(["id"]),
        )]),
        Migration::new("f02", &["f01"], "full-text index", "t").operations(vec![raw_sql(
            DialectSql::new(
                "SELECT 1",
                "CREATE VIRTUAL TABLE note_fts USING fts5(body, content='note', \
                   content_rowid='rowid', tokenize='trigram case_sensitive 0'); \
                 CREATE TRIGGER note_fts_insert AFTER INSERT ON note BEGIN \
                   INSERT INTO note_fts (rowid, body) VALUES (new.rowid, new.body); END; \
                 CREATE TRIGGER note_fts_delete AFTER DELETE ON note BEGIN \
                   INSERT INTO note_fts (note_fts, rowid, body) \
                   VALUES ('delete', old.rowid, old.body); END; \
                 INSERT INTO note (id, body) VALUES ('a', 'first Apple'), ('b', 'second pear'), \
                   ('c', 'third ÉCOLE'), ('d', 'fourth plum'); \
                 DELETE FROM note WHERE id IN ('a', 'b');",
            ),
        )]),
        Migration::new("f03", &["f02"], "drop a column: a rebuild", "t")
            .operations(vec![drop_column("note", "extra")]),
    ];
    let history = History::new(migrations).unwrap();
    assert_eq!(rebuild_count(&history, "f03", Direction::Up), 1);
    up(&mut conn, &history, "head").await.unwrap();
    let matching = "SELECT id FROM note WHERE rowid IN \
                    (SELECT rowid FROM note_fts WHERE note_fts MATCH '\"école\"') ORDER BY id";
    assert_eq!(text_lines(&mut conn, matching).await, ["c"]);
    conn.execute("INSERT INTO note_fts (note_fts, rank) VALUES ('integrity-check', 1)")
        .await
        .expect("the index matches the table");
    conn.execute("INSERT INTO note (id, body) VALUES ('e', 'école again')")
        .await
        .unwrap();
    assert_eq!(text_lines(&mut conn, matching).await, ["c", "e"]);
    assert_matches_history(&mut conn, &history, "after the rebuild").await;
}
