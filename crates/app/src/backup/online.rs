//! The SQLite online backup API (`sqlite3_backup_*`): the only `unsafe` code of the backup.
//!
//! It works on connections that sqlx opened and lent to us through
//! [`LockedSqliteHandle`], so the SQLite it calls is the one sqlx links (one `libsqlite3-sys`
//! in the build) and the connections' settings are sqlx's.

use std::ffi::{CStr, c_char, c_int};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

/// Copies the `main` database of `source` over the `main` database of `dest`,
/// `pages_per_step` pages at a time, calling `on_step(copied, total)` after each step.
///
/// A step that finds a database busy or locked is retried after a short sleep, until
/// `busy_timeout` passes without progress. The copy is consistent when `source` holds a read
/// transaction for the whole copy (otherwise SQLite restarts it whenever another connection
/// writes). Blocks the thread; errors are SQLite's messages.
pub(super) fn copy_database(
    source: &mut LockedSqliteHandle<'_>,
    dest: &mut LockedSqliteHandle<'_>,
    pages_per_step: c_int,
    busy_timeout: Duration,
    mut on_step: impl FnMut(u64, u64),
) -> Result<(), String> {
    let src = source.as_raw_handle().as_ptr();
    let dst = dest.as_raw_handle().as_ptr();
    let main = c"main".as_ptr();
    // SAFETY: `src` and `dst` are open connections: a `LockedSqliteHandle` exists only for a
    // live connection, and the `&mut` borrows keep both guards (and so the connections) alive
    // and locked until this function returns, so sqlx's worker threads make no call on them
    // meanwhile. They are different connections: one connection cannot be locked twice.
    // `main` is a NUL-terminated static string.
    let backup = unsafe { ffi::sqlite3_backup_init(dst, main, src, main) };
    let Some(backup) = NonNull::new(backup) else {
        // SAFETY: on failure, sqlite3_backup_init leaves its error on `dst`, which is valid.
        return Err(unsafe { last_error(dst) });
    };

    let mut last_progress = Instant::now();
    let stepped = loop {
        // SAFETY: `backup` is live: init returned it and sqlite3_backup_finish has not been
        // called (it is called once, below, after this loop).
        let rc = unsafe { ffi::sqlite3_backup_step(backup.as_ptr(), pages_per_step) };
        // SAFETY: as above; both only read counters of the live backup object.
        let (remaining, total) = unsafe {
            (
                ffi::sqlite3_backup_remaining(backup.as_ptr()),
                ffi::sqlite3_backup_pagecount(backup.as_ptr()),
            )
        };
        let total = u64::try_from(total).unwrap_or(0);
        let copied = total.saturating_sub(u64::try_from(remaining).unwrap_or(0));
        match rc & 0xff {
            ffi::SQLITE_OK => {
                on_step(copied, total);
                last_progress = Instant::now();
            }
            ffi::SQLITE_DONE => {
                on_step(total, total);
                break Ok(());
            }
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => {
                if last_progress.elapsed() >= busy_timeout {
                    break Err(format!(
                        "the database stayed busy for {} s ({})",
                        busy_timeout.as_secs(),
                        error_string(rc)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break Err(error_string(rc)),
        }
    };

    // SAFETY: `backup` is live and is not used after this call, which frees it.
    let finished = unsafe { ffi::sqlite3_backup_finish(backup.as_ptr()) };
    stepped?;
    if finished != ffi::SQLITE_OK {
        // SAFETY: sqlite3_backup_finish leaves its error on `dst`, which is still valid.
        return Err(unsafe { last_error(dst) });
    }
    Ok(())
}

/// The English text of a result code, e.g. "database is locked".
fn error_string(rc: c_int) -> String {
    // SAFETY: sqlite3_errstr accepts any code and returns a static NUL-terminated string
    // (or NULL, which `text` turns into a placeholder).
    let text = unsafe { ffi::sqlite3_errstr(rc) };
    // SAFETY: the pointer is NULL or a static NUL-terminated string.
    format!("{} (code {rc})", unsafe { text_of(text) })
}

/// The latest error message of a connection.
///
/// # Safety
/// `db` must be an open connection that no other thread is using.
unsafe fn last_error(db: *mut ffi::sqlite3) -> String {
    // SAFETY: the caller guarantees `db` is open and ours; the message stays valid until the
    // next call on `db`, and is copied out before that.
    let (code, message) = unsafe { (ffi::sqlite3_extended_errcode(db), ffi::sqlite3_errmsg(db)) };
    // SAFETY: sqlite3_errmsg returns NULL or a NUL-terminated string.
    format!("{} (code {code})", unsafe { text_of(message) })
}

/// Copies out a C string from SQLite.
///
/// # Safety
/// `text` must be NULL or point to a NUL-terminated string valid for this call.
unsafe fn text_of(text: *const c_char) -> String {
    if text.is_null() {
        return "unknown SQLite error".into();
    }
    // SAFETY: non-NULL and NUL-terminated, by the caller's guarantee.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}
