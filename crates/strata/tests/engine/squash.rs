//! Squash migrations on real PostgreSQL and SQLite: a new database upgraded through the squash
//! has the schema of one upgraded through the originals and records the originals; a database
//! partway through the chain continues with the originals; one at head has nothing pending;
//! chains a squash cannot carry are refused.

use strata::migrator::Migrator;
use strata::prelude::*;
use strata::squash::{self, SquashError};
use strata::state::{Direction, History};

use crate::support::{
    TestDb, VERSION_TABLE, applied_set, assert_matches_history, assert_no_drift, down, live_schema,
    on_both_dialects, up,
};

on_both_dialects!(
    a_squash_is_equivalent_to_its_chain,
    concurrent_upgraders_run_a_squash_once
);

fn col(name: &str, ty: ColumnType) -> Column {
    Column::new(name, ty)
}

fn chain() -> Vec<Migration> {
    vec![
        Migration::new("s1", &[], "authors", "t").operations(vec![create_table(
            Table::new("author")
                .with_column(col("id", ColumnType::Integer))
                .with_column(col("name", ColumnType::String(Some(100))))
                .with_primary_key(["id"]),
        )]),
        Migration::new("s2", &["s1"], "books", "t").operations(vec![
            add_column("author", col("bio", ColumnType::Text).nullable()),
            create_table(
                Table::new("book")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("author_id", ColumnType::Integer))
                    .with_column(col("title", ColumnType::String(Some(200))))
                    .with_primary_key(["id"])
                    .with_foreign_key(ForeignKey::new(
                        "fk_book_author_id_author",
                        &["author_id"],
                        "author",
                        &["id"],
                    )),
            ),
        ]),
        Migration::new("s3", &["s2"], "renames and an index", "t").operations(vec![
            rename_column("author", "name", "full_name"),
            create_index("book", "ix_book_title", &["title"]),
        ]),
        Migration::new("s4", &["s3"], "a check", "t").operations(vec![
            add_check("book", "ck_book_title", "length(title) > 0"),
            drop_column("author", "bio"),
        ]),
    ]
}

fn after_chain() -> Migration {
    Migration::new("s5", &["s4"], "after the chain", "t").operations(vec![add_column(
        "book",
        col("pages", ColumnType::Integer).nullable(),
    )])
}

/// The chain, its squash and a migration after it.
fn squashed() -> History {
    let originals = History::new(chain()).unwrap();
    let plan = squash::plan(&originals, None, "s4").unwrap();
    assert_eq!(plan.replaces, ["s1", "s2", "s3", "s4"]);
    assert!(plan.parents.is_empty());
    let replaces: Vec<&str> = plan.replaces.iter().map(String::as_str).collect();
    let squash = Migration::new("sq1", &[], "squash s1 to s4", "t")
        .replaces(&replaces)
        .operations(plan.operations);
    let mut all = chain();
    all.push(after_chain());
    all.push(squash);
    History::new(all).unwrap()
}

fn originals() -> History {
    let mut all = chain();
    all.push(after_chain());
    History::new(all).unwrap()
}

async fn a_squash_is_equivalent_to_its_chain(dialect: Dialect) {
    let history = squashed();
    assert_eq!(history.heads(), ["s5"], "the squash is no second head");

    // A new database runs the squash, and records the originals.
    let fresh = TestDb::fresh(dialect).await;
    let mut conn = fresh.connect().await;
    assert_eq!(
        up(&mut conn, &history, "head").await.unwrap(),
        ["sq1", "s5"]
    );
    assert_eq!(
        applied_set(&mut conn).await,
        ["s1", "s2", "s3", "s4", "s5"].map(String::from).into()
    );
    assert_matches_history(&mut conn, &history, "through the squash").await;
    let migrator = Migrator::new(history.clone(), VERSION_TABLE);
    let status = migrator.status(&mut conn).await.unwrap();
    assert!(status.at_head(), "{status:?}");
    assert!(up(&mut conn, &history, "head").await.unwrap().is_empty());

    // The same schema as through the originals.
    let through = TestDb::fresh(dialect).await;
    let mut other = through.connect().await;
    assert_eq!(up(&mut other, &originals(), "head").await.unwrap().len(), 5);
    assert_no_drift(
        &live_schema(&mut other).await,
        &live_schema(&mut conn).await,
        dialect,
        "squash against originals",
    );
    // And a database upgraded through the originals is at head for the squashed history.
    let status = migrator.status(&mut other).await.unwrap();
    assert!(status.at_head() && status.pending.is_empty(), "{status:?}");

    // Partway through the chain: the originals continue.
    let partway = TestDb::fresh(dialect).await;
    let mut mid = partway.connect().await;
    up(&mut mid, &originals(), "s2").await.unwrap();
    assert_eq!(
        up(&mut mid, &history, "head").await.unwrap(),
        ["s3", "s4", "s5"]
    );
    assert_matches_history(&mut mid, &history, "partway, then the originals").await;

    // The offline script of a new database shows the squash.
    let sql = migrator
        .offline_sql(dialect, Direction::Up, "head")
        .unwrap();
    assert!(sql.contains("-- Running upgrade sq1"), "{sql}");
    assert!(!sql.contains("-- Running upgrade s2"), "{sql}");

    // A downgrade undoes the originals, one by one.
    assert_eq!(
        down(&mut conn, &history, "s2").await.unwrap(),
        ["s5", "s4", "s3"]
    );
    assert_matches_history(&mut conn, &history, "downgraded into the chain").await;
    // Up again from there: originals, as for any database partway.
    assert_eq!(
        up(&mut conn, &history, "head").await.unwrap(),
        ["s3", "s4", "s5"]
    );
    down(&mut conn, &history, "base").await.unwrap();
    assert!(live_schema(&mut conn).await.tables.is_empty());
}

/// Four upgraders of a new database at once: one runs the squash, the others find it done.
async fn concurrent_upgraders_run_a_squash_once(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut upgraders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut conn = db.connect().await;
        upgraders.spawn(async move { up(&mut conn, &squashed(), "head").await });
    }
    let mut ran = Vec::new();
    while let Some(joined) = upgraders.join_next().await {
        let done = joined
            .expect("the upgrader's task ends")
            .unwrap_or_else(|e| panic!("an upgrader failed: {e}"));
        ran.extend(done);
    }
    ran.sort();
    assert_eq!(ran, ["s5", "sq1"], "each applied exactly once");
    let mut conn = db.connect().await;
    assert_eq!(applied_set(&mut conn).await.len(), 5);
    assert_matches_history(&mut conn, &squashed(), "after concurrent upgraders").await;
}

#[test]
fn chains_a_squash_cannot_carry_are_refused() {
    let mut raw = chain();
    raw[2]
        .operations
        .push(raw_sql(DialectSql::both("SELECT 1")));
    let err = squash::plan(&History::new(raw).unwrap(), None, "s4").unwrap_err();
    assert!(
        matches!(err, SquashError::NotDeclarative { ref revision, .. } if revision == "s3"),
        "{err}"
    );
    assert!(err.to_string().contains("raw SQL"), "{err}");

    let history = originals();
    // From s2: s3 renames a column of a table made before the chain.
    let err = squash::plan(&history, Some("s2"), "s5").unwrap_err();
    assert!(matches!(err, SquashError::Lossy { .. }), "{err}");
    let err = squash::plan(&history, Some("s4"), "s5").unwrap_err();
    assert!(matches!(err, SquashError::TooShort { .. }), "{err}");
    // Already squashed.
    let err = squash::plan(&squashed(), None, "s3").unwrap_err();
    assert!(matches!(err, SquashError::AlreadySquashed { .. }), "{err}");
    // A branch inside the range.
    let mut branched = chain();
    branched.push(Migration::new("b1", &["s2"], "branch", "t"));
    let err = squash::plan(&History::new(branched).unwrap(), None, "s4").unwrap_err();
    assert!(matches!(err, SquashError::NotAChain { .. }), "{err}");
}
