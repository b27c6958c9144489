//! Adopting a database another tool made, on PostgreSQL and SQLite: a small hand-made Alembic
//! database is recognized and every writing command refuses it; the adoption brings it to the
//! head of a history with its rows converted and the table the history does not know left
//! alone; what cannot be bridged is refused before anything is written; and a failure halfway
//! through rolls everything back.

use strata::adopt::{AdoptError, AdoptionSpec, Conversion};
use strata::migrator::{ForeignVersion, Migrator};
use strata::prelude::*;
use strata::runner::{Conn, RunError};
use strata::state::{Direction, History};

use crate::support::{
    Snapshot, TestDb, VERSION_TABLE, on_both_dialects, scalar_i64, snapshot, text_lines,
};

on_both_dialects!(
    an_alembic_database_is_recognized_and_refused,
    adoption_brings_the_database_to_head,
    another_alembic_revision_is_refused,
    another_shape_of_version_table_is_refused,
    a_version_table_without_version_num_is_refused,
    an_empty_database_is_refused,
    tables_without_a_version_table_are_refused,
    a_value_the_conversion_rejects_is_refused,
    duplicates_under_a_new_unique_key_are_refused,
    duplicates_a_conversion_makes_under_a_new_unique_key_are_refused,
    a_failure_halfway_rolls_everything_back,
);

/// The Alembic revision the foreign database is at (its head).
const ALEMBIC_HEAD: &str = "3f2a9c1b7d4e";

/// What the adoption records as the backup taken before.
const BACKUP: &str = "/var/backups/library-before-adoption.dump";

/// The database another tool made, as SQLAlchemy and Alembic would write it: the tables the
/// history manages with other constraint and index names, an extra column (`legacy_code`), a
/// NOT NULL column the history makes nullable (`bio`), a varchar that widens (`name`),
/// upper-case enum names (`kind`), no unique key on `author.name`, no `book.pages`; a table the
/// history does not know (`review`); and Alembic's version table at [`ALEMBIC_HEAD`].
const FOREIGN_DATABASE: &str = "
CREATE TABLE author (
    id integer NOT NULL,
    name varchar(50) NOT NULL,
    bio text NOT NULL,
    legacy_code varchar(10),
    CONSTRAINT author_pk PRIMARY KEY (id)
);
CREATE TABLE book (
    id integer NOT NULL,
    title varchar(200) NOT NULL,
    kind varchar(20) NOT NULL,
    author_id integer NOT NULL,
    CONSTRAINT book_pk PRIMARY KEY (id),
    CONSTRAINT book_author_id_fkey FOREIGN KEY (author_id) REFERENCES author (id) ON DELETE CASCADE
);
CREATE INDEX idx_book_title ON book (title);
CREATE TABLE review (
    id integer NOT NULL,
    author_id integer NOT NULL,
    body text NOT NULL,
    CONSTRAINT review_pk PRIMARY KEY (id),
    CONSTRAINT review_author_id_fkey FOREIGN KEY (author_id) REFERENCES author (id) ON DELETE CASCADE
);
CREATE TABLE ddl_version (version_num varchar(32) NOT NULL PRIMARY KEY);

INSERT INTO author (id, name, bio, legacy_code) VALUES
    (1, 'Ann', 'Poet', 'A-1'), (2, 'Bob', 'Novelist', NULL), (3, 'Cy', '', 'C-3');
INSERT INTO book (id, title, kind, author_id) VALUES
    (10, 'Odes', 'POEM', 1), (11, 'Sonnets', 'POEM', 1), (20, 'Long Road', 'NOVEL', 2),
    (30, 'Notes', 'ESSAY', 3);
INSERT INTO review (id, author_id, body) VALUES (100, 1, 'lovely'), (101, 1, 'short'), (200, 2, 'long');
INSERT INTO ddl_version (version_num) VALUES ('3f2a9c1b7d4e');
";

/// A fresh database holding [`FOREIGN_DATABASE`], and a connection to it.
async fn foreign_database(dialect: Dialect) -> (TestDb, Conn) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;
    conn.execute(FOREIGN_DATABASE)
        .await
        .unwrap_or_else(|err| panic!("the foreign database is made: {err}"));
    (db, conn)
}

/// The history the application brings the foreign database to: its head is the target.
fn library() -> History {
    let col = Column::new;
    History::new(vec![
        Migration::new("m01", &[], "authors and books", "t").operations(vec![
            create_table(
                Table::new("author")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("name", ColumnType::String(Some(100))))
                    .with_column(col("bio", ColumnType::Text).nullable())
                    .with_primary_key(["id"])
                    .with_unique(Unique::new("uq_author_name", &["name"])),
            ),
            create_table(
                Table::new("book")
                    .with_column(col("id", ColumnType::Integer))
                    .with_column(col("title", ColumnType::String(Some(200))))
                    .with_column(col("kind", ColumnType::String(Some(20))))
                    .with_column(col("author_id", ColumnType::Integer))
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
                    .with_index(Index::new("ix_book_title", &["title"]))
                    .with_check(Check::new(
                        "ck_book_kind",
                        "kind IN ('novel', 'poem', 'essay')",
                    )),
            ),
        ]),
        Migration::new("m02", &["m01"], "book pages", "t").operations(vec![add_column(
            "book",
            col("pages", ColumnType::Integer).nullable(),
        )]),
    ])
    .unwrap()
}

fn migrator() -> Migrator {
    Migrator::new(library(), VERSION_TABLE)
}

/// The kinds the other tool stored as enum member names, stored lower-case by the history.
fn kinds_to_lower_case() -> Conversion {
    Conversion {
        table: "book".into(),
        column: "kind".into(),
        dialect: None,
        description: "kinds NOVEL, POEM, ESSAY to novel, poem, essay".into(),
        expr: "lower(\"kind\")".into(),
        invalid_when: Some("\"kind\" NOT IN ('NOVEL', 'POEM', 'ESSAY')".into()),
    }
}

/// What the application knows: Alembic at [`ALEMBIC_HEAD`], to the history's head.
fn spec_with(conversions: Vec<Conversion>) -> AdoptionSpec {
    AdoptionSpec {
        tool: "alembic".into(),
        revisions: vec![ALEMBIC_HEAD.into()],
        target: "head".into(),
        conversions,
    }
}

fn spec() -> AdoptionSpec {
    spec_with(vec![kinds_to_lower_case()])
}

fn sorted(lines: &[String]) -> Vec<&str> {
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    lines.sort_unstable();
    lines
}

/// Asserts that `script` has a line starting with each of `prefixes`, in that order.
fn assert_lines_in_order(script: &str, prefixes: &[&str]) {
    let mut lines = script.lines();
    for prefix in prefixes {
        assert!(
            lines.any(|line| line.starts_with(prefix)),
            "the script has `{prefix}` after the lines before it:\n{script}"
        );
    }
}

/// Plans the adoption of `spec`, which must be refused, and checks that the refusal left the
/// database exactly as it was.
async fn refused(conn: &mut Conn, spec: &AdoptionSpec) -> AdoptError {
    let before = snapshot(conn).await;
    let err = migrator()
        .plan_adoption(conn, spec)
        .await
        .expect_err("the adoption is refused");
    assert_eq!(
        snapshot(conn).await,
        before,
        "the refusal ({err}) left the database as it was"
    );
    err
}

async fn an_alembic_database_is_recognized_and_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    let migrator = migrator();
    let before = snapshot(&mut conn).await;

    let status = migrator.status(&mut conn).await.unwrap();
    let alembic = ForeignVersion {
        tool: "alembic".into(),
        revisions: vec![ALEMBIC_HEAD.into()],
    };
    assert_eq!(status.foreign, Some(alembic.clone()));
    assert!(!status.at_head());
    assert!(status.applied.is_empty() && status.current.is_empty());
    assert_eq!(status.pending, ["m01", "m02"]);

    let up = migrator
        .run(&mut conn, Direction::Up, "head", &mut |_| {})
        .await;
    assert!(
        matches!(&up, Err(RunError::Foreign(f)) if *f == alembic),
        "upgrade: {up:?}"
    );
    let message = up.unwrap_err().to_string();
    assert!(
        message.contains("alembic") && message.contains(ALEMBIC_HEAD) && message.contains("adopt"),
        "the refusal says what and what to do: {message}"
    );
    let stamp = migrator.stamp(&mut conn, "head").await;
    assert!(
        matches!(&stamp, Err(RunError::Foreign(f)) if *f == alembic),
        "stamp: {stamp:?}"
    );
    let head = migrator.history().head_schema().unwrap();
    let check = migrator.check(&mut conn, &head).await;
    assert!(
        matches!(&check, Err(RunError::Foreign(f)) if *f == alembic),
        "check: {check:?}"
    );

    assert_eq!(
        snapshot(&mut conn).await,
        before,
        "nothing was written to the foreign database"
    );
}

async fn adoption_brings_the_database_to_head(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    let migrator = migrator();
    let before = snapshot(&mut conn).await;

    let plan = migrator.plan_adoption(&mut conn, &spec()).await.unwrap();
    assert_eq!(snapshot(&mut conn).await, before, "planning writes nothing");
    assert_eq!(plan.dialect, dialect);
    assert_eq!(plan.tool, "alembic");
    assert_eq!(plan.from_revision, ALEMBIC_HEAD);
    assert_eq!(plan.into_revision, "m02");
    let tables: Vec<(&str, u64, bool)> = plan
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows, t.rebuilt))
        .collect();
    let rebuilt = dialect == Dialect::Sqlite;
    assert_eq!(tables, [("author", 3, rebuilt), ("book", 4, rebuilt)]);
    // PostgreSQL's primary keys take the names the engine's own tables get there.
    let pk_renamed = |table: &str| match dialect {
        Dialect::Postgres => vec![format!("~ primary key {table}_pk renamed {table}_pkey")],
        Dialect::Sqlite => vec![],
    };
    let author = &plan.tables[0];
    let mut expected = vec![
        "+ add unique constraint uq_author_name on author (name)".to_string(),
        "- drop column author.legacy_code".to_string(),
        "~ column bio: NOT NULL -> NULL".to_string(),
        "~ column name: type varchar(50) -> varchar(100)".to_string(),
    ];
    expected.extend(pk_renamed("author"));
    assert_eq!(sorted(&author.changes), sorted(&expected));
    assert!(author.conversions.is_empty(), "{:?}", author.conversions);
    let book = &plan.tables[1];
    let mut expected = vec![
        "+ add check constraint ck_book_kind on book (kind IN ('novel', 'poem', 'essay'))"
            .to_string(),
        "+ add column book.pages Integer".to_string(),
        "+ add foreign key fk_book_author_id_author on book (author_id) -> author (id)".to_string(),
        "+ create index ix_book_title on book (title)".to_string(),
        "- drop foreign key book_author_id_fkey on book".to_string(),
        "- drop index idx_book_title on book".to_string(),
    ];
    expected.extend(pk_renamed("book"));
    assert_eq!(sorted(&book.changes), sorted(&expected));
    assert_eq!(
        book.conversions,
        ["kind: kinds NOVEL, POEM, ESSAY to novel, poem, essay"]
    );
    let left_alone: Vec<(&str, u64)> = plan
        .left_alone
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect();
    assert_eq!(left_alone, [("review", 3)]);

    // The script runs it all in one transaction, the version table rewritten last.
    let script = plan.to_sql();
    let (opening, closing): (&[&str], &[&str]) = match dialect {
        Dialect::Postgres => (&["BEGIN;", "SELECT pg_advisory_xact_lock("], &["COMMIT;"]),
        Dialect::Sqlite => (
            &["PRAGMA foreign_keys = OFF;", "BEGIN IMMEDIATE;"],
            &["COMMIT;", "PRAGMA foreign_keys = ON;"],
        ),
    };
    let statements: Vec<String> = plan.statements.iter().map(|s| format!("{s};")).collect();
    let mut expected: Vec<&str> = opening.to_vec();
    expected.extend(statements.iter().map(String::as_str));
    expected.extend([
        "DROP TABLE \"ddl_version\";",
        "CREATE TABLE IF NOT EXISTS \"ddl_version\" (version_num varchar(32) NOT NULL PRIMARY KEY, checksum",
        "INSERT INTO \"ddl_version\" (version_num, checksum) VALUES ('m01', ",
        "INSERT INTO \"ddl_version\" (version_num, checksum) VALUES ('m02', ",
        "CREATE TABLE IF NOT EXISTS \"ddl_version_adoption\"",
        "INSERT INTO \"ddl_version_adoption\"",
    ]);
    expected.extend(closing);
    assert_lines_in_order(&script, &expected);
    assert_eq!(script.lines().last(), closing.last().copied());

    migrator
        .adopt(&mut conn, &plan, Some(BACKUP))
        .await
        .unwrap_or_else(|err| panic!("the adoption runs: {err}"));

    let status = migrator.status(&mut conn).await.unwrap();
    assert!(status.at_head(), "{status:?}");
    assert_eq!(status.current, ["m02"]);
    let applied: Vec<&str> = status.applied.iter().map(|a| a.revision.as_str()).collect();
    assert_eq!(applied, ["m01", "m02"]);

    let head = migrator.history().head_schema().unwrap();
    let report = migrator.check(&mut conn, &head).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.unmanaged, ["review"]);
    assert!(report.pending.is_empty());

    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT CAST(id AS text), name, bio FROM author ORDER BY id"
        )
        .await,
        ["1 | Ann | Poet", "2 | Bob | Novelist", "3 | Cy | "]
    );
    assert_eq!(
        text_lines(
            &mut conn,
            "SELECT CAST(id AS text), title, kind, CAST(author_id AS text), CAST(pages AS text) \
             FROM book ORDER BY id"
        )
        .await,
        [
            "10 | Odes | poem | 1 | NULL",
            "11 | Sonnets | poem | 1 | NULL",
            "20 | Long Road | novel | 2 | NULL",
            "30 | Notes | essay | 3 | NULL",
        ]
    );
    let after = snapshot(&mut conn).await;
    assert_eq!(
        after.rows["review"], before.rows["review"],
        "the table left alone keeps its rows"
    );
    assert_eq!(
        after.schema.table("review"),
        before.schema.table("review"),
        "the table left alone keeps its definition"
    );
    let review_catalog = |snapshot: &Snapshot| -> Vec<String> {
        snapshot
            .catalog
            .iter()
            .filter(|line| line.contains("review"))
            .cloned()
            .collect()
    };
    assert!(!review_catalog(&before).is_empty());
    assert_eq!(
        review_catalog(&after),
        review_catalog(&before),
        "the catalog shows the table left alone as it was (names of its keys included)"
    );

    if dialect == Dialect::Sqlite {
        assert_eq!(scalar_i64(&mut conn, "PRAGMA foreign_keys").await, 1);
    }
    conn.execute("DELETE FROM author WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        text_lines(&mut conn, "SELECT CAST(id AS text) FROM review ORDER BY id").await,
        ["200"],
        "the left-alone table's foreign key still cascades"
    );
    assert_eq!(
        text_lines(&mut conn, "SELECT CAST(id AS text) FROM book ORDER BY id").await,
        ["20", "30"],
        "the adopted foreign key cascades"
    );

    let record = migrator
        .adoption(&mut conn)
        .await
        .unwrap()
        .expect("the adoption is recorded");
    assert_eq!(record.tool, "alembic");
    assert_eq!(record.revision, ALEMBIC_HEAD);
    assert_eq!(record.adopted_into, "m02");
    assert_eq!(record.unmanaged, ["review"]);
    assert_eq!(record.backup.as_deref(), Some(BACKUP));
    assert!(!record.adopted_at.is_empty());

    let again = migrator.plan_adoption(&mut conn, &spec()).await;
    assert!(
        matches!(&again, Err(AdoptError::AlreadyManaged { current }) if current == &["m02"]),
        "a second adoption: {again:?}"
    );

    let down = migrator
        .run(&mut conn, Direction::Down, "m01", &mut |_| {})
        .await;
    match &down {
        Err(RunError::BelowAdoption { revision, record }) => {
            assert_eq!(revision, "m02");
            assert_eq!(record.backup.as_deref(), Some(BACKUP));
        }
        other => panic!("a downgrade below the adoption: {other:?}"),
    }
    let message = down.unwrap_err().to_string();
    assert!(message.contains(BACKUP), "names the backup: {message}");
    let stamp = migrator.stamp(&mut conn, "m01").await;
    assert!(
        matches!(&stamp, Err(RunError::BelowAdoption { revision, .. }) if revision == "m02"),
        "a stamp below the adoption: {stamp:?}"
    );
    assert!(
        migrator.status(&mut conn).await.unwrap().at_head(),
        "the refused downgrade and stamp undid nothing"
    );
}

async fn another_alembic_revision_is_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute("UPDATE ddl_version SET version_num = 'a1b2c3d4e5f6'")
        .await
        .unwrap();

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::OtherRevision {
            tool,
            found,
            expected,
        } => {
            assert_eq!(tool, "alembic");
            assert_eq!(found, &["a1b2c3d4e5f6"]);
            assert_eq!(expected, &[ALEMBIC_HEAD]);
        }
        other => panic!("expected OtherRevision, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("a1b2c3d4e5f6") && message.contains(ALEMBIC_HEAD),
        "{message}"
    );
}

async fn another_shape_of_version_table_is_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute(
        "DROP TABLE ddl_version; \
         CREATE TABLE ddl_version (version_num varchar(32) NOT NULL PRIMARY KEY, installed_by varchar(100)); \
         INSERT INTO ddl_version (version_num, installed_by) VALUES ('V7', 'dba')",
    )
    .await
    .unwrap();
    let status = migrator().status(&mut conn).await.unwrap();
    let foreign = status.foreign.expect("another tool's version table");
    assert_eq!(foreign.tool, "unknown (version_num, installed_by)");
    assert_eq!(foreign.revisions, ["V7"]);

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::OtherTool { found, expected } => {
            assert_eq!(found, "unknown (version_num, installed_by)");
            assert_eq!(expected, "alembic");
        }
        other => panic!("expected OtherTool, got {other:?}"),
    }
}

/// Flyway-like: the version table has no `version_num` column at all.
async fn a_version_table_without_version_num_is_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute(
        "DROP TABLE ddl_version; \
         CREATE TABLE ddl_version (installed_rank integer NOT NULL PRIMARY KEY, version varchar(50)); \
         INSERT INTO ddl_version (installed_rank, version) VALUES (1, '1.0')",
    )
    .await
    .unwrap();
    let status = migrator().status(&mut conn).await;
    let foreign = status
        .unwrap_or_else(|err| panic!("the status reads another tool's version table: {err}"))
        .foreign
        .expect("another tool's version table");
    assert_eq!(foreign.tool, "unknown (installed_rank, version)");

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::OtherTool { found, expected } => {
            assert_eq!(found, "unknown (installed_rank, version)");
            assert_eq!(expected, "alembic");
        }
        other => panic!("expected OtherTool, got {other:?}"),
    }
}

async fn an_empty_database_is_refused(dialect: Dialect) {
    let db = TestDb::fresh(dialect).await;
    let mut conn = db.connect().await;

    let err = refused(&mut conn, &spec()).await;

    assert!(matches!(err, AdoptError::Empty), "{err:?}");
}

async fn tables_without_a_version_table_are_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute("DROP TABLE ddl_version").await.unwrap();

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::NotRecognized {
            tables,
            version_table,
        } => {
            assert_eq!(*tables, 3, "author, book, review");
            assert_eq!(version_table, VERSION_TABLE);
        }
        other => panic!("expected NotRecognized, got {other:?}"),
    }
}

async fn a_value_the_conversion_rejects_is_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute(
        "INSERT INTO book (id, title, kind, author_id) VALUES (31, 'Fourteen Lines', 'SONNET', 3)",
    )
    .await
    .unwrap();

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::Unconvertible {
            table,
            column,
            rows,
            reason,
            example,
        } => {
            assert_eq!(
                (table.as_str(), column.as_str(), *rows),
                ("book", "kind", 1)
            );
            assert!(reason.contains("kinds NOVEL, POEM, ESSAY"), "{reason}");
            assert_eq!(example.as_deref(), Some("'SONNET'"));
        }
        other => panic!("expected Unconvertible, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("book.kind") && message.contains("nothing was changed"),
        "{message}"
    );
}

async fn duplicates_under_a_new_unique_key_are_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute("UPDATE author SET name = 'Ann' WHERE id = 2")
        .await
        .unwrap();

    let err = refused(&mut conn, &spec()).await;

    match &err {
        AdoptError::Unconvertible {
            table,
            column,
            rows,
            example,
            ..
        } => {
            assert_eq!(
                (table.as_str(), column.as_str(), *rows),
                ("author", "name", 1)
            );
            let example = example.as_deref().unwrap_or_default();
            assert!(
                example.contains("Ann"),
                "the example shows the value: {example}"
            );
        }
        other => panic!("expected Unconvertible, got {other:?}"),
    }
    assert!(err.to_string().contains("unique"), "{err}");
}

/// The names differ as stored, but not once converted: the new unique key rejects them all
/// the same, and the adoption must say so before it writes.
async fn duplicates_a_conversion_makes_under_a_new_unique_key_are_refused(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    conn.execute("UPDATE author SET name = 'ANN' WHERE id = 2")
        .await
        .unwrap();
    let names_to_lower_case = Conversion {
        table: "author".into(),
        column: "name".into(),
        dialect: None,
        description: "names to lower case".into(),
        expr: "lower(\"name\")".into(),
        invalid_when: None,
    };

    let err = refused(
        &mut conn,
        &spec_with(vec![names_to_lower_case, kinds_to_lower_case()]),
    )
    .await;

    match &err {
        AdoptError::Unconvertible {
            table,
            column,
            rows,
            ..
        } => {
            assert_eq!(
                (table.as_str(), column.as_str(), *rows),
                ("author", "name", 1)
            );
        }
        other => panic!("expected Unconvertible, got {other:?}"),
    }
}

async fn a_failure_halfway_rolls_everything_back(dialect: Dialect) {
    let (_db, mut conn) = foreign_database(dialect).await;
    let migrator = migrator();
    // Fine for the plan (no check can see it), fatal when the second table is converted.
    let failing = Conversion {
        expr: "strata_no_such_function(\"kind\")".into(),
        invalid_when: None,
        ..kinds_to_lower_case()
    };
    let plan = migrator
        .plan_adoption(&mut conn, &spec_with(vec![failing]))
        .await
        .unwrap();
    let fails_at = plan
        .statements
        .iter()
        .position(|s| s.contains("strata_no_such_function"))
        .expect("the plan converts book.kind");
    assert!(fails_at > 0, "statements run before the failing one");
    let before = snapshot(&mut conn).await;

    let err = migrator
        .adopt(&mut conn, &plan, Some(BACKUP))
        .await
        .expect_err("the conversion fails");

    match &err {
        AdoptError::Failed { statement, .. } => {
            assert!(statement.contains("strata_no_such_function"), "{statement}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(
        snapshot(&mut conn).await,
        before,
        "the database is exactly as before"
    );
    if dialect == Dialect::Sqlite {
        assert_eq!(
            scalar_i64(&mut conn, "PRAGMA foreign_keys").await,
            1,
            "foreign keys are back on"
        );
    }
    assert!(migrator.adoption(&mut conn).await.unwrap().is_none());

    // The same connection adopts with the right conversion.
    let plan = migrator.plan_adoption(&mut conn, &spec()).await.unwrap();
    migrator.adopt(&mut conn, &plan, None).await.unwrap();
    assert!(migrator.status(&mut conn).await.unwrap().at_head());
}
