//! `manifest.json`: what a dump holds, written last so a dump without one is incomplete.

use std::path::Path;

use serde::{Deserialize, Serialize};
use strata::schema::{ColumnType, Table};

use super::PortableError;

/// The manifest's file name inside a dump directory.
pub const FILE: &str = "manifest.json";
/// What `format` says in every manifest this version writes.
pub const FORMAT: &str = "app-dump";
/// Bumped when the layout changes in a way older readers cannot follow.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The version of `app` that wrote the dump.
    pub app_version: String,
    /// When the dump was taken (UTC, RFC 3339).
    pub created_at: String,
    /// `postgresql` or `sqlite`.
    pub source_backend: String,
    /// The schema revision(s) the source was at; a load needs the target at the same.
    pub revisions: Vec<String>,
    /// In load order: every table after the tables its foreign keys point at.
    pub tables: Vec<TableEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    /// The rows, one JSON array per line in `columns` order, sorted by primary key.
    pub file: String,
    pub columns: Vec<ColumnEntry>,
    pub rows: u64,
    /// SHA-256 of the rows file, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
}

impl ColumnEntry {
    pub fn of(table: &Table) -> Vec<ColumnEntry> {
        table
            .columns
            .iter()
            .map(|c| ColumnEntry {
                name: c.name.clone(),
                ty: c.ty.clone(),
                nullable: c.nullable,
            })
            .collect()
    }
}

impl Manifest {
    /// Reads and checks the manifest of the dump in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, PortableError> {
        let path = dir.join(FILE);
        if !dir.is_dir() {
            return Err(PortableError::Refused(format!(
                "{} is not a dump directory (written by `app database dump --output DIR`)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                PortableError::Refused(format!(
                    "{} has no {FILE}: not a dump, or one that did not finish",
                    dir.display()
                ))
            } else {
                PortableError::io(&path, err)
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|err| {
            PortableError::Refused(format!("{} is not a valid manifest: {err}", path.display()))
        })?;
        if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
            return Err(PortableError::Refused(format!(
                "{} is format {:?} version {}; this app reads {FORMAT:?} up to version {FORMAT_VERSION}",
                path.display(),
                manifest.format,
                manifest.format_version
            )));
        }
        for table in &manifest.tables {
            let safe = Path::new(&table.file)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe || table.file.is_empty() {
                return Err(PortableError::Refused(format!(
                    "{}: table {} names file {:?}, which is outside the dump",
                    path.display(),
                    table.name,
                    table.file
                )));
            }
        }
        Ok(manifest)
    }

    pub fn write(&self, dir: &Path) -> Result<(), PortableError> {
        let path = dir.join(FILE);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|err| PortableError::Refused(format!("cannot write the manifest: {err}")))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|err| PortableError::io(&path, err))
    }
}
