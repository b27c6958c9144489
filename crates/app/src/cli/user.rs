//! `app user ...`: creating accounts and making or unmaking superusers from the shell.

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;
use serde::Serialize;

use super::output::{Format, print_json, print_pairs};
use super::{CliError, connect_for_tooling};
use crate::config::Settings;
use crate::domain::accounts::{self, AccountError, Actor, Guarded, NewUser};
use crate::domain::roles::{self, RoleError};
use crate::models::{role, user_account};

/// Tries a person gets to type a valid, confirmed password.
const PASSWORD_TRIES: usize = 3;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an active account with the application-access role.
    ///
    /// Asks on the terminal for what is not given as a flag: the email, the password (hidden,
    /// asked twice) and, when either of those is asked, the name (Enter for none). Without a
    /// terminal, --email and --password are required.
    Create(CreateArgs),
    /// Make an account a superuser: set is_superuser and assign the superuser role.
    Promote {
        /// The account's email (any case).
        #[arg(long)]
        email: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make a superuser an ordinary account: clear is_superuser and revoke the superuser role.
    ///
    /// Refused for the last active superuser: promote another account first.
    Demote {
        /// The account's email (any case).
        #[arg(long)]
        email: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The account's email; stored trimmed and lowercased.
    #[arg(long)]
    pub email: Option<String>,
    /// The display name.
    #[arg(long)]
    pub name: Option<String>,
    /// The password, at least 8 characters. Visible to other users of this machine in the
    /// process list: prefer the hidden prompt.
    #[arg(long)]
    pub password: Option<String>,
    /// Make the account a superuser (is_superuser and the superuser role).
    #[arg(long)]
    pub superuser: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub async fn run(command: UserCommand, settings: &Settings) -> Result<(), CliError> {
    match command {
        UserCommand::Create(args) => create(args, settings).await,
        UserCommand::Promote { email, format } => {
            let db = connect_for_tooling(&settings.database).await?;
            let result = roles::promote(db.conn(), Actor::Operator, &email).await;
            let shown = match result {
                Ok(user) => show(db.conn(), user, format).await,
                Err(err) => Err(role_change_error(err)),
            };
            db.close().await;
            shown
        }
        UserCommand::Demote { email, format } => {
            let db = connect_for_tooling(&settings.database).await?;
            let result = roles::demote(db.conn(), Actor::Operator, &email).await;
            let shown = match result {
                Ok(user) => show(db.conn(), user, format).await,
                Err(err) => Err(role_change_error(err)),
            };
            db.close().await;
            shown
        }
    }
}

/// A failed or refused role change as the command reports it: one line, exit code 1.
fn role_change_error(err: Guarded<RoleError>) -> CliError {
    match err {
        Guarded::Failed(err) => err.into(),
        Guarded::Refused(refusal) => refusal.into(),
    }
}

async fn create(args: CreateArgs, settings: &Settings) -> Result<(), CliError> {
    let terminal = std::io::stdin().is_terminal();
    // The name is optional: asked only when a person is already being asked for something.
    let ask_name = terminal && (args.email.is_none() || args.password.is_none());
    if !terminal {
        for (flag, value) in [("--email", &args.email), ("--password", &args.password)] {
            if value.is_none() {
                return Err(CliError::Usage(format!(
                    "{flag} is required when no terminal is attached to ask for it"
                )));
            }
        }
    }
    let email = match args.email {
        Some(email) => email,
        None => ask_email()?,
    };
    let db = connect_for_tooling(&settings.database).await?;
    let result = async {
        // Asked before the password, so nobody types one for an account that cannot be made.
        if let Some(existing) = accounts::find_by_email(db.conn(), &email)
            .await
            .map_err(AccountError::from)?
        {
            return Err(AccountError::EmailTaken(existing.email).into());
        }
        let name = match args.name {
            Some(name) => Some(name),
            None if ask_name => ask_line("Name (Enter for none): ")?,
            None => None,
        };
        let password = match args.password {
            Some(password) => password,
            None => ask_password()?,
        };
        let user = accounts::create_user(
            db.conn(),
            NewUser {
                email,
                name,
                password,
                is_superuser: args.superuser,
                is_active: true,
                is_verified: false,
            },
        )
        .await?;
        show(db.conn(), user, args.format).await
    }
    .await;
    db.close().await;
    result
}

/// One line from the terminal, trimmed; `None` when empty.
fn ask_line(prompt: &str) -> Result<Option<String>, CliError> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(CliError::Usage(
            "input ended before a value was given".into(),
        ));
    }
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_string()))
}

fn ask_email() -> Result<String, CliError> {
    loop {
        let Some(email) = ask_line("Email: ")? else {
            continue;
        };
        match accounts::email_problem(&accounts::normalize_email(&email)) {
            None => return Ok(email),
            Some(problem) => eprintln!("the email {problem}"),
        }
    }
}

/// A password typed twice without echo, checked against the account rules.
fn ask_password() -> Result<String, CliError> {
    for _ in 0..PASSWORD_TRIES {
        let password = rpassword::prompt_password("Password: ")?;
        if let Some(problem) = accounts::password_problem(&password) {
            eprintln!("the password {problem}");
            continue;
        }
        let again = rpassword::prompt_password("Password (again): ")?;
        if again == password {
            return Ok(password);
        }
        eprintln!("the passwords differ; try again");
    }
    Err(CliError::Usage(format!(
        "no valid, confirmed password after {PASSWORD_TRIES} tries"
    )))
}

/// An account as the command prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    id: uuid::Uuid,
    email: String,
    name: Option<String>,
    is_active: bool,
    is_superuser: bool,
    is_verified: bool,
    roles: Vec<String>,
}

async fn show(
    db: &crate::db::DbConn,
    user: user_account::Model,
    format: Format,
) -> Result<(), CliError> {
    let roles: Vec<role::Model> = accounts::roles_of(db, user.id).await?;
    let shown = Shown {
        id: user.id,
        email: user.email,
        name: user.name,
        is_active: user.is_active,
        is_superuser: user.is_superuser,
        is_verified: user.is_verified,
        roles: roles.into_iter().map(|role| role.slug).collect(),
    };
    match format {
        Format::Json => print_json(&shown),
        Format::Text => print_pairs(&[
            ("id", shown.id.to_string()),
            ("email", shown.email.clone()),
            ("name", shown.name.clone().unwrap_or_else(|| "-".into())),
            ("active", shown.is_active.to_string()),
            ("superuser", shown.is_superuser.to_string()),
            ("verified", shown.is_verified.to_string()),
            ("roles", shown.roles.join(", ")),
        ]),
    }
    Ok(())
}
