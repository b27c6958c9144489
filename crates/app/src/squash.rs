//! `app database squash`: writes one migration standing for a chain of the app's migrations
//! (see [`strata::squash`] for how it runs), and lists it in the registry.

use chrono::{DateTime, Utc};

use crate::config::DatabaseSettings;
use crate::migrate::{self, MigrateError, Written};

/// Writes the squash of the migrations after `from` (`None`: from the first) up to `to`.
pub fn write(
    settings: &DatabaseSettings,
    from: Option<&str>,
    to: &str,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Written, MigrateError> {
    let history = migrate::history()?;
    let dir = &settings.migration_path;
    let registry_path = dir.join("mod.rs");
    let registry = match migrate::read_optional(&registry_path)? {
        Some(text) => {
            let registry = strata::writer::Registry::parse(&text)?;
            // A squash of a stale history would not stand for the files' chain.
            migrate::ensure_binary_is_current(&history, &registry, &registry_path)?;
            migrate::ensure_files_are_current(&history, &registry, dir)?;
            registry
        }
        None => {
            return Err(MigrateError::Refused(format!(
                "there is no migration registry at {}; set DATABASE_MIGRATION_PATH to the migrations folder",
                registry_path.display()
            )));
        }
    };
    let plan = strata::squash::plan(&history, from, to)?;
    let (first, last) = match (plan.replaces.first(), plan.replaces.last()) {
        (Some(first), Some(last)) => (first.clone(), last.clone()),
        _ => return Err(MigrateError::Refused("there is nothing to squash".into())),
    };
    let message = match message.map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("squash {first} to {last}"),
    };
    let revision = strata::writer::new_revision();
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file_name =
        strata::writer::file_name(&now.format("%Y-%m-%d").to_string(), &message, &revision);
    let parents: Vec<&str> = plan.parents.iter().map(String::as_str).collect();
    let source = strata::writer::render_migration(
        &revision,
        &parents,
        &message,
        &created,
        &plan.operations,
    )?;
    let source = with_replaces(&source, &plan.replaces);
    let new_registry = registry.with(&file_name, &revision)?.render();
    let path = dir.join(&file_name);
    migrate::write_new(&path, &source)?;
    if let Err(err) = migrate::write_atomically(&registry_path, &new_registry) {
        let _ = std::fs::remove_file(&path);
        return Err(err);
    }
    Ok(Written {
        revision,
        path,
        operations: plan.operations.iter().map(|op| op.describe()).collect(),
        warnings: vec![format!(
            "replaces {} migration(s): {}",
            plan.replaces.len(),
            plan.replaces.join(", ")
        )],
        lint: Vec::new(),
        indexes: None,
    })
}

/// The writer's source with `.replaces(&[..])` called before `.operations(..)`, on a line of
/// its own as rustfmt would put it in a chain.
fn with_replaces(source: &str, replaces: &[String]) -> String {
    let list = replaces
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(at) = source.find(".operations(") else {
        return source.to_string();
    };
    let line_start = source[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let before = &source[line_start..at];
    if before.trim().is_empty() {
        // `.operations(` starts its line: the call goes on a line of its own above it.
        format!(
            "{}{before}.replaces(&[{list}])\n{}",
            &source[..line_start],
            &source[line_start..]
        )
    } else {
        format!("{}.replaces(&[{list}]){}", &source[..at], &source[at..])
    }
}

#[cfg(test)]
mod tests {
    use super::with_replaces;
    use strata::Migration;
    use strata::state::History;

    /// After a rebuild the binary holds the squash: the files and the binary match.
    #[test]
    fn a_squash_in_the_binary_matches_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = strata::writer::Registry::new();
        for (file, rev) in [("a.rs", "r1"), ("b.rs", "r2"), ("s.rs", "sq")] {
            std::fs::write(dir.path().join(file), "").unwrap();
            registry = registry.with(file, rev).unwrap();
        }
        let history = History::new(vec![
            Migration::new("r1", &[], "a", "t"),
            Migration::new("r2", &["r1"], "b", "t"),
            Migration::new("sq", &[], "s", "t").replaces(&["r1", "r2"]),
        ])
        .unwrap();
        let path = dir.path().join("mod.rs");
        crate::migrate::ensure_binary_is_current(&history, &registry, &path).unwrap();
        crate::migrate::ensure_files_are_current(&history, &registry, dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("s.rs")).unwrap();
        let err =
            crate::migrate::ensure_files_are_current(&history, &registry, dir.path()).unwrap_err();
        assert!(err.to_string().contains("sq"), "{err}");
    }

    #[test]
    fn replaces_goes_before_operations() {
        let chained = "    Migration::new(\"a\")\n    .operations(vec![])\n";
        assert_eq!(
            with_replaces(chained, &["r1".into(), "r2".into()]),
            "    Migration::new(\"a\")\n    .replaces(&[\"r1\", \"r2\"])\n    .operations(vec![])\n"
        );
        assert_eq!(
            with_replaces("Migration::new(\"a\").operations(vec![])", &["r1".into()]),
            "Migration::new(\"a\").replaces(&[\"r1\"]).operations(vec![])"
        );
    }
}
