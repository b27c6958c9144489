//! JSON fixtures, loaded by upsert so that loading twice changes nothing.
//!
//! The shipped fixtures are compiled into the binary, so `app` runs from any directory;
//! `DATABASE_FIXTURE_PATH` names a folder whose files are read instead.
//!
//! Every file is read and checked before anything is written, and all rows are written in one
//! transaction: a bad file leaves the database as it was.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::models::role;

/// The role every signed-up user gets.
pub const APPLICATION_ACCESS_ROLE: &str = "application-access";
/// The role of superusers.
pub const SUPERUSER_ROLE: &str = "superuser";

/// A fixture that could not be loaded; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("fixture file {} not found (DATABASE_FIXTURE_PATH names its folder; unset, the built-in fixtures are used)", .0.display())]
    Missing(PathBuf),
    #[error("cannot read fixture file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}: entry {index}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("loading fixtures failed, nothing was written: {}", crate::db::describe(.0))]
    Db(#[from] DbErr),
}

/// What loading one fixture file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixtureReport {
    pub table: &'static str,
    pub file: PathBuf,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// One row of `role.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFixture {
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// The shipped `role.json`, compiled in.
const BUILT_IN_ROLES: &str = include_str!("../fixtures/role.json");

/// Reads and checks every fixture file (in `folder`, or the built-in ones when `None`), then
/// upserts all rows in one transaction.
#[tracing::instrument(skip(db))]
pub async fn load_all(
    db: &crate::db::DbConn,
    folder: Option<&Path>,
) -> Result<Vec<FixtureReport>, FixtureError> {
    let (role_file, roles) = match folder {
        Some(dir) => {
            let file = dir.join("role.json");
            let roles = read_roles(&file)?;
            (file, roles)
        }
        None => {
            let file = PathBuf::from("built-in role.json");
            let roles = parse_roles(&file, BUILT_IN_ROLES)?;
            (file, roles)
        }
    };
    let txn = db.begin().await?;
    let report = upsert_roles(&txn, &role_file, &roles).await?;
    txn.commit().await?;
    tracing::info!(
        table = report.table,
        inserted = report.inserted,
        updated = report.updated,
        unchanged = report.unchanged,
        "fixtures loaded"
    );
    Ok(vec![report])
}

/// Parses and checks `role.json`: slugs of lowercase letters, digits and dashes, names not
/// empty, neither repeated.
pub fn read_roles(path: &Path) -> Result<Vec<RoleFixture>, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            FixtureError::Missing(path.to_path_buf())
        } else {
            FixtureError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_roles(path, &text)
}

/// Parses and checks the text of a `role.json`; `path` names it in errors.
fn parse_roles(path: &Path, text: &str) -> Result<Vec<RoleFixture>, FixtureError> {
    let roles: Vec<RoleFixture> =
        serde_json::from_str(text).map_err(|err| malformed(path, &err))?;
    let invalid = |index: usize, reason: String| FixtureError::Invalid {
        path: path.to_path_buf(),
        index,
        reason,
    };
    let mut names = HashSet::new();
    let mut slugs = HashSet::new();
    for (index, role) in roles.iter().enumerate() {
        let slug_ok = !role.slug.is_empty()
            && role
                .slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !slug_ok {
            return Err(invalid(
                index,
                format!(
                    "slug {:?} must be lowercase letters, digits and dashes",
                    role.slug
                ),
            ));
        }
        if role.name.trim().is_empty() {
            return Err(invalid(index, "name must not be empty".into()));
        }
        if !names.insert(role.name.as_str()) {
            return Err(invalid(
                index,
                format!("name {:?} appears twice", role.name),
            ));
        }
        if !slugs.insert(role.slug.as_str()) {
            return Err(invalid(
                index,
                format!("slug {:?} appears twice", role.slug),
            ));
        }
    }
    Ok(roles)
}

fn malformed(path: &Path, err: &serde_json::Error) -> FixtureError {
    let text = err.to_string();
    let reason = match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    };
    FixtureError::Malformed {
        path: path.to_path_buf(),
        line: err.line(),
        column: err.column(),
        reason,
    }
}

async fn upsert_roles<C: sea_orm::ConnectionTrait>(
    db: &C,
    file: &Path,
    roles: &[RoleFixture],
) -> Result<FixtureReport, DbErr> {
    let mut report = FixtureReport {
        table: "role",
        file: file.to_path_buf(),
        inserted: 0,
        updated: 0,
        unchanged: 0,
    };
    for fixture in roles {
        let existing = role::Entity::find()
            .filter(role::Column::Name.eq(fixture.name.as_str()))
            .one(db)
            .await?;
        match existing {
            None => {
                let mut row = <role::ActiveModel as sea_orm::ActiveModelBehavior>::new();
                row.slug = Set(fixture.slug.clone());
                row.name = Set(fixture.name.clone());
                row.description = Set(fixture.description.clone());
                row.insert(db).await?;
                report.inserted += 1;
            }
            Some(current)
                if current.slug == fixture.slug && current.description == fixture.description =>
            {
                report.unchanged += 1;
            }
            Some(current) => {
                let mut row = current.into_active_model();
                row.slug = Set(fixture.slug.clone());
                row.description = Set(fixture.description.clone());
                row.update(db).await?;
                report.updated += 1;
            }
        }
    }
    Ok(report)
}
