//! sqlx pool options built from the `DATABASE_POOL_*` settings, with the hooks that give the
//! pool the reference's QueuePool behaviour and log its events.
//!
//! What the settings do here:
//! - `POOL_SIZE` connections are opened at start and kept (sqlx `min_connections`).
//! - Up to `POOL_SIZE + MAX_POOL_OVERFLOW` are open under load (`max_connections`). When more
//!   than `POOL_SIZE` connections have sat idle for [`OVERFLOW_IDLE`], a small task closes the
//!   extra ones, so overflow connections live only as long as the load that needed them and the
//!   kept ones are never churned. (sqlx checks a connection back in asynchronously, after a
//!   ping, so back-to-back queries can briefly open an overflow connection; the grace period
//!   keeps such a connection for reuse instead of reopening one per burst.)
//! - `POOL_TIMEOUT` bounds a checkout (`acquire_timeout`).
//! - `POOL_RECYCLE` bounds a connection's life: one older than that is closed at its next
//!   checkout or checkin (by the hooks here).
//! - `PRE_POOL_PING` pings an idle connection before handing it out (`test_before_acquire`);
//!   a dead one is closed and replaced without the caller seeing an error.
//! - `POOL_DISABLED` closes every connection on checkin and keeps none open.
//!
//! A lost connection (a server restart, failover or `pg_terminate_backend` ends every session)
//! is remembered in [`LostConnections`] by whoever sees one
//! (`Database::note_connection_lost`). From then on, without `PRE_POOL_PING`, the checkout hook
//! pings each idle connection that went idle before that moment, once, and closes it when the
//! ping fails (event `discard`): the first failure flushes the whole pool of dead connections
//! instead of each one failing a request of its own. Connections given back later need no ping
//! here, as sqlx pings every connection on checkin.
//!
//! Every successful checkout makes sqlx emit one event under `sqlx::pool::acquire` with its
//! time (`acquired_after_secs`): at TRACE (`acquire_time_level`), or at the slow level when it
//! took longer than the slow threshold. `metrics::acquire` turns those into
//! `app_db_pool_acquire_wait_seconds`; the log filter decides, as for any event, whether they
//! are printed (at the default `info`, only slow checkouts are, as before).
//!
//! sqlx hands out idle connections first-in first-out; there is no LIFO option, so the most
//! recently returned connection is *not* preferred. Under light load this spreads work over all
//! kept connections instead of one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::{PoolConnectionMetadata, PoolOptions};

use crate::config::DatabaseSettings;

/// The tracing target of pool events, so `RUST_LOG=app::db::pool=info` selects them.
pub const POOL_TARGET: &str = "app::db::pool";

/// How often idle overflow connections are looked for.
const TRIM_INTERVAL: Duration = Duration::from_millis(250);

/// How long more than `POOL_SIZE` connections must sit idle before the extra ones are closed.
pub const OVERFLOW_IDLE: Duration = Duration::from_secs(1);

/// Checkouts slower than this are logged as a `wait` when pool events are logged.
const SLOW_CHECKOUT: Duration = Duration::from_millis(50);

/// What a pool is built with; `in_memory` pins an in-memory SQLite database to one connection,
/// because each connection to `:memory:` would otherwise see a database of its own.
#[derive(Debug, Clone, Copy)]
pub struct PoolShape {
    pub min: u32,
    pub max: u32,
    pub kept: u32,
    pub disabled: bool,
    pub recycle: Option<Duration>,
}

impl PoolShape {
    pub fn from_settings(settings: &DatabaseSettings, in_memory: bool) -> Self {
        if in_memory {
            return PoolShape {
                min: 1,
                max: 1,
                kept: 1,
                disabled: false,
                recycle: None,
            };
        }
        let max = settings.max_connections();
        if settings.pool_disabled {
            PoolShape {
                min: 0,
                max,
                kept: 0,
                disabled: true,
                recycle: settings.pool_recycle,
            }
        } else {
            PoolShape {
                min: settings.pool_size,
                max,
                kept: settings.pool_size,
                disabled: false,
                recycle: settings.pool_recycle,
            }
        }
    }
}

/// When a connection of this pool was last seen lost; shared by the `Database` (which notes it)
/// and the checkout hook (which then pings connections idle since before it).
#[derive(Debug)]
pub struct LostConnections {
    origin: Instant,
    /// Microseconds from `origin` to the last loss, plus one; 0 when none was seen.
    last: AtomicU64,
}

impl Default for LostConnections {
    fn default() -> Self {
        LostConnections {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl LostConnections {
    /// Remembers that a connection was found lost now.
    pub fn note(&self) {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.last.fetch_max(micros + 1, Ordering::Relaxed);
    }

    /// How long ago the last loss was seen; `None` when none was.
    pub fn since_last(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            noted => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_micros(noted - 1)),
            ),
        }
    }

    /// Whether an idle connection must be pinged before it is handed out: it went idle before
    /// the last loss was seen, so it may have been ended with the others.
    fn suspects(&self, idle_for: Duration) -> bool {
        self.since_last().is_some_and(|since| idle_for >= since)
    }
}

/// Pool options for any sqlx driver, with hooks that log events, apply recycling and
/// `POOL_DISABLED`, and flush connections idle since before a loss in `lost`.
pub fn options<DB: sqlx::Database>(
    settings: &DatabaseSettings,
    shape: PoolShape,
    lost: Arc<LostConnections>,
) -> PoolOptions<DB> {
    let echo = settings.echo_pool;
    // With PRE_POOL_PING sqlx pings every idle connection already, before this hook.
    let ping_suspects = !settings.pre_ping;
    let mut options = PoolOptions::<DB>::new()
        .min_connections(shape.min)
        .max_connections(shape.max)
        .acquire_timeout(settings.pool_timeout)
        // Recycling is done by the hooks below, not by sqlx's `max_lifetime`: setting that (or
        // `idle_timeout`) starts sqlx's reaper task, whose loop over `num_idle()` can read the
        // idle count mid-update (wrapped below zero) and spin at full CPU.
        .max_lifetime(None)
        .idle_timeout(None)
        .test_before_acquire(settings.pre_ping)
        // Each checkout's time, for the acquire-wait metric; TRACE, so no log shows it unless
        // asked to. A slow checkout is reported at the slow level below instead (same field).
        .acquire_time_level(log::LevelFilter::Trace);
    if echo {
        options = options
            .acquire_slow_threshold(SLOW_CHECKOUT)
            .acquire_slow_level(log::LevelFilter::Info);
    }
    options
        .after_connect(move |_conn, _meta| {
            Box::pin(async move {
                if echo {
                    tracing::info!(target: POOL_TARGET, event = "open", "pool opened a connection");
                }
                Ok(())
            })
        })
        .before_acquire(move |conn, meta| {
            let lost = Arc::clone(&lost);
            Box::pin(async move {
                if is_expired(&meta, shape.recycle) {
                    log_event(echo, "recycle", &meta);
                    return Ok(false);
                }
                if ping_suspects
                    && lost.suspects(meta.idle_for)
                    && sqlx::Connection::ping(conn).await.is_err()
                {
                    log_event(echo, "discard", &meta);
                    return Ok(false);
                }
                log_event(echo, "checkout", &meta);
                Ok(true)
            })
        })
        .after_release(move |_conn, meta| {
            Box::pin(async move {
                let keep = checkin_decision(&meta, shape);
                log_event(echo, keep.event(), &meta);
                Ok(matches!(keep, Checkin::Keep))
            })
        })
}

/// What happens to a connection given back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkin {
    Keep,
    /// The pool is disabled.
    Close,
    Recycle,
}

impl Checkin {
    fn event(self) -> &'static str {
        match self {
            Checkin::Keep => "checkin",
            Checkin::Close => "close",
            Checkin::Recycle => "recycle",
        }
    }
}

fn checkin_decision(meta: &PoolConnectionMetadata, shape: PoolShape) -> Checkin {
    if shape.disabled {
        Checkin::Close
    } else if is_expired(meta, shape.recycle) {
        Checkin::Recycle
    } else {
        Checkin::Keep
    }
}

fn is_expired(meta: &PoolConnectionMetadata, recycle: Option<Duration>) -> bool {
    recycle.is_some_and(|limit| meta.age >= limit)
}

fn log_event(enabled: bool, event: &'static str, meta: &PoolConnectionMetadata) {
    if enabled {
        tracing::info!(
            target: POOL_TARGET,
            event,
            age_ms = meta.age.as_millis() as u64,
            idle_ms = meta.idle_for.as_millis() as u64,
            "pool {event}"
        );
    }
}

/// A pool that is closed when its last owner goes, so dropped `Database` handles do not leave
/// connections open (tests make many).
#[derive(Debug)]
pub struct OwnedPool<DB: sqlx::Database>(pub sqlx::Pool<DB>);

impl<DB: sqlx::Database> Drop for OwnedPool<DB> {
    fn drop(&mut self) {
        // Marks the pool closed at once; idle connections close as the last handle drops.
        drop(self.0.close());
    }
}

/// Closes idle connections beyond the kept `POOL_SIZE` once there have been too many idle for
/// [`OVERFLOW_IDLE`], until the pool is closed or dropped. Does nothing for pools that have no
/// overflow.
pub fn spawn_overflow_trimmer<DB: sqlx::Database>(
    pool: &Arc<OwnedPool<DB>>,
    shape: PoolShape,
    echo: bool,
) {
    if shape.disabled || shape.max <= shape.kept {
        return;
    }
    let weak: Weak<OwnedPool<DB>> = Arc::downgrade(pool);
    let kept = shape.kept as usize;
    let ticks_needed = OVERFLOW_IDLE.as_millis() / TRIM_INTERVAL.as_millis();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut excess_ticks = 0;
        loop {
            tick.tick().await;
            let Some(owned) = weak.upgrade() else { return };
            let pool = owned.0.clone();
            drop(owned);
            if pool.is_closed() {
                return;
            }
            if pool.num_idle() <= kept {
                excess_ticks = 0;
                continue;
            }
            excess_ticks += 1;
            if excess_ticks < ticks_needed {
                continue;
            }
            excess_ticks = 0;
            while pool.num_idle() > kept {
                let Some(conn) = pool.try_acquire() else {
                    break;
                };
                if echo {
                    tracing::info!(target: POOL_TARGET, event = "close", reason = "overflow", "pool close");
                }
                let _ = conn.close().await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_idle_since_before_a_loss_are_suspects() {
        let lost = LostConnections::default();
        assert_eq!(lost.since_last(), None);
        assert!(!lost.suspects(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        lost.note();
        std::thread::sleep(Duration::from_millis(20));
        let since = lost.since_last().expect("a loss was noted");
        assert!(since >= Duration::from_millis(20) && since < Duration::from_secs(5));
        assert!(lost.suspects(since + Duration::from_millis(50)));
        assert!(!lost.suspects(Duration::from_millis(1)));
    }
}
