//! The version table across deploys, through the `app` binary on real PostgreSQL and SQLite:
//! a release rolled back downgrades what the newer one applied (with the SQL stored beside it)
//! and refuses what needs Rust code; an edited applied migration is shown and accepted by
//! `repair`; `check` fails while the database is behind head; a binary that does not match the
//! migration files is refused both ways.

use std::path::Path;

use app::db::Database;
use app::migrate;
use strata::migrator::Migrator;
use strata::ops::DataFuture;
use strata::prelude::*;
use strata::runner::{Conn, DataContext};
use strata::state::{Direction, History};

use crate::helpers::{
    Kind, TestDb, on_both_databases, one_line_failure, run_app, run_app_on, succeeded,
};

on_both_databases!(
    check_fails_while_the_database_is_behind_head,
    an_older_binary_rolls_back_what_a_newer_release_applied,
    an_edited_applied_migration_is_shown_and_repaired,
);

const VERSION_TABLE: &str = "ddl_version";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn check_fails_while_the_database_is_behind_head(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    succeeded(&run_app_on(&test_db.url, &["database", "upgrade", "+1"]));
    let out = run_app_on(&test_db.url, &["database", "check"]);
    let line = one_line_failure(&out, 1);
    let pending = migrate::history().unwrap().migrations().len() - 1;
    assert!(
        line.contains(&format!("{pending} revision(s) behind head"))
            && line.contains("app database upgrade"),
        "{line}"
    );
    succeeded(&run_app_on(&test_db.url, &["database", "upgrade"]));
    succeeded(&run_app_on(&test_db.url, &["database", "check"]));
}

fn mark<'a>(cx: &'a mut DataContext<'_>) -> DataFuture<'a> {
    Box::pin(async move {
        cx.execute("UPDATE newer_feature SET id = id")
            .await
            .map(|_| ())
    })
}

/// The app's migrations and what a newer release adds on top: a table and an index, then (when
/// `with_rust`) a data step whose downgrade is Rust code.
fn newer_release(with_rust: bool) -> History {
    let mut all = app::migrations::all();
    let head = all.last().unwrap().revision.clone();
    all.push(
        Migration::new("aaaa00000001", &[&head], "newer feature", "t").operations(vec![
            create_table(
                Table::new("newer_feature")
                    .with_column(Column::new("id", ColumnType::Integer))
                    .with_column(Column::new("label", ColumnType::Text).nullable())
                    .with_primary_key(["id"])
                    .with_index(Index::new("ix_newer_feature_label", &["label"])),
            ),
        ]),
    );
    if with_rust {
        all.push(
            Migration::new("aaaa00000002", &["aaaa00000001"], "newer data step", "t")
                .operations(vec![run_data(DataStep::new("mark", mark).with_down(mark))]),
        );
    }
    History::new(all).unwrap()
}

async fn engine_conn(test_db: &TestDb) -> (Database, Conn) {
    let db = test_db.connect(&[]).await;
    let conn = migrate::connection(&db).await.unwrap();
    (db, conn)
}

async fn an_older_binary_rolls_back_what_a_newer_release_applied(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let (db, mut conn) = engine_conn(&test_db).await;
    // The newer release upgrades the database.
    Migrator::new(newer_release(true), VERSION_TABLE)
        .run(&mut conn, Direction::Up, "head", &mut |_| {})
        .await
        .unwrap();

    // The deploy is rolled back: this binary has neither revision.
    let current = succeeded(&run_app_on(&test_db.url, &["database", "current"]));
    assert!(
        current.contains("aaaa00000001 newer feature (applied by a newer release"),
        "{current}"
    );
    let history = succeeded(&run_app_on(&test_db.url, &["database", "history"]));
    assert!(
        history.contains("aaaa00000002") && history.contains("applied by a newer release"),
        "{history}"
    );
    let line = one_line_failure(&run_app_on(&test_db.url, &["database", "upgrade"]), 1);
    assert!(
        line.contains("aaaa00000001") && line.contains("does not know"),
        "{line}"
    );
    // The data step's downgrade is Rust code: refused, nothing undone.
    let line = one_line_failure(&run_app_on(&test_db.url, &["database", "downgrade"]), 1);
    assert!(
        line.contains("revision aaaa00000002's downgrade runs Rust code")
            && line.contains("downgrade with the release that applied it"),
        "{line}"
    );
    // The newer release undoes its data step; the rest is undone by this binary.
    Migrator::new(newer_release(true), VERSION_TABLE)
        .run(&mut conn, Direction::Down, "-1", &mut |_| {})
        .await
        .unwrap();
    let head = migrate::history()
        .unwrap()
        .head()
        .unwrap()
        .unwrap()
        .to_string();
    let out = succeeded(&run_app_on(&test_db.url, &["database", "downgrade", &head]));
    assert!(out.contains("aaaa00000001"), "{out}");
    succeeded(&run_app_on(&test_db.url, &["database", "check"]));
    let status = migrate::status(&db, &test_db.settings(&[]).database)
        .await
        .unwrap();
    assert!(status.at_head(), "{status:?}");
    drop(conn);
    db.close().await;
}

async fn an_edited_applied_migration_is_shown_and_repaired(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    // A run of this binary gives a version table of an earlier one its new columns.
    succeeded(&run_app_on(&test_db.url, &["database", "upgrade"]));
    let (db, mut conn) = engine_conn(&test_db).await;
    let history = migrate::history().unwrap();
    let last = history.migrations().last().unwrap().revision.clone();
    // The database recorded another form of the last migration than its file has now (as if
    // the file was edited after it was applied).
    conn.execute(&format!(
        "UPDATE {VERSION_TABLE} SET checksum = 'v2:{}', canonical = 'parents: []\nupgrade: {{\"DropTable\":{{\"name\":\"gone\"}}}}\n' WHERE version_num = '{last}'",
        "0".repeat(61)
    ))
    .await
    .unwrap();
    let out = run_app_on(&test_db.url, &["database", "upgrade"]);
    let line = one_line_failure(&out, 1);
    assert!(
        line.contains(&format!("migration {last}"))
            && line.contains("changed after it was applied")
            && line.contains(&format!("`app database repair {last}`")),
        "{line}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("- upgrade: {\"DropTable\":{\"name\":\"gone\"}}"),
        "{err}"
    );
    assert!(err.contains("+ upgrade: "), "{err}");

    // Without a terminal, repair needs --yes and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("APP_ENV", "testing"),
        ("DATABASE_URL", test_db.url.as_str()),
    ];
    let out = run_app(dir.path(), &["database", "repair"], &vars);
    let line = one_line_failure(&out, 2);
    assert!(line.contains("--yes"), "{line}");
    one_line_failure(&run_app_on(&test_db.url, &["database", "upgrade"]), 1);

    let out = succeeded(&run_app(
        dir.path(),
        &["database", "repair", "--yes"],
        &vars,
    ));
    assert!(
        out.contains("- upgrade: {\"DropTable\""),
        "shows what differs: {out}"
    );
    assert!(
        out.contains(&format!("Repaired 1 revision(s): {last}")),
        "{out}"
    );
    let out = succeeded(&run_app_on(&test_db.url, &["database", "upgrade"]));
    assert!(out.contains("Nothing to do"), "{out}");
    succeeded(&run_app_on(&test_db.url, &["database", "check"]));
    let out = succeeded(&run_app(dir.path(), &["database", "repair"], &vars));
    assert!(out.contains("Nothing to repair"), "{out}");
    drop(conn);
    db.close().await;
}

/// A copy of the app's migration folder.
fn copy_of_migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations");
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_binary_that_does_not_match_the_files_is_refused_both_ways() {
    let test_db = TestDb::empty(Kind::Sqlite).await;
    let last = app::migrations::all().last().unwrap().revision.clone();
    let cwd = tempfile::tempdir().unwrap();
    let run = |dir: &Path, args: &[&str]| {
        run_app(
            cwd.path(),
            args,
            &[
                ("DATABASE_MIGRATION_PATH", dir.to_str().unwrap()),
                ("DATABASE_URL", test_db.url.as_str()),
            ],
        )
    };
    let make: &[&str] = &["database", "make-migrations", "-m", "next"];
    let upgrade: &[&str] = &["database", "upgrade"];

    // A migration file gone from disk (still listed).
    let gone = copy_of_migrations();
    let file = std::fs::read_dir(gone.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(&last))
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    for args in [make, upgrade] {
        let line = one_line_failure(&run(gone.path(), args), 1);
        assert!(
            line.contains(&last) && line.contains("is gone") && line.contains("rebuild"),
            "{args:?}: {line}"
        );
    }

    // The files no longer list a migration the binary has (removed from mod.rs and disk).
    let unlisted = copy_of_migrations();
    std::fs::remove_file(unlisted.path().join(file.file_name().unwrap())).unwrap();
    let registry = std::fs::read_to_string(unlisted.path().join("mod.rs")).unwrap();
    let module = format!("m_{last}");
    let kept: Vec<&str> = registry
        .lines()
        .filter(|l| !l.contains(&module) && !l.contains(&format!("_{last}.rs")))
        .collect();
    std::fs::write(unlisted.path().join("mod.rs"), kept.join("\n") + "\n").unwrap();
    for args in [make, upgrade] {
        let line = one_line_failure(&run(unlisted.path(), args), 1);
        assert!(
            line.contains(&last) && line.contains("does not list") && line.contains("rebuild"),
            "{args:?}: {line}"
        );
    }

    // The files list a newer migration than the binary holds.
    let newer = copy_of_migrations();
    let registry = strata::writer::Registry::parse(
        &std::fs::read_to_string(newer.path().join("mod.rs")).unwrap(),
    )
    .unwrap()
    .with("2099-01-01_newer_ffffffffffff.rs", "ffffffffffff")
    .unwrap();
    std::fs::write(newer.path().join("mod.rs"), registry.render()).unwrap();
    for args in [make, upgrade] {
        let line = one_line_failure(&run(newer.path(), args), 1);
        assert!(
            line.contains("ffffffffffff") && line.contains("rebuild"),
            "{args:?}: {line}"
        );
    }
    // Nothing was applied by the refused upgrades.
    let out = succeeded(&run_app_on(&test_db.url, &["database", "current"]));
    assert!(out.contains("base"), "{out}");
}
