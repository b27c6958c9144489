//! Accounts: sign-up, sign-in, and the user management of superusers.
//!
//! Emails are stored trimmed and lowercased, so lookups compare like with like. Passwords are
//! hashed with argon2id off the executor and never enter a log field. Every check of the input
//! runs before anything is written, and all broken rules are reported together.
//!
//! Two rules guard the superusers, for every caller (HTTP and CLI) and under concurrency: a
//! superuser cannot demote, deactivate or delete their own account, and at least one active
//! superuser always remains. They are checked inside the transaction that makes the change,
//! with the active superusers' rows locked (`lock_active_superusers`), so two superusers
//! demoting each other at the same moment cannot both succeed.
//!
//! Sign-ins from clients go through [`sign_in`], which throttles failures per email and per
//! client address; the counts live in the database (`login_failure`), shared by every instance.

use std::net::IpAddr;
use std::time::Duration;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, LockType};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, LoaderTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::paging::{self, Total};
use super::passwords::{self, HashError};
use super::user_pages::UserPosition;
use crate::config::LoginThrottle;
use crate::fixtures::{APPLICATION_ACCESS_ROLE, SUPERUSER_ROLE};
use crate::models::{login_failure, role, user_account, user_account_role};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in characters (hashing cost stays bounded).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest email accepted (the limit of SMTP paths).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest display name accepted.
pub const MAX_NAME_CHARS: usize = 255;

/// One rule a value broke; `field` is spelled as clients write it (camelCase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl InvalidField {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        InvalidField {
            field,
            message: message.into(),
        }
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{}", describe(.0))]
    Invalid(Vec<InvalidField>),
    #[error("an account with email {0} already exists")]
    EmailTaken(String),
    /// Unknown email and wrong password alike, so a caller cannot probe for accounts.
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("this account is inactive; ask an administrator to reactivate it")]
    Inactive,
    #[error("no user with id {0}")]
    NotFound(Uuid),
    #[error("role {0} is missing; run `app database load-fixtures`")]
    MissingRole(&'static str),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("{}", crate::db::describe(.0))]
    Db(#[from] DbErr),
}

/// Who asks for a change that the rules about superusers guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in superuser, by account id (the HTTP API). They may not demote, deactivate or
    /// delete their own account, and must still be an active superuser when the change runs.
    Superuser(Uuid),
    /// A person at the server's shell (`app user ...`), trusted as whoever holds the database;
    /// still kept from removing the last active superuser.
    Operator,
}

/// A change the rules about superusers refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The actor's own account; says what they tried (`demote`, `deactivate`, ...).
    #[error("you cannot {0} your own account; ask another superuser")]
    OwnAccount(&'static str),
    /// The change would leave no active superuser; names the account.
    #[error(
        "{0} is the last active superuser; make another account a superuser first (app user promote --email E)"
    )]
    LastSuperuser(String),
    /// Another request took the actor's superuser rights (or account) while this one waited.
    #[error("you are no longer an active superuser")]
    NotSuperuser,
}

/// The error of an operation the superuser rules guard: refused by a rule, or failed as the
/// operation can fail anyway (`E`).
#[derive(Debug, thiserror::Error)]
pub enum Guarded<E> {
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Failed(E),
}

impl<E> From<Refusal> for Guarded<E> {
    fn from(refusal: Refusal) -> Self {
        Guarded::Refused(refusal)
    }
}

impl From<AccountError> for Guarded<AccountError> {
    fn from(err: AccountError) -> Self {
        Guarded::Failed(err)
    }
}

impl From<DbErr> for Guarded<AccountError> {
    fn from(err: DbErr) -> Self {
        Guarded::Failed(AccountError::Db(err))
    }
}

impl From<HashError> for Guarded<AccountError> {
    fn from(err: HashError) -> Self {
        Guarded::Failed(AccountError::Hash(err))
    }
}

/// What a change takes from its account, as the superuser rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    Demote,
    Deactivate,
    Delete,
    RevokeSuperuserRole,
}

impl Removal {
    fn verb(self) -> &'static str {
        match self {
            Removal::Demote => "demote",
            Removal::Deactivate => "deactivate",
            Removal::Delete => "delete",
            Removal::RevokeSuperuserRole => "revoke the superuser role of",
        }
    }
}

/// The ids of the active superusers, with their rows locked until the transaction `txn` ends:
/// `FOR NO KEY UPDATE` on PostgreSQL, in id order so that two callers cannot deadlock (and
/// weaker than `FOR UPDATE`, so the foreign-key checks of their todos do not wait). SQLite
/// ignores the clause; there [`crate::db::begin_write`] took the database's write lock at
/// `BEGIN`, which serializes the same way. Call it in a write transaction, before reading the
/// account to change.
pub(crate) async fn lock_active_superusers(txn: &impl ConnectionTrait) -> Result<Vec<Uuid>, DbErr> {
    user_account::Entity::find()
        .select_only()
        .column(user_account::Column::Id)
        .filter(user_account::Column::IsSuperuser.eq(true))
        .filter(user_account::Column::IsActive.eq(true))
        .order_by_asc(user_account::Column::Id)
        .lock(LockType::NoKeyUpdate)
        .into_tuple::<Uuid>()
        .all(txn)
        .await
}

/// The rules about superusers for a change to `target` by `actor` that takes `removal` from it
/// (if anything), given the active superusers [`lock_active_superusers`] returned in the same
/// transaction.
pub(crate) fn check_superuser_rules(
    actor: Actor,
    superusers: &[Uuid],
    target: &user_account::Model,
    removal: Option<Removal>,
) -> Result<(), Refusal> {
    if let Some(removal) = removal {
        if actor == Actor::Superuser(target.id) {
            return Err(Refusal::OwnAccount(removal.verb()));
        }
        if superusers == [target.id] {
            return Err(Refusal::LastSuperuser(target.email.clone()));
        }
    }
    if let Actor::Superuser(id) = actor
        && !superusers.contains(&id)
    {
        return Err(Refusal::NotSuperuser);
    }
    Ok(())
}

fn describe(fields: &[InvalidField]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a superuser gives to create an account.
#[derive(Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub password: String,
    pub is_superuser: bool,
    pub is_active: bool,
    pub is_verified: bool,
}

// By hand, so the password never shows in a log or a panic message.
impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("is_superuser", &self.is_superuser)
            .field("is_active", &self.is_active)
            .field("is_verified", &self.is_verified)
            .finish_non_exhaustive()
    }
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct UserPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub is_active: Option<bool>,
    /// Also assigns or revokes the `superuser` role.
    pub is_superuser: Option<bool>,
    /// Setting it stamps `verified_at` with today (kept when already verified); clearing it
    /// clears `verified_at`.
    pub is_verified: Option<bool>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "(redacted)"))
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .field("is_verified", &self.is_verified)
            .finish()
    }
}

/// The stored form of an email: trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// What is wrong with an (already normalized) email, if anything.
pub fn email_problem(email: &str) -> Option<String> {
    if email.is_empty() {
        return Some("is required".into());
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Some(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    let plausible = email.split_once('@').is_some_and(|(local, domain)| {
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\".contains(c);
        let dotted_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && !part.ends_with('.')
                && !part.contains("..")
        };
        dotted_ok(local)
            && local.chars().count() <= 64
            && !local.chars().any(bad_char)
            && dotted_ok(domain)
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
    });
    (!plausible).then(|| "is not a plausible email address".into())
}

/// What is wrong with a password, if anything.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars == 0 {
        Some("is required".into())
    } else if chars < MIN_PASSWORD_CHARS {
        Some(format!("must be at least {MIN_PASSWORD_CHARS} characters"))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!("must be at most {MAX_PASSWORD_CHARS} characters"))
    } else {
        None
    }
}

/// The stored form of a display name: trimmed, `None` when blank.
fn normalize_name(name: Option<&str>) -> Option<String> {
    name.map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

fn check_name(name: Option<&str>, problems: &mut Vec<InvalidField>) {
    // PostgreSQL cannot store U+0000 in text (SQLite would): refused on both.
    if name.is_some_and(|name| name.contains('\0')) {
        problems.push(InvalidField::new("name", super::tags::NUL_MESSAGE));
    } else if name.is_some_and(|name| name.chars().count() > MAX_NAME_CHARS) {
        problems.push(InvalidField::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
}

fn check_email(email: &str, problems: &mut Vec<InvalidField>) {
    if let Some(message) = email_problem(email) {
        problems.push(InvalidField::new("email", message));
    }
}

fn check_password(password: &str, problems: &mut Vec<InvalidField>) {
    if let Some(message) = password_problem(password) {
        problems.push(InvalidField::new("password", message));
    }
}

fn ok_or_invalid(problems: Vec<InvalidField>) -> Result<(), AccountError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AccountError::Invalid(problems))
    }
}

/// A unique violation on insert or update of an account can only be the email.
fn taken_or(email: &str, err: DbErr) -> AccountError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AccountError::EmailTaken(email.to_string()),
        _ => AccountError::Db(err),
    }
}

async fn email_taken_by_another(
    db: &impl ConnectionTrait,
    email: &str,
    id: Uuid,
) -> Result<bool, DbErr> {
    Ok(user_account::Entity::find()
        .filter(user_account::Column::Email.eq(email))
        .filter(user_account::Column::Id.ne(id))
        .count(db)
        .await?
        > 0)
}

async fn email_exists(db: &impl ConnectionTrait, email: &str) -> Result<bool, DbErr> {
    Ok(user_account::Entity::find()
        .filter(user_account::Column::Email.eq(email))
        .count(db)
        .await?
        > 0)
}

/// The account with this email (normalized first), if any.
pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<user_account::Model>, DbErr> {
    // No stored email holds U+0000 (`email_problem` refuses control characters), and
    // PostgreSQL would refuse the parameter: no account, without asking.
    if email.contains('\0') {
        return Ok(None);
    }
    user_account::Entity::find()
        .filter(user_account::Column::Email.eq(normalize_email(email)))
        .one(db)
        .await
}

/// The role with this slug, if any.
pub(crate) async fn find_role(
    db: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<role::Model>, DbErr> {
    role::Entity::find()
        .filter(role::Column::Slug.eq(slug))
        .one(db)
        .await
}

/// Gives `user_id` the role; nothing happens when it already holds it.
pub(crate) async fn link_role(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    role_id: Uuid,
) -> Result<(), DbErr> {
    let now = crate::models::now();
    let mut link = user_account_role::ActiveModel::new();
    link.user_id = Set(user_id);
    link.role_id = Set(role_id);
    link.assigned_at = Set(now);
    link.created_at = Set(now);
    link.updated_at = Set(now);
    // ON CONFLICT DO NOTHING rather than catching the violation: on PostgreSQL a failed
    // statement would abort the surrounding transaction.
    user_account_role::Entity::insert(link)
        .on_conflict_do_nothing_on([
            user_account_role::Column::UserId,
            user_account_role::Column::RoleId,
        ])
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Takes the role from `user_id`; nothing happens when it does not hold it.
pub(crate) async fn unlink_role(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    role_id: Uuid,
) -> Result<(), DbErr> {
    user_account_role::Entity::delete_many()
        .filter(user_account_role::Column::UserId.eq(user_id))
        .filter(user_account_role::Column::RoleId.eq(role_id))
        .exec(db)
        .await?;
    Ok(())
}

async fn required_role(
    db: &impl ConnectionTrait,
    slug: &'static str,
) -> Result<role::Model, AccountError> {
    find_role(db, slug)
        .await?
        .ok_or(AccountError::MissingRole(slug))
}

/// Inserts a checked account with its roles, in one transaction.
async fn insert_account(
    db: &crate::db::DbConn,
    new: NewUser,
    hashed_password: String,
) -> Result<user_account::Model, AccountError> {
    let txn = crate::db::begin_write(db).await?;
    let access = required_role(&txn, APPLICATION_ACCESS_ROLE).await?;
    let superuser = if new.is_superuser {
        Some(required_role(&txn, SUPERUSER_ROLE).await?)
    } else {
        None
    };
    let today = chrono::Utc::now().date_naive();
    let mut row = user_account::ActiveModel::new();
    row.email = Set(new.email.clone());
    row.name = Set(new.name);
    row.hashed_password = Set(Some(hashed_password));
    row.avatar_url = Set(None);
    row.is_active = Set(new.is_active);
    row.is_superuser = Set(new.is_superuser);
    row.is_verified = Set(new.is_verified);
    row.verified_at = Set(new.is_verified.then_some(today));
    row.joined_at = Set(today);
    row.login_count = Set(0);
    let user = row
        .insert(&txn)
        .await
        .map_err(|err| taken_or(&new.email, err))?;
    link_role(&txn, user.id, access.id).await?;
    if let Some(superuser) = superuser {
        link_role(&txn, user.id, superuser.id).await?;
    }
    txn.commit().await?;
    Ok(user)
}

/// Checks and normalizes a new account, then hashes its password.
async fn prepare(
    db: &crate::db::DbConn,
    mut new: NewUser,
) -> Result<(NewUser, String), AccountError> {
    new.email = normalize_email(&new.email);
    new.name = normalize_name(new.name.as_deref());
    let mut problems = Vec::new();
    check_email(&new.email, &mut problems);
    check_name(new.name.as_deref(), &mut problems);
    check_password(&new.password, &mut problems);
    ok_or_invalid(problems)?;
    // Checked first for a clear answer without hashing; the unique key still decides a race.
    if email_exists(db, &new.email).await? {
        return Err(AccountError::EmailTaken(new.email));
    }
    let hashed = passwords::hash(std::mem::take(&mut new.password)).await?;
    Ok((new, hashed))
}

/// Registers an active, unverified account holding the `application-access` role.
///
/// The email is trimmed and lowercased and must look like an address; the password needs at
/// least [`MIN_PASSWORD_CHARS`] characters. A taken email is [`AccountError::EmailTaken`], also
/// when another sign-up wins a race for it.
#[tracing::instrument(skip(db, password))]
pub async fn signup(
    db: &crate::db::DbConn,
    email: &str,
    name: Option<&str>,
    password: &str,
) -> Result<user_account::Model, AccountError> {
    let new = NewUser {
        email: email.to_string(),
        name: name.map(str::to_string),
        password: password.to_string(),
        is_superuser: false,
        is_active: true,
        is_verified: false,
    };
    let (new, hashed) = prepare(db, new).await?;
    let user = insert_account(db, new, hashed).await?;
    tracing::info!(user_id = %user.id, "account signed up");
    Ok(user)
}

/// Creates an account with the given flags (for superusers and `app user create`). It gets
/// the `application-access` role, and the `superuser` role too when `is_superuser` is set.
#[tracing::instrument(skip(db))]
pub async fn create_user(
    db: &crate::db::DbConn,
    new: NewUser,
) -> Result<user_account::Model, AccountError> {
    let (new, hashed) = prepare(db, new).await?;
    let user = insert_account(db, new, hashed).await?;
    tracing::info!(user_id = %user.id, "account created");
    Ok(user)
}

/// A valid argon2id hash of nothing in particular, to verify against when the email is
/// unknown: the answer then takes as long as for a wrong password.
async fn dummy_hash() -> &'static str {
    static DUMMY: OnceCell<String> = OnceCell::const_new();
    DUMMY
        .get_or_init(|| async {
            passwords::hash(Uuid::now_v7().to_string())
                .await
                .unwrap_or_default()
        })
        .await
}

/// The account of `email` when `password` is its password, with `login_count` counted up.
///
/// An unknown email and a wrong password are the same [`AccountError::InvalidCredentials`]
/// and take about the same time. [`AccountError::Inactive`] is told only to a caller who knew
/// the password.
#[tracing::instrument(skip(db, password))]
pub async fn authenticate(
    db: &crate::db::DbConn,
    email: &str,
    password: &str,
) -> Result<user_account::Model, AccountError> {
    let user = find_by_email(db, email).await?;
    let stored = user.as_ref().and_then(|user| user.hashed_password.clone());
    let matches = match stored {
        Some(hash) => passwords::verify(password.to_string(), hash).await,
        None => {
            passwords::verify(password.to_string(), dummy_hash().await.to_string()).await;
            false
        }
    };
    let Some(mut user) = user.filter(|_| matches) else {
        tracing::info!("sign-in refused");
        return Err(AccountError::InvalidCredentials);
    };
    if !user.is_active {
        tracing::info!(user_id = %user.id, "sign-in of an inactive account refused");
        return Err(AccountError::Inactive);
    }
    // One statement, so concurrent sign-ins all count.
    user_account::Entity::update_many()
        .col_expr(
            user_account::Column::LoginCount,
            Expr::col(user_account::Column::LoginCount).add(1),
        )
        .col_expr(
            user_account::Column::UpdatedAt,
            Expr::value(crate::models::now()),
        )
        .filter(user_account::Column::Id.eq(user.id))
        .exec(db)
        .await?;
    user.login_count += 1;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(user)
}

/// One sign-in attempt by a client.
#[derive(Clone, Copy)]
pub struct SignIn<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// The client's address, when the server knows it; without one, only the email's failures
    /// are counted.
    pub address: Option<IpAddr>,
}

// By hand, so the password never shows in a log or a panic message.
impl std::fmt::Debug for SignIn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in through [`sign_in`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Too many failed sign-ins for this email or from this address within the window.
    #[error("too many failed sign-ins; try again in {} seconds", .retry_after.as_secs())]
    Throttled {
        /// When the next attempt may pass, at the earliest (whole seconds, at least one).
        retry_after: Duration,
    },
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<DbErr> for SignInError {
    fn from(err: DbErr) -> Self {
        SignInError::Account(AccountError::Db(err))
    }
}

/// [`authenticate`] for a client, throttled by `limits`: once an email (known or not) has
/// `max_failures_per_account` failed sign-ins within the window, or a client address has
/// `max_failures_per_address`, the next attempts answer [`SignInError::Throttled`] without
/// looking at the password, until the oldest of those failures is older than the window.
///
/// A correct password clears the email's failures (not the address's: one good account must
/// not unlock guessing at others). Unknown and known emails take the same steps and about the
/// same time. Each attempt is written down as a failure before the password is checked and
/// taken back unless it was wrong, so concurrent attempts cannot slip past the limit together;
/// failures older than the window are deleted as new ones come in.
#[tracing::instrument(skip_all, fields(address = ?attempt.address))]
pub async fn sign_in(
    db: &crate::db::DbConn,
    limits: &LoginThrottle,
    attempt: SignIn<'_>,
) -> Result<user_account::Model, SignInError> {
    let now = crate::models::now();
    let window = chrono::Duration::from_std(limits.window).unwrap_or(chrono::Duration::MAX);
    let since = now
        .checked_sub_signed(window)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let account_key = digest(&normalize_email(attempt.email));
    let address_key = attempt
        .address
        .map(|address| digest(&address_scope(address)));

    let mut row = login_failure::ActiveModel::new();
    let own_id = Uuid::now_v7();
    row.id = Set(own_id);
    row.account_key = Set(account_key.clone());
    row.address_key = Set(address_key.clone());
    row.created_at = Set(now);
    row.updated_at = Set(now);
    login_failure::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    let forget_own = || login_failure::Entity::delete_by_id(own_id).exec(db);

    let mut checks = vec![(
        login_failure::Column::AccountKey,
        account_key.as_str(),
        limits.max_failures_per_account,
    )];
    if let Some(key) = &address_key {
        checks.push((
            login_failure::Column::AddressKey,
            key.as_str(),
            limits.max_failures_per_address,
        ));
    }
    let mut over = Vec::new();
    for (column, key, limit) in checks {
        let recent = login_failure::Entity::find()
            .filter(column.eq(key))
            .filter(login_failure::Column::CreatedAt.gt(since))
            .count(db)
            .await?;
        // `recent` counts this attempt too.
        if recent > u64::from(limit) {
            over.push((column, key, limit));
        }
    }
    if !over.is_empty() {
        forget_own().await?;
        let mut free_at = now;
        for (column, key, limit) in over {
            // The attempt passes again once fewer than `limit` failures are within the
            // window: when the `limit`-th newest one leaves it.
            let oldest_that_blocks: Option<chrono::DateTime<chrono::Utc>> =
                login_failure::Entity::find()
                    .select_only()
                    .column(login_failure::Column::CreatedAt)
                    .filter(column.eq(key))
                    .filter(login_failure::Column::CreatedAt.gt(since))
                    .order_by_desc(login_failure::Column::CreatedAt)
                    .offset(u64::from(limit) - 1)
                    .limit(1)
                    .into_tuple()
                    .one(db)
                    .await?;
            if let Some(at) = oldest_that_blocks {
                free_at = Ord::max(free_at, at.checked_add_signed(window).unwrap_or(at));
            }
        }
        let wait = (free_at - now).to_std().unwrap_or_default();
        let retry_after = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            .max(Duration::from_secs(1));
        tracing::info!(
            retry_after_secs = retry_after.as_secs(),
            "sign-in throttled"
        );
        return Err(SignInError::Throttled { retry_after });
    }

    match authenticate(db, attempt.email, attempt.password).await {
        Ok(user) => {
            // This attempt's row goes with the rest of the email's failures.
            login_failure::Entity::delete_many()
                .filter(login_failure::Column::AccountKey.eq(account_key.as_str()))
                .exec(db)
                .await?;
            Ok(user)
        }
        Err(AccountError::InvalidCredentials) => {
            // This attempt's row stays: it is the failure. Older ones than the window go.
            login_failure::Entity::delete_many()
                .filter(login_failure::Column::CreatedAt.lte(since))
                .exec(db)
                .await?;
            Err(AccountError::InvalidCredentials.into())
        }
        Err(err) => {
            // The right password for an inactive account, or the database failed: no guess
            // was wrong.
            forget_own().await?;
            Err(err.into())
        }
    }
}

/// SHA-256 of `text`, hex: how `login_failure` stores emails and addresses.
fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The part of a client address the throttle counts by: an IPv4 address whole, an IPv6 client
/// by its /64 network (one subscriber's addresses are cheap to rotate within it).
fn address_scope(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// One page of accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserList {
    pub items: Vec<user_account::Model>,
    /// The accounts matching the search, on all pages, counted only up to a bound.
    pub total: Total,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<UserPosition>,
}

/// One page of accounts, oldest first (then by id), how many match in all (exact up to
/// [`super::paging::EXACT_TOTAL_UP_TO`]) and where the next page starts: after `after` (a
/// range of the `(created_at, id)` index, the same cost at any depth), or at `offset`.
///
/// `search` matches a part of the email or the name, ignoring case (see
/// [`super::search`]).
#[tracing::instrument(skip(db))]
pub async fn list_users(
    db: &crate::db::DbConn,
    search: Option<&str>,
    limit: u64,
    offset: u64,
    after: Option<&UserPosition>,
) -> Result<UserList, AccountError> {
    if let Some(after) = after {
        let mut problems = Vec::new();
        if offset != 0 {
            problems.push(InvalidField::new(
                "offset",
                "cannot be combined with cursor: the cursor says where the page starts",
            ));
        }
        if !after.fits(search) {
            problems.push(InvalidField::new(
                "cursor",
                "was made for another search; send the same search as the first page, or start again without cursor",
            ));
        }
        if !problems.is_empty() {
            return Err(AccountError::Invalid(problems));
        }
    }
    let mut query = user_account::Entity::find();
    if let Some(term) = search.map(str::trim).filter(|term| !term.is_empty()) {
        query = query.filter(
            super::search::condition(db, super::search::ACCOUNT_EMAIL_OR_NAME, term).await?,
        );
    }
    let total = paging::bounded_count(db, query.clone()).await?;
    if let Some(after) = after {
        query = query.filter(after.after());
    }
    // One more than the page tells whether another follows.
    let mut users = query
        .order_by_asc(user_account::Column::CreatedAt)
        .order_by_asc(user_account::Column::Id)
        .limit(limit + 1)
        .offset(offset)
        .all(db)
        .await?;
    let more = users.len() as u64 > limit;
    users.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = users
        .last()
        .filter(|_| more)
        .map(|last| UserPosition::of(last, search));
    Ok(UserList {
        items: users,
        total,
        next,
    })
}

/// The account with this id.
#[tracing::instrument(skip(db))]
pub async fn get_user(
    db: &crate::db::DbConn,
    id: Uuid,
) -> Result<user_account::Model, AccountError> {
    user_account::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AccountError::NotFound(id))
}

/// Applies `patch` to the account `id` for `actor`, in one transaction. Every field is checked
/// before anything is written; a changed `is_superuser` also assigns or revokes the
/// `superuser` role, and a new password (hashed with a fresh salt) refuses the tokens issued
/// before (see [`super::tokens::Claims::check_holder`]).
///
/// Demoting or deactivating follows the superuser rules ([`Refusal`]), checked with the active
/// superusers locked: a concurrent change that would also remove one waits, then sees this one.
#[tracing::instrument(skip(db))]
pub async fn update_user(
    db: &crate::db::DbConn,
    actor: Actor,
    id: Uuid,
    mut patch: UserPatch,
) -> Result<user_account::Model, Guarded<AccountError>> {
    let email = patch.email.as_deref().map(normalize_email);
    let name = patch
        .name
        .as_ref()
        .map(|name| normalize_name(name.as_deref()));
    let mut problems = Vec::new();
    if let Some(email) = &email {
        check_email(email, &mut problems);
    }
    if let Some(Some(name)) = &name {
        check_name(Some(name), &mut problems);
    }
    if let Some(password) = &patch.password {
        check_password(password, &mut problems);
    }
    ok_or_invalid(problems)?;
    // Checked first for a clear answer; the unique key still decides a race.
    if let Some(email) = &email
        && email_taken_by_another(db, email, id).await?
    {
        return Err(AccountError::EmailTaken(email.clone()).into());
    }
    // Hashed before the transaction, so no connection waits on argon2.
    let hashed = match patch.password.take() {
        Some(password) => Some(passwords::hash(password).await?),
        None => None,
    };

    let txn = crate::db::begin_write(db).await?;
    let superusers = lock_active_superusers(&txn).await?;
    let current = user_account::Entity::find_by_id(id)
        .lock(LockType::NoKeyUpdate)
        .one(&txn)
        .await?
        .ok_or(AccountError::NotFound(id))?;
    let removal = if patch.is_superuser == Some(false) {
        Some(Removal::Demote)
    } else if patch.is_active == Some(false) {
        Some(Removal::Deactivate)
    } else {
        None
    };
    check_superuser_rules(actor, &superusers, &current, removal)?;
    let superuser_change = patch
        .is_superuser
        .filter(|wanted| *wanted != current.is_superuser);
    let was_verified = current.is_verified;
    let mut row = current.into_active_model();
    if let Some(email) = &email {
        row.email = Set(email.clone());
    }
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(hashed) = hashed {
        row.hashed_password = Set(Some(hashed));
    }
    if let Some(active) = patch.is_active {
        row.is_active = Set(active);
    }
    if let Some(superuser) = patch.is_superuser {
        row.is_superuser = Set(superuser);
    }
    match patch.is_verified {
        Some(true) if !was_verified => {
            row.is_verified = Set(true);
            row.verified_at = Set(Some(chrono::Utc::now().date_naive()));
        }
        Some(false) => {
            row.is_verified = Set(false);
            row.verified_at = Set(None);
        }
        _ => {}
    }
    let email_for_error = email.clone().unwrap_or_default();
    let user = row
        .update(&txn)
        .await
        .map_err(|err| taken_or(&email_for_error, err))?;
    if let Some(superuser) = superuser_change {
        let role = required_role(&txn, SUPERUSER_ROLE).await?;
        if superuser {
            link_role(&txn, user.id, role.id).await?;
        } else {
            unlink_role(&txn, user.id, role.id).await?;
        }
    }
    txn.commit().await?;
    tracing::info!(user_id = %user.id, "account updated");
    Ok(user)
}

/// Deletes the account for `actor`; the database's cascades take its todos, tags and role
/// links. Follows the superuser rules ([`Refusal`]) like [`update_user`].
#[tracing::instrument(skip(db))]
pub async fn delete_user(
    db: &crate::db::DbConn,
    actor: Actor,
    id: Uuid,
) -> Result<(), Guarded<AccountError>> {
    let txn = crate::db::begin_write(db).await?;
    let superusers = lock_active_superusers(&txn).await?;
    let target = user_account::Entity::find_by_id(id)
        .lock(LockType::Update)
        .one(&txn)
        .await?
        .ok_or(AccountError::NotFound(id))?;
    check_superuser_rules(actor, &superusers, &target, Some(Removal::Delete))?;
    user_account::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    tracing::info!(user_id = %id, "account deleted");
    Ok(())
}

/// The roles of one account, by slug (none for an unknown id), in one query.
#[tracing::instrument(skip(db))]
pub async fn roles_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<role::Model>, AccountError> {
    let links = user_account_role::Entity::find()
        .filter(user_account_role::Column::UserId.eq(user_id))
        .find_also_related(role::Entity)
        .all(db)
        .await?;
    let mut roles: Vec<role::Model> = links.into_iter().filter_map(|(_, role)| role).collect();
    roles.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(roles)
}

/// The roles of each account, in the order given, in one query for all of them.
#[tracing::instrument(skip_all, fields(users = users.len()))]
pub async fn roles_of_each(
    db: &impl ConnectionTrait,
    users: &[user_account::Model],
) -> Result<Vec<Vec<role::Model>>, AccountError> {
    let mut all = users.load_many(role::Entity, db).await?;
    for roles in &mut all {
        roles.sort_by(|a, b| a.slug.cmp(&b.slug));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org", "ü@bücher.de"] {
            assert_eq!(email_problem(ok), None, "{ok}");
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@example..com",
            "a@-example.com",
            "a@example.com.",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(email_problem("").as_deref(), Some("is required"));
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(email_problem(&long).is_some());
    }

    #[test]
    fn password_rules() {
        assert_eq!(password_problem("").as_deref(), Some("is required"));
        assert!(password_problem("seven77").is_some());
        assert_eq!(password_problem("eight888"), None);
        assert!(password_problem(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_some());
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let new = NewUser {
            password: "hunter2hunter2".into(),
            ..NewUser::default()
        };
        assert!(!format!("{new:?}").contains("hunter2"));
        let patch = UserPatch {
            password: Some("hunter2hunter2".into()),
            ..UserPatch::default()
        };
        assert!(!format!("{patch:?}").contains("hunter2"));
    }
}
