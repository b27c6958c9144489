//! `app database dump` and `app database load`.

use std::path::Path;

use super::output::{Format, print_json, print_table, terminal_bar};
use super::{CliError, connect_for_tooling};
use crate::config::Settings;
use crate::db::Database;
use crate::portable::{self, PortableError, TableSummary};

pub async fn dump(settings: &Settings, output: &Path, format: Format) -> Result<(), CliError> {
    let report = with_rows_bar(settings, async |db, bar| {
        portable::dump(db, &settings.database, output, bar).await
    })
    .await?;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "path": report.path,
            "revisions": report.revisions,
            "tables": report.tables,
        })),
        Format::Text => {
            print_summaries(&report.tables);
            println!(
                "Dumped {} table(s), {} row(s), at revision {} into {}.",
                report.tables.len(),
                total_rows(&report.tables),
                report.revisions.join("+"),
                report.path.display()
            );
        }
    }
    Ok(())
}

pub async fn load(settings: &Settings, path: &Path, format: Format) -> Result<(), CliError> {
    let report = with_rows_bar(settings, async |db, bar| {
        portable::load(db, &settings.database, path, bar).await
    })
    .await?;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "from": report.from,
            "sourceBackend": report.source_backend,
            "revisions": report.revisions,
            "tables": report.tables,
            "verified": true,
        })),
        Format::Text => {
            print_summaries(&report.tables);
            println!(
                "Loaded {} row(s) into {} table(s) from {} (a {} dump at revision {}); counts and checksums verified.",
                total_rows(&report.tables),
                report.tables.len(),
                report.from.display(),
                report.source_backend,
                report.revisions.join("+"),
            );
        }
    }
    Ok(())
}

/// Runs `work` on a one-connection database with a rows bar, then clears the bar and closes.
async fn with_rows_bar<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&Database, &indicatif::ProgressBar) -> Result<T, PortableError>,
) -> Result<T, CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    // Rows done of the current table.
    let bar = terminal_bar("{msg:24} {bar:30} {human_pos}/{human_len} rows  {elapsed}");
    let result = work(&db, &bar).await;
    bar.finish_and_clear();
    db.close().await;
    Ok(result?)
}

fn print_summaries(tables: &[TableSummary]) {
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| vec![t.table.clone(), t.rows.to_string(), t.sha256.clone()])
        .collect();
    print_table(&["TABLE", "ROWS", "SHA-256"], &rows);
}

fn total_rows(tables: &[TableSummary]) -> u64 {
    tables.iter().map(|t| t.rows).sum()
}
