//! Squashing the app's own chain: `app database squash` writes a listed file declaring what it
//! replaces, and the squash runs on real PostgreSQL and SQLite as the chain does: a new
//! database through it is `check`-clean with the originals recorded, a database partway
//! continues with the originals, and one at head has nothing pending.

use std::path::Path;

use app::migrate;
use strata::migrator::Migrator;
use strata::prelude::*;
use strata::state::{Direction, History};

use crate::helpers::{Kind, TestDb, on_both_databases, one_line_failure, run_app, succeeded};

on_both_databases!(the_apps_chain_runs_as_its_squash);

const VERSION_TABLE: &str = "ddl_version";

/// The app's revisions, oldest first, up to the first migration a squash refuses: one with raw
/// SQL (the exclusion constraint on `todo` is written so). The squashes below stop there.
fn declarative_prefix() -> Vec<String> {
    migrate::history()
        .unwrap()
        .migrations()
        .iter()
        .take_while(|m| {
            !m.operations
                .iter()
                .any(|op| matches!(op, Operation::RawSql { .. }))
        })
        .map(|m| m.revision.clone())
        .collect()
}

/// The app's migrations with the squash of its [`declarative_prefix`], built as the written
/// file builds it.
fn squashed() -> (History, String) {
    let history = migrate::history().unwrap();
    let head = declarative_prefix().pop().unwrap();
    let plan = strata::squash::plan(&history, None, &head).unwrap();
    let replaces: Vec<&str> = plan.replaces.iter().map(String::as_str).collect();
    let mut all = app::migrations::all();
    all.push(
        Migration::new("5a5a5a5a5a5a", &[], "squash", "t")
            .replaces(&replaces)
            .operations(plan.operations),
    );
    (History::new(all).unwrap(), "5a5a5a5a5a5a".to_string())
}

async fn the_apps_chain_runs_as_its_squash(kind: Kind) {
    let (history, squash) = squashed();
    let migrator = Migrator::new(history.clone(), VERSION_TABLE);
    let models = app::models::schema::target();

    // A new database runs the squash, then the migrations after it; it records every original
    // and checks clean.
    let after: Vec<String> = history.migrations()[declarative_prefix().len()..]
        .iter()
        .filter(|m| m.revision != squash)
        .map(|m| m.revision.clone())
        .collect();
    let fresh = TestDb::empty(kind).await;
    let db = fresh.connect(&[]).await;
    let mut conn = migrate::connection(&db).await.unwrap();
    let done = migrator
        .run(&mut conn, Direction::Up, "head", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(done[0], squash);
    assert_eq!(done[1..], after);
    let report = migrator.check(&mut conn, &models).await.unwrap();
    assert!(report.is_clean() && report.pending.is_empty(), "{report:?}");
    let status = migrator.status(&mut conn).await.unwrap();
    assert_eq!(status.applied.len(), history.migrations().len());
    // The binary, which has no squash, sees a database at its head, and checks it clean.
    let out = succeeded(&crate::helpers::run_app_on(
        &fresh.url,
        &["database", "check"],
    ));
    assert!(out.contains("database matches"), "{out}");

    // Partway: the originals continue.
    let partway = TestDb::empty(kind).await;
    let db2 = partway.connect(&[]).await;
    let mut mid = migrate::connection(&db2).await.unwrap();
    migrate::migrator(&partway.settings(&[]).database)
        .unwrap()
        .run(&mut mid, Direction::Up, "+2", &mut |_| {})
        .await
        .unwrap();
    let done = migrator
        .run(&mut mid, Direction::Up, "head", &mut |_| {})
        .await
        .unwrap();
    let rest: Vec<String> = history.migrations()[2..]
        .iter()
        .map(|m| m.revision.clone())
        .collect();
    assert_eq!(done, rest);
    assert!(migrator.check(&mut mid, &models).await.unwrap().is_clean());

    // At head (upgraded through the originals): nothing pending.
    let at_head = TestDb::new(kind).await;
    let db3 = at_head.connect(&[]).await;
    let mut head = migrate::connection(&db3).await.unwrap();
    assert!(migrator.status(&mut head).await.unwrap().at_head());
    assert!(
        migrator
            .run(&mut head, Direction::Up, "head", &mut |_| {})
            .await
            .unwrap()
            .is_empty()
    );
    drop((conn, mid, head));
    for db in [db, db2, db3] {
        db.close().await;
    }
}

#[test]
fn squash_writes_a_listed_file_that_declares_what_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations");
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let history = migrate::history().unwrap();
    assert!(history.migrations().len() > 1);
    let revisions = declarative_prefix();
    let cwd = tempfile::tempdir().unwrap();
    let vars = [("DATABASE_MIGRATION_PATH", dir.path().to_str().unwrap())];
    let last = revisions.last().unwrap();
    // One migration is no chain; a revision nobody has is named.
    let line = one_line_failure(
        &run_app(
            cwd.path(),
            &["database", "squash", "base", &revisions[0]],
            &vars,
        ),
        1,
    );
    assert!(line.contains("at least two"), "{line}");
    let line = one_line_failure(
        &run_app(cwd.path(), &["database", "squash", "nope"], &vars),
        1,
    );
    assert!(line.contains("nope"), "{line}");
    let out = succeeded(&run_app(
        cwd.path(),
        &["database", "squash", last, "-m", "everything so far"],
        &vars,
    ));
    assert!(
        out.contains(&format!("replaces {} migration(s)", revisions.len())),
        "{out}"
    );
    let written: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("everything_so_far"))
        .collect();
    assert_eq!(written.len(), 1);
    let source = std::fs::read_to_string(&written[0]).unwrap();
    let list = revisions
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        source.contains(&format!(".replaces(&[{list}])")),
        "{source}"
    );
    assert!(source.contains("create_table("), "{source}");
    let registry = std::fs::read_to_string(dir.path().join("mod.rs")).unwrap();
    assert!(
        registry.contains(
            &written[0]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        ),
        "{registry}"
    );

    // Until the binary is rebuilt with it, the files are ahead of the binary.
    let line = one_line_failure(
        &run_app(cwd.path(), &["database", "squash", last], &vars),
        1,
    );
    assert!(line.contains("rebuild"), "{line}");
}
