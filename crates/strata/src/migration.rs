//! A migration: a revision id, its parents, a message, a creation time and its operations.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ops::Operation;

/// One migration as written in a migration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// A short unique id, such as `3f9a1c2b7d4e`.
    pub revision: String,
    /// No parent for the first migration; two or more for a merge.
    pub parents: Vec<String>,
    pub message: String,
    /// RFC 3339 creation time.
    pub created: String,
    pub operations: Vec<Operation>,
    /// Hand-written downgrade; `None` derives it from the operations.
    pub downgrade: Option<Vec<Operation>>,
    /// False runs the migration outside a transaction on PostgreSQL, so its index builds and
    /// drops can be `CONCURRENTLY` (which PostgreSQL refuses inside one); see
    /// [`crate::concurrent`]. SQLite runs it in one transaction either way.
    pub atomic: bool,
    /// For a squash: the chain of revisions (oldest first) it stands for. See
    /// [`crate::squash`]; empty for every other migration.
    pub replaces: Vec<String>,
}

impl Migration {
    pub fn new(revision: &str, parents: &[&str], message: &str, created: &str) -> Self {
        Migration {
            revision: revision.to_string(),
            parents: parents.iter().map(|p| (*p).to_string()).collect(),
            message: message.to_string(),
            created: created.to_string(),
            operations: Vec::new(),
            downgrade: None,
            atomic: true,
            replaces: Vec::new(),
        }
    }

    /// Builder: `false` runs the migration outside a transaction (see [`Migration::atomic`]).
    pub fn atomic(mut self, atomic: bool) -> Self {
        self.atomic = atomic;
        self
    }

    /// Builder: the upgrade operations, in order.
    pub fn operations(mut self, operations: Vec<Operation>) -> Self {
        self.operations = operations;
        self
    }

    /// Builder: a hand-written downgrade, run in the order given.
    pub fn downgrade(mut self, operations: Vec<Operation>) -> Self {
        self.downgrade = Some(operations);
        self
    }

    /// Builder: the revisions this squash stands for, oldest first.
    pub fn replaces(mut self, revisions: &[&str]) -> Self {
        self.replaces = revisions.iter().map(|r| (*r).to_string()).collect();
        self
    }

    /// SHA-256 of the operations (and hand-written downgrade), hex. Formatting and comments
    /// of the file do not count; any change to what the migration does does.
    pub fn checksum(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            parents: &'a [String],
            operations: &'a [Operation],
            downgrade: &'a Option<Vec<Operation>>,
            // Only a non-atomic migration carries the field, so the checksums of migrations
            // written before it existed stay the same.
            #[serde(skip_serializing_if = "is_true")]
            atomic: bool,
        }
        fn is_true(value: &bool) -> bool {
            *value
        }
        let body = Body {
            parents: &self.parents,
            operations: &self.operations,
            downgrade: &self.downgrade,
            atomic: self.atomic,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}
