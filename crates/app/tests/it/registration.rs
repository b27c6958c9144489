//! One registration of the entities: every entity module is registered, the registration
//! names its table, and the target schema, `TABLES` and the enum-derived checks come from it;
//! what the engine cannot represent is refused naming the column.

use std::collections::BTreeSet;

use app::models::schema::{self, Extra};
use app::models::todo::Importance;
use app::models::{ENTITY_MODULES, TABLES, entity_table_names};
use sea_orm::ActiveEnum;

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
