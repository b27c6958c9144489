//! Versioned checksums of migrations, and the canonical form they are computed over.
//!
//! A checksum stored in the version table must keep verifying when the engine itself changes
//! (a new optional field on an operation, a serde attribute), or every database would refuse
//! its own migrations after an engine upgrade. So a checksum names the version of the form it
//! was computed over: `v2:<hex>` is SHA-256 of [`canonical_text`] (cut to fit 64 characters); a checksum without a prefix
//! is version 1, [`Migration::checksum`] (the serde_json of the migration's body), which
//! databases migrated before the versions existed hold and which still verifies.
//!
//! The canonical text (version 2) is one line per part of the migration: `parents: [..]`,
//! then `upgrade: <op>` per operation and `downgrade: <op>` per hand-written downgrade
//! operation, each operation as compact JSON with its keys sorted and every value that is
//! absent or at its default (null, false, "", [] or {}) left out. A field added later with a
//! default value therefore changes no existing migration's text. The text is stored beside the
//! checksum, so a mismatch can show what changed line by line ([`differences`]).

use sha2::{Digest, Sha256};

use crate::Migration;

/// The version of the canonical form new applies record.
pub const CURRENT_VERSION: &str = "v2";

/// The canonical text of `migration` (version 2): see the module documentation.
pub fn canonical_text(migration: &Migration) -> String {
    let mut lines = vec![format!(
        "parents: {}",
        serde_json::to_string(&migration.parents).unwrap_or_default()
    )];
    if !migration.replaces.is_empty() {
        lines.push(format!(
            "replaces: {}",
            serde_json::to_string(&migration.replaces).unwrap_or_default()
        ));
    }
    if !migration.atomic {
        // Run outside a transaction: the same operations run differently.
        lines.push("atomic: false".to_string());
    }
    for op in &migration.operations {
        lines.push(format!("upgrade: {}", canonical_json(op)));
    }
    if let Some(down) = &migration.downgrade {
        // An explicit empty downgrade ("nothing to undo") differs from a derived one.
        if down.is_empty() {
            lines.push("downgrade: (none)".to_string());
        }
        for op in down {
            lines.push(format!("downgrade: {}", canonical_json(op)));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The checksum new applies record: `v2:` and the first 61 hex digits (244 bits) of the
/// SHA-256 of the canonical text, 64 characters in all: it fits the version table's
/// `varchar(64)` column, which therefore never changes type under other processes' prepared
/// statements.
pub fn current(migration: &Migration) -> String {
    let mut digest = hex(&Sha256::digest(canonical_text(migration).as_bytes()));
    digest.truncate(64 - CURRENT_VERSION.len() - 1);
    format!("{CURRENT_VERSION}:{digest}")
}

/// Whether a stored checksum (of any version) is the checksum of `migration`.
pub fn verifies(stored: &str, migration: &Migration) -> bool {
    match stored.split_once(':') {
        Some((CURRENT_VERSION, _)) => stored == current(migration),
        // An unknown version is from a newer engine: it cannot be verified here.
        Some(_) => false,
        None => stored == migration.checksum(),
    }
}

/// The lines that differ between two canonical texts, `- ` for a line only in `applied` and
/// `+ ` for one only in `now`, in order (a longest common subsequence of lines).
pub fn differences(applied: &str, now: &str) -> Vec<String> {
    let a: Vec<&str> = applied.lines().collect();
    let b: Vec<&str> = now.lines().collect();
    // Migrations have tens of lines; a table of (n+1)*(m+1) is small. Past a bound, list
    // every line that is not in the other text instead.
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        let mut out: Vec<String> = a
            .iter()
            .filter(|l| !b.contains(l))
            .map(|l| format!("- {l}"))
            .collect();
        out.extend(
            b.iter()
                .filter(|l| !a.contains(l))
                .map(|l| format!("+ {l}")),
        );
        return out;
    }
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

fn canonical_json<T: serde::Serialize>(value: &T) -> String {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    serde_json::to_string(&normalize(value).unwrap_or(serde_json::Value::Null)).unwrap_or_default()
}

/// Sorted keys, defaults left out; `None` for a value that is its type's default.
fn normalize(value: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        // Inside a list every position counts: a default there is kept as JSON null.
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|item| normalize(item).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k, v)))
                .collect();
            if sorted.is_empty() {
                return None;
            }
            Some(Value::Object(sorted.into_iter().collect()))
        }
        other => Some(other),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Operation;

    fn migration() -> Migration {
        Migration::new("r1", &["r0"], "m", "t").operations(vec![Operation::DropTable {
            name: "book".into(),
        }])
    }

    #[test]
    fn both_versions_verify_and_other_versions_do_not() {
        let m = migration();
        assert!(verifies(&m.checksum(), &m), "a v1 checksum still verifies");
        assert!(verifies(&current(&m), &m));
        assert!(current(&m).starts_with("v2:"));
        assert_eq!(
            current(&m).len(),
            64,
            "fits the version table's varchar(64)"
        );
        assert!(!verifies("v9:abc", &m));
        let mut other = m.clone();
        other.parents.clear();
        assert!(!verifies(&current(&m), &other));
        assert!(!verifies(&m.checksum(), &other));
    }

    #[test]
    fn defaults_do_not_count_and_keys_are_sorted() {
        let value =
            serde_json::json!({"b": 1, "a": {"x": null, "y": false, "z": []}, "c": [null, 2]});
        assert_eq!(
            serde_json::to_string(&normalize(value).unwrap()).unwrap(),
            r#"{"b":1,"c":[null,2]}"#
        );
    }

    #[test]
    fn differences_show_removed_and_added_lines() {
        let d = differences("a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(d, ["- b", "+ d"]);
        assert!(differences("a\n", "a\n").is_empty());
    }
}
