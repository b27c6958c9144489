//! Squashing: one migration that stands for a chain of others, for new databases.
//!
//! A squash migration declares `replaces: [c1, .., cn]`, a chain of the graph (each the only
//! child of the one before), and has the net schema change of the chain as its operations and
//! `c1`'s parents as its own. It is kept beside the graph ([`History::squashes`]): the graph
//! and every database keep recording the original revisions. When an upgrade would apply the
//! whole chain to a database that has none of it (a new database), the chain runs as the
//! squash, in one transaction that records `c1` to `cn` as applied (each with its checksum and
//! stored downgrade). A database already past the chain has nothing pending; one partway
//! through it continues with the originals. A downgrade always undoes the originals.
//!
//! The replaced migrations must stay listed while the squash is: once every database is past
//! the chain, the squash (and the chain) may be deleted together, or the squash kept for new
//! databases.

use std::collections::BTreeSet;

use crate::autodetect;
use crate::migration::Migration;
use crate::ops::Operation;
use crate::runner::{self, PlannedMigration, RunError};
use crate::state::{Direction, History, HistoryError};
use crate::{Dialect, checksum, stored};

/// Why a chain cannot be squashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SquashError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(
        "there is nothing to squash between {from} and {to}: at least two migrations are needed"
    )]
    TooShort { from: String, to: String },
    #[error(
        "the migrations from {from} to {to} are not one chain: {revision} {why}; squash a stretch without branches or merges"
    )]
    NotAChain {
        from: String,
        to: String,
        revision: String,
        why: String,
    },
    #[error(
        "migration {revision} holds {what}, which a squash cannot carry (it writes only the net schema change); squash up to the migration before it, or from the one after"
    )]
    NotDeclarative { revision: String, what: String },
    #[error(
        "migration {revision} renames or changes what existed before the chain; a squash starting after base would drop and re-create it, losing rows: squash from base"
    )]
    Lossy { revision: String },
    #[error("migration {revision} is already replaced by squash {squash}")]
    AlreadySquashed { revision: String, squash: String },
    #[error("the net change of the chain cannot be written: {0}")]
    Unrepresentable(String),
}

/// A chain to squash and the net operations that replace it.
#[derive(Debug, Clone, PartialEq)]
pub struct SquashPlan {
    /// The chain's parents (`c1`'s).
    pub parents: Vec<String>,
    /// The chain, oldest first.
    pub replaces: Vec<String>,
    pub operations: Vec<Operation>,
}

/// Plans the squash of the chain after `from` (`None` or `base`: from the first migration) up
/// to and including `to`.
pub fn plan(history: &History, from: Option<&str>, to: &str) -> Result<SquashPlan, SquashError> {
    let to_rev = history.get(to)?.revision.clone();
    let before: BTreeSet<String> = match from {
        None | Some("base") => BTreeSet::new(),
        Some(from) => history.ancestors(from)?,
    };
    let from_name = from.unwrap_or("base").to_string();
    let upto = history.ancestors(&to_rev)?;
    let chain: Vec<&Migration> = history
        .migrations()
        .iter()
        .filter(|m| upto.contains(&m.revision) && !before.contains(&m.revision))
        .collect();
    if chain.len() < 2 {
        return Err(SquashError::TooShort {
            from: from_name,
            to: to_rev,
        });
    }
    let not_a_chain = |revision: &str, why: String| SquashError::NotAChain {
        from: from_name.clone(),
        to: to_rev.clone(),
        revision: revision.to_string(),
        why,
    };
    for (i, m) in chain.iter().enumerate() {
        if i > 0 && m.parents != [chain[i - 1].revision.clone()] {
            return Err(not_a_chain(
                &m.revision,
                format!("does not follow {} alone", chain[i - 1].revision),
            ));
        }
        if i == 0 && m.parents.iter().any(|p| !before.contains(p)) {
            return Err(not_a_chain(
                &m.revision,
                "has a parent outside the range".into(),
            ));
        }
        if i + 1 < chain.len()
            && let Some(other) = history
                .migrations()
                .iter()
                .find(|o| o.revision != chain[i + 1].revision && o.parents.contains(&m.revision))
        {
            return Err(not_a_chain(
                &m.revision,
                format!("has another child, {}", other.revision),
            ));
        }
        if let Some(squash) = history
            .squashes()
            .iter()
            .find(|s| s.replaces.contains(&m.revision))
        {
            return Err(SquashError::AlreadySquashed {
                revision: m.revision.clone(),
                squash: squash.revision.clone(),
            });
        }
        if m.downgrade.is_some() {
            return Err(SquashError::NotDeclarative {
                revision: m.revision.clone(),
                what: "a hand-written downgrade".into(),
            });
        }
        for op in &m.operations {
            let what = match op {
                Operation::RawSql { .. } => "raw SQL",
                Operation::Data(_) => "a Rust data step",
                _ => continue,
            };
            return Err(SquashError::NotDeclarative {
                revision: m.revision.clone(),
                what: what.into(),
            });
        }
    }
    let start = history.schema_before(chain[0])?;
    if !start.tables.is_empty() {
        // The diff has no renames: what existed before the chain must only gain things.
        for m in &chain {
            let lossy = m.operations.iter().any(|op| match op {
                Operation::RenameTable { from, .. } | Operation::DropTable { name: from } => {
                    start.tables.contains_key(from)
                }
                Operation::RenameColumn { table, .. }
                | Operation::DropColumn { table, .. }
                | Operation::AlterColumn { table, .. } => start.tables.contains_key(table),
                _ => false,
            });
            if lossy {
                return Err(SquashError::Lossy {
                    revision: m.revision.clone(),
                });
            }
        }
    }
    let end = history.schema_with(&upto)?;
    let diff = autodetect::diff(&start, &end, &mut autodetect::NoRenames);
    if let Some(warning) = diff.warnings.first() {
        return Err(SquashError::Unrepresentable(warning.clone()));
    }
    Ok(SquashPlan {
        parents: chain[0].parents.clone(),
        replaces: chain.iter().map(|m| m.revision.clone()).collect(),
        operations: diff.operations,
    })
}

/// The upgrade plan for `chosen`, with each squash whose whole chain is chosen and none of it
/// applied running in place of its chain.
pub(crate) fn plan_up(
    history: &History,
    applied: &BTreeSet<String>,
    chosen: Vec<&Migration>,
    dialect: Dialect,
    version_table: &str,
) -> Result<Vec<PlannedMigration>, RunError> {
    let chosen_set: BTreeSet<&str> = chosen.iter().map(|m| m.revision.as_str()).collect();
    let mut used: Vec<&Migration> = Vec::new();
    for squash in history.squashes() {
        let whole = squash
            .replaces
            .iter()
            .all(|r| chosen_set.contains(r.as_str()) && !applied.contains(r));
        let overlaps = used
            .iter()
            .any(|u| u.replaces.iter().any(|r| squash.replaces.contains(r)));
        if whole && !overlaps {
            used.push(squash);
        }
    }
    let mut out = Vec::with_capacity(chosen.len());
    for m in chosen {
        match used.iter().find(|s| s.replaces.contains(&m.revision)) {
            Some(squash) if squash.replaces[0] == m.revision => {
                out.push(planned(history, squash, dialect, version_table)?);
            }
            Some(_) => {}
            None => out.push(runner::plan_migration(
                history,
                m,
                Direction::Up,
                dialect,
                version_table,
            )?),
        }
    }
    Ok(out)
}

/// A squash planned as an upgrade: its operations from the state before its chain, and the
/// rows of the whole chain written in the same transaction.
fn planned(
    history: &History,
    squash: &Migration,
    dialect: Dialect,
    version_table: &str,
) -> Result<PlannedMigration, RunError> {
    let chain: Vec<&Migration> = squash
        .replaces
        .iter()
        .map(|r| history.get(r))
        .collect::<Result<_, _>>()?;
    let mut state = history.schema_before(chain[0])?;
    let atomic = squash.atomic || dialect == Dialect::Sqlite;
    let (steps, rebuilds_tables) =
        runner::plan_steps(squash, &squash.operations, &mut state, dialect, atomic)?;
    let version_sql = chain
        .iter()
        .map(|m| stored::insert_sql(history, m, dialect, version_table))
        .collect::<Vec<_>>()
        .join(";\n");
    Ok(PlannedMigration {
        revision: squash.revision.clone(),
        message: format!(
            "{} (squash of {})",
            squash.message,
            squash.replaces.join(", ")
        ),
        direction: Direction::Up,
        checksum: checksum::current(squash),
        rebuilds_tables,
        steps,
        version_sql,
        replaces: squash.replaces.clone(),
        operations: squash.operations.clone(),
        atomic,
    })
}
