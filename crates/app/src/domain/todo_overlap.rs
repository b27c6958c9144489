//! Who keeps a user's todos from overlapping, and what a refused write answers.
//!
//! On PostgreSQL the database does: the exclusion constraint [`CONSTRAINT`] (made by a
//! migration; `btree_gist` gives `uuid` the `=` operator GiST needs) refuses a todo whose
//! `tstzrange(start_time, end_time)` (half-open, `[)`) overlaps another todo of the same user,
//! for todos with both times only. That is the rule the overlap query of `todos` applies (start
//! before the other's end and end after the other's start), so the answers are the same. A
//! writer takes no lock of its own: two writes of one user run side by side, and only a write
//! whose range meets one not yet committed waits, for that one transaction.
//!
//! SQLite has no exclusion constraint; it has one writer at a time instead
//! ([`crate::db::begin_write`] takes the write lock at BEGIN), so the overlap query inside the
//! write transaction sees every committed todo and nothing can slip in before the write.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, RuntimeErr, TransactionSession, TransactionTrait,
};
use uuid::Uuid;

use super::todos::TodoError;

/// The exclusion constraint on `todo` (see the module docs).
pub const CONSTRAINT: &str = "ex_todo_user_time_no_overlap";

/// PostgreSQL's SQLSTATE for a row an exclusion constraint refuses.
const EXCLUSION_VIOLATION: &str = "23P01";

/// `deadlock_detected`: two racing inserts whose ranges meet can each wait for the other's
/// uncommitted row while checking the exclusion constraint; PostgreSQL then rolls one back.
const DEADLOCK: &str = "40P01";

/// How many times a write runs when its overlap vanished before its conflicts could be named.
pub(super) const ATTEMPTS: usize = 3;

/// Whether the database refuses overlapping todos itself, so a writer needs no check (and no
/// lock) of its own.
pub(super) fn enforced_by_database(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Whether `err` is [`CONSTRAINT`] refusing a row.
pub(super) fn is_violation(err: &DbErr) -> bool {
    server_error(err).is_some_and(|db| {
        db.code().as_deref() == Some(EXCLUSION_VIOLATION) && db.constraint() == Some(CONSTRAINT)
    })
}

/// A deadlock the server broke by rolling this transaction back: nothing was written.
fn is_deadlock(err: &DbErr) -> bool {
    server_error(err).is_some_and(|db| db.code().as_deref() == Some(DEADLOCK))
}

fn server_error(err: &DbErr) -> Option<&dyn sqlx::error::DatabaseError> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            match &**err {
                sqlx::Error::Database(db) => Some(db.as_ref()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What a write that failed with `err` answers: [`TodoError::Overlap`] naming the todos in the
/// way when `err` is the exclusion constraint's, else `err` itself.
///
/// The todos in the way have committed by then (PostgreSQL waits for an uncommitted one before
/// it refuses the row), so a new transaction sees them. `Ok(())` means the overlap is gone
/// already (those todos were moved or deleted since): the write is worth running again.
pub(super) async fn refusal<C: TransactionTrait>(
    db: &C,
    err: DbErr,
    user_id: Uuid,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    except: Option<Uuid>,
) -> Result<(), TodoError> {
    if range.is_some() && is_deadlock(&err) {
        // Rolled back whole by the server: the caller tries again.
        return Ok(());
    }
    let Some((start, end)) = range.filter(|_| is_violation(&err)) else {
        return Err(TodoError::Db(err));
    };
    let txn = db.begin().await?;
    let conflicts = super::todos::overlapping(&txn, user_id, start, end, except).await?;
    txn.commit().await?;
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(TodoError::Overlap(conflicts))
    }
}
