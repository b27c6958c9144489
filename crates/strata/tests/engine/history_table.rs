//! What the version table keeps beside each revision, on real PostgreSQL and SQLite: a binary
//! that lacks the newest revisions (a deploy rolled back) downgrades them with the SQL stored
//! when they were applied; a downgrade that needs Rust code is refused; versioned checksums
//! (an old `v1` checksum and an old-shaped version table keep working); a checksum mismatch
//! shows what differs, and `repair` accepts the edit.

use strata::migrator::Migrator;
use strata::ops::DataFuture;
use strata::prelude::*;
use strata::runner::{Conn, DataContext, RunError};
use strata::state::{Direction, History};

use crate::support::{
    TestDb, VERSION_TABLE, applied_set, assert_matches_history, down, on_both_dialects, scalar_i64,
    text_lines, up,
};

on_both_dialects!(
    an_older_binary_downgrades_what_a_newer_release_applied,
    a_downgrade_that_runs_rust_code_is_refused_without_its_release,
    an_old_version_table_and_v1_checksums_keep_working,
    a_checksum_mismatch_shows_what_differs_and_repair_accepts_it,
    an_older_binary_undoes_a_concurrent_index_build,
);

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

fn r1() -> Migration {
    Migration::new("r1", &[], "authors and books", "t").operations(vec![
        create_table(
            Table::new("author")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("name", ColumnType::String(Some(100))))
                .with_primary_key(["id"]),
        ),
        create_table(
            Table::new("book")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("title", ColumnType::String(Some(200))))
                .with_column(col("author_id", ColumnType::Integer))
                .with_primary_key(["id"])
                .with_foreign_key(ForeignKey::new(
                    "fk_book_author_id_author",
                    &["author_id"],
                    "author",
                    &["id"],
                )),
        ),
    ])
}

/// Columns, an index, a rename and a CHECK (undone by a table rebuild on SQLite).
fn r2() -> Migration {
    Migration::new("r2", &["r1"], "isbn and rating", "t").operations(vec![
        add_column("book", col("isbn", ColumnType::String(Some(20))).nullable()),
        add_column(
            "book",
            col("rating", ColumnType::SmallInteger).default(DefaultValue::Int(0)),
        ),
        create_index("book", "ix_book_isbn", &["isbn"]),
        rename_column("author", "name", "full_name"),
        add_check("book", "ck_book_rating", "rating >= 0"),
    ])
}

/// Raw SQL with its inverse (on the rows) and a table rename.
fn r3() -> Migration {
    Migration::new("r3", &["r2"], "exclaim titles", "t").operations(vec![
        raw_sql_reversible(
            DialectSql::both("UPDATE book SET title = title || '!'"),
            DialectSql::both("UPDATE book SET title = substr(title, 1, length(title) - 1)"),
        ),
        rename_table("author", "writer"),
    ])
}

fn mark<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        cx.execute("UPDATE author SET name = 'marked'")
            .await
            .map(|_| ())
    })
}

fn unmark<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move { cx.execute("UPDATE author SET name = 'A'").await.map(|_| ()) })
}

/// A data step whose downgrade is Rust code.
fn r4() -> Migration {
    Migration::new("r4", &["r1"], "mark authors", "t").operations(vec![run_data(
        DataStep::new("mark", mark).with_down(unmark),
    )])
}

fn history(migrations: Vec<Migration>) -> History {
    History::new(migrations).unwrap()
}

async fn seed(conn: &mut Conn) {
    conn.execute("INSERT INTO author (id, name) VALUES (1, 'A')")
        .await
        .unwrap();
    conn.execute("INSERT INTO book (id, title, author_id) VALUES (1, 'T', 1)")
        .await
        .unwrap();
}

async fn an_older_binary_downgrades_what_a_newer_release_applied(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let old = history(vec![r1()]);
    let new = history(vec![r1(), r2(), r3()]);
    up(&mut conn, &old, "head").await.unwrap();
    seed(&mut conn).await;
    // The new release deploys and upgrades.
    up(&mut conn, &new, "head").await.unwrap();

    // The deploy is rolled back: the old binary sees revisions it does not know.
    let migrator = Migrator::new(old.clone(), VERSION_TABLE);
    let status = migrator.status(&mut conn).await.unwrap();
    assert_eq!(status.unknown, ["r2", "r3"]);
    let stored = migrator.stored(&mut conn).await.unwrap();
    let r3_row = stored.iter().find(|r| r.revision == "r3").unwrap();
    assert_eq!(r3_row.parents, ["r2"]);
    assert_eq!(r3_row.message.as_deref(), Some("exclaim titles"));
    let err = up(&mut conn, &old, "head")
        .await
        .expect_err("unknown revisions");
    assert!(
        err.to_string().contains("does not know") && err.to_string().contains("downgrade"),
        "{err}"
    );
    // A preview plans nothing for the unknown revisions but refuses nothing either.
    let plan = migrator
        .plan(&mut conn, Direction::Down, "r1")
        .await
        .unwrap();
    assert!(plan.migrations.is_empty());

    let undone = migrator
        .run(&mut conn, Direction::Down, "r1", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(undone, ["r3", "r2"], "children first");
    assert_eq!(applied_set(&mut conn).await, ["r1".to_string()].into());
    assert_matches_history(&mut conn, &old, "back at the old release's schema").await;
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT CAST(a.name AS text), CAST(b.title AS text) FROM author a JOIN book b ON b.author_id = a.id"
        )
        .await,
        ["A | T"],
        "rows kept"
    );
    // And the newer release can upgrade again.
    up(&mut conn, &new, "head").await.unwrap();
    assert_matches_history(&mut conn, &new, "upgraded again").await;

    // `-N` counts the unknown revisions first, and goes on into the known ones.
    let undone = down(&mut conn, &old, "-3").await.unwrap();
    assert_eq!(undone, ["r3", "r2", "r1"]);
    assert!(applied_set(&mut conn).await.is_empty());
    assert_matches_history(&mut conn, &old, "at base").await;
}

async fn a_downgrade_that_runs_rust_code_is_refused_without_its_release(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let old = history(vec![r1()]);
    let new = history(vec![r1(), r4()]);
    up(&mut conn, &old, "head").await.unwrap();
    seed(&mut conn).await;
    up(&mut conn, &new, "head").await.unwrap();
    let migrator = Migrator::new(old.clone(), VERSION_TABLE);
    let err = migrator
        .run(&mut conn, Direction::Down, "base", &mut |_| {})
        .await
        .expect_err("refused");
    assert!(matches!(err, RunError::NoStoredDowngrade { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("revision r4's downgrade runs Rust code")
            && err
                .to_string()
                .contains("downgrade with the release that applied it"),
        "{err}"
    );
    assert_eq!(applied_set(&mut conn).await.len(), 2, "nothing undone");
    // The release that applied it can.
    down(&mut conn, &new, "r1").await.unwrap();
    assert_eq!(
        scalar_i64(&mut conn, "SELECT COUNT(*) FROM author WHERE name = 'A'").await,
        1
    );
}

async fn an_old_version_table_and_v1_checksums_keep_working(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let first = history(vec![r1()]);
    up(&mut conn, &first, "head").await.unwrap();
    // Make it what an earlier engine left: three columns, an unversioned (v1) checksum.
    let v1 = r1().checksum();
    assert!(!v1.contains(':'));
    conn.execute(&format!("UPDATE {VERSION_TABLE} SET checksum = '{v1}'"))
        .await
        .unwrap();
    for column in strata::stored::COLUMNS {
        conn.execute(&format!("ALTER TABLE {VERSION_TABLE} DROP COLUMN {column}"))
            .await
            .unwrap();
    }
    let all = history(vec![r1(), r2(), r3()]);
    let migrator = Migrator::new(all.clone(), VERSION_TABLE);
    assert!(
        migrator.status(&mut conn).await.unwrap().unknown.is_empty(),
        "the old shape still reads"
    );
    up(&mut conn, &all, "head")
        .await
        .expect("a v1 checksum verifies");
    let rows = text_lines(
        &mut conn,
        &format!(
            "SELECT version_num, checksum, CAST(downgrade_sql IS NULL AS text) FROM {VERSION_TABLE} ORDER BY version_num"
        ),
    )
    .await;
    assert_eq!(rows.len(), 3);
    assert!(rows[0].starts_with(&format!("r1 | {v1} | ")), "{rows:?}");
    assert!(
        rows[1].starts_with("r2 | v2:"),
        "new applies store v2: {rows:?}"
    );
    // A second run changes nothing, and the old row (no stored downgrade) still downgrades with
    // a binary that knows it.
    up(&mut conn, &all, "head").await.unwrap();
    down(&mut conn, &all, "base").await.unwrap();
    assert!(applied_set(&mut conn).await.is_empty());
}

async fn a_checksum_mismatch_shows_what_differs_and_repair_accepts_it(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    up(&mut conn, &history(vec![r1(), r2()]), "head")
        .await
        .unwrap();
    // r2 is edited after it was applied: one column more.
    let edited = r2().operations({
        let mut ops = r2().operations;
        ops.push(add_column(
            "book",
            col("extra", ColumnType::Text).nullable(),
        ));
        ops
    });
    let changed = history(vec![r1(), edited, r3()]);
    let err = up(&mut conn, &changed, "head").await.expect_err("refused");
    let text = err.to_string();
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("migration r2 (isbn and rating) changed after it was applied")
            && first.contains("`repair r2`"),
        "{text}"
    );
    let added: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("+ "))
        .collect();
    assert_eq!(added.len(), 1, "{text}");
    assert!(
        added[0].contains("upgrade: ") && added[0].contains("\"extra\""),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("- ")),
        "{text}"
    );

    let migrator = Migrator::new(changed.clone(), VERSION_TABLE);
    let plan = migrator.plan_repair(&mut conn, None).await.unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].revision, "r2");
    assert!(plan[0].checksum_changed);
    // The edit is applied by hand (as the person who edited the file would), then accepted.
    conn.execute("ALTER TABLE book ADD COLUMN extra text")
        .await
        .unwrap();
    assert_eq!(
        migrator
            .repair(&mut conn, &["r2".to_string()])
            .await
            .unwrap(),
        ["r2"]
    );
    assert!(
        migrator
            .plan_repair(&mut conn, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(up(&mut conn, &changed, "head").await.unwrap(), ["r3"]);
    assert_matches_history(&mut conn, &changed, "after repair and upgrade").await;
    // The stored downgrade was refreshed too: an older binary undoes the edited r2 fully.
    let old = history(vec![r1()]);
    down(&mut conn, &old, "r1").await.unwrap();
    assert_matches_history(&mut conn, &old, "the edited revision undone from storage").await;
}

/// An index built CONCURRENTLY outside a transaction (PostgreSQL), undone by a binary that does
/// not know it: its stored downgrade runs statement by statement outside a transaction too, as
/// `DROP INDEX CONCURRENTLY` refuses to run inside one.
async fn an_older_binary_undoes_a_concurrent_index_build(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    let indexes = Migration::new("r5", &["r1"], "book titles (indexes)", "t")
        .operations(vec![create_index("book", "ix_book_title", &["title"])])
        .atomic(false);
    let old = history(vec![r1()]);
    let new = history(vec![r1(), indexes]);
    up(&mut conn, &new, "head").await.unwrap();
    seed(&mut conn).await;
    let stored = Migrator::new(old.clone(), VERSION_TABLE)
        .stored(&mut conn)
        .await
        .unwrap();
    let row = stored.iter().find(|r| r.revision == "r5").unwrap();
    match (&row.downgrade, dialect) {
        (strata::stored::StoredDowngrade::Sql(sql), Dialect::Postgres) => {
            assert!(sql.contains("DROP INDEX CONCURRENTLY"), "{sql}")
        }
        (strata::stored::StoredDowngrade::Sql(sql), Dialect::Sqlite) => {
            assert!(sql.contains("DROP INDEX"), "{sql}")
        }
        (other, _) => panic!("no stored SQL: {other:?}"),
    }

    let undone = down(&mut conn, &old, "r1").await.unwrap();
    assert_eq!(undone, ["r5"]);
    assert_eq!(applied_set(&mut conn).await, ["r1".to_string()].into());
    assert_matches_history(&mut conn, &old, "the index is gone").await;
    assert_eq!(scalar_i64(&mut conn, "SELECT COUNT(*) FROM book").await, 1);
}
