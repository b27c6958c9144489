//! Fixtures: idempotent upsert by name, refused files, nothing partially written.

use app::db::Database;
use app::fixtures::{self, FixtureError};
use app::models::role;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::helpers::{Kind, TestDb, fixture_dir};

async fn roles(db: &Database) -> Vec<role::Model> {
    role::Entity::find().all(db.conn()).await.unwrap()
}

async fn loading_twice_changes_nothing(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let before = roles(&db).await;
    let slugs: Vec<&str> = before.iter().map(|r| r.slug.as_str()).collect();
    assert!(slugs.contains(&"application-access") && slugs.contains(&"superuser"));
    for _ in 0..2 {
        let report = fixtures::load_all(db.conn(), Some(&fixture_dir()))
            .await
            .unwrap();
        assert_eq!(
            (report[0].inserted, report[0].updated, report[0].unchanged),
            (0, 0, 2)
        );
    }
    let after = roles(&db).await;
    assert_eq!(before, after, "not even updated_at moved");
}

#[tokio::test]
async fn loading_twice_changes_nothing_postgres() {
    loading_twice_changes_nothing(Kind::Postgres).await;
}

#[tokio::test]
async fn loading_twice_changes_nothing_sqlite() {
    loading_twice_changes_nothing(Kind::Sqlite).await;
}

async fn changed_fixtures_update_by_name(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("role.json"),
        r#"[{"slug": "superuser", "name": "Superuser", "description": "changed"},
            {"slug": "auditor", "name": "Auditor"}]"#,
    )
    .unwrap();
    let report = fixtures::load_all(db.conn(), Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        (report[0].inserted, report[0].updated, report[0].unchanged),
        (1, 1, 0)
    );
    let superuser = role::Entity::find()
        .filter(role::Column::Name.eq("Superuser"))
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(superuser.description.as_deref(), Some("changed"));
    assert_eq!(role::Entity::find().count(db.conn()).await.unwrap(), 3);
}

#[tokio::test]
async fn changed_fixtures_update_by_name_postgres() {
    changed_fixtures_update_by_name(Kind::Postgres).await;
}

#[tokio::test]
async fn changed_fixtures_update_by_name_sqlite() {
    changed_fixtures_update_by_name(Kind::Sqlite).await;
}

async fn refused_files_write_nothing(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let before = roles(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("role.json");

    // Broken JSON: file, line and reason.
    std::fs::write(
        &file,
        "[\n  {\"slug\": \"a\", \"name\": \"A\"},\n  {\"slug\": \"b\" \"name\": \"B\"}\n]",
    )
    .unwrap();
    let err = fixtures::load_all(db.conn(), Some(dir.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::Malformed { line: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("role.json:3:"), "{text}");

    // A missing field, an unknown field, a bad slug, a repeated name.
    for (body, needle) in [
        (
            r#"[{"slug": "a", "name": "A"}, {"slug": "b"}]"#,
            "missing field `name`",
        ),
        (
            r#"[{"slug": "a", "name": "A", "colour": 1}]"#,
            "unknown field `colour`",
        ),
        (r#"[{"slug": "Not A Slug", "name": "A"}]"#, "slug"),
        (
            r#"[{"slug": "a", "name": "A"}, {"slug": "b", "name": "A"}]"#,
            "appears twice",
        ),
        (r#"{"slug": "a"}"#, "expected a sequence"),
    ] {
        std::fs::write(&file, body).unwrap();
        let err = fixtures::load_all(db.conn(), Some(dir.path()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }

    // A row the database refuses (slug taken by another name) rolls back the rows before it.
    std::fs::write(
        &file,
        r#"[{"slug": "new-role", "name": "New Role"}, {"slug": "superuser", "name": "Another"}]"#,
    )
    .unwrap();
    let err = fixtures::load_all(db.conn(), Some(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, FixtureError::Db(_)), "{err}");

    // A missing file names the folder setting.
    let empty = tempfile::tempdir().unwrap();
    let err = fixtures::load_all(db.conn(), Some(empty.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DATABASE_FIXTURE_PATH"), "{err}");

    assert_eq!(roles(&db).await, before, "nothing was written");
}

#[tokio::test]
async fn refused_files_write_nothing_postgres() {
    refused_files_write_nothing(Kind::Postgres).await;
}

#[tokio::test]
async fn refused_files_write_nothing_sqlite() {
    refused_files_write_nothing(Kind::Sqlite).await;
}
