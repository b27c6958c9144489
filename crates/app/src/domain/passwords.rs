//! Password hashing with argon2id, off the async executor (hashing takes tens of
//! milliseconds of CPU on purpose), a bounded number at a time.
//!
//! Each hash or check holds argon2's whole memory cost while it runs: 19 MiB for the hashes
//! this service makes, 64 MiB for those of the Python service's argon2-cffi defaults. Run
//! unbounded on the blocking pool, a burst of 32 sign-ins would take 32 of those blocks at once;
//! as hashing is CPU work, more at a time than there are cores only adds memory, not speed. So
//! hashes wait for one of [`slots`] (first come, first served) before they start.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

/// Hashing failed (the runtime went away, or argon2 refused its input).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// How many hashes may run at once: one per core.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(slots()));

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let _slot = HASHING
        .acquire()
        .await
        .map_err(|err| HashError(err.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| HashError(err.to_string()))
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub async fn hash(password: String) -> Result<String, HashError> {
    bounded(move || {
        // A random salt from the OS for each hash.
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| HashError(err.to_string()))
    })
    .await?
}

/// True when `password` matches the PHC string `hash`; false for any malformed hash.
pub async fn verify(password: String, hash: String) -> bool {
    bounded(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = super::hash("correct horse".into()).await.unwrap();
        let b = super::hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a fresh salt each time");
        assert!(super::verify("correct horse".into(), a.clone()).await);
        assert!(!super::verify("wrong horse".into(), a).await);
        assert!(!super::verify("x".into(), "not a hash".into()).await);
    }

    /// However many arrive together, no more than one per core run at once, and all finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_at_once_than_cores() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4 * super::slots() + 3)
            .map(|_| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(super::bounded(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= super::slots(), "{most} at once");
    }
}
