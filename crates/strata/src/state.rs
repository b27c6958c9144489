//! The revision graph and the schema at any point of it, replayed without a database.
//!
//! Migrations form a graph through their parents: usually a chain, sometimes branches that a
//! merge migration joins. [`History`] checks the graph, orders it, finds heads, resolves
//! revision names (unique prefixes, `head`, `base`, `+N`, `-N`) into plans, and replays
//! operations into a [`Schema`] so that the state before and after every migration is known.

use std::collections::{BTreeMap, BTreeSet};

use crate::migration::Migration;
use crate::ops::{Irreversible, Operation, StateError};
use crate::schema::Schema;

/// Why the migrations cannot be used as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("revision {0} appears twice among the migrations")]
    Duplicate(String),
    #[error("migration {revision} names parent {parent}, which no migration has")]
    UnknownParent { revision: String, parent: String },
    #[error("the migrations form a cycle through {0}")]
    Cycle(String),
    #[error("no migration has revision {0:?}; see `app database history`")]
    UnknownRevision(String),
    #[error("revision {prefix:?} is ambiguous: it starts {matches:?}")]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("there are {} heads ({}); merge them with a merge migration (`make-migrations --merge`) or name one", .0.len(), .0.join(", "))]
    MultipleHeads(Vec<String>),
    #[error("migration {revision} ({message}): {error}")]
    State {
        revision: String,
        message: String,
        error: StateError,
    },
    #[error("migration {revision} ({message}): {error}")]
    Irreversible {
        revision: String,
        message: String,
        error: Irreversible,
    },
    #[error(
        "squash migration {revision} replaces {missing}, whose migration is gone; keep the replaced migrations listed while the squash is"
    )]
    SquashWithoutOriginal { revision: String, missing: String },
    #[error("{0:?} is not a revision, head, heads, base, +N or -N")]
    BadTarget(String),
    #[error(
        "the database is at revision {0}, which this binary does not know (applied by a newer release, or its file was removed); run the release that has it, or downgrade below it (the SQL stored when it was applied undoes it)"
    )]
    UnknownApplied(String),
}

/// The migrations of an application, checked and ordered.
#[derive(Debug, Clone)]
pub struct History {
    /// Topological order, ties kept in the order the migrations were given.
    ordered: Vec<Migration>,
    position: BTreeMap<String, usize>,
    /// Squash migrations, kept beside the graph: see [`crate::squash`].
    squashes: Vec<Migration>,
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl History {
    /// Checks ids and parents and orders the migrations parents-first.
    pub fn new(migrations: Vec<Migration>) -> Result<Self, HistoryError> {
        // A squash stands for a chain of the graph rather than joining it.
        let (squashes, migrations): (Vec<Migration>, Vec<Migration>) =
            migrations.into_iter().partition(|m| !m.replaces.is_empty());
        let mut seen = BTreeSet::new();
        for m in &migrations {
            if !seen.insert(m.revision.clone()) {
                return Err(HistoryError::Duplicate(m.revision.clone()));
            }
        }
        for m in &migrations {
            for parent in &m.parents {
                if !seen.contains(parent) {
                    return Err(HistoryError::UnknownParent {
                        revision: m.revision.clone(),
                        parent: parent.clone(),
                    });
                }
            }
        }
        let mut ordered: Vec<Migration> = Vec::with_capacity(migrations.len());
        let mut placed: BTreeSet<String> = BTreeSet::new();
        let mut pending = migrations;
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|m| m.parents.iter().all(|p| placed.contains(p)));
            let Some(index) = ready else {
                return Err(HistoryError::Cycle(pending[0].revision.clone()));
            };
            let m = pending.remove(index);
            placed.insert(m.revision.clone());
            ordered.push(m);
        }
        let position: BTreeMap<String, usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, m)| (m.revision.clone(), i))
            .collect();
        for squash in &squashes {
            if let Some(missing) = squash.replaces.iter().find(|r| !position.contains_key(*r)) {
                return Err(HistoryError::SquashWithoutOriginal {
                    revision: squash.revision.clone(),
                    missing: missing.clone(),
                });
            }
            if !seen.insert(squash.revision.clone()) {
                return Err(HistoryError::Duplicate(squash.revision.clone()));
            }
        }
        Ok(History {
            ordered,
            position,
            squashes,
        })
    }

    /// The squash migrations, each standing for a chain of [`History::migrations`].
    pub fn squashes(&self) -> &[Migration] {
        &self.squashes
    }

    /// Every migration, parents before children.
    pub fn migrations(&self) -> &[Migration] {
        &self.ordered
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// Revisions that no migration names as parent, in order.
    pub fn heads(&self) -> Vec<&str> {
        let parents: BTreeSet<&str> = self
            .ordered
            .iter()
            .flat_map(|m| m.parents.iter().map(String::as_str))
            .collect();
        self.ordered
            .iter()
            .map(|m| m.revision.as_str())
            .filter(|r| !parents.contains(r))
            .collect()
    }

    /// The applied revisions (of `applied`) that no other applied revision names as parent, in
    /// order: where a database stands (what `current` shows). Revisions unknown here are left
    /// out.
    pub fn applied_heads(&self, applied: &BTreeSet<String>) -> Vec<String> {
        let parents: BTreeSet<&str> = self
            .ordered
            .iter()
            .filter(|m| applied.contains(&m.revision))
            .flat_map(|m| m.parents.iter().map(String::as_str))
            .collect();
        self.ordered
            .iter()
            .map(|m| m.revision.as_str())
            .filter(|r| applied.contains(*r) && !parents.contains(r))
            .map(str::to_string)
            .collect()
    }

    /// The single head; an error naming them when there are several.
    pub fn head(&self) -> Result<Option<&str>, HistoryError> {
        let heads = self.heads();
        match heads.len() {
            0 => Ok(None),
            1 => Ok(Some(heads[0])),
            _ => Err(HistoryError::MultipleHeads(
                heads.iter().map(|h| (*h).to_string()).collect(),
            )),
        }
    }

    /// The migration with this revision or unique revision prefix.
    pub fn get(&self, revision: &str) -> Result<&Migration, HistoryError> {
        if let Some(&i) = self.position.get(revision) {
            return Ok(&self.ordered[i]);
        }
        let matches: Vec<&Migration> = self
            .ordered
            .iter()
            .filter(|m| m.revision.starts_with(revision))
            .collect();
        match matches.as_slice() {
            [one] if !revision.is_empty() => Ok(one),
            [] | [_] => Err(HistoryError::UnknownRevision(revision.to_string())),
            many => Err(HistoryError::Ambiguous {
                prefix: revision.to_string(),
                matches: many.iter().map(|m| m.revision.clone()).collect(),
            }),
        }
    }

    /// `revision` and everything it descends from.
    pub fn ancestors(&self, revision: &str) -> Result<BTreeSet<String>, HistoryError> {
        let mut found = BTreeSet::new();
        let mut stack = vec![self.get(revision)?.revision.clone()];
        while let Some(rev) = stack.pop() {
            if found.insert(rev.clone()) {
                let m = &self.ordered[self.position[&rev]];
                stack.extend(m.parents.iter().cloned());
            }
        }
        Ok(found)
    }

    /// Checks that every applied revision is known.
    pub fn check_applied(&self, applied: &BTreeSet<String>) -> Result<(), HistoryError> {
        match applied.iter().find(|r| !self.position.contains_key(*r)) {
            Some(unknown) => Err(HistoryError::UnknownApplied(unknown.clone())),
            None => Ok(()),
        }
    }

    /// The schema after the given revisions, replayed in order.
    pub fn schema_with(&self, applied: &BTreeSet<String>) -> Result<Schema, HistoryError> {
        let mut schema = Schema::new();
        for m in self
            .ordered
            .iter()
            .filter(|m| applied.contains(&m.revision))
        {
            apply_all(m, &m.operations, &mut schema)?;
        }
        Ok(schema)
    }

    /// The schema at the head (every migration applied).
    pub fn head_schema(&self) -> Result<Schema, HistoryError> {
        let all = self.position.keys().cloned().collect();
        self.schema_with(&all)
    }

    /// The schema just before `migration` runs: its ancestors replayed.
    pub fn schema_before(&self, migration: &Migration) -> Result<Schema, HistoryError> {
        let mut ancestors = self.ancestors(&migration.revision)?;
        ancestors.remove(&migration.revision);
        self.schema_with(&ancestors)
    }

    /// The operations that undo `migration`: its hand-written downgrade, or the inverse of
    /// each operation (computed from the state before it) in reverse order.
    pub fn downgrade_operations(
        &self,
        migration: &Migration,
    ) -> Result<Vec<Operation>, HistoryError> {
        if let Some(ops) = &migration.downgrade {
            return Ok(ops.clone());
        }
        let mut state = self.schema_before(migration)?;
        let mut inverses = Vec::with_capacity(migration.operations.len());
        for op in &migration.operations {
            let inverse = op
                .reverse_steps(&state)
                .map_err(|error| HistoryError::Irreversible {
                    revision: migration.revision.clone(),
                    message: migration.message.clone(),
                    error,
                })?;
            apply_one(migration, op, &mut state)?;
            inverses.push(inverse);
        }
        inverses.reverse();
        Ok(inverses.into_iter().flatten().collect())
    }

    /// The migrations to apply, in order, to reach `target` from `applied`.
    ///
    /// `target`: `head` (the single head), `heads` (all), a revision or prefix (it and its
    /// ancestors), or `+N` (the next N pending migrations).
    pub fn plan_upgrade(
        &self,
        applied: &BTreeSet<String>,
        target: &str,
    ) -> Result<Vec<&Migration>, HistoryError> {
        self.check_applied(applied)?;
        let wanted: BTreeSet<String> = match target {
            "head" => match self.head()? {
                Some(head) => self.ancestors(head)?,
                None => BTreeSet::new(),
            },
            "heads" => {
                let mut all = BTreeSet::new();
                for head in self.heads() {
                    all.extend(self.ancestors(head)?);
                }
                all
            }
            t if t.starts_with('+') => {
                let n = parse_count(t)?;
                let pending: Vec<&Migration> = self
                    .ordered
                    .iter()
                    .filter(|m| !applied.contains(&m.revision))
                    .take(n)
                    .collect();
                let mut all = applied.clone();
                for m in pending {
                    all.extend(self.ancestors(&m.revision)?);
                }
                all
            }
            t => self.ancestors(t)?,
        };
        Ok(self
            .ordered
            .iter()
            .filter(|m| wanted.contains(&m.revision) && !applied.contains(&m.revision))
            .collect())
    }

    /// The migrations to undo, children first, to go from `applied` down to `target`.
    ///
    /// `target`: `base` (undo everything), a revision or prefix (keep it and its ancestors),
    /// or `-N` (the last N applied).
    pub fn plan_downgrade(
        &self,
        applied: &BTreeSet<String>,
        target: &str,
    ) -> Result<Vec<&Migration>, HistoryError> {
        self.check_applied(applied)?;
        let applied_in_order: Vec<&Migration> = self
            .ordered
            .iter()
            .filter(|m| applied.contains(&m.revision))
            .collect();
        let undo: Vec<&Migration> = match target {
            "base" => applied_in_order.into_iter().rev().collect(),
            t if t.starts_with('-') => {
                let n = parse_count(t)?;
                applied_in_order.into_iter().rev().take(n).collect()
            }
            t => {
                let keep = self.ancestors(t)?;
                applied_in_order
                    .into_iter()
                    .rev()
                    .filter(|m| !keep.contains(&m.revision))
                    .collect()
            }
        };
        Ok(undo)
    }
}

fn parse_count(target: &str) -> Result<usize, HistoryError> {
    target[1..]
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| HistoryError::BadTarget(target.to_string()))
}

fn apply_one(
    migration: &Migration,
    op: &Operation,
    schema: &mut Schema,
) -> Result<(), HistoryError> {
    op.apply(schema).map_err(|error| HistoryError::State {
        revision: migration.revision.clone(),
        message: migration.message.clone(),
        error,
    })
}

fn apply_all(
    migration: &Migration,
    ops: &[Operation],
    schema: &mut Schema,
) -> Result<(), HistoryError> {
    ops.iter()
        .try_for_each(|op| apply_one(migration, op, schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ColumnType, Table};

    fn create(name: &str) -> Operation {
        Operation::CreateTable(
            Table::new(name)
                .with_column(Column::new("id", ColumnType::Uuid))
                .with_primary_key(["id"]),
        )
    }

    fn chain() -> History {
        History::new(vec![
            Migration::new("aaa111", &[], "first", "t").operations(vec![create("a")]),
            Migration::new("bbb222", &["aaa111"], "second", "t").operations(vec![
                create("b"),
                Operation::AddColumn {
                    table: "a".into(),
                    column: Column::new("note", ColumnType::Text).nullable(),
                },
            ]),
            Migration::new("ccc333", &["bbb222"], "third", "t").operations(vec![
                Operation::DropColumn {
                    table: "a".into(),
                    name: "note".into(),
                },
            ]),
        ])
        .unwrap()
    }

    fn set(revs: &[&str]) -> BTreeSet<String> {
        revs.iter().map(|r| (*r).to_string()).collect()
    }

    fn revs(plan: Vec<&Migration>) -> Vec<&str> {
        plan.into_iter().map(|m| m.revision.as_str()).collect()
    }

    #[test]
    fn orders_checks_and_finds_heads() {
        let h = chain();
        assert_eq!(h.heads(), ["ccc333"]);
        assert_eq!(h.get("bb").unwrap().message, "second");
        assert!(matches!(h.get("zz"), Err(HistoryError::UnknownRevision(_))));
        let out_of_order = History::new(vec![
            Migration::new("b", &["a"], "b", "t"),
            Migration::new("a", &[], "a", "t"),
        ])
        .unwrap();
        assert_eq!(out_of_order.migrations()[0].revision, "a");
        assert!(matches!(
            History::new(vec![Migration::new("a", &["x"], "a", "t")]),
            Err(HistoryError::UnknownParent { .. })
        ));
        assert!(matches!(
            History::new(vec![
                Migration::new("a", &[], "a", "t"),
                Migration::new("a", &[], "a", "t")
            ]),
            Err(HistoryError::Duplicate(_))
        ));
    }

    #[test]
    fn replays_state_and_derives_downgrades() {
        let h = chain();
        let head = h.head_schema().unwrap();
        assert!(head.table("a").unwrap().column("note").is_none());
        let third = h.get("ccc333").unwrap();
        let before = h.schema_before(third).unwrap();
        assert!(before.table("a").unwrap().column("note").is_some());
        let down = h.downgrade_operations(third).unwrap();
        assert_eq!(
            down,
            vec![Operation::AddColumn {
                table: "a".into(),
                column: Column::new("note", ColumnType::Text).nullable()
            }]
        );
        // Upgrade then downgrade gives the schema before.
        let mut state = head.clone();
        for op in &down {
            op.apply(&mut state).unwrap();
        }
        assert_eq!(state, before);
    }

    #[test]
    fn plans_upgrades_and_downgrades() {
        let h = chain();
        assert_eq!(
            revs(h.plan_upgrade(&set(&[]), "head").unwrap()),
            ["aaa111", "bbb222", "ccc333"]
        );
        assert_eq!(
            revs(h.plan_upgrade(&set(&["aaa111"]), "+1").unwrap()),
            ["bbb222"]
        );
        assert_eq!(
            revs(h.plan_upgrade(&set(&[]), "bbb").unwrap()),
            ["aaa111", "bbb222"]
        );
        let all = set(&["aaa111", "bbb222", "ccc333"]);
        assert_eq!(revs(h.plan_downgrade(&all, "-1").unwrap()), ["ccc333"]);
        assert_eq!(
            revs(h.plan_downgrade(&all, "aaa111").unwrap()),
            ["ccc333", "bbb222"]
        );
        assert_eq!(
            revs(h.plan_downgrade(&all, "base").unwrap()),
            ["ccc333", "bbb222", "aaa111"]
        );
        assert!(matches!(
            h.plan_upgrade(&set(&["nope"]), "head"),
            Err(HistoryError::UnknownApplied(_))
        ));
        assert!(matches!(
            h.plan_upgrade(&set(&[]), "+x"),
            Err(HistoryError::BadTarget(_))
        ));
    }

    #[test]
    fn branches_need_a_merge() {
        let h = History::new(vec![
            Migration::new("root", &[], "root", "t").operations(vec![create("a")]),
            Migration::new("left", &["root"], "left", "t").operations(vec![create("l")]),
            Migration::new("right", &["root"], "right", "t").operations(vec![create("r")]),
        ])
        .unwrap();
        assert_eq!(h.heads(), ["left", "right"]);
        assert!(matches!(
            h.plan_upgrade(&set(&[]), "head"),
            Err(HistoryError::MultipleHeads(_))
        ));
        assert_eq!(h.plan_upgrade(&set(&[]), "heads").unwrap().len(), 3);
        let merged = History::new(vec![
            Migration::new("root", &[], "root", "t").operations(vec![create("a")]),
            Migration::new("left", &["root"], "left", "t").operations(vec![create("l")]),
            Migration::new("right", &["root"], "right", "t").operations(vec![create("r")]),
            Migration::new("merge", &["left", "right"], "merge", "t"),
        ])
        .unwrap();
        assert_eq!(merged.head().unwrap(), Some("merge"));
        let head = merged.head_schema().unwrap();
        assert_eq!(head.tables.len(), 3);
        let before_merge = merged.schema_before(merged.get("merge").unwrap()).unwrap();
        assert_eq!(before_merge, head);
    }
}
