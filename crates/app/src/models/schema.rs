//! Creating and dropping the whole schema from the entities (the reference's
//! `create_all` / `drop_all`), for tests and for an empty development database.
//!
//! SeaORM's entities cannot express CHECK constraints or composite non-unique indexes, so
//! [`extras`] declares them beside the entities and both are applied together.

use sea_orm::sea_query::{Check, Expr, Index, IndexCreateStatement, Table, TableCreateStatement};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, ExprTrait, Schema,
    TransactionTrait,
};

use super::{role, tag, todo, user_account, user_account_role, user_account_todo_tag};

/// Whether `create_all` may find some tables already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail if a table exists.
    Fail,
    /// Create only what is missing (`IF NOT EXISTS`).
    Skip,
}

/// A CHECK constraint or index the entities cannot declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    Check {
        table: &'static str,
        name: &'static str,
        column: &'static str,
        allowed: &'static [&'static str],
    },
    Index {
        table: &'static str,
        name: &'static str,
        columns: &'static [&'static str],
    },
}

/// The CHECK constraints and indexes declared beside the entities.
pub fn extras() -> Vec<Extra> {
    vec![
        Extra::Check {
            table: "todo",
            name: "ck_todo_importance",
            column: "importance",
            allowed: &["none", "low", "medium", "high"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_created_at",
            columns: &["user_id", "created_at"],
        },
        // Foreign keys used by cascades; PostgreSQL does not index them by itself.
        Extra::Index {
            table: "user_account_role",
            name: "ix_user_account_role_role_id",
            columns: &["role_id"],
        },
        Extra::Index {
            table: "user_account_todo_tag",
            name: "ix_user_account_todo_tag_tag_id",
            columns: &["tag_id"],
        },
    ]
}

/// The DDL of the whole schema for one backend, parents first.
pub fn create_statements(backend: DbBackend, existing: Existing) -> Vec<String> {
    let schema = Schema::new(backend);
    let mut tables = vec![
        table_with_indexes(&schema, user_account::Entity),
        table_with_indexes(&schema, role::Entity),
        table_with_indexes(&schema, user_account_role::Entity),
        table_with_indexes(&schema, tag::Entity),
        table_with_indexes(&schema, todo::Entity),
        table_with_indexes(&schema, user_account_todo_tag::Entity),
    ];
    let extras = extras();
    let mut statements = Vec::new();
    for (name, table, indexes) in &mut tables {
        let name = *name;
        for extra in &extras {
            if let Extra::Check {
                table: t,
                name: check,
                column,
                allowed,
            } = extra
                && *t == name
            {
                table.check(Check::named(
                    *check,
                    Expr::col(*column).is_in(allowed.iter().copied()),
                ));
            }
        }
        for extra in &extras {
            if let Extra::Index {
                table: t,
                name: index,
                columns,
            } = extra
                && *t == name
            {
                let mut stmt = Index::create();
                stmt.name(*index).table(*t);
                for column in *columns {
                    stmt.col(*column);
                }
                indexes.push(stmt);
            }
        }
        if existing == Existing::Skip {
            table.if_not_exists();
            for index in indexes.iter_mut() {
                index.if_not_exists();
            }
        }
        statements.push(backend.build(&*table).to_string());
        statements.extend(indexes.iter().map(|index| backend.build(index).to_string()));
    }
    statements
}

fn table_with_indexes<E: EntityTrait>(
    schema: &Schema,
    entity: E,
) -> (
    &'static str,
    TableCreateStatement,
    Vec<IndexCreateStatement>,
) {
    (
        entity.table_name(),
        schema.create_table_from_entity(entity),
        schema.create_index_from_entity(entity),
    )
}

/// Creates every table, index and constraint in one transaction.
#[tracing::instrument(skip(db))]
pub async fn create_all(db: &DatabaseConnection, existing: Existing) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let statements = create_statements(backend, existing);
    let txn = db.begin().await?;
    for sql in statements {
        txn.execute_raw(sea_orm::Statement::from_string(backend, sql))
            .await?;
    }
    txn.commit().await?;
    tracing::info!(tables = super::TABLES.len(), "schema created");
    Ok(())
}

/// Drops every table, children first, in one transaction.
#[tracing::instrument(skip(db))]
pub async fn drop_all(db: &DatabaseConnection) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    for name in super::TABLES.iter().rev() {
        let stmt = Table::drop().table(*name).if_exists().to_owned();
        txn.execute_unprepared(&backend.build(&stmt).to_string())
            .await?;
    }
    txn.commit().await?;
    tracing::info!("schema dropped");
    Ok(())
}

/// The tables of the schema that the database lacks.
pub async fn missing_tables(db: &DatabaseConnection) -> Result<Vec<&'static str>, DbErr> {
    let present = existing_tables(db).await?;
    Ok(super::TABLES
        .iter()
        .copied()
        .filter(|table| !present.iter().any(|p| p == table))
        .collect())
}

/// The names of the user tables in the database.
pub async fn existing_tables(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}
