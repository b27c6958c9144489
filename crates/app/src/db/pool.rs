//! sqlx pool options built from the `DATABASE_POOL_*` settings, with the hooks that give the
//! pool the reference's QueuePool behaviour and log its events.
//!
//! What the settings do here:
//! - `POOL_SIZE` connections are opened at start and kept (sqlx `min_connections`).
//! - Up to `POOL_SIZE + MAX_POOL_OVERFLOW` are open under load (`max_connections`); a connection
//!   given back while `POOL_SIZE` others already sit idle is closed at once, so overflow
//!   connections live only as long as the load that needed them.
//! - `POOL_TIMEOUT` bounds a checkout (`acquire_timeout`).
//! - `POOL_RECYCLE` bounds a connection's life (`max_lifetime`, checked at checkout and checkin).
//! - `PRE_POOL_PING` pings an idle connection before handing it out (`test_before_acquire`);
//!   a dead one is closed and replaced without the caller seeing an error.
//! - `POOL_DISABLED` closes every connection on checkin and keeps none open.
//!
//! sqlx hands out idle connections first-in first-out; there is no LIFO option, so the most
//! recently returned connection is *not* preferred. Under light load this spreads work over all
//! kept connections instead of one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::pool::{PoolConnectionMetadata, PoolOptions};

use crate::config::DatabaseSettings;

/// The tracing target of pool events, so `RUST_LOG=app::db::pool=info` selects them.
pub const POOL_TARGET: &str = "app::db::pool";

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

/// Pool options for any sqlx driver. `handle` is filled with the pool once it exists, so the
/// checkin hook can see how many connections sit idle.
pub fn options<DB: sqlx::Database>(
    settings: &DatabaseSettings,
    shape: PoolShape,
    handle: Arc<OnceLock<sqlx::Pool<DB>>>,
) -> PoolOptions<DB> {
    let echo = settings.echo_pool;
    let mut options = PoolOptions::<DB>::new()
        .min_connections(shape.min)
        .max_connections(shape.max)
        .acquire_timeout(settings.pool_timeout)
        .max_lifetime(shape.recycle)
        .idle_timeout(None)
        .test_before_acquire(settings.pre_ping);
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
        .before_acquire(move |_conn, meta| {
            Box::pin(async move {
                if is_expired(&meta, shape.recycle) {
                    log_event(echo, "recycle", &meta);
                    return Ok(false);
                }
                log_event(echo, "checkout", &meta);
                Ok(true)
            })
        })
        .after_release(move |_conn, meta| {
            let handle = handle.clone();
            Box::pin(async move {
                let keep = checkin_decision(&meta, shape, handle.get());
                log_event(echo, keep.event(), &meta);
                Ok(matches!(keep, Checkin::Keep))
            })
        })
}

/// What happens to a connection given back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkin {
    Keep,
    /// The pool is disabled, or enough connections already sit idle.
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

fn checkin_decision<DB: sqlx::Database>(
    meta: &PoolConnectionMetadata,
    shape: PoolShape,
    pool: Option<&sqlx::Pool<DB>>,
) -> Checkin {
    if shape.disabled {
        return Checkin::Close;
    }
    if is_expired(meta, shape.recycle) {
        return Checkin::Recycle;
    }
    match pool {
        Some(pool) if pool.num_idle() >= shape.kept as usize => Checkin::Close,
        _ => Checkin::Keep,
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
