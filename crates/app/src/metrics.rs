//! Prometheus metrics for operators, served as text at `GET /metrics`.
//!
//! One [`Metrics`] per [`Database`](crate::db::Database) (so one per app: tests run many apps in
//! one process and each sees only its own figures). The database layer records statements and
//! pool timeouts; the HTTP layer records requests; pool gauges are read at scrape time.
//!
//! The one exception is the checkout-wait histogram, which is process-wide: sqlx reports each
//! checkout as a tracing event, and the tracing subscriber that turns those into observations
//! ([`acquire`]) is global. A service process has one pool, so that histogram is its pool's;
//! in a process with several pools (tests serving many apps) it adds up all of them.
//!
//! The text format (version 0.0.4) is written here by hand: it is a few lines per metric, and a
//! library would bring a registry and an encoder for what a `BTreeMap` does.

pub mod acquire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::db::PoolStatus;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds (seconds) for database timings: statements are often well under a millisecond.
const DB_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds (seconds) for HTTP requests.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of requests that matched no route, so unknown paths add no series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Put in a response's extensions when the request failed on a pool timeout that no
/// [`Database::explain`](crate::db::Database::explain) counted; the HTTP layer counts it.
#[derive(Debug, Clone, Copy)]
pub struct PoolTimeoutSeen;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How long every pool checkout of this process waited, timed-out ones included (see the
/// module documentation for why it is process-wide).
static ACQUIRE_WAIT: LazyLock<Mutex<Histogram>> =
    LazyLock::new(|| Mutex::new(Histogram::new(DB_BUCKETS)));

/// Records how long one pool checkout took until it held a connection (or gave up).
pub fn observe_acquire_wait(waited: Duration) {
    lock(&ACQUIRE_WAIT).observe(waited);
}

/// Every figure the app exports, for one app (the checkout waits are the process's).
#[derive(Debug)]
pub struct Metrics {
    pool_timeouts: AtomicU64,
    statements: Mutex<BTreeMap<&'static str, Histogram>>,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    request_durations: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            pool_timeouts: AtomicU64::new(0),
            statements: Mutex::default(),
            requests: Mutex::default(),
            request_durations: Mutex::default(),
        }
    }

    /// Counts one pool checkout that timed out, and records its wait, `waited` (the pool
    /// timeout, when sqlx gave up), in the checkout-wait histogram: sqlx reports only the
    /// checkouts that succeed.
    pub fn pool_timeout(&self, waited: Duration) {
        self.pool_timeouts.fetch_add(1, Ordering::Relaxed);
        observe_acquire_wait(waited);
    }

    /// Records one statement as SeaORM reports it (execution only, after the checkout).
    pub fn observe_statement(&self, elapsed: Duration, failed: bool) {
        let outcome = if failed { "error" } else { "ok" };
        lock(&self.statements)
            .entry(outcome)
            .or_insert_with(|| Histogram::new(DB_BUCKETS))
            .observe(elapsed);
    }

    /// Records one answered request; `route` is the matched route template or
    /// [`UNMATCHED_ROUTE`].
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = normal_method(method);
        *lock(&self.requests)
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        lock(&self.request_durations)
            .entry((method.to_string(), route.to_string()))
            .or_insert_with(|| Histogram::new(HTTP_BUCKETS))
            .observe(took);
    }

    /// Every metric in the text exposition format, with the pool's figures of now.
    pub fn render(&self, pool: PoolStatus) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "app_db_pool_size",
                "Connections the pool keeps open (DATABASE_POOL_SIZE; 0 when pooling is disabled).",
                pool.size,
            ),
            (
                "app_db_pool_max_overflow",
                "Connections the pool may open beyond its size under load.",
                pool.overflow,
            ),
            (
                "app_db_pool_connections_open",
                "Connections open now.",
                pool.open,
            ),
            (
                "app_db_pool_connections_idle",
                "Open connections idle in the pool now.",
                pool.idle,
            ),
            (
                "app_db_pool_connections_in_use",
                "Open connections checked out now.",
                pool.in_use,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }

        let name = "app_db_pool_acquire_timeouts_total";
        header(
            &mut out,
            name,
            "Pool checkouts that gave up after DATABASE_POOL_TIMEOUT.",
            "counter",
        );
        let _ = writeln!(out, "{name} {}", self.pool_timeouts.load(Ordering::Relaxed));

        let name = "app_db_pool_acquire_wait_seconds";
        header(
            &mut out,
            name,
            "Time each pool checkout of this process took until it held a connection (waiting for \
             a free one, opening one, pre-ping): every query's, the health check's, all. A \
             checkout that timed out counts as waiting DATABASE_POOL_TIMEOUT.",
            "histogram",
        );
        lock(&ACQUIRE_WAIT).write(&mut out, name, "");

        let name = "app_db_statement_duration_seconds";
        header(
            &mut out,
            name,
            "Execution time of each SQL statement as SeaORM reports it, after the connection is \
             checked out, by outcome.",
            "histogram",
        );
        for (outcome, histogram) in lock(&self.statements).iter() {
            histogram.write(&mut out, name, &format!("outcome=\"{outcome}\""));
        }

        let name = "app_http_requests_total";
        header(
            &mut out,
            name,
            "HTTP requests answered, by method, matched route and status.",
            "counter",
        );
        for ((method, route, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "{name}{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(method),
                escape(route)
            );
        }

        let name = "app_http_request_duration_seconds";
        header(
            &mut out,
            name,
            "Time from a request's arrival until its response head is ready, by method and \
             matched route.",
            "histogram",
        );
        for ((method, route), histogram) in lock(&self.request_durations).iter() {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            histogram.write(&mut out, name, &labels);
        }
        out
    }
}

/// A histogram with fixed bucket bounds.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` are extra labels (may be empty).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = match self.bounds.get(i) {
                Some(bound) => bound.to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The standard methods as they are; anything else as `other`, so clients cannot add series.
fn normal_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "TRACE" | "CONNECT" => {
            method
        }
        _ => "other",
    }
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A poisoned lock only means another thread panicked mid-update; the figures stay usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolStatus {
        PoolStatus {
            size: 2,
            overflow: 3,
            open: 2,
            idle: 1,
            in_use: 1,
        }
    }

    #[test]
    fn metrics_render_buckets_cumulatively_with_labels() {
        let metrics = Metrics::new();
        metrics.observe_statement(Duration::from_micros(300), false);
        metrics.observe_statement(Duration::from_millis(20), false);
        metrics.observe_request("GET", "/health", 200, Duration::from_millis(3));
        metrics.observe_request("BREW", "/x\"y", 404, Duration::from_secs(20));
        metrics.pool_timeout(Duration::from_secs(30));
        let text = metrics.render(pool());
        assert!(text.contains("app_db_pool_max_overflow 3\n"), "{text}");
        assert!(
            text.contains("app_db_pool_acquire_timeouts_total 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "app_db_statement_duration_seconds_bucket{outcome=\"ok\",le=\"0.0005\"} 1\n"
        ));
        assert!(
            text.contains(
                "app_db_statement_duration_seconds_bucket{outcome=\"ok\",le=\"0.025\"} 2\n"
            )
        );
        assert!(text.contains("app_db_statement_duration_seconds_count{outcome=\"ok\"} 2\n"));
        assert!(text.contains(
            "app_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1\n"
        ));
        assert!(text.contains(
            "app_http_requests_total{method=\"other\",route=\"/x\\\"y\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "app_http_request_duration_seconds_bucket{method=\"other\",route=\"/x\\\"y\",le=\"10\"} 0\n"
        ));
        // Process-wide: other tests of this process may have added to it too.
        let sample = |series: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{series}: {text}"))
        };
        let over_10s = sample("app_db_pool_acquire_wait_seconds_bucket{le=\"+Inf\"}")
            - sample("app_db_pool_acquire_wait_seconds_bucket{le=\"10\"}");
        assert!(
            over_10s >= 1,
            "the timed-out checkout counts as 30s: {text}"
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }
}
