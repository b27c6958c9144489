//! The `app` binary: parses the command line, loads settings once, runs the command and maps
//! its error to one line on stderr and an exit code.

use std::process::ExitCode;
use std::time::Duration;

use app::cli::{self, Cli};
use app::config::Settings;
use clap::Parser;

fn main() -> ExitCode {
    app::allocator::bound_growth();
    let cli = Cli::parse();
    // Completions need no settings: a shell set-up script must work before any `.env` exists.
    if let cli::Command::Completions(args) = &cli.command {
        return match cli::print_completions(args.shell) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: cannot write the completion script: {err}");
                ExitCode::from(1)
            }
        };
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    app::telemetry::init(&settings.log_filter, settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::run(cli, settings));
    // Tasks still running (requests `app run` cut off at its shutdown deadline) are dropped
    // here, which rolls their transactions back; blocking work gets a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
