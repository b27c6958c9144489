//! `app database ...`: connection checks, fixtures and migrations.

use std::io::IsTerminal;

use clap::Subcommand;

use super::output::{Format, print_json, print_pairs, print_table, terminal_bar};
use super::{CliError, connect_for_tooling};
use crate::backup::{self, BackupFormat};
use crate::config::Settings;
use crate::doctor::{self, Level};
use crate::fixtures;
use crate::migrate::{
    self, AdoptionRecord, DialectWarning, Direction, Event, LintWarning, MakeKind, MigrateError,
    NoRenames, RenameCandidate, RenamePolicy,
};

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
    /// Write the next migration: the difference between the models and the head of the
    /// migrations. Needs no database. Rebuild afterwards so the binary contains it.
    #[command(visible_alias = "makemigrations")]
    MakeMigrations(MakeArgs),
    /// Alembic's spelling of make-migrations: `revision --autogenerate -m MSG`, or an empty
    /// migration without --autogenerate.
    Revision {
        /// Diff the models against head (otherwise the migration is empty).
        #[arg(long)]
        autogenerate: bool,
        /// What the migration does, in a few words.
        #[arg(short, long)]
        message: String,
    },
    /// Apply migrations up to TARGET: head (default), heads, a revision (or unique prefix), or +N.
    Upgrade {
        /// head, heads, REV or +N; with --sql also FROM:TARGET.
        #[arg(default_value = "head")]
        target: String,
        /// Print the SQL instead of running it, without connecting (for the dialect of DATABASE_URL).
        #[arg(long, conflicts_with = "backup")]
        sql: bool,
        /// Take a backup first (as `app database backup` with its default name) and name the file.
        #[arg(long)]
        backup: bool,
        /// Refuse to run (nothing applied) if the lint finds anything in the migrations to
        /// apply; also DATABASE_MIGRATION_STRICT (which --sql ignores).
        #[arg(long, conflicts_with = "sql")]
        strict: bool,
    },
    /// Undo migrations down to TARGET: -N (default -1), a revision (kept), or base (undo all).
    #[command(allow_hyphen_values = true)]
    Downgrade {
        /// -N, REV or base; with --sql also FROM:TARGET (FROM defaults to head).
        #[arg(default_value = "-1", allow_hyphen_values = true)]
        target: String,
        /// Print the SQL instead of running it, without connecting.
        #[arg(long)]
        sql: bool,
    },
    /// Show the revision(s) the database is at.
    Current {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the migrations, oldest first, with what is applied.
    History {
        /// Also list each migration's operations.
        #[arg(long)]
        verbose: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the head revisions (more than one means branches to merge).
    Heads {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show one migration: parents, message, operations and the SQL of its upgrade.
    Show {
        /// A revision or unique prefix, or head.
        revision: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Set the version table to REV (head, base or a revision) without running migrations.
    Stamp {
        /// head, heads, base or a revision.
        revision: String,
    },
    /// Compare the live database with the schema its revision should have, and the models with
    /// head; list every difference and exit 1 on any.
    Check {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also fail if the lint finds anything in the migrations not applied yet; also
        /// DATABASE_MIGRATION_STRICT.
        #[arg(long)]
        strict: bool,
    },
    /// Accept migrations edited after they were applied: show, per applied revision whose file
    /// no longer matches its checksum, what differs, then rewrite the stored checksum (and the
    /// downgrade SQL stored beside it) to the file's current ones. Nothing in the schema is
    /// changed: make the database match the edit first. Asks on a terminal; elsewhere needs
    /// --yes.
    Repair {
        /// Only this revision (or unique prefix); with it, also refresh a revision whose checksum
        /// matches (its stored downgrade SQL, message and parents).
        revision: Option<String>,
        /// Rewrite without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Write one migration that stands for a chain: the migrations after FROM (default: from
    /// the first) up to and including TO, as their net schema change, declaring
    /// `.replaces(&[...])`. A new database runs it in place of the chain; a database partway
    /// through the chain continues with the originals; one past it has nothing to do. Refuses a
    /// chain with raw SQL, Rust data steps or hand-written downgrades. Keep the replaced files
    /// while the squash is listed. Needs no database; rebuild afterwards.
    Squash {
        /// The last migration to squash (a revision or unique prefix) when it is the only
        /// argument; otherwise FROM: base, or the revision the squash starts after.
        #[arg(value_name = "FROM|TO")]
        first: String,
        /// The last migration to squash, when FROM is given.
        #[arg(value_name = "TO")]
        second: Option<String>,
        /// What the squash is, in a few words (it names the file) [default: squash FIRST to LAST].
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Diagnose the database: connection, pool settings, schema revision and drift, and
    /// backend checks (SQLite integrity, foreign keys, journal mode; PostgreSQL sizes, unused
    /// indexes, slow statements, long sessions). Exits 1 when any finding fails.
    Doctor {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Take over a database the Python service (Litestar + Advanced Alchemy + Alembic) made, at
    /// its Alembic head: print the plan (per table what changes, the tables left alone), take a
    /// backup, ask on a terminal, then bring app's tables to app's head in one transaction and
    /// make the version table app's, keeping the Alembic revision on record. Refuses, before
    /// writing, another Alembic revision, an empty database, or a value it cannot convert; a
    /// database app already manages is nothing to do (exit 0).
    Adopt(super::adopt::AdoptArgs),
    /// Write a backup: PostgreSQL through pg_dump (connection passed by environment), SQLite
    /// as a consistent online copy (SQLite's backup API). A failed backup leaves no file. Shows
    /// progress on stderr when it is a terminal.
    Backup {
        /// Where to write [default: backup-<database>-<UTC timestamp>.dump, .sql or .sqlite3].
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// custom (pg_dump -Fc; a database file on SQLite), plain (SQL script; a database file
        /// on SQLite) or schema (the CREATE statements as SQL).
        #[arg(long, value_enum, default_value_t = BackupFormat::Custom)]
        format: BackupFormat,
    },
    /// Write a portable copy of every table into the directory OUTPUT: manifest.json (schema
    /// revision, columns, row counts, SHA-256 per table) and one JSON Lines file per table,
    /// read in one consistent snapshot. `load` takes it into PostgreSQL or SQLite.
    Dump {
        /// The directory to create (it must not exist, or be empty).
        #[arg(short, long)]
        output: std::path::PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Load a dump into this database, which must be at the dump's revision with every table
    /// empty. Everything is checked before writing; the rows go in in one transaction, and counts
    /// and checksums are read back and compared before it commits.
    Load {
        /// The dump directory (written by `app database dump`).
        path: std::path::PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replace the database's contents with a backup: on PostgreSQL psql empties the current
    /// schema and runs the backup's SQL (pg_restore turns a custom archive into SQL), all in one
    /// transaction; on SQLite an integrity-checked file swapped in atomically. Shows progress on
    /// stderr when it is a terminal.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct MakeArgs {
    /// What the migration does, in a few words (it names the file).
    #[arg(short, long)]
    pub message: String,
    /// Write a migration with no operations, to fill in by hand.
    #[arg(long, conflicts_with = "merge")]
    pub empty: bool,
    /// Write a merge migration joining all heads.
    #[arg(long)]
    pub merge: bool,
    /// Write nothing and fail if the lint (for both dialects) finds anything; also
    /// DATABASE_MIGRATION_STRICT.
    #[arg(long)]
    pub strict: bool,
}

pub async fn run(command: DatabaseCommand, settings: &Settings) -> Result<(), CliError> {
    let db_settings = &settings.database;
    match command {
        DatabaseCommand::Ping { format } => ping(settings, format).await,
        DatabaseCommand::LoadFixtures { format } => load_fixtures(settings, format).await,
        DatabaseCommand::MakeMigrations(args) => {
            let kind = if args.merge {
                MakeKind::Merge
            } else if args.empty {
                MakeKind::Empty
            } else {
                MakeKind::Autogenerate
            };
            let strict = args.strict || db_settings.migration_strict;
            make(settings, &args.message, kind, strict)
        }
        DatabaseCommand::Revision {
            autogenerate,
            message,
        } => {
            let kind = if autogenerate {
                MakeKind::Autogenerate
            } else {
                MakeKind::Empty
            };
            make(settings, &message, kind, db_settings.migration_strict)
        }
        DatabaseCommand::Upgrade {
            target, sql: true, ..
        } => {
            print!(
                "{}",
                migrate::offline_sql(db_settings, Direction::Up, &target)?
            );
            Ok(())
        }
        DatabaseCommand::Downgrade { target, sql: true } => {
            print!(
                "{}",
                migrate::offline_sql(db_settings, Direction::Down, &target)?
            );
            Ok(())
        }
        DatabaseCommand::Upgrade {
            target,
            sql: false,
            backup,
            strict,
        } => {
            if strict || db_settings.migration_strict {
                refuse_lint_findings(settings, &target).await?;
            }
            if backup {
                // Nothing is migrated unless the backup was written.
                let report = backup::backup(db_settings, BackupFormat::Custom, None).await?;
                println!(
                    "Backup written before upgrading: {} ({} bytes).",
                    report.path.display(),
                    report.bytes
                );
            }
            // A binary older or newer than the files would report "already at head".
            migrate::ensure_binary_matches_files(db_settings)?;
            migrate_online(settings, Direction::Up, &target).await
        }
        DatabaseCommand::Downgrade { target, sql: false } => {
            migrate_online(settings, Direction::Down, &target).await
        }
        DatabaseCommand::Current { format } => current(settings, format).await,
        DatabaseCommand::History { verbose, format } => history(settings, verbose, format).await,
        DatabaseCommand::Heads { format } => heads(format),
        DatabaseCommand::Show { revision, format } => show(settings, &revision, format),
        DatabaseCommand::Stamp { revision } => stamp(settings, &revision).await,
        DatabaseCommand::Check { format, strict } => {
            check(settings, format, strict || db_settings.migration_strict).await
        }
        DatabaseCommand::Squash {
            first,
            second,
            message,
        } => super::versions::squash(settings, &first, second.as_deref(), message.as_deref()),
        DatabaseCommand::Repair { revision, yes } => {
            super::versions::repair(settings, revision.as_deref(), yes).await
        }
        DatabaseCommand::Doctor { format } => doctor(settings, format).await,
        DatabaseCommand::Adopt(args) => super::adopt::adopt(settings, args).await,
        DatabaseCommand::Backup { output, format } => {
            let progress = backup::progress::on_terminal("backup");
            let report =
                backup::backup_with_progress(db_settings, format, output, progress).await?;
            println!("Wrote {} ({} bytes).", report.path.display(), report.bytes);
            Ok(())
        }
        DatabaseCommand::Dump { output, format } => {
            super::portable::dump(settings, &output, format).await
        }
        DatabaseCommand::Load { path, format } => {
            super::portable::load(settings, &path, format).await
        }
        DatabaseCommand::Restore { file } => {
            let progress = backup::progress::on_terminal("restore");
            let report = backup::restore_with_progress(db_settings, &file, progress).await?;
            println!(
                "Restored {} ({}) into {}.",
                report.from.display(),
                report.kind,
                report.into
            );
            Ok(())
        }
    }
}

async fn ping(settings: &Settings, format: Format) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let report = db.ping().await?;
    db.close().await;
    match format {
        Format::Json => print_json(&serde_json::json!({
            "backend": report.backend,
            "serverVersion": report.server_version,
            "roundTripMs": report.round_trip.as_secs_f64() * 1000.0,
            "encryption": report.encryption,
            "url": settings.database.url.to_string(),
        })),
        Format::Text => {
            let mut pairs = vec![
                ("backend", report.backend.to_string()),
                ("server version", report.server_version),
                (
                    "round trip",
                    format!("{:.2} ms", report.round_trip.as_secs_f64() * 1000.0),
                ),
            ];
            if let Some(encryption) = report.encryption {
                pairs.push(("encryption", encryption));
            }
            pairs.push(("url", settings.database.url.to_string()));
            print_pairs(&pairs)
        }
    }
    Ok(())
}

async fn load_fixtures(settings: &Settings, format: Format) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let result = fixtures::load_all(db.conn(), settings.database.fixture_path.as_deref()).await;
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

/// Asks at the terminal whether a disappeared-and-appeared pair is a rename.
struct AskAtTerminal;

impl RenamePolicy for AskAtTerminal {
    fn confirm(&mut self, candidate: &RenameCandidate) -> Option<bool> {
        let question = match candidate {
            RenameCandidate::Table { from, to } => format!("Was table {from} renamed to {to}?"),
            RenameCandidate::Column { table, from, to } => {
                format!("Was column {table}.{from} renamed to {table}.{to}?")
            }
        };
        eprint!("{question} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).ok()?;
        Some(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
    }
}

fn make(settings: &Settings, message: &str, kind: MakeKind, strict: bool) -> Result<(), CliError> {
    let message = message.trim();
    if message.is_empty() {
        return Err(CliError::Usage("the message (-m) must not be empty".into()));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut ask = AskAtTerminal;
    let mut no = NoRenames;
    let policy: &mut dyn RenamePolicy = if interactive { &mut ask } else { &mut no };
    let written = migrate::make_migration(
        &settings.database,
        message,
        kind,
        policy,
        chrono::Utc::now(),
        strict,
    );
    let written = match written {
        Err(MigrateError::Strict { findings, outcome }) => {
            print_dialect_lint(&findings);
            return Err(MigrateError::Strict { findings, outcome }.into());
        }
        other => other?,
    };
    let Some(written) = written else {
        println!("No changes in the models; no migration written.");
        return Ok(());
    };
    for warning in &written.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "Wrote {} (revision {})",
        written.path.display(),
        written.revision
    );
    for op in &written.operations {
        println!("  {op}");
    }
    print_dialect_lint(&written.lint);
    if let Some(indexes) = &written.indexes {
        println!(
            "Wrote {} (revision {}, outside a transaction: index builds and drops run CONCURRENTLY on PostgreSQL)",
            indexes.path.display(),
            indexes.revision
        );
        for op in &indexes.operations {
            println!("  {op}");
        }
        print_dialect_lint(&indexes.lint);
    }
    println!("Rebuild (cargo build) so the binary contains it, then run `app database upgrade`.");
    Ok(())
}

fn print_lint(warnings: &[LintWarning]) {
    for w in warnings {
        eprintln!("lint: {:?}: {}: {}", w.risk, w.operation, w.message);
    }
}

/// Lint lines labelled with their dialect where the dialects differ.
fn print_dialect_lint(warnings: &[DialectWarning]) {
    for w in warnings {
        let label = match w.dialect {
            Some(dialect) => format!(" ({dialect})"),
            None => String::new(),
        };
        let w2 = &w.warning;
        eprintln!(
            "lint{label}: {:?}: {}: {}",
            w2.risk, w2.operation, w2.message
        );
    }
}

/// Strict mode before an upgrade: lint what would run, and refuse (nothing applied) on any
/// finding, one line each, then the summary as the error.
async fn refuse_lint_findings(settings: &Settings, target: &str) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let findings = migrate::lint_pending(&db, &settings.database, Direction::Up, target).await;
    db.close().await;
    strict_failure(findings?, "nothing was applied")
}

/// `Ok` without findings; otherwise prints them and fails with the summary.
fn strict_failure(findings: Vec<LintWarning>, outcome: &'static str) -> Result<(), CliError> {
    if findings.is_empty() {
        return Ok(());
    }
    print_lint(&findings);
    let findings = findings
        .into_iter()
        .map(|warning| DialectWarning {
            dialect: None,
            warning,
        })
        .collect();
    Err(MigrateError::Strict { findings, outcome }.into())
}

async fn migrate_online(
    settings: &Settings,
    direction: Direction,
    target: &str,
) -> Result<(), CliError> {
    let db_settings = &settings.database;
    let db = connect_for_tooling(db_settings).await?;
    let progress = Progress::new();
    let result = migrate::run(&db, db_settings, direction, target, &mut |event| {
        progress.on(&event)
    })
    .await;
    progress.finish();
    db.close().await;
    let done = result?;
    let verb = match direction {
        Direction::Up => "upgraded",
        Direction::Down => "downgraded",
    };
    if done.is_empty() {
        println!("Nothing to do: the database is already at {target}.");
    } else {
        println!("{verb} {} migration(s): {}", done.len(), done.join(", "));
    }
    Ok(())
}

/// A progress bar on a terminal; log lines either way.
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new() -> Self {
        Progress {
            bar: terminal_bar("{bar:30} {pos}/{len} {msg}"),
        }
    }

    fn on(&self, event: &Event<'_>) {
        match event {
            Event::Planned { plan } => self.bar.set_length(plan.migrations.len() as u64),
            // Shown before anything runs: the runner lints the plan it made under its lock.
            Event::Linted { warnings } => self.bar.suspend(|| print_lint(warnings)),
            Event::Started { migration } => self
                .bar
                .set_message(format!("{} {}", migration.revision, migration.message)),
            Event::Finished { migration, elapsed } => {
                tracing::info!(
                    revision = %migration.revision,
                    direction = ?migration.direction,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "migration {}: {}", migration.revision, migration.message
                );
                self.bar.inc(1);
            }
            Event::Skipped { migration } => {
                tracing::info!(revision = %migration.revision, "already done by another process");
                self.bar.inc(1);
            }
            Event::Statement { sql } => tracing::debug!(target: "app::migrate", "{sql}"),
            Event::Retrying {
                migration,
                attempt,
                retries,
                delay,
                blocker,
            } => self.bar.suspend(|| {
                tracing::warn!(
                    revision = %migration.revision,
                    attempt,
                    retries,
                    delay_ms = delay.as_millis() as u64,
                    blocker = blocker.unwrap_or("unknown"),
                    "migration {} hit the lock timeout and was rolled back; retry {attempt} of {retries} in {:.1} s",
                    migration.revision,
                    delay.as_secs_f64()
                )
            }),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

async fn current(settings: &Settings, format: Format) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let status = migrate::status(&db, &settings.database).await;
    let adoption = match &status {
        Ok(status) if status.foreign.is_none() => migrate::adoption(&db, &settings.database).await,
        _ => Ok(None),
    };
    db.close().await;
    let (status, adoption) = (status?, adoption?);
    match format {
        Format::Json => print_json(&serde_json::json!({
            "current": status.current,
            "heads": status.heads,
            "pending": if status.foreign.is_some() { Vec::new() } else { status.pending.clone() },
            "unknown": status.unknown,
            "atHead": status.at_head(),
            "foreign": status.foreign.as_ref().map(|f| serde_json::json!({
                "tool": f.tool,
                "revisions": f.revisions,
                "pythonServiceHead": f.tool == crate::legacy::TOOL && f.revisions == [crate::legacy::HEAD],
                "needsAdoption": true,
            })),
            "adoption": adoption,
        })),
        Format::Text => {
            if let Some(foreign) = &status.foreign {
                let revisions = if foreign.revisions.is_empty() {
                    "(none)".to_string()
                } else {
                    foreign.revisions.join(", ")
                };
                println!("{revisions} ({} revision, not app's)", foreign.tool);
                println!("{}", crate::legacy::explain(foreign));
                return Ok(());
            }
            if status.current.is_empty() && status.unknown.is_empty() {
                println!("base (no migration applied)");
            }
            let history = migrate::history()?;
            for rev in &status.current {
                let message = history
                    .get(rev)
                    .map(|m| m.message.clone())
                    .unwrap_or_default();
                let head = if status.heads.contains(rev) {
                    " (head)"
                } else {
                    ""
                };
                println!("{rev}{head} {message}");
            }
            if !status.unknown.is_empty() {
                let db = connect_for_tooling(&settings.database).await?;
                let stored = migrate::stored(&db, &settings.database).await;
                db.close().await;
                let stored = stored.unwrap_or_default();
                for rev in &status.unknown {
                    println!("{}", super::versions::newer_release_line(rev, &stored));
                }
            }
            if !status.pending.is_empty() {
                println!(
                    "{} migration(s) pending: {}",
                    status.pending.len(),
                    status.pending.join(", ")
                );
            }
            if let Some(record) = &adoption {
                println!("{}", adoption_line(record));
            }
        }
    }
    Ok(())
}

/// One line on where an adopted database came from.
fn adoption_line(record: &AdoptionRecord) -> String {
    format!(
        "adopted from {} revision {} into {} at {}{}",
        record.tool,
        record.revision,
        record.adopted_into,
        record.adopted_at,
        record
            .backup
            .as_ref()
            .map(|b| format!("; backup taken before: {b}"))
            .unwrap_or_default()
    )
}

async fn history(settings: &Settings, verbose: bool, format: Format) -> Result<(), CliError> {
    let history = migrate::history()?;
    // History needs no database; show what is applied (and an adoption) when one answers.
    let (applied, adoption, stored): (
        Vec<String>,
        Option<AdoptionRecord>,
        Vec<migrate::StoredRevision>,
    ) = match connect_for_tooling(&settings.database).await {
        Ok(db) => {
            let status = migrate::status(&db, &settings.database).await.ok();
            let stored = match &status {
                Some(s) if !s.unknown.is_empty() => migrate::stored(&db, &settings.database)
                    .await
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let adoption = migrate::adoption(&db, &settings.database)
                .await
                .ok()
                .flatten();
            db.close().await;
            let applied = status
                .map(|s| s.applied.into_iter().map(|r| r.revision).collect())
                .unwrap_or_default();
            (applied, adoption, stored)
        }
        Err(_) => (Vec::new(), None, Vec::new()),
    };
    // Applied revisions no migration of this binary has: a newer release applied them.
    let newer: Vec<&migrate::StoredRevision> = stored
        .iter()
        .filter(|r| !strata::stored::is_known(&history, &r.revision))
        .collect();
    let heads = history.heads();
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = history
                .migrations()
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "revision": m.revision,
                        "parents": m.parents,
                        "message": m.message,
                        "created": m.created,
                        "head": heads.contains(&m.revision.as_str()),
                        "applied": applied.contains(&m.revision),
                        "adopted": adoption.as_ref().is_some_and(|a| history
                            .ancestors(&a.adopted_into)
                            .is_ok_and(|set| set.contains(&m.revision))),
                        "operations": m.operations.iter().map(|op| op.describe()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let newer: Vec<serde_json::Value> = newer
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "revision": r.revision,
                        "parents": r.parents,
                        "message": r.message,
                        "appliedAt": r.applied_at,
                        "downgradeStored": matches!(r.downgrade, migrate::StoredDowngrade::Sql(_)),
                    })
                })
                .collect();
            match (&adoption, newer.is_empty()) {
                (Some(record), _) => print_json(&serde_json::json!({
                    "migrations": items,
                    "adoption": record,
                    "appliedByNewerRelease": newer,
                })),
                (None, false) => print_json(&serde_json::json!({
                    "migrations": items,
                    "appliedByNewerRelease": newer,
                })),
                (None, true) => print_json(&items),
            }
        }
        Format::Text => {
            let adopted = match &adoption {
                Some(record) => history.ancestors(&record.adopted_into).unwrap_or_default(),
                None => Default::default(),
            };
            let rows: Vec<Vec<String>> = history
                .migrations()
                .iter()
                .map(|m| {
                    let mut flags = Vec::new();
                    if heads.contains(&m.revision.as_str()) {
                        flags.push("head");
                    }
                    if applied.contains(&m.revision) {
                        flags.push("applied");
                    }
                    if adopted.contains(&m.revision) {
                        flags.push("adopted");
                    }
                    vec![
                        m.revision.clone(),
                        if m.parents.is_empty() {
                            "<base>".into()
                        } else {
                            m.parents.join(",")
                        },
                        m.created.clone(),
                        flags.join(","),
                        m.message.clone(),
                    ]
                })
                .collect();
            let mut rows = rows;
            rows.extend(newer.iter().map(|r| {
                vec![
                    r.revision.clone(),
                    r.parents.join(","),
                    String::new(),
                    "applied by a newer release".to_string(),
                    r.message.clone().unwrap_or_default(),
                ]
            }));
            print_table(
                &["revision", "parents", "created", "state", "message"],
                &rows,
            );
            for squash in history.squashes() {
                println!(
                    "\nsquash {} ({}) stands for {}: a new database runs it in place of them",
                    squash.revision,
                    squash.message,
                    squash.replaces.join(", ")
                );
            }
            if let Some(record) = &adoption {
                println!(
                    "\n{}; revisions marked adopted cannot be downgraded (restore the backup instead)",
                    adoption_line(record)
                );
            }
            if verbose {
                for m in history.migrations() {
                    println!("\n{} {}", m.revision, m.message);
                    for op in &m.operations {
                        println!("  {}", op.describe());
                    }
                }
            }
        }
    }
    Ok(())
}

fn heads(format: Format) -> Result<(), CliError> {
    let history = migrate::history()?;
    let heads: Vec<(String, String)> = history
        .heads()
        .iter()
        .map(|h| {
            let m = history.get(h).expect("a head is a known revision");
            (m.revision.clone(), m.message.clone())
        })
        .collect();
    match format {
        Format::Json => print_json(
            &heads
                .iter()
                .map(|(r, m)| serde_json::json!({"revision": r, "message": m}))
                .collect::<Vec<_>>(),
        ),
        Format::Text => print_table(
            &["revision", "message"],
            &heads
                .iter()
                .map(|(r, m)| vec![r.clone(), m.clone()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn show(settings: &Settings, revision: &str, format: Format) -> Result<(), CliError> {
    let history = migrate::history()?;
    let revision = match revision {
        "head" => history
            .head()
            .map_err(migrate::MigrateError::from)?
            .ok_or_else(|| CliError::Usage("there are no migrations".into()))?
            .to_string(),
        other => other.to_string(),
    };
    let m = history
        .get(&revision)
        .map_err(migrate::MigrateError::from)?;
    let dialect = migrate::dialect(settings.database.url.backend());
    let planned = migrate::migrator(&settings.database)?
        .planned_upgrade(&m.revision, dialect)
        .map_err(migrate::MigrateError::from)?;
    let sql = planned.step_sql();
    match format {
        Format::Json => print_json(&serde_json::json!({
            "revision": m.revision,
            "parents": m.parents,
            "message": m.message,
            "created": m.created,
            "checksum": m.checksum(),
            "operations": m.operations.iter().map(|op| op.describe()).collect::<Vec<_>>(),
            "sql": sql,
        })),
        Format::Text => {
            print_pairs(&[
                ("revision", m.revision.clone()),
                (
                    "parents",
                    if m.parents.is_empty() {
                        "<base>".into()
                    } else {
                        m.parents.join(", ")
                    },
                ),
                ("message", m.message.clone()),
                ("created", m.created.clone()),
                ("checksum", m.checksum()),
            ]);
            println!("\noperations:");
            for op in &m.operations {
                println!("  {}", op.describe());
            }
            println!("\nupgrade SQL ({dialect}):");
            for statement in sql {
                println!("{statement};");
            }
        }
    }
    Ok(())
}

async fn stamp(settings: &Settings, revision: &str) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let result = migrate::stamp(&db, &settings.database, revision).await;
    db.close().await;
    let stamped = result?;
    match stamped.last() {
        Some(last) => println!(
            "Stamped {last} ({} revision(s) recorded as applied).",
            stamped.len()
        ),
        None => println!("Stamped base (no revision recorded)."),
    }
    Ok(())
}

async fn check(settings: &Settings, format: Format, strict: bool) -> Result<(), CliError> {
    let db = connect_for_tooling(&settings.database).await?;
    let report = migrate::check(&db, &settings.database).await;
    // Strict: the migrations not applied yet are linted too (what an upgrade would run).
    let findings = match (&report, strict) {
        (Ok(_), true) => {
            migrate::lint_pending(&db, &settings.database, Direction::Up, "heads").await
        }
        _ => Ok(Vec::new()),
    };
    db.close().await;
    let report = report?;
    let findings = findings?;
    match format {
        Format::Json => print_json(&report),
        Format::Text => {
            let at = if report.revision.is_empty() {
                "base".to_string()
            } else {
                report.revision.join(", ")
            };
            println!("database at {at}");
            if report.database_drift.is_empty() {
                println!("database matches the migrations at its revision");
            } else {
                println!("database differs from the migrations at its revision:");
                for line in &report.database_drift {
                    println!("  {line}");
                }
            }
            if report.model_drift.is_empty() {
                println!("models match the head migration");
            } else {
                println!("models differ from the head migration (run make-migrations):");
                for line in &report.model_drift {
                    println!("  {line}");
                }
            }
            if !report.pending.is_empty() {
                println!(
                    "{} migration(s) not applied yet: {}",
                    report.pending.len(),
                    report.pending.join(", ")
                );
            }
            if !report.unmanaged.is_empty() {
                println!(
                    "not managed (left alone by the adoption): {}",
                    report.unmanaged.join(", ")
                );
            }
            for index in &report.invalid_indexes {
                println!("{index}");
            }
        }
    }
    if !report.is_clean() {
        print_lint(&findings);
        Err(CliError::Drift(
            report.database_drift.len() + report.model_drift.len() + report.invalid_indexes.len(),
        ))
    } else if !report.pending.is_empty() {
        // Strict: the findings of what an upgrade would run come first.
        strict_failure(findings, "the migrations not applied yet need review")?;
        // As `alembic check`: a database behind head is not ready for this release.
        Err(CliError::Behind(report.pending.len()))
    } else {
        Ok(())
    }
}

async fn doctor(settings: &Settings, format: Format) -> Result<(), CliError> {
    let report = doctor::diagnose(&settings.database, || {
        connect_for_tooling(&settings.database)
    })
    .await;
    match format {
        Format::Json => print_json(&report),
        Format::Text => {
            let rows: Vec<Vec<String>> = report
                .findings
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.status.as_str().to_string(),
                        f.detail.clone(),
                    ]
                })
                .collect();
            print_table(&["check", "status", "detail"], &rows);
            let hints: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.status != Level::Ok)
                .filter_map(|f| f.hint.as_ref().map(|h| (f.name.as_str(), h)))
                .collect();
            if !hints.is_empty() {
                println!("\nhints:");
                for (name, hint) in hints {
                    println!("  {name}: {hint}");
                }
            }
            println!(
                "\n{} ok, {} warn, {} fail",
                report.count(Level::Ok),
                report.count(Level::Warn),
                report.count(Level::Fail)
            );
        }
    }
    match report.count(Level::Fail) {
        0 => Ok(()),
        failing => Err(CliError::Doctor(failing)),
    }
}
