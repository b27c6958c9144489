//! One registration of the entities: every entity module is registered, the registration
//! names its table, and the target schema, `TABLES` and the enum-derived checks come from it;
//! what the engine cannot represent is refused naming the column.

use std::collections::BTreeSet;

use app::db::Database;
use app::migrate;
use app::models::schema::{self, Extra};
use app::models::todo::Importance;
use app::models::{ENTITY_MODULES, TABLES, entity_table_names, todo, user_account};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveEnum, ActiveModelBehavior, ActiveModelTrait};
use strata::autodetect::{self, NoRenames};
use strata::runner::Conn;
use strata::state::{Direction, History};
use strata::{Check, Migration};

use crate::helpers::{Kind, TestDb, on_both_databases};

/// The modules of `src/models` that define a SeaORM entity.
fn entity_files() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/models");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .contains("DeriveEntityModel")
        })
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_entity_module_is_registered_once() {
    let registered: BTreeSet<String> = ENTITY_MODULES.iter().map(|m| m.to_string()).collect();
    assert_eq!(registered.len(), ENTITY_MODULES.len(), "registered twice");
    assert_eq!(
        entity_files(),
        registered,
        "an entity module is missing from register_entities! in src/models/mod.rs (or \
         registered without its file)"
    );
    for (module, table) in entity_table_names() {
        assert_eq!(module, table, "a module's name is its table's name");
    }
}

#[test]
fn the_target_schema_and_tables_come_from_the_registration() {
    let target = schema::checked_target().unwrap();
    let tables: BTreeSet<&str> = target.tables.keys().map(String::as_str).collect();
    let registered: BTreeSet<&str> = ENTITY_MODULES.iter().copied().collect();
    assert_eq!(tables, registered);
    // `TABLES`: the domain tables, in registration order (parents first).
    assert_eq!(
        TABLES,
        [
            "user_account",
            "role",
            "user_account_role",
            "tag",
            "todo",
            "user_account_todo_tag",
        ]
    );
    let order = target.tables_in_dependency_order();
    let position = |t: &str| order.iter().position(|o| *o == t).unwrap();
    for pair in TABLES.windows(2) {
        let child = &target.tables[pair[1]];
        for fk in child.foreign_keys.values() {
            assert!(position(&fk.ref_table) < position(pair[1]), "{fk:?}");
        }
    }
}

#[test]
fn the_importance_check_comes_from_the_enum() {
    let target = schema::target();
    let check = &target.tables["todo"].checks["ck_todo_importance"];
    // What the migrations hold: the app needs no new migration.
    assert_eq!(
        check.expr,
        "importance IN ('none', 'low', 'medium', 'high')"
    );
    assert_eq!(Importance::values(), ["none", "low", "medium", "high"]);
    assert!(schema::extras().contains(&Extra::enum_check::<Importance>("todo", "importance")));
}

/// An entity with what the engine cannot represent.
mod odd {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "odd")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Inet")]
        pub address: String,
        #[sea_orm(default_value = 0.5)]
        pub ratio: f64,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

#[test]
fn what_the_engine_cannot_represent_is_named() {
    let (_, problems) = schema::table_of(odd::Entity);
    let all = problems.join("\n");
    assert!(all.contains("column odd.address has type Inet"), "{all}");
    assert!(all.contains("column odd.ratio has default"), "{all}");
    assert!(all.contains("column odd.id is auto-increment"), "{all}");
    assert_eq!(problems.len(), 3, "{all}");
}

on_both_databases!(a_new_importance_is_a_migration_over_rows);

/// The app's head with one more value of `Importance` (what adding a variant does to
/// [`schema::target`]): autodetect writes the check again, and it applies over rows.
async fn a_new_importance_is_a_migration_over_rows(kind: Kind) {
    let test_db = TestDb::empty(kind).await;
    let settings = test_db.settings(&[]);
    let db = Database::connect(&settings.database).await.unwrap();
    let mut conn = migrate::connection(&db).await.unwrap();
    let app_history = migrate::history().unwrap();
    let table = settings.database.version_table.clone();
    strata::runner::run(
        &mut conn,
        &app_history,
        &table,
        Direction::Up,
        "head",
        &mut |_| {},
    )
    .await
    .unwrap();

    let mut values = Importance::values();
    values.push("urgent".to_string());
    let mut target = schema::checked_target().unwrap();
    let check = target
        .tables
        .get_mut("todo")
        .unwrap()
        .checks
        .get_mut("ck_todo_importance")
        .unwrap();
    check.expr = Check::one_of_expr("importance", &values);
    let diff = autodetect::diff(&app_history.head_schema().unwrap(), &target, &mut NoRenames);
    assert_eq!(
        autodetect::describe_differences(&diff),
        [
            "- drop check constraint ck_todo_importance on todo",
            "+ add check constraint ck_todo_importance on todo \
             (importance IN ('none', 'low', 'medium', 'high', 'urgent'))",
        ]
    );
    let head = app_history.head().unwrap().unwrap().to_string();
    let mut migrations = app_history.migrations().to_vec();
    migrations
        .push(Migration::new("0f0f0f0f0f0f", &[&head], "urgent", "t").operations(diff.operations));
    let history = History::new(migrations).unwrap();

    let mut user = user_account::ActiveModel::new();
    user.email = Set("enum@example.com".into());
    user.joined_at = Set(chrono::Utc::now().date_naive());
    let user = user.insert(db.conn()).await.unwrap();
    let mut todo_row = todo::ActiveModel::new();
    todo_row.item = Set("first".into());
    todo_row.created_time = Set(chrono::Utc::now());
    todo_row.importance = Set(Importance::High);
    todo_row.user_id = Set(user.id);
    let todo_row = todo_row.insert(db.conn()).await.unwrap();
    let set_importance = |value: &str| {
        format!(
            "UPDATE todo SET importance = '{value}' WHERE item = '{}'",
            todo_row.item
        )
    };
    assert!(conn.execute(&set_importance("urgent")).await.is_err());

    strata::runner::run(
        &mut conn,
        &history,
        &table,
        Direction::Up,
        "head",
        &mut |_| {},
    )
    .await
    .unwrap();
    conn.execute(&set_importance("urgent")).await.unwrap();
    assert!(conn.execute(&set_importance("bogus")).await.is_err());
    let expected = history.head_schema().unwrap();
    let live = match &mut conn {
        Conn::Postgres(c) => strata::introspect::postgres(c, &[&table]).await,
        Conn::Sqlite(c) => strata::introspect::sqlite(c, &[&table]).await,
    }
    .unwrap();
    let drift = strata::checks::live_drift(&mut conn, &expected, &live)
        .await
        .unwrap();
    assert!(drift.operations.is_empty(), "{drift:#?}");

    conn.execute(&set_importance("high")).await.unwrap();
    strata::runner::run(
        &mut conn,
        &history,
        &table,
        Direction::Down,
        "-1",
        &mut |_| {},
    )
    .await
    .unwrap();
    assert!(conn.execute(&set_importance("urgent")).await.is_err());
    let report = migrate::check(&db, &settings.database).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
