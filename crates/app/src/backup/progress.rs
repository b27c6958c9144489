//! What a running backup or restore reports, and the display of it on a terminal.
//!
//! The backup code only calls [`Progress::on`]; library callers pass [`Quiet`], the CLI passes
//! [`on_terminal`], which draws a bar or spinner on stderr when stderr is a terminal and is
//! [`Quiet`] otherwise (so piped output and CI logs get no escape codes).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One report from a running backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// SQLite: database pages copied so far, out of the total.
    Pages { copied: u64, total: u64 },
    /// Bytes written (or fed to psql) so far, out of the total when it is known.
    Bytes { done: u64, total: Option<u64> },
    /// What is being worked on, e.g. `dumping contents of table public.todo`.
    Step(&'a str),
}

/// Receives [`Event`]s while a backup or restore runs, possibly from another thread.
pub trait Progress: Send + Sync {
    fn on(&self, event: Event<'_>);

    /// The work ended, well or not: a display clears itself. Called once, by the backup code.
    fn finish(&self) {}
}

/// Reports nothing: what library callers such as `upgrade --backup` and the tests get.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn on(&self, _event: Event<'_>) {}
}

/// A bar or spinner on stderr labelled `label` when stderr is a terminal; [`Quiet`] otherwise.
pub fn on_terminal(label: &str) -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Terminal::new(label))
    } else {
        Arc::new(Quiet)
    }
}

/// How the display looks; it changes with the kind of event that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing measurable yet: a spinner and the current step.
    Spinner,
    /// A growing output of unknown final size (pg_dump): spinner, bytes, step.
    SpinnerBytes,
    /// SQLite pages out of the total.
    Pages,
    /// Bytes out of a known total.
    BytesBar,
}

fn style(mode: Mode) -> ProgressStyle {
    let template = match mode {
        Mode::Spinner => "{spinner} {prefix}: {wide_msg}",
        Mode::SpinnerBytes => "{spinner} {prefix}: {bytes} written, {wide_msg}",
        Mode::Pages => "{spinner} {prefix}: {msg} [{bar:30}] {pos}/{len} pages ({percent}%)",
        Mode::BytesBar => "{spinner} {prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
    };
    ProgressStyle::with_template(template)
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The indicatif display on stderr.
struct Terminal {
    bar: ProgressBar,
    mode: Mutex<Mode>,
}

impl Terminal {
    fn new(label: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(style(Mode::Spinner));
        bar.set_prefix(label.to_string());
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(120));
        Terminal {
            bar,
            mode: Mutex::new(Mode::Spinner),
        }
    }

    fn switch(&self, mode: Mode) {
        let mut current = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != mode {
            self.bar.set_style(style(mode));
            *current = mode;
        }
    }
}

impl Progress for Terminal {
    fn on(&self, event: Event<'_>) {
        match event {
            Event::Pages { copied, total } => {
                self.switch(Mode::Pages);
                self.bar.set_length(total);
                self.bar.set_position(copied);
            }
            Event::Bytes {
                done,
                total: Some(total),
            } => {
                self.switch(Mode::BytesBar);
                self.bar.set_length(total);
                self.bar.set_position(done);
            }
            Event::Bytes { done, total: None } => {
                self.switch(Mode::SpinnerBytes);
                self.bar.set_position(done);
            }
            Event::Step(what) => self.bar.set_message(what.to_string()),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
