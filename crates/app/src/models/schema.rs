//! The schema the entities describe, as the migration engine's model, and the reference's
//! `create_all` / `drop_all` built on it.
//!
//! SeaORM's entities give columns, types, nullability, defaults, primary and foreign keys,
//! unique keys and single-column indexes. They cannot express CHECK constraints, composite
//! non-unique indexes or names of our choosing, so [`extras`] declares those beside the
//! entities and [`target`] merges both. Names follow the reference's convention: `ix_`, `uq_`,
//! `ck_`, `fk_<table>_<column>_<referred table>`.

use sea_orm::sea_query::{self, ForeignKeyAction as SqFkAction, StringLen};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Schema as OrmSchema,
    Statement, TransactionTrait,
};
use strata::{
    Check, Column, ColumnType, DefaultValue, Dialect, ForeignKey, ForeignKeyAction, Index, Schema,
    Table, Unique,
};

use super::todo;

/// Whether `create_all` may find some tables already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail if a table exists.
    Fail,
    /// Create only the tables that are missing.
    Skip,
}

/// A CHECK constraint or index the entities cannot declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// `column IN (allowed...)`, named `ck_<table>_<column>`: see [`Extra::enum_check`].
    Check {
        table: &'static str,
        column: &'static str,
        allowed: Vec<String>,
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
        Extra::enum_check::<todo::Importance>("todo", "importance"),
        // One per sort of a user's todo list, each ending in the id that breaks ties, so a
        // page (first or after a cursor) is one range of it: see domain/todo_pages.rs.
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_created_at_id",
            columns: &["user_id", "created_at", "id"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_updated_at_id",
            columns: &["user_id", "updated_at", "id"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_item_id",
            columns: &["user_id", "item", "id"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_start_time_id",
            columns: &["user_id", "start_time", "id"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_end_time_id",
            columns: &["user_id", "end_time", "id"],
        },
        Extra::Index {
            table: "todo",
            name: "ix_todo_user_id_importance_id",
            columns: &["user_id", "importance", "id"],
        },
        // The account list's order (oldest first, then id): its pages are ranges of it.
        Extra::Index {
            table: "user_account",
            name: "ix_user_account_created_at_id",
            columns: &["created_at", "id"],
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
        // The login throttle counts one key's failures within the window.
        Extra::Index {
            table: "login_failure",
            name: "ix_login_failure_account_key_created_at",
            columns: &["account_key", "created_at"],
        },
        Extra::Index {
            table: "login_failure",
            name: "ix_login_failure_address_key_created_at",
            columns: &["address_key", "created_at"],
        },
    ]
}

impl Extra {
    /// The CHECK that keeps `table.column` to the string values of the Rust enum `E` (the
    /// `string_value`s of its `DeriveActiveEnum`, in variant order): the enum is the one
    /// declaration, so adding or removing a variant changes the target schema and
    /// autogenerate writes the migration.
    pub fn enum_check<E>(table: &'static str, column: &'static str) -> Extra
    where
        E: sea_orm::ActiveEnum<Value = String>,
    {
        Extra::Check {
            table,
            column,
            allowed: E::values(),
        }
    }
}

/// The schema of the entities plus [`extras`]: what the migrations must produce at head.
///
/// A column the engine cannot represent is kept here as the closest type (so that `serve`,
/// `create_all` and `doctor` work); [`checked_target`], which autogenerate and `check` use,
/// refuses it, so it never reaches a migration.
pub fn target() -> Schema {
    build_target().0
}

/// [`target`], or every problem that keeps the entities from being migrated: a type or default
/// the engine cannot represent, or a name PostgreSQL would cut (each naming the object).
pub fn checked_target() -> Result<Schema, String> {
    let (schema, mut problems) = build_target();
    problems.extend(strata::names::too_long(&schema));
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(format!(
            "the entities cannot be migrated: {}",
            problems.join("; ")
        ))
    }
}

fn build_target() -> (Schema, Vec<String>) {
    let mut schema = Schema::new();
    let mut problems = Vec::new();
    for (table, table_problems) in super::entity_tables() {
        problems.extend(table_problems);
        schema = schema.with_table(table);
    }
    for extra in extras() {
        match extra {
            Extra::Check {
                table,
                column,
                allowed,
            } => {
                let check = Check {
                    name: format!("ck_{table}_{column}"),
                    expr: Check::one_of_expr(column, &allowed),
                };
                if let Some(t) = schema.tables.get_mut(table) {
                    t.checks.insert(check.name.clone(), check);
                }
            }
            Extra::Index {
                table,
                name,
                columns,
            } => {
                let index = Index {
                    name: name.to_string(),
                    columns: columns.iter().map(|c| (*c).to_string()).collect(),
                    unique: false,
                };
                if let Some(t) = schema.tables.get_mut(table) {
                    t.indexes.insert(index.name.clone(), index);
                }
            }
        }
    }
    (schema, problems)
}

/// One entity's table, read from SeaORM's own CREATE TABLE statement for it, with what in it
/// the engine cannot represent (each naming `table.column`).
pub fn table_of<E: EntityTrait>(entity: E) -> (Table, Vec<String>) {
    let name = entity.table_name().to_string();
    // The statement is backend-neutral data until built; PostgreSQL is as good as any.
    let orm = OrmSchema::new(DbBackend::Postgres);
    let create = orm.create_table_from_entity(entity);
    let mut table = Table::new(&name);
    let mut problems = Vec::new();
    for def in create.get_columns() {
        let column_name = def.get_column_name();
        let spec = def.get_column_spec();
        let ty = match def.get_column_type().map(column_type) {
            Some(Ok(ty)) => ty,
            Some(Err(what)) => {
                problems.push(format!(
                    "column {name}.{column_name} has type {what}, which the migration engine cannot represent"
                ));
                ColumnType::Text
            }
            None => {
                problems.push(format!("column {name}.{column_name} has no type"));
                ColumnType::Text
            }
        };
        let mut column = Column::new(&column_name, ty);
        column.nullable = spec.nullable.unwrap_or(true) && !spec.primary_key;
        column.default = match spec.default.as_ref().map(default_value) {
            None => None,
            Some(Ok(default)) => Some(default),
            Some(Err(what)) => {
                problems.push(format!(
                    "column {name}.{column_name} has default {what}, which the migration engine cannot represent"
                ));
                None
            }
        };
        if spec.auto_increment {
            problems.push(format!(
                "column {name}.{column_name} is auto-increment (an identity or serial column), which the migration engine cannot represent"
            ));
        }
        if spec.check.is_some() || spec.extra.is_some() {
            problems.push(format!(
                "column {name}.{column_name} carries a column CHECK or extra SQL, which the migration engine cannot represent (declare the CHECK in `extras`)"
            ));
        }
        if spec.generated.is_some() {
            problems.push(format!(
                "column {name}.{column_name} is generated, which the migration engine cannot represent"
            ));
        }
        column.comment = spec.comment.clone();
        if spec.primary_key {
            table.primary_key.push(column_name.clone());
        }
        if spec.unique {
            let unique = Unique {
                name: format!("uq_{name}_{column_name}"),
                columns: vec![column_name.clone()],
            };
            table.uniques.insert(unique.name.clone(), unique);
        }
        table.columns.push(column);
    }
    // Composite unique keys arrive as unique indexes of the table statement.
    for index in create.get_indexes() {
        let columns = index.get_index_spec().get_column_names();
        if index.is_unique_key() {
            let unique = Unique {
                name: format!("uq_{name}_{}", columns.join("_")),
                columns,
            };
            table.uniques.insert(unique.name.clone(), unique);
        }
    }
    // `indexed` columns, and `unique_key` groups (which SeaORM makes unique indexes; they are
    // unique constraints here, as in the reference).
    for index in orm.create_index_from_entity(entity) {
        let columns = index.get_index_spec().get_column_names();
        if index.is_unique_key() {
            let unique = Unique {
                name: format!("uq_{name}_{}", columns.join("_")),
                columns,
            };
            table.uniques.insert(unique.name.clone(), unique);
        } else {
            let index = Index {
                name: format!("ix_{name}_{}", columns.join("_")),
                unique: false,
                columns,
            };
            table.indexes.insert(index.name.clone(), index);
        }
    }
    for fk in create.get_foreign_key_create_stmts() {
        let fk = fk.get_foreign_key();
        let columns = fk.get_columns();
        let ref_table = fk.get_ref_table().map(table_ref_name).unwrap_or_default();
        let foreign_key = ForeignKey {
            name: format!("fk_{name}_{}_{ref_table}", columns.join("_")),
            columns,
            ref_table,
            ref_columns: fk.get_ref_columns(),
            on_delete: fk.get_on_delete().map(fk_action).unwrap_or_default(),
            on_update: fk.get_on_update().map(fk_action).unwrap_or_default(),
        };
        table
            .foreign_keys
            .insert(foreign_key.name.clone(), foreign_key);
    }
    (table, problems)
}

fn table_ref_name(table: &sea_query::TableRef) -> String {
    use sea_query::TableRef;
    match table {
        TableRef::Table(name, _) => name.1.to_string(),
        other => format!("{other:?}"),
    }
}

/// The engine's type for a SeaORM column type, or the type's name when the engine has none
/// (arrays, native enums, network types, ...): never a silent `text`.
fn column_type(ty: &sea_query::ColumnType) -> Result<ColumnType, String> {
    use sea_query::ColumnType as Sq;
    Ok(match ty {
        Sq::Char(n) => ColumnType::String(*n),
        Sq::String(StringLen::N(n)) => ColumnType::String(Some(*n)),
        Sq::String(_) => ColumnType::String(None),
        Sq::Text => ColumnType::Text,
        Sq::TinyInteger | Sq::SmallInteger | Sq::TinyUnsigned => ColumnType::SmallInteger,
        Sq::Integer | Sq::SmallUnsigned => ColumnType::Integer,
        Sq::BigInteger | Sq::Unsigned | Sq::BigUnsigned => ColumnType::BigInteger,
        Sq::Float => ColumnType::Real,
        Sq::Double => ColumnType::Double,
        Sq::Decimal(Some((p, s))) | Sq::Money(Some((p, s))) => ColumnType::Decimal(*p, *s),
        Sq::Decimal(None) | Sq::Money(None) => ColumnType::Decimal(38, 10),
        Sq::DateTime | Sq::Timestamp => ColumnType::Timestamp,
        Sq::TimestampWithTimeZone => ColumnType::TimestampTz,
        Sq::Time => ColumnType::Time,
        Sq::Date => ColumnType::Date,
        Sq::Boolean => ColumnType::Boolean,
        Sq::Json => ColumnType::Json,
        Sq::JsonBinary => ColumnType::JsonBinary,
        Sq::Uuid => ColumnType::Uuid,
        Sq::Binary(_) | Sq::VarBinary(_) | Sq::Blob => ColumnType::Binary,
        Sq::Array(inner) => return Err(format!("array of {inner:?}")),
        Sq::Enum { name, .. } => return Err(format!("native enum {name}")),
        other => return Err(format!("{other:?}")),
    })
}

/// The engine's default for a SeaORM default expression, or the expression when the engine
/// cannot represent it (a float, decimal or UUID literal, a function call ...): never dropped.
fn default_value(expr: &sea_query::Expr) -> Result<DefaultValue, String> {
    use sea_query::{Expr, Keyword, Value};
    match expr {
        Expr::Value(value) | Expr::Constant(value) => match value {
            Value::Bool(Some(b)) => Ok(DefaultValue::Bool(*b)),
            Value::TinyInt(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::SmallInt(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::Int(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::BigInt(Some(i)) => Ok(DefaultValue::Int(*i)),
            Value::TinyUnsigned(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::SmallUnsigned(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::Unsigned(Some(i)) => Ok(DefaultValue::Int(i64::from(*i))),
            Value::String(Some(s)) => Ok(DefaultValue::Str(s.clone())),
            other => Err(format!("{other:?}")),
        },
        Expr::Keyword(Keyword::CurrentTimestamp) => {
            Ok(DefaultValue::Expr("CURRENT_TIMESTAMP".into()))
        }
        Expr::Keyword(Keyword::CurrentDate) => Ok(DefaultValue::Expr("CURRENT_DATE".into())),
        Expr::Custom(sql) => Ok(DefaultValue::Expr(sql.to_string())),
        other => Err(format!("{other:?}")),
    }
}

fn fk_action(action: SqFkAction) -> ForeignKeyAction {
    match action {
        SqFkAction::Cascade => ForeignKeyAction::Cascade,
        SqFkAction::Restrict => ForeignKeyAction::Restrict,
        SqFkAction::SetNull => ForeignKeyAction::SetNull,
        SqFkAction::SetDefault => ForeignKeyAction::SetDefault,
        _ => ForeignKeyAction::NoAction,
    }
}

/// The engine's dialect for a SeaORM backend.
pub fn dialect(backend: DbBackend) -> Dialect {
    match backend {
        DbBackend::Postgres => Dialect::Postgres,
        _ => Dialect::Sqlite,
    }
}

/// The DDL of the whole target schema for one dialect, parents first.
pub fn create_statements(dialect: Dialect) -> Vec<String> {
    strata::render::render_schema(&target(), dialect)
}

/// Creates every table, index and constraint of [`target`] in one transaction.
#[tracing::instrument(skip(db))]
pub async fn create_all(db: &DatabaseConnection, existing: Existing) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut schema = target();
    if existing == Existing::Skip {
        let present = existing_tables(db).await?;
        schema.tables.retain(|name, _| !present.contains(name));
    }
    let statements = strata::render::render_schema(&schema, dialect(backend));
    let txn = db.begin().await?;
    for sql in statements {
        txn.execute_raw(Statement::from_string(backend, sql))
            .await?;
    }
    txn.commit().await?;
    tracing::info!(tables = schema.tables.len(), "schema created");
    Ok(())
}

/// Drops every table of [`target`], children first, in one transaction.
#[tracing::instrument(skip(db))]
pub async fn drop_all(db: &DatabaseConnection) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let schema = target();
    let txn = db.begin().await?;
    for name in schema.tables_in_dependency_order().iter().rev() {
        let sql = format!("DROP TABLE IF EXISTS {}", strata::render::quote_ident(name));
        txn.execute_raw(Statement::from_string(backend, sql))
            .await?;
    }
    txn.commit().await?;
    tracing::info!("schema dropped");
    Ok(())
}

/// The tables of the target schema that the database lacks.
pub async fn missing_tables(db: &DatabaseConnection) -> Result<Vec<&'static str>, DbErr> {
    let present = existing_tables(db).await?;
    Ok(super::TABLES
        .iter()
        .copied()
        .filter(|table| !present.iter().any(|p| p == table))
        .collect())
}

/// The names of the user tables in the database.
pub async fn existing_tables<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}
