//! Entity CRUD, audit columns, unique keys, CHECKs, relations and cascades, on both databases.

use std::time::Duration;

use app::db::Database;
use app::models::schema::{self, Existing};
use app::models::todo::Importance;
use app::models::{
    TABLES, role, tag, todo, user_account, user_account_role, user_account_todo_tag,
};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait,
    IntoActiveModel, ModelTrait, PaginatorTrait, QueryFilter, SqlErr,
};
use uuid::Uuid;

use crate::helpers::{Kind, TestDb};

async fn new_user(db: &Database, email: &str) -> user_account::Model {
    let mut user = user_account::ActiveModel::new();
    user.email = Set(email.to_string());
    user.name = Set(Some("Test User".into()));
    user.joined_at = Set(chrono::Utc::now().date_naive());
    user.insert(db.conn()).await.expect("insert user")
}

async fn new_tag(db: &Database, user: &user_account::Model, name: &str) -> tag::Model {
    let mut row = tag::ActiveModel::new();
    row.name = Set(name.into());
    row.user_id = Set(user.id);
    row.insert(db.conn()).await.expect("insert tag")
}

async fn new_todo(db: &Database, user: &user_account::Model, item: &str) -> todo::Model {
    let mut row = todo::ActiveModel::new();
    row.item = Set(item.into());
    row.created_time = Set(chrono::Utc::now());
    row.importance = Set(Importance::High);
    row.user_id = Set(user.id);
    row.insert(db.conn()).await.expect("insert todo")
}

async fn link(db: &Database, todo: &todo::Model, tag: &tag::Model) {
    let mut row = user_account_todo_tag::ActiveModel::new();
    row.todo_id = Set(todo.id);
    row.tag_id = Set(tag.id);
    row.insert(db.conn()).await.expect("link todo and tag");
}

async fn crud_with_audit_columns(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let before = chrono::Utc::now();
    let user = new_user(&db, "ada@example.com").await;
    assert_eq!(user.id.get_version_num(), 7, "ids are UUIDv7");
    assert!(user.created_at >= before - chrono::Duration::seconds(1));
    assert_eq!(user.created_at, user.updated_at);
    assert!(user.is_active && !user.is_superuser && !user.is_verified);
    assert_eq!(user.login_count, 0);

    let later = new_user(&db, "grace@example.com").await;
    assert!(later.id > user.id, "v7 ids sort by creation time");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut change = user.clone().into_active_model();
    change.login_count = Set(3);
    let updated = change.update(db.conn()).await.unwrap();
    assert_eq!(updated.login_count, 3);
    assert!(
        updated.updated_at > user.updated_at,
        "updated_at moves on update"
    );
    let stored = user_account::Entity::find_by_id(user.id)
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.created_at.timestamp_micros(),
        user.created_at.timestamp_micros(),
        "created_at stays"
    );
    assert_eq!(stored.login_count, 3);

    user_account::Entity::delete_by_id(later.id)
        .exec(db.conn())
        .await
        .unwrap();
    assert_eq!(
        user_account::Entity::find().count(db.conn()).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn crud_with_audit_columns_postgres() {
    crud_with_audit_columns(Kind::Postgres).await;
}

#[tokio::test]
async fn crud_with_audit_columns_sqlite() {
    crud_with_audit_columns(Kind::Sqlite).await;
}

async fn unique_keys_hold(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let user = new_user(&db, "same@example.com").await;
    let mut dup = user_account::ActiveModel::new();
    dup.email = Set("same@example.com".into());
    dup.joined_at = Set(chrono::Utc::now().date_naive());
    let err = dup.insert(db.conn()).await.expect_err("email is unique");
    assert!(
        matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        "{err}"
    );

    new_tag(&db, &user, "home").await;
    let mut dup = tag::ActiveModel::new();
    dup.name = Set("home".into());
    dup.user_id = Set(user.id);
    let err = dup
        .insert(db.conn())
        .await
        .expect_err("tag names are unique per user");
    assert!(matches!(
        err.sql_err(),
        Some(SqlErr::UniqueConstraintViolation(_))
    ));
    let other = new_user(&db, "other@example.com").await;
    new_tag(&db, &other, "home").await;
}

#[tokio::test]
async fn unique_keys_hold_postgres() {
    unique_keys_hold(Kind::Postgres).await;
}

#[tokio::test]
async fn unique_keys_hold_sqlite() {
    unique_keys_hold(Kind::Sqlite).await;
}

async fn importance_is_checked(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let user = new_user(&db, "check@example.com").await;
    let todo = new_todo(&db, &user, "write").await;
    let sql = format!(
        "UPDATE todo SET importance = 'urgent' WHERE item = '{}'",
        todo.item
    );
    let err = db
        .conn()
        .execute_unprepared(&sql)
        .await
        .expect_err("the CHECK refuses unknown importance");
    assert!(err.to_string().to_lowercase().contains("check"), "{err}");
}

#[tokio::test]
async fn importance_is_checked_postgres() {
    importance_is_checked(Kind::Postgres).await;
}

#[tokio::test]
async fn importance_is_checked_sqlite() {
    importance_is_checked(Kind::Sqlite).await;
}

async fn relations_and_cascades(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let user = new_user(&db, "cascade@example.com").await;
    let keeper = new_user(&db, "keeper@example.com").await;
    let todo_a = new_todo(&db, &user, "a").await;
    new_todo(&db, &user, "b").await;
    let kept_todo = new_todo(&db, &keeper, "kept").await;
    let work = new_tag(&db, &user, "work").await;
    let kept_tag = new_tag(&db, &keeper, "kept").await;
    link(&db, &todo_a, &work).await;
    link(&db, &kept_todo, &kept_tag).await;
    let access = role::Entity::find()
        .filter(role::Column::Slug.eq("application-access"))
        .one(db.conn())
        .await
        .unwrap()
        .expect("fixture role");
    for holder in [&user, &keeper] {
        let mut grant = user_account_role::ActiveModel::new();
        grant.user_id = Set(holder.id);
        grant.role_id = Set(access.id);
        grant.assigned_at = Set(chrono::Utc::now());
        grant.insert(db.conn()).await.unwrap();
    }

    // user -> todos, user -> tags, todo <-> tags, user <-> roles
    assert_eq!(
        user.find_related(todo::Entity)
            .count(db.conn())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        user.find_related(tag::Entity)
            .count(db.conn())
            .await
            .unwrap(),
        1
    );
    let tags_of_a = todo_a
        .find_related(tag::Entity)
        .all(db.conn())
        .await
        .unwrap();
    assert_eq!(
        tags_of_a
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["work"]
    );
    let roles = user
        .find_related(role::Entity)
        .all(db.conn())
        .await
        .unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].slug, "application-access");

    // Deleting a tag detaches it from todos; deleting a user takes all that is theirs.
    user_account::Entity::delete_by_id(user.id)
        .exec(db.conn())
        .await
        .unwrap();
    assert_eq!(
        todo::Entity::find()
            .filter(todo::Column::UserId.eq(user.id))
            .count(db.conn())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        tag::Entity::find()
            .filter(tag::Column::UserId.eq(user.id))
            .count(db.conn())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        user_account_role::Entity::find()
            .filter(user_account_role::Column::UserId.eq(user.id))
            .count(db.conn())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        user_account_todo_tag::Entity::find()
            .count(db.conn())
            .await
            .unwrap(),
        1,
        "only the keeper's link is left"
    );
    assert_eq!(todo::Entity::find().count(db.conn()).await.unwrap(), 1);
    assert_eq!(
        role::Entity::find().count(db.conn()).await.unwrap(),
        2,
        "roles stay"
    );

    tag::Entity::delete_by_id(kept_tag.id)
        .exec(db.conn())
        .await
        .unwrap();
    assert_eq!(
        user_account_todo_tag::Entity::find()
            .count(db.conn())
            .await
            .unwrap(),
        0
    );
    assert!(
        todo::Entity::find_by_id(kept_todo.id)
            .one(db.conn())
            .await
            .unwrap()
            .is_some(),
        "the todo outlives its tag"
    );
}

#[tokio::test]
async fn relations_and_cascades_postgres() {
    relations_and_cascades(Kind::Postgres).await;
}

#[tokio::test]
async fn relations_and_cascades_sqlite() {
    relations_and_cascades(Kind::Sqlite).await;
}

async fn foreign_keys_are_enforced(kind: Kind) {
    let test_db = TestDb::new(kind).await;
    let db = test_db.connect(&[]).await;
    let mut orphan = tag::ActiveModel::new();
    orphan.name = Set("orphan".into());
    orphan.user_id = Set(Uuid::now_v7());
    let err = orphan.insert(db.conn()).await.expect_err("no such user");
    assert!(
        matches!(
            err.sql_err(),
            Some(SqlErr::ForeignKeyConstraintViolation(_))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn foreign_keys_are_enforced_postgres() {
    foreign_keys_are_enforced(Kind::Postgres).await;
}

#[tokio::test]
async fn foreign_keys_are_enforced_sqlite() {
    foreign_keys_are_enforced(Kind::Sqlite).await;
}

async fn create_all_and_drop_all(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let db = test_db.connect(&[]).await;
    assert_eq!(
        schema::missing_tables(db.conn().orm()).await.unwrap(),
        TABLES
    );
    schema::create_all(db.conn().orm(), Existing::Fail)
        .await
        .unwrap();
    assert!(
        schema::missing_tables(db.conn().orm())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        schema::create_all(db.conn().orm(), Existing::Fail)
            .await
            .is_err(),
        "a second create_all refuses existing tables"
    );
    schema::create_all(db.conn().orm(), Existing::Skip)
        .await
        .expect("IF NOT EXISTS creates nothing twice");
    schema::drop_all(db.conn().orm()).await.unwrap();
    assert_eq!(
        schema::missing_tables(db.conn().orm()).await.unwrap(),
        TABLES
    );
    assert!(
        db.conn()
            .query_all_raw(db.statement(match kind {
                Kind::Postgres => "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
                Kind::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
            }))
            .await
            .unwrap()
            .is_empty(),
        "indexes go with their tables"
    );
}

#[tokio::test]
async fn create_all_and_drop_all_postgres() {
    create_all_and_drop_all(Kind::Postgres).await;
}

#[tokio::test]
async fn create_all_and_drop_all_sqlite() {
    create_all_and_drop_all(Kind::Sqlite).await;
}

#[tokio::test]
async fn postgres_columns_have_the_expected_types() {
    let test_db = TestDb::new(Kind::Postgres).await;
    let db = test_db.connect(&[]).await;
    let rows = db
        .conn()
        .query_all_raw(db.statement(
            "SELECT table_name::text, column_name::text, data_type::text, \
             coalesce(character_maximum_length, 0)::int4 \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, ordinal_position",
        ))
        .await
        .unwrap();
    let columns: Vec<(String, String, String, i32)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
                r.try_get_by_index(3).unwrap(),
            )
        })
        .collect();
    let find = |table: &str, column: &str| {
        columns
            .iter()
            .find(|c| c.0 == table && c.1 == column)
            .unwrap_or_else(|| panic!("{table}.{column} exists"))
            .clone()
    };
    assert_eq!(find("todo", "id").2, "uuid");
    assert_eq!(find("todo", "created_at").2, "timestamp with time zone");
    assert_eq!(find("todo", "item").3, 100);
    assert_eq!(find("todo", "description").3, 1024);
    assert_eq!(find("tag", "name").3, 100);
    for &table in TABLES {
        let mine: Vec<&str> = columns
            .iter()
            .filter(|c| c.0 == table)
            .map(|c| c.1.as_str())
            .collect();
        assert_eq!(mine.first(), Some(&"id"), "{table}: id first");
        assert_eq!(
            &mine[mine.len() - 2..],
            ["created_at", "updated_at"],
            "{table}: audit columns last"
        );
    }
    let index: i64 = crate::helpers::scalar_i64(
        &db,
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_todo_user_id_created_at_id'",
    )
    .await;
    assert_eq!(index, 1);
}
