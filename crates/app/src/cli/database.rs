//! `app database ...`: connection checks and fixtures.

use clap::Subcommand;

use super::CliError;
use super::output::{Format, print_json, print_pairs, print_table};
use crate::config::Settings;
use crate::db::Database;
use crate::fixtures;

#[derive(Debug, Subcommand)]
pub enum DatabaseCommand {
    /// Connect, run a trivial query, and print the backend, server version and round-trip time.
    Ping {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Upsert the JSON fixtures of DATABASE_FIXTURE_PATH (roles by name); running twice changes nothing.
    LoadFixtures {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub async fn run(command: DatabaseCommand, settings: &Settings) -> Result<(), CliError> {
    match command {
        DatabaseCommand::Ping { format } => ping(settings, format).await,
        DatabaseCommand::LoadFixtures { format } => load_fixtures(settings, format).await,
    }
}

async fn ping(settings: &Settings, format: Format) -> Result<(), CliError> {
    let db = Database::connect(&settings.database).await?;
    let report = db.ping().await?;
    db.close().await;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "backend": report.backend,
            "serverVersion": report.server_version,
            "roundTripMs": report.round_trip.as_secs_f64() * 1000.0,
            "url": settings.database.url.to_string(),
        })),
        Format::Text => print_pairs(&[
            ("backend", report.backend.to_string()),
            ("server version", report.server_version),
            (
                "round trip",
                format!("{:.2} ms", report.round_trip.as_secs_f64() * 1000.0),
            ),
            ("url", settings.database.url.to_string()),
        ]),
    }
    Ok(())
}

async fn load_fixtures(settings: &Settings, format: Format) -> Result<(), CliError> {
    let db = Database::connect(&settings.database).await?;
    let result = fixtures::load_all(db.conn(), &settings.database.fixture_path).await;
    db.close().await;
    let reports = result?;
    match format {
        Format::Json => print_json(&reports),
        Format::Text => print_table(
            &["table", "inserted", "updated", "unchanged", "file"],
            &reports
                .iter()
                .map(|r| {
                    vec![
                        r.table.to_string(),
                        r.inserted.to_string(),
                        r.updated.to_string(),
                        r.unchanged.to_string(),
                        r.file.display().to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}
