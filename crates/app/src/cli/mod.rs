//! The command line: `app run`, `app database ...` and `app user ...`.

mod adopt;
mod database;
mod output;
mod portable;
mod user;
mod versions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::db::DbError;
use crate::domain::accounts::AccountError;
use crate::domain::roles::RoleError;
use crate::fixtures::FixtureError;
use crate::startup::{Application, StartupError};

pub use output::Format;

/// Todo service with a built-in database toolkit for PostgreSQL and SQLite.
///
/// Settings come from the environment and from `.env.{APP_ENV}` and `.env` in the working
/// directory (the process environment wins). The main ones: DATABASE_URL (default
/// sqlite+aiosqlite:///db.sqlite3), APP_ENV (development, testing, production), LOG_LEVEL.
/// See the README for the full list.
#[derive(Debug, Parser)]
#[command(name = "app", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API until SIGTERM or Ctrl-C.
    ///
    /// In development (APP_ENV=development) it first upgrades the database to head, logging
    /// each migration, and loads the fixtures into a new database; elsewhere it changes no
    /// schema and /health answers 503 while the database is behind head.
    ///
    /// Outside production, with SECRET_KEY unset, tokens are signed with a random key kept in
    /// .app/local_secret_key (LOCAL_SECRET_KEY_PATH), made at the first run, readable by its
    /// owner only.
    ///
    /// On SIGTERM or Ctrl-C it takes no new connections, answers the requests in flight
    /// (/health answers 503 "shutting down"), and after APP_SHUTDOWN_TIMEOUT seconds (default
    /// 10) or a second signal cuts off the rest, rolling their transactions back; it exits 0.
    Run(RunArgs),
    /// Inspect, migrate and prepare the database.
    #[command(subcommand)]
    Database(database::DatabaseCommand),
    /// Create accounts and make or unmake superusers.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Print the shell completion script for SHELL to stdout.
    ///
    /// Needs no settings or database. Install it where your shell looks, for example:
    ///   bash: app completions bash > ~/.local/share/bash-completion/completions/app
    ///   zsh:  app completions zsh > ~/.zfunc/_app   (with ~/.zfunc in fpath)
    ///   fish: app completions fish > ~/.config/fish/completions/app.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to stdout. The script is made in memory first:
/// clap_complete panics on a failed write, and a closed pipe (`| head`) is no reason to.
pub fn print_completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    use std::io::Write as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "app", &mut script);
    std::io::stdout().lock().write_all(&script)
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address to listen on [default: APP_HOST, else 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: APP_PORT, else 8000].
    #[arg(long)]
    pub port: Option<u16>,
}

/// Why a command failed; [`CliError::exit_code`] picks the exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Fixtures(#[from] FixtureError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Role(#[from] RoleError),
    /// A superuser rule refused the change (exit 1).
    #[error(transparent)]
    Refused(#[from] crate::domain::accounts::Refusal),
    #[error(transparent)]
    Startup(Box<StartupError>),
    #[error(transparent)]
    Migrate(Box<crate::migrate::MigrateError>),
    #[error("{0}")]
    Usage(String),
    #[error("check found {0} difference(s)")]
    Drift(usize),
    #[error("the database is {0} revision(s) behind head: run `app database upgrade`")]
    Behind(usize),
    #[error("doctor found {0} failing check(s)")]
    Doctor(usize),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Portable(#[from] crate::portable::PortableError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

// Boxed: these carry whole migration errors, and a `Result` should stay small.
impl From<StartupError> for CliError {
    fn from(err: StartupError) -> Self {
        CliError::Startup(Box::new(err))
    }
}

impl From<crate::migrate::MigrateError> for CliError {
    fn from(err: crate::migrate::MigrateError) -> Self {
        CliError::Migrate(Box::new(err))
    }
}

impl CliError {
    /// 2 for a bad setting, usage or input, 1 for anything else that failed.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_)
            | CliError::Usage(_)
            | CliError::Account(AccountError::Invalid(_)) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// Runs one parsed command with loaded settings.
pub async fn run(cli: Cli, mut settings: Settings) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => {
            if let Some(host) = args.host {
                settings.http.host = host;
            }
            if let Some(port) = args.port {
                settings.http.port = port;
            }
            if let Some(local) = settings.load_local_secret_key()? {
                let how = if local.created {
                    "made a new signing key"
                } else {
                    "signing with the key"
                };
                tracing::info!(
                    path = %local.path.display(),
                    "SECRET_KEY is unset: {how} kept for this machine in {} (owner-only); \
                     tokens stay valid across restarts",
                    local.path.display()
                );
            }
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Database(command) => database::run(command, &settings).await,
        Command::User(command) => user::run(command, &settings).await,
        Command::Completions(args) => Ok(print_completions(args.shell)?),
    }
}

/// A one-connection pool: a command makes a few queries in a row and needs no more, and
/// opening the five of a default pool would be most of its run time.
pub(crate) async fn connect_for_tooling(
    settings: &crate::config::DatabaseSettings,
) -> Result<crate::db::Database, DbError> {
    let mut settings = settings.clone();
    settings.pool_size = 1;
    settings.max_overflow = 0;
    // A dump streams whole tables and a migration may rewrite one: long by nature, not news.
    settings.slow_statement_warning = None;
    crate::db::Database::connect(&settings).await
}
