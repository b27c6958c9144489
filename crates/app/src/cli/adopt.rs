//! `app database adopt`: take over a database the Python service made.

use std::io::{IsTerminal, Write};

use super::output::{Format, print_json, print_table};
use super::{CliError, connect_for_tooling};
use crate::backup::{self, BackupFormat};
use crate::config::Settings;
use crate::db::Database;
use crate::migrate::{self, AdoptError, AdoptionPlan, MigrateError};
use strata::state::Direction;

/// What the user asked for.
#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// Print the whole plan as SQL and change nothing (needs the database, to plan).
    #[arg(long, conflicts_with_all = ["no_backup", "yes"])]
    pub sql: bool,
    /// Output format of the plan and the result.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Do not take a backup first (only when you have one).
    #[arg(long)]
    pub no_backup: bool,
    /// Do not ask before writing (on a terminal it asks otherwise).
    #[arg(short, long)]
    pub yes: bool,
}

pub async fn adopt(settings: &Settings, args: AdoptArgs) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let result = plan_and_adopt(&db, settings, &args).await;
    db.close().await;
    result
}

async fn plan_and_adopt(
    db: &Database,
    settings: &Settings,
    args: &AdoptArgs,
) -> Result<(), CliError> {
    let db_settings = &settings.database;
    let plan = match migrate::plan_adoption(db, db_settings).await {
        Ok(plan) => plan,
        Err(MigrateError::Adopt(err)) => return refusal(*err, args.format),
        Err(other) => return Err(other.into()),
    };
    if args.sql {
        print!("{}", plan.to_sql());
        return Ok(());
    }
    if args.format == Format::Text {
        print_plan(&plan);
    }
    if !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !confirm()?
    {
        return Err(MigrateError::Refused("adoption cancelled; nothing was changed".into()).into());
    }
    let backup = if args.no_backup {
        None
    } else {
        // Nothing is adopted unless the backup was written.
        let report = backup::backup(db_settings, BackupFormat::Custom, None).await?;
        let path = report.path.display().to_string();
        if args.format == Format::Text {
            println!(
                "Backup written before adopting: {path} ({} bytes). To go back: app database restore {path}",
                report.bytes
            );
        }
        Some(path)
    };
    migrate::adopt(db, db_settings, &plan, backup.as_deref()).await?;
    // The adoption stops before a migration it cannot stand in for (raw SQL); those run now.
    let upgraded = migrate::run(db, db_settings, Direction::Up, "head", &mut |_| {}).await?;
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "adopted": true,
            "plan": plan,
            "backup": backup,
            "restore": backup.as_ref().map(|b| format!("app database restore {b}")),
            "upgraded": upgraded,
        })),
        Format::Text => {
            println!(
                "Adopted {} revision {} into {}: {} table(s) brought to app's schema, {} left alone.",
                plan.tool,
                plan.from_revision,
                plan.into_revision,
                plan.tables.len(),
                plan.left_alone.len()
            );
            if !upgraded.is_empty() {
                println!(
                    "Then upgraded {} migration(s): {}",
                    upgraded.len(),
                    upgraded.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Refusals are one line and exit 1, except "already managed", which is success.
fn refusal(err: AdoptError, format: Format) -> Result<(), CliError> {
    match err {
        AdoptError::AlreadyManaged { current } => {
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "adopted": false,
                    "reason": "already managed",
                    "current": current,
                })),
                Format::Text => println!(
                    "Nothing to do: app already manages this database (at {}).",
                    if current.is_empty() { "base".to_string() } else { current.join(", ") }
                ),
            }
            Ok(())
        }
        AdoptError::Empty => Err(MigrateError::Refused(
            "the database is empty: there is nothing to adopt; create app's schema with `app database upgrade`".into(),
        )
        .into()),
        AdoptError::OtherRevision { found, expected, .. } => Err(MigrateError::Refused(format!(
            "the database is at the Python service's Alembic revision {}, not its head {}; upgrade it with the Python service first (alembic upgrade head), then run `app database adopt` again",
            if found.is_empty() { "(none)".to_string() } else { found.join(", ") },
            expected.join(" or ")
        ))
        .into()),
        other => Err(MigrateError::Adopt(Box::new(other)).into()),
    }
}

fn print_plan(plan: &AdoptionPlan) {
    println!(
        "Adopting the Python service's database ({} revision {}) into app's revision {} ({}):",
        plan.tool, plan.from_revision, plan.into_revision, plan.dialect
    );
    for table in &plan.tables {
        let how = if table.rebuilt { ", rebuilt" } else { "" };
        println!("\n{} ({} rows{how})", table.table, table.rows);
        if table.changes.is_empty() && table.conversions.is_empty() {
            println!("  no change");
        }
        for change in &table.changes {
            println!("  {change}");
        }
        for conversion in &table.conversions {
            println!("  data: {conversion}");
        }
    }
    if !plan.left_alone.is_empty() {
        println!("\nLeft alone (not app's tables; kept as they are):");
        print_table(
            &["table", "rows"],
            &plan
                .left_alone
                .iter()
                .map(|t| vec![t.table.clone(), t.rows.to_string()])
                .collect::<Vec<_>>(),
        );
    }
    println!(
        "\nThe version table becomes app's, at {}; the Alembic revision stays on record.",
        plan.into_revision
    );
}

fn confirm() -> Result<bool, CliError> {
    eprint!("Adopt this database now? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}
