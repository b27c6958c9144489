//! PostgreSQL introspection from `pg_catalog`.
//!
//! Every query runs as sqlx's unnamed statement (`persistent(false)`): a named one stays on
//! the server connection, and through a transaction pooler the next client of that connection
//! meets the name (`prepared statement "sqlx_s_3" already exists`); sqlx names statements
//! even with its cache off.

use sqlx::postgres::types::Oid;
use sqlx::{PgConnection, Row};

use super::{IntrospectError, check_body, normalize_default, parse_type, skipped};
use crate::schema::{Check, Column, ForeignKey, ForeignKeyAction, Index, Schema, Table, Unique};

const TABLES: &str = "\
SELECT c.oid, c.relname::text AS name, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname";

const COLUMNS: &str = "\
SELECT a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS ty,
       a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS dflt,
       col_description(a.attrelid, a.attnum) AS comment,
       a.attidentity::text AS identity,
       a.attgenerated::text AS generated
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const CONSTRAINTS: &str = "\
SELECT con.conname::text AS name,
       con.contype::text AS kind,
       ARRAY(SELECT a.attname::text
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       ref.relname::text AS ref_table,
       ARRAY(SELECT a.attname::text
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns,
       con.confdeltype::text AS on_delete,
       con.confupdtype::text AS on_update,
       pg_get_constraintdef(con.oid) AS def
FROM pg_constraint con
LEFT JOIN pg_class ref ON ref.oid = con.confrelid
WHERE con.conrelid = $1 AND con.contype IN ('p', 'u', 'c', 'f')
ORDER BY con.conname";

/// B-tree indexes that back no primary key, unique or exclusion constraint. Expression
/// entries are given as PostgreSQL prints them; `INCLUDE` columns are left out. The model
/// describes b-tree indexes only: others (a trigram GIN index made by raw SQL) stay outside
/// it, as exclusion constraints do.
const INDEXES: &str = "\
SELECT ic.relname::text AS name,
       i.indisunique AS is_unique,
       ARRAY(SELECT CASE WHEN k.attnum = 0
                         THEN pg_get_indexdef(i.indexrelid, k.ord::int, true)
                         ELSE a.attname::text END
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts
             ORDER BY k.ord) AS columns
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = $1
  AND ic.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
  AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                  WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                    AND con.contype IN ('p', 'u', 'x'))
ORDER BY ic.relname";

/// Reads every base table of `current_schema()` into a [`Schema`], skipping the names in
/// `exclude` (such as the migration version table) and any `_strata_*` table.
///
/// Constraint and index names, column types, defaults (normalized, see the module docs),
/// foreign key actions and comments round-trip exactly. [`Check::expr`] is PostgreSQL's
/// rewrite of the expression (`pg_get_constraintdef` without `CHECK (` and `)`, e.g.
/// `(rank >= 0)`), not the text the check was created with: compare checks read from
/// PostgreSQL by name only.
pub async fn postgres(
    conn: &mut PgConnection,
    exclude: &[&str],
) -> Result<Schema, IntrospectError> {
    let tables = sqlx::query(TABLES)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    let mut schema = Schema::new();
    for row in tables {
        let oid: Oid = row.try_get("oid")?;
        let name: String = row.try_get("name")?;
        if skipped(&name, exclude) {
            continue;
        }
        let mut table = Table::new(&name);
        table.comment = row.try_get("comment")?;
        read_columns(conn, oid, &mut table).await?;
        read_constraints(conn, oid, &mut table).await?;
        read_indexes(conn, oid, &mut table).await?;
        schema = schema.with_table(table);
    }
    Ok(schema)
}

async fn read_columns(
    conn: &mut PgConnection,
    oid: Oid,
    table: &mut Table,
) -> Result<(), IntrospectError> {
    let rows = sqlx::query(COLUMNS)
        .bind(oid)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let raw_type: String = row.try_get("ty")?;
        let Some(ty) = parse_type(&raw_type) else {
            return Err(IntrospectError::UnknownType {
                table: table.name.clone(),
                column: name,
                ty: raw_type,
            });
        };
        // The model has no identity or generated columns: read as plain columns they would
        // compare equal to the migrations and be lost in any rebuild or copy.
        let identity: String = row.try_get("identity")?;
        let generated: String = row.try_get("generated")?;
        if !identity.is_empty() || !generated.is_empty() {
            return Err(IntrospectError::Unsupported {
                table: table.name.clone(),
                detail: format!(
                    "column {}.{name} is {}, which the engine cannot represent",
                    table.name,
                    if identity.is_empty() {
                        "a generated column"
                    } else {
                        "an identity column"
                    }
                ),
            });
        }
        let default = row
            .try_get::<Option<String>, _>("dflt")?
            .and_then(|raw| normalize_default(&raw, &ty));
        let not_null: bool = row.try_get("not_null")?;
        table.columns.push(Column {
            name,
            ty,
            nullable: !not_null,
            default,
            comment: row.try_get("comment")?,
        });
    }
    Ok(())
}

fn action(code: &str, table: &str) -> Result<ForeignKeyAction, IntrospectError> {
    Ok(match code {
        "a" => ForeignKeyAction::NoAction,
        "r" => ForeignKeyAction::Restrict,
        "c" => ForeignKeyAction::Cascade,
        "n" => ForeignKeyAction::SetNull,
        "d" => ForeignKeyAction::SetDefault,
        other => {
            return Err(IntrospectError::Unsupported {
                table: table.to_string(),
                detail: format!("unknown foreign key action code {other:?}"),
            });
        }
    })
}

async fn read_constraints(
    conn: &mut PgConnection,
    oid: Oid,
    table: &mut Table,
) -> Result<(), IntrospectError> {
    let rows = sqlx::query(CONSTRAINTS)
        .bind(oid)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let kind: String = row.try_get("kind")?;
        let columns: Vec<String> = row.try_get("columns")?;
        match kind.as_str() {
            "p" => table.primary_key = columns,
            "u" => {
                table.uniques.insert(name.clone(), Unique { name, columns });
            }
            "c" => {
                let def: String = row.try_get("def")?;
                let expr = check_body(&def);
                table.checks.insert(name.clone(), Check { name, expr });
            }
            _ => {
                let on_delete = action(&row.try_get::<String, _>("on_delete")?, &table.name)?;
                let on_update = action(&row.try_get::<String, _>("on_update")?, &table.name)?;
                let fk = ForeignKey {
                    name: name.clone(),
                    columns,
                    ref_table: row
                        .try_get::<Option<String>, _>("ref_table")?
                        .unwrap_or_default(),
                    ref_columns: row.try_get("ref_columns")?,
                    on_delete,
                    on_update,
                };
                table.foreign_keys.insert(name, fk);
            }
        }
    }
    Ok(())
}

async fn read_indexes(
    conn: &mut PgConnection,
    oid: Oid,
    table: &mut Table,
) -> Result<(), IntrospectError> {
    let rows = sqlx::query(INDEXES)
        .bind(oid)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let index = Index {
            name: name.clone(),
            columns: row.try_get("columns")?,
            unique: row.try_get("is_unique")?,
        };
        table.indexes.insert(name, index);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::*;
    use crate::schema::{ColumnType::*, DefaultValue};
    use crate::testing::PostgresDatabase;

    /// Runs `ddl` in a fresh database and introspects it; the database goes with the test.
    async fn introspect(ddl: &'static str, exclude: &[&str]) -> Result<Schema, IntrospectError> {
        let db = PostgresDatabase::create().await;
        let mut conn = db.connect().await;
        conn.execute(sqlx::raw_sql(ddl)).await?;
        let schema = postgres(&mut conn, exclude).await;
        conn.close().await?;
        schema
    }

    const DDL: &str = r#"
CREATE TABLE "accounts" (
    "id" uuid NOT NULL DEFAULT gen_random_uuid(),
    "email" varchar(255) NOT NULL,
    "nickname" varchar,
    "bio" text,
    "active" boolean NOT NULL DEFAULT true,
    "banned" boolean NOT NULL DEFAULT false,
    "rank" smallint NOT NULL DEFAULT 0,
    "logins" integer NOT NULL DEFAULT -5,
    "karma" bigint NOT NULL DEFAULT 42,
    "score" real,
    "ratio" double precision,
    "balance" numeric(12, 2) NOT NULL DEFAULT 0,
    "born" date,
    "wakes" time,
    "seen" timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created" timestamptz NOT NULL DEFAULT now(),
    "prefs" json,
    "extra" jsonb NOT NULL DEFAULT '{}',
    "avatar" bytea,
    "status" varchar(20) NOT NULL DEFAULT 'it''s new',
    PRIMARY KEY ("id"),
    CONSTRAINT "uq_accounts_email" UNIQUE ("email"),
    CONSTRAINT "ck_accounts_rank" CHECK ("rank" >= 0)
);
CREATE TABLE "memberships" (
    "account_id" uuid NOT NULL,
    "team" integer NOT NULL,
    "inviter_id" uuid,
    "role" text NOT NULL DEFAULT 'member',
    PRIMARY KEY ("account_id", "team"),
    CONSTRAINT "fk_memberships_account" FOREIGN KEY ("account_id") REFERENCES "accounts" ("id") ON DELETE CASCADE,
    CONSTRAINT "uq_memberships_team_role" UNIQUE ("team", "role")
);
ALTER TABLE "memberships" ADD CONSTRAINT "fk_memberships_inviter" FOREIGN KEY ("inviter_id") REFERENCES "accounts" ("id") ON DELETE SET NULL ON UPDATE CASCADE;
CREATE UNIQUE INDEX "ix_accounts_nickname" ON "accounts" ("nickname");
CREATE INDEX "ix_memberships_role_team" ON "memberships" ("role", "team");
COMMENT ON TABLE "accounts" IS 'People who sign in';
COMMENT ON COLUMN "accounts"."email" IS 'Login address';
CREATE TABLE "strata_versions" ("version" text PRIMARY KEY);
CREATE TABLE "_strata_lock" ("id" integer);
"#;

    fn expected() -> Schema {
        let accounts = Table::new("accounts")
            .with_column(
                Column::new("id", Uuid).default(DefaultValue::Expr("gen_random_uuid()".into())),
            )
            .with_column(Column::new("email", String(Some(255))).comment("Login address"))
            .with_column(Column::new("nickname", String(None)).nullable())
            .with_column(Column::new("bio", Text).nullable())
            .with_column(Column::new("active", Boolean).default(DefaultValue::Bool(true)))
            .with_column(Column::new("banned", Boolean).default(DefaultValue::Bool(false)))
            .with_column(Column::new("rank", SmallInteger).default(DefaultValue::Int(0)))
            .with_column(Column::new("logins", Integer).default(DefaultValue::Int(-5)))
            .with_column(Column::new("karma", BigInteger).default(DefaultValue::Int(42)))
            .with_column(Column::new("score", Real).nullable())
            .with_column(Column::new("ratio", Double).nullable())
            .with_column(Column::new("balance", Decimal(12, 2)).default(DefaultValue::Int(0)))
            .with_column(Column::new("born", Date).nullable())
            .with_column(Column::new("wakes", Time).nullable())
            .with_column(
                Column::new("seen", Timestamp)
                    .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into())),
            )
            .with_column(
                Column::new("created", TimestampTz).default(DefaultValue::Expr("now()".into())),
            )
            .with_column(Column::new("prefs", Json).nullable())
            .with_column(Column::new("extra", JsonBinary).default(DefaultValue::Str("{}".into())))
            .with_column(Column::new("avatar", Binary).nullable())
            .with_column(
                Column::new("status", String(Some(20)))
                    .default(DefaultValue::Str("it's new".into())),
            )
            .with_primary_key(["id"])
            .with_unique(Unique {
                name: "uq_accounts_email".into(),
                columns: vec!["email".into()],
            })
            .with_check(Check {
                name: "ck_accounts_rank".into(),
                expr: "(rank >= 0)".into(),
            })
            .with_index(Index {
                name: "ix_accounts_nickname".into(),
                columns: vec!["nickname".into()],
                unique: true,
            })
            .with_comment("People who sign in");
        let fk = |name: &str, column: &str, on_delete, on_update| ForeignKey {
            name: name.into(),
            columns: vec![column.into()],
            ref_table: "accounts".into(),
            ref_columns: vec!["id".into()],
            on_delete,
            on_update,
        };
        let memberships = Table::new("memberships")
            .with_column(Column::new("account_id", Uuid))
            .with_column(Column::new("team", Integer))
            .with_column(Column::new("inviter_id", Uuid).nullable())
            .with_column(Column::new("role", Text).default(DefaultValue::Str("member".into())))
            .with_primary_key(["account_id", "team"])
            .with_foreign_key(fk(
                "fk_memberships_account",
                "account_id",
                ForeignKeyAction::Cascade,
                ForeignKeyAction::NoAction,
            ))
            .with_foreign_key(fk(
                "fk_memberships_inviter",
                "inviter_id",
                ForeignKeyAction::SetNull,
                ForeignKeyAction::Cascade,
            ))
            .with_unique(Unique {
                name: "uq_memberships_team_role".into(),
                columns: vec!["team".into(), "role".into()],
            })
            .with_index(Index {
                name: "ix_memberships_role_team".into(),
                columns: vec!["role".into(), "team".into()],
                unique: false,
            });
        Schema::new().with_table(accounts).with_table(memberships)
    }

    #[tokio::test]
    async fn reads_back_the_rendered_schema() {
        let schema = introspect(DDL, &["strata_versions"]).await.unwrap();
        assert_eq!(schema, expected());
    }

    #[tokio::test]
    async fn excluded_tables_are_skipped() {
        let schema = introspect(DDL, &["strata_versions", "memberships"])
            .await
            .unwrap();
        let names: Vec<&str> = schema.tables.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accounts"]);
        let schema = introspect(DDL, &[]).await.unwrap();
        let names: Vec<&str> = schema.tables.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accounts", "memberships", "strata_versions"]);
    }

    #[tokio::test]
    async fn unknown_type_is_an_error() {
        let err = introspect(r#"CREATE TABLE "shapes" ("id" integer, "at" point);"#, &[])
            .await
            .unwrap_err();
        match err {
            IntrospectError::UnknownType { table, column, ty } => {
                assert_eq!(
                    (table.as_str(), column.as_str(), ty.as_str()),
                    ("shapes", "at", "point")
                );
            }
            other => panic!("unexpected error {other}"),
        }
    }
}
