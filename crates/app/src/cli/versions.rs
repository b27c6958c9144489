//! The CLI side of what the version table keeps: `repair` (accept an edited applied
//! migration), `squash` (write one migration standing for a chain) and how revisions applied
//! by a newer release are shown.

use std::io::IsTerminal;

use super::{CliError, connect_for_tooling};
use crate::config::Settings;
use crate::migrate;

/// How `current` and `history` show a revision this binary does not know.
pub(super) fn newer_release_line(revision: &str, stored: &[migrate::StoredRevision]) -> String {
    let row = stored.iter().find(|r| r.revision == revision);
    let message = row
        .and_then(|r| r.message.clone())
        .map(|m| format!(" {m}"))
        .unwrap_or_default();
    let undo = match row.map(|r| &r.downgrade) {
        Some(migrate::StoredDowngrade::Sql(_)) => "`downgrade` undoes it with its stored SQL",
        Some(migrate::StoredDowngrade::Note(_)) => {
            "its downgrade runs Rust code or cannot be undone: downgrade with the release that applied it"
        }
        _ => "no downgrade stored: downgrade with the release that applied it",
    };
    format!("{revision}{message} (applied by a newer release, unknown to this binary; {undo})")
}

/// `app database squash [FROM] TO`: `first` is TO alone, or FROM when `second` is TO.
pub(super) fn squash(
    settings: &Settings,
    first: &str,
    second: Option<&str>,
    message: Option<&str>,
) -> Result<(), CliError> {
    let (from, to) = match second {
        None => (None, first),
        Some(to) => (Some(first), to),
    };
    let written = crate::squash::write(&settings.database, from, to, message, chrono::Utc::now())?;
    println!(
        "Wrote {} (revision {}), {}",
        written.path.display(),
        written.revision,
        written.warnings.join("; ")
    );
    for op in &written.operations {
        println!("  {op}");
    }
    println!(
        "Rebuild (cargo build) so the binary contains it. New databases run it in place of the chain; keep the replaced files while it is listed."
    );
    Ok(())
}

/// `app database repair [REV] [--yes]`: shows what differs, asks (or takes --yes), rewrites.
pub(super) async fn repair(
    settings: &Settings,
    revision: Option<&str>,
    yes: bool,
) -> Result<(), CliError> {
    let db_settings = &settings.database;
    let db = connect_for_tooling(db_settings).await?;
    let result = async {
        let plan = migrate::plan_repair(&db, db_settings, revision).await?;
        if plan.is_empty() {
            println!("Nothing to repair: every applied migration matches its file.");
            return Ok(());
        }
        for r in &plan {
            if r.checksum_changed {
                println!(
                    "{} ({}) changed after it was applied (- as applied, + the file now):",
                    r.revision, r.message
                );
                for line in &r.differences {
                    println!("  {line}");
                }
            } else {
                println!(
                    "{} ({}) matches its file; its stored downgrade, message and parents are refreshed",
                    r.revision, r.message
                );
            }
        }
        if !yes {
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(CliError::Usage(
                    "repair rewrites the version table: pass --yes to accept (there is no terminal to ask on); nothing was changed".into(),
                ));
            }
            eprint!(
                "Record the files' current checksums for {} revision(s)? The schema is not changed. [y/N] ",
                plan.len()
            );
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
                return Err(CliError::Usage("repair cancelled; nothing was changed".into()));
            }
        }
        let revisions: Vec<String> = plan.iter().map(|r| r.revision.clone()).collect();
        let done = migrate::repair(&db, db_settings, &revisions).await?;
        println!("Repaired {} revision(s): {}", done.len(), done.join(", "));
        Ok(())
    }
    .await;
    db.close().await;
    result
}
