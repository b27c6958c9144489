//! SQLite introspection from `sqlite_master` and the table-valued PRAGMA functions.
//!
//! SQLite keeps no names for UNIQUE, CHECK and FOREIGN KEY constraints, and no CHECK
//! expressions outside the table's `CREATE TABLE` text; those come from parsing that text
//! and are matched to the PRAGMA results by their columns. Constraints without a name get
//! `uq_<table>_<cols>`, `fk_<table>_<cols>` and `ck_<table>_<n>` (columns joined by `_`, `n`
//! counting the unnamed checks from 1 in the order written).

use sqlx::{Row, SqliteConnection};

use super::{
    IntrospectError, Kind, Token, group_after, normalize_default, parse_type, skipped,
    split_top_level, tokenize,
};
use crate::schema::{Check, Column, ForeignKey, ForeignKeyAction, Index, Schema, Table, Unique};

/// Ordinary tables only: a virtual table (such as an FTS5 index made by raw SQL) and the
/// shadow tables that hold its data are outside the model, as triggers are.
const TABLES: &str = r"SELECT m.name, m.sql FROM sqlite_master m
JOIN pragma_table_list t ON t.schema = 'main' AND t.name = m.name AND t.type = 'table'
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY m.name";

const COLUMNS: &str = r#"SELECT name, type, "notnull", dflt_value, pk
FROM pragma_table_info(?1) ORDER BY cid"#;

const INDEX_LIST: &str =
    r#"SELECT name, "unique", origin FROM pragma_index_list(?1) ORDER BY name"#;

const INDEX_INFO: &str = "SELECT name FROM pragma_index_info(?1) ORDER BY seqno";

const INDEX_SQL: &str = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1";

const FOREIGN_KEYS: &str = r#"SELECT id, "table", "from", "to", on_update, on_delete
FROM pragma_foreign_key_list(?1) ORDER BY id, seq"#;

/// Reads every table of the `main` schema into a [`Schema`], skipping the names in
/// `exclude` (such as the migration version table), SQLite's own `sqlite_*` tables, any
/// `_strata_*` table, and virtual tables with their shadow tables.
///
/// Names of constraints and CHECK expressions come from the `CREATE TABLE` text, exactly as
/// written. SQLite has no comments, so `comment` is always `None`.
pub async fn sqlite(
    conn: &mut SqliteConnection,
    exclude: &[&str],
) -> Result<Schema, IntrospectError> {
    let tables = sqlx::query(TABLES).fetch_all(&mut *conn).await?;
    let mut schema = Schema::new();
    for row in tables {
        let name: String = row.try_get("name")?;
        if skipped(&name, exclude) {
            continue;
        }
        let sql: Option<String> = row.try_get("sql")?;
        super::unrepresentable::refuse_sqlite(conn, &name, sql.as_deref().unwrap_or_default())
            .await?;
        let parsed = parse_create_table(sql.as_deref().unwrap_or_default());
        let mut table = Table::new(&name);
        read_columns(conn, &mut table).await?;
        read_indexes(conn, &mut table, &parsed).await?;
        read_foreign_keys(conn, &mut table, &parsed).await?;
        let mut unnamed = 0;
        for check in parsed.checks {
            let name = check.name.unwrap_or_else(|| {
                unnamed += 1;
                format!("ck_{}_{unnamed}", table.name)
            });
            table.checks.insert(
                name.clone(),
                Check {
                    name,
                    expr: check.expr,
                },
            );
        }
        schema = schema.with_table(table);
    }
    Ok(schema)
}

async fn read_columns(
    conn: &mut SqliteConnection,
    table: &mut Table,
) -> Result<(), IntrospectError> {
    let rows = sqlx::query(COLUMNS)
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await?;
    let mut key: Vec<(i64, String)> = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let raw_type: String = row.try_get("type")?;
        let Some(ty) = parse_type(&raw_type) else {
            return Err(IntrospectError::UnknownType {
                table: table.name.clone(),
                column: name,
                ty: raw_type,
            });
        };
        let default = row
            .try_get::<Option<String>, _>("dflt_value")?
            .and_then(|raw| normalize_default(&raw, &ty));
        let pk: i64 = row.try_get("pk")?;
        if pk > 0 {
            key.push((pk, name.clone()));
        }
        table.columns.push(Column {
            name,
            ty,
            nullable: row.try_get::<i64, _>("notnull")? == 0,
            default,
            comment: None,
        });
    }
    key.sort();
    table.primary_key = key.into_iter().map(|(_, name)| name).collect();
    Ok(())
}

/// Unique constraints (origin `u`) and indexes made with `CREATE INDEX` (origin `c`).
async fn read_indexes(
    conn: &mut SqliteConnection,
    table: &mut Table,
    parsed: &ParsedTable,
) -> Result<(), IntrospectError> {
    let list = sqlx::query(INDEX_LIST)
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await?;
    let mut used = vec![false; parsed.uniques.len()];
    for row in list {
        let name: String = row.try_get("name")?;
        let origin: String = row.try_get("origin")?;
        if origin == "pk" || (origin == "c" && name.starts_with("sqlite_autoindex_")) {
            continue;
        }
        let mut names: Vec<Option<String>> = sqlx::query_scalar(INDEX_INFO)
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?;
        if names.iter().any(Option::is_none) {
            // Expression (or rowid) entries have no name: take them as written.
            let sql: Option<String> = sqlx::query_scalar(INDEX_SQL)
                .bind(&name)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
            let written = index_entries(sql.as_deref().unwrap_or_default());
            for (i, entry) in names.iter_mut().enumerate() {
                if entry.is_none() {
                    *entry = Some(written.get(i).cloned().unwrap_or_default());
                }
            }
        }
        let columns: Vec<String> = names.into_iter().map(Option::unwrap_or_default).collect();
        if origin == "u" {
            let found = parsed
                .uniques
                .iter()
                .enumerate()
                .find(|(i, u)| !used[*i] && same_columns(&u.columns, &columns));
            let name = match found {
                Some((i, u)) => {
                    used[i] = true;
                    u.name.clone()
                }
                None => None,
            }
            .unwrap_or_else(|| format!("uq_{}_{}", table.name, columns.join("_")));
            table.uniques.insert(name.clone(), Unique { name, columns });
        } else {
            let unique = row.try_get::<i64, _>("unique")? != 0;
            table.indexes.insert(
                name.clone(),
                Index {
                    name,
                    columns,
                    unique,
                },
            );
        }
    }
    Ok(())
}

async fn read_foreign_keys(
    conn: &mut SqliteConnection,
    table: &mut Table,
    parsed: &ParsedTable,
) -> Result<(), IntrospectError> {
    let rows = sqlx::query(FOREIGN_KEYS)
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await?;
    // Rows of one key share an id and come in key order.
    let mut groups: Vec<(i64, Vec<sqlx::sqlite::SqliteRow>)> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        match groups.last_mut() {
            Some((last, members)) if *last == id => members.push(row),
            _ => groups.push((id, vec![row])),
        }
    }
    // SQLite numbers keys from the last one written; walk them in written order.
    groups.reverse();
    let mut used = vec![false; parsed.foreign_keys.len()];
    for (_, members) in groups {
        let first = &members[0];
        let ref_table: String = first.try_get("table")?;
        let on_delete = fk_action(&first.try_get::<String, _>("on_delete")?, &table.name)?;
        let on_update = fk_action(&first.try_get::<String, _>("on_update")?, &table.name)?;
        let mut columns = Vec::new();
        let mut ref_columns = Vec::new();
        for row in &members {
            columns.push(row.try_get::<String, _>("from")?);
            ref_columns.push(row.try_get::<Option<String>, _>("to")?);
        }
        let ref_columns = if ref_columns.iter().all(Option::is_some) {
            ref_columns.into_iter().flatten().collect()
        } else {
            // `REFERENCES t` without columns points at t's primary key.
            referenced_key(conn, &table.name, &ref_table).await?
        };
        let found = parsed.foreign_keys.iter().enumerate().find(|(i, fk)| {
            !used[*i]
                && same_columns(&fk.columns, &columns)
                && fk.ref_table.eq_ignore_ascii_case(&ref_table)
        });
        let name = match found {
            Some((i, fk)) => {
                used[i] = true;
                fk.name.clone()
            }
            None => None,
        }
        .unwrap_or_else(|| format!("fk_{}_{}", table.name, columns.join("_")));
        table.foreign_keys.insert(
            name.clone(),
            ForeignKey {
                name,
                columns,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
            },
        );
    }
    Ok(())
}

async fn referenced_key(
    conn: &mut SqliteConnection,
    table: &str,
    ref_table: &str,
) -> Result<Vec<String>, IntrospectError> {
    let key: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
            .bind(ref_table)
            .fetch_all(&mut *conn)
            .await?;
    if key.is_empty() {
        return Err(IntrospectError::Unsupported {
            table: table.to_string(),
            detail: format!(
                "foreign key to {ref_table} names no columns and {ref_table} has no primary key"
            ),
        });
    }
    Ok(key)
}

fn fk_action(text: &str, table: &str) -> Result<ForeignKeyAction, IntrospectError> {
    ForeignKeyAction::parse(text).ok_or_else(|| IntrospectError::Unsupported {
        table: table.to_string(),
        detail: format!("unknown foreign key action {text:?}"),
    })
}

/// SQLite identifiers are case-insensitive (ASCII).
fn same_columns(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// What the `CREATE TABLE` text tells beyond the PRAGMAs.
#[derive(Debug, Default, PartialEq)]
struct ParsedTable {
    uniques: Vec<ParsedKey>,
    foreign_keys: Vec<ParsedKey>,
    checks: Vec<ParsedCheck>,
}

/// A UNIQUE or FOREIGN KEY constraint as written; `ref_table` is empty for uniques.
#[derive(Debug, PartialEq)]
struct ParsedKey {
    name: Option<String>,
    columns: Vec<String>,
    ref_table: String,
}

#[derive(Debug, PartialEq)]
struct ParsedCheck {
    name: Option<String>,
    expr: String,
}

/// Finds the UNIQUE, CHECK and FOREIGN KEY constraints of a `CREATE TABLE` statement, table
/// constraints and column constraints alike, with their `CONSTRAINT <name>` when given.
fn parse_create_table(sql: &str) -> ParsedTable {
    let tokens = tokenize(sql);
    let mut parsed = ParsedTable::default();
    let Some((body, _)) = group_after(&tokens, 0) else {
        return parsed;
    };
    for def in split_top_level(body) {
        let Some(first) = def.first() else { continue };
        let table_constraint = ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
            .iter()
            .any(|k| first.is_keyword(k));
        let column = if table_constraint {
            None
        } else {
            first.ident().map(str::to_string)
        };
        let mut name: Option<String> = None;
        let mut i = usize::from(column.is_some());
        while i < def.len() {
            let t = &def[i];
            if t.kind == Kind::Open {
                // A group nothing claimed (type arguments, a DEFAULT expression...).
                i = super::matching_close(def, i).unwrap_or(def.len()) + 1;
                continue;
            }
            if t.is_keyword("CONSTRAINT") {
                name = def.get(i + 1).and_then(Token::ident).map(str::to_string);
                i += 2;
                continue;
            }
            if t.is_keyword("CHECK") {
                if let Some((inner, close)) = group_after(def, i + 1) {
                    let expr = match (inner.first(), inner.last()) {
                        (Some(a), Some(b)) => sql[a.start..b.end].to_string(),
                        _ => String::new(),
                    };
                    parsed.checks.push(ParsedCheck {
                        name: name.take(),
                        expr,
                    });
                    i = close + 1;
                    continue;
                }
            } else if t.is_keyword("UNIQUE") {
                let (columns, next) = match &column {
                    Some(c) => (vec![c.clone()], i + 1),
                    None => match group_after(def, i + 1) {
                        Some((inner, close)) => (column_list(inner), close + 1),
                        None => (Vec::new(), i + 1),
                    },
                };
                parsed.uniques.push(ParsedKey {
                    name: name.take(),
                    columns,
                    ref_table: String::new(),
                });
                i = next;
                continue;
            } else if t.is_keyword("FOREIGN") {
                if let Some((inner, close)) = group_after(def, i + 1) {
                    let columns = column_list(inner);
                    let (ref_table, next) = references(def, close + 1);
                    parsed.foreign_keys.push(ParsedKey {
                        name: name.take(),
                        columns,
                        ref_table,
                    });
                    i = next;
                    continue;
                }
            } else if t.is_keyword("REFERENCES") {
                if let Some(c) = &column {
                    let (ref_table, next) = references(def, i);
                    parsed.foreign_keys.push(ParsedKey {
                        name: name.take(),
                        columns: vec![c.clone()],
                        ref_table,
                    });
                    i = next;
                    continue;
                }
            } else if t.is_keyword("PRIMARY") || t.is_keyword("NOT") || t.is_keyword("DEFAULT") {
                // Other constraints a name may belong to.
                name = None;
            }
            i += 1;
        }
    }
    parsed
}

/// The referenced table after `REFERENCES` at or after `from`, and where to go on.
fn references(def: &[Token], from: usize) -> (String, usize) {
    match def[from..].iter().position(|t| t.is_keyword("REFERENCES")) {
        Some(at) => {
            let at = from + at;
            let table = def.get(at + 1).and_then(Token::ident).unwrap_or_default();
            (table.to_string(), at + 2)
        }
        None => (String::new(), def.len()),
    }
}

/// Column names of `("a" COLLATE nocase, b DESC)`.
fn column_list(inner: &[Token]) -> Vec<String> {
    split_top_level(inner)
        .into_iter()
        .filter_map(|item| item.first().and_then(Token::ident).map(str::to_string))
        .collect()
}

/// The entries of a `CREATE INDEX ... ON t (<entries>)` as written, without sort order.
fn index_entries(sql: &str) -> Vec<String> {
    let tokens = tokenize(sql);
    let Some(on) = tokens.iter().position(|t| t.is_keyword("ON")) else {
        return Vec::new();
    };
    let Some((inner, _)) = group_after(&tokens, on) else {
        return Vec::new();
    };
    split_top_level(inner)
        .into_iter()
        .filter_map(|item| {
            let mut item = item;
            if let [rest @ .., last] = item
                && (last.is_keyword("ASC") || last.is_keyword("DESC"))
            {
                item = rest;
            }
            Some(sql[item.first()?.start..item.last()?.end].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_and_unnamed_constraints() {
        let sql = r#"CREATE TABLE "t" (
            "id" integer NOT NULL CONSTRAINT "ck_id" CHECK ("id" > 0),
            [a b] text UNIQUE,
            `c` integer CONSTRAINT fk_c REFERENCES "u" ("id") ON DELETE CASCADE,
            "d" text DEFAULT ('x, (y)') CHECK (length("d") < 5), -- CONSTRAINT no UNIQUE (x)
            PRIMARY KEY ("id"),
            CONSTRAINT "uq ""q""" UNIQUE ("c", "d"),
            CONSTRAINT "fk_t_cd" FOREIGN KEY ("c", "d") REFERENCES "v" ("x", "y"),
            CHECK ("c" <> ')')
        )"#;
        let parsed = parse_create_table(sql);
        let key = |name: Option<&str>, cols: &[&str], ref_table: &str| ParsedKey {
            name: name.map(Into::into),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            ref_table: ref_table.into(),
        };
        let check = |name: Option<&str>, expr: &str| ParsedCheck {
            name: name.map(Into::into),
            expr: expr.into(),
        };
        assert_eq!(
            parsed,
            ParsedTable {
                uniques: vec![
                    key(None, &["a b"], ""),
                    key(Some("uq \"q\""), &["c", "d"], "")
                ],
                foreign_keys: vec![
                    key(Some("fk_c"), &["c"], "u"),
                    key(Some("fk_t_cd"), &["c", "d"], "v")
                ],
                checks: vec![
                    check(Some("ck_id"), r#""id" > 0"#),
                    check(None, r#"length("d") < 5"#),
                    check(None, r#""c" <> ')'"#),
                ],
            }
        );
        assert_eq!(
            index_entries(r#"CREATE INDEX "ix" ON "t" ("a", lower("b") DESC)"#),
            [r#""a""#, r#"lower("b")"#]
        );
    }
}

#[cfg(test)]
mod db_tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, Executor};

    use super::*;
    use crate::schema::{ColumnType::*, DefaultValue};

    /// Runs `ddl` in a fresh database file and introspects it.
    async fn introspect(ddl: &'static str, exclude: &[&str]) -> Result<Schema, IntrospectError> {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("test.db"))
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        conn.execute(sqlx::raw_sql(ddl)).await?;
        let schema = sqlite(&mut conn, exclude).await;
        conn.close().await?;
        schema
    }

    const DDL: &str = r#"
CREATE TABLE "accounts" (
    "id" uuid_text NOT NULL,
    "email" varchar(255) NOT NULL,
    "nickname" varchar,
    "bio" text,
    "active" boolean NOT NULL DEFAULT 1,
    "banned" boolean NOT NULL DEFAULT 0,
    "rank" smallint NOT NULL DEFAULT 0,
    "logins" integer NOT NULL DEFAULT -5,
    "karma" bigint NOT NULL DEFAULT 42,
    "score" real,
    "ratio" double,
    "balance" decimal(12, 2) NOT NULL DEFAULT 0,
    "born" date_text,
    "wakes" time_text,
    "seen" timestamp_text NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created" timestamp_with_timezone_text NOT NULL DEFAULT current_timestamp,
    "prefs" json_text,
    "extra" jsonb_text NOT NULL DEFAULT '{}',
    "avatar" blob,
    "status" varchar(20) NOT NULL DEFAULT 'it''s new',
    PRIMARY KEY ("id"),
    CONSTRAINT "uq_accounts_email" UNIQUE ("email"),
    CONSTRAINT "ck_accounts_rank" CHECK ("rank" >= 0)
);
CREATE TABLE "memberships" (
    "account_id" uuid_text NOT NULL,
    "team" integer NOT NULL,
    "inviter_id" uuid_text,
    "role" text NOT NULL DEFAULT 'member',
    "since" DATETIME,
    PRIMARY KEY ("account_id", "team"),
    CONSTRAINT "fk_memberships_account" FOREIGN KEY ("account_id") REFERENCES "accounts" ("id") ON DELETE CASCADE,
    CONSTRAINT "fk_memberships_inviter" FOREIGN KEY ("inviter_id") REFERENCES "accounts" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "uq_memberships_team_role" UNIQUE ("team", "role"),
    UNIQUE ("inviter_id", "team"),
    FOREIGN KEY ("team") REFERENCES "teams",
    CHECK ("role" IN ('member', 'owner'))
);
CREATE TABLE "teams" ("id" integer NOT NULL, PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "ix_accounts_nickname" ON "accounts" ("nickname");
CREATE INDEX "ix_memberships_role_team" ON "memberships" ("role", "team");
CREATE TABLE "strata_versions" ("version" text PRIMARY KEY);
CREATE TABLE "_strata_lock" ("id" integer);
"#;

    fn expected() -> Schema {
        let accounts = Table::new("accounts")
            .with_column(Column::new("id", Uuid))
            .with_column(Column::new("email", String(Some(255))))
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
                Column::new("created", TimestampTz)
                    .default(DefaultValue::Expr("CURRENT_TIMESTAMP".into())),
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
                expr: r#""rank" >= 0"#.into(),
            })
            .with_index(Index {
                name: "ix_accounts_nickname".into(),
                columns: vec!["nickname".into()],
                unique: true,
            });
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
            .with_column(Column::new("since", Timestamp).nullable())
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
            .with_foreign_key(ForeignKey {
                name: "fk_memberships_team".into(),
                columns: vec!["team".into()],
                ref_table: "teams".into(),
                ref_columns: vec!["id".into()],
                on_delete: ForeignKeyAction::NoAction,
                on_update: ForeignKeyAction::NoAction,
            })
            .with_unique(Unique {
                name: "uq_memberships_team_role".into(),
                columns: vec!["team".into(), "role".into()],
            })
            .with_unique(Unique {
                name: "uq_memberships_inviter_id_team".into(),
                columns: vec!["inviter_id".into(), "team".into()],
            })
            .with_check(Check {
                name: "ck_memberships_1".into(),
                expr: r#""role" IN ('member', 'owner')"#.into(),
            })
            .with_index(Index {
                name: "ix_memberships_role_team".into(),
                columns: vec!["role".into(), "team".into()],
                unique: false,
            });
        let teams = Table::new("teams")
            .with_column(Column::new("id", Integer))
            .with_primary_key(["id"]);
        Schema::new()
            .with_table(accounts)
            .with_table(memberships)
            .with_table(teams)
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
        assert_eq!(names, ["accounts", "teams"]);
        let schema = introspect(DDL, &[]).await.unwrap();
        let names: Vec<&str> = schema.tables.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            ["accounts", "memberships", "strata_versions", "teams"]
        );
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
