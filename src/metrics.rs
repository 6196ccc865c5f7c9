//! What numguard counts, for Prometheus: every metric's name and help in one place, and the
//! few calls that record them. Nothing is recorded until `serve --metrics-listen` installs
//! the recorder: every call first reads one flag, so a server without metrics pays nothing
//! more. Labels are routes, statuses, codes and operator-defined names (sources,
//! providers), never a phone number or a tenant. What every request or check records goes
//! through handles looked up once (per route, status, verdict or reason), not per call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::domain::decision::{Decision, ReasonCode, Verdict};
use crate::store::{DeliveryBacklog, PoolUsage};

const REQUESTS: &str = "numguard_requests_total";
const REQUEST_DURATION: &str = "numguard_request_duration_seconds";
const ADMISSION_REFUSALS: &str = "numguard_admission_refusals_total";
const VERDICTS: &str = "numguard_check_verdicts_total";
const REASONS: &str = "numguard_check_reasons_total";
const CACHE_LOOKUPS: &str = "numguard_cache_lookups_total";
const INGEST_EVENTS: &str = "numguard_ingest_events_total";
const SOURCE_FRESH: &str = "numguard_source_fresh";
const SOURCE_COMPLETE_AGE: &str = "numguard_source_complete_age_seconds";
const DATABASE_UP: &str = "numguard_database_up";
const DATABASE_CONNECTIONS: &str = "numguard_database_connections";
const DATABASE_ERRORS: &str = "numguard_database_errors_total";
const REPLICA_FEED_LAG: &str = "numguard_replica_feed_lag_seconds";
const HISTORY_READS: &str = "numguard_history_reads_total";
const ALERT_STREAMS: &str = "numguard_alert_streams_open";
const WEBHOOK_DELIVERIES: &str = "numguard_webhook_deliveries_total";
const WEBHOOK_PENDING: &str = "numguard_webhook_pending";
const WEBHOOK_OLDEST_PENDING_AGE: &str = "numguard_webhook_oldest_pending_age_seconds";
const WEBHOOK_FAILING: &str = "numguard_webhook_subscriptions_failing";
const UPSTREAM_CALLS: &str = "numguard_upstream_calls_total";
const UPSTREAM_BREAKER_OPEN: &str = "numguard_upstream_breaker_open";

/// Request latency buckets, in seconds: from a warm check (tens of microseconds) to the
/// server's deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Whether the recorder is installed.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are recorded (the server was started with `--metrics-listen`).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the process-wide Prometheus recorder and describes every metric; the handle
/// renders the exposition.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(REQUEST_DURATION.into()),
            LATENCY_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    ENABLED.store(true, Ordering::Relaxed);
    Ok(handle)
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "Requests answered, by route and status (gRPC code or HTTP status)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its answer's last byte, by route."
    );
    describe_counter!(
        ADMISSION_REFUSALS,
        "Requests refused before their handler, by reason (unauthenticated, rate_limited, shed, ...)."
    );
    describe_counter!(
        VERDICTS,
        "Check answers (CheckNumber and audit rows), by verdict."
    );
    describe_counter!(REASONS, "Reasons given with check answers, by code.");
    describe_counter!(
        CACHE_LOOKUPS,
        "History cache look-ups, by result (hit or miss)."
    );
    describe_counter!(
        INGEST_EVENTS,
        "Events received by ingest, by source (the stream's registered source; several or none) and outcome (stored, duplicate, rejected)."
    );
    describe_gauge!(
        SOURCE_FRESH,
        "Live sources: 1 while heard from within the source's max lag, else 0 (file sources have none)."
    );
    describe_gauge!(
        SOURCE_COMPLETE_AGE,
        Unit::Seconds,
        "How long ago a source's data stops being complete (0 while fresh); absent if it never was."
    );
    describe_gauge!(
        DATABASE_UP,
        "1 while the database answers (and, with replicas, the change feed listens)."
    );
    describe_gauge!(
        DATABASE_CONNECTIONS,
        "Database connections by pool (read, write, or main) and state (in_use, idle)."
    );
    describe_counter!(
        DATABASE_ERRORS,
        "Failed database calls, by kind (unavailable, damaged, other)."
    );
    describe_gauge!(
        REPLICA_FEED_LAG,
        Unit::Seconds,
        "Replicas on PostgreSQL: how far this replica's change feed is behind the database."
    );
    describe_counter!(
        HISTORY_READS,
        "With a PostgreSQL standby: numbers whose history was read, by the database read (standby, primary)."
    );
    describe_gauge!(ALERT_STREAMS, "WatchAlerts streams open.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome (delivered, failed, refused)."
    );
    describe_gauge!(
        WEBHOOK_PENDING,
        "Webhook deliveries queued and not yet delivered."
    );
    describe_gauge!(
        WEBHOOK_OLDEST_PENDING_AGE,
        Unit::Seconds,
        "How long the oldest webhook delivery not yet delivered has waited (0 if none)."
    );
    describe_gauge!(
        WEBHOOK_FAILING,
        "Webhook subscriptions whose sink has failed for longer than --webhook-failing-after-secs."
    );
    describe_counter!(
        UPSTREAM_CALLS,
        "Calls to operators' APIs, by provider and outcome."
    );
    describe_gauge!(
        UPSTREAM_BREAKER_OPEN,
        "1 while a provider's circuit breaker is open."
    );
}

/// One route's request metrics: its duration histogram and a counter per status.
pub struct RouteMetrics {
    route: String,
    duration: Histogram,
    by_status: RwLock<HashMap<&'static str, Counter>>,
}

impl RouteMetrics {
    /// Counts one answered request of this route and its duration.
    pub fn answered(&self, status: &'static str, took: Duration) {
        self.duration.record(took.as_secs_f64());
        let known = read(&self.by_status).get(status).cloned();
        let counter = known.unwrap_or_else(|| {
            let counter = counter!(REQUESTS, "route" => self.route.clone(), "status" => status);
            write(&self.by_status).insert(status, counter.clone());
            counter
        });
        counter.increment(1);
    }
}

type Routes = RwLock<HashMap<String, Arc<RouteMetrics>>>;
static ROUTES: LazyLock<Routes> = LazyLock::new(Default::default);

/// The request metrics of `route` (a name from a bounded set: the transports' route
/// tables), or `None` when metrics are off.
pub fn route(route: &str) -> Option<Arc<RouteMetrics>> {
    if !enabled() {
        return None;
    }
    if let Some(known) = read(&ROUTES).get(route) {
        return Some(known.clone());
    }
    let made = Arc::new(RouteMetrics {
        route: route.to_owned(),
        duration: histogram!(REQUEST_DURATION, "route" => route.to_owned()),
        by_status: RwLock::default(),
    });
    Some(
        write(&ROUTES)
            .entry(route.to_owned())
            .or_insert(made)
            .clone(),
    )
}

// A poisoned lock still holds whole handles: a panicking holder only inserted or read one.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a request refused by admission.
pub fn refused(reason: &'static str) {
    if enabled() {
        counter!(ADMISSION_REFUSALS, "reason" => reason).increment(1);
    }
}

static VERDICT_COUNTERS: LazyLock<Vec<(Verdict, Counter)>> = LazyLock::new(|| {
    Verdict::ALL
        .iter()
        .map(|v| (*v, counter!(VERDICTS, "verdict" => v.as_str())))
        .collect()
});
static REASON_COUNTERS: LazyLock<Vec<(ReasonCode, Counter)>> = LazyLock::new(|| {
    ReasonCode::ALL
        .iter()
        .map(|c| (*c, counter!(REASONS, "code" => c.as_str())))
        .collect()
});

fn count<K: PartialEq>(counters: &[(K, Counter)], key: K) {
    if let Some((_, counter)) = counters.iter().find(|(k, _)| *k == key) {
        counter.increment(1);
    }
}

/// Counts a check's answer: its verdict and each of its reasons.
pub fn decision(decision: &Decision) {
    if !enabled() {
        return;
    }
    count(&VERDICT_COUNTERS, decision.verdict);
    for reason in &decision.reasons {
        count(&REASON_COUNTERS, reason.code);
    }
}

static CACHE_HITS: LazyLock<Counter> = LazyLock::new(|| counter!(CACHE_LOOKUPS, "result" => "hit"));
static CACHE_MISSES: LazyLock<Counter> =
    LazyLock::new(|| counter!(CACHE_LOOKUPS, "result" => "miss"));

/// Counts a history cache look-up.
pub fn cache(hit: bool) {
    if enabled() {
        if hit { &CACHE_HITS } else { &CACHE_MISSES }.increment(1);
    }
}

/// Counts an ingest stream's events by source (its one registered source, `several`, or
/// `none` when nothing was accepted) and outcome.
pub fn ingested(source: &str, stored: u64, duplicates: u64, rejected: u64) {
    for (outcome, n) in [
        ("stored", stored),
        ("duplicate", duplicates),
        ("rejected", rejected),
    ] {
        if n > 0 && enabled() {
            counter!(INGEST_EVENTS, "source" => source.to_owned(), "outcome" => outcome)
                .increment(n);
        }
    }
}

/// Counts a webhook delivery attempt.
pub fn webhook_delivery(outcome: &'static str) {
    if enabled() {
        counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    }
}

/// Counts a call to an operator's API.
pub fn upstream_call(provider: &str, outcome: &'static str) {
    if enabled() {
        counter!(UPSTREAM_CALLS, "provider" => provider.to_owned(), "outcome" => outcome)
            .increment(1);
    }
}

/// Tracks one open alert stream until dropped.
pub struct AlertStreamOpen(());

impl AlertStreamOpen {
    /// Counts a stream as open.
    pub fn start() -> Self {
        gauge!(ALERT_STREAMS).increment(1.0);
        AlertStreamOpen(())
    }
}

impl Drop for AlertStreamOpen {
    fn drop(&mut self) {
        gauge!(ALERT_STREAMS).decrement(1.0);
    }
}

/// Sets a source's freshness gauges: `fresh` for a live source (a file source has none),
/// `complete_age` how long ago its data stops being complete (`None` if it never was).
pub fn source_state(source: &str, fresh: Option<bool>, complete_age: Option<Duration>) {
    let source = source.to_owned();
    if let Some(fresh) = fresh {
        gauge!(SOURCE_FRESH, "source" => source.clone()).set(f64::from(u8::from(fresh)));
    }
    if let Some(age) = complete_age {
        gauge!(SOURCE_COMPLETE_AGE, "source" => source).set(age.as_secs_f64());
    }
}

/// Sets whether the database answers.
pub fn database_up(up: bool) {
    gauge!(DATABASE_UP).set(f64::from(u8::from(up)));
}

/// Sets how the database's connection pools are used.
pub fn database_pools(pools: &[PoolUsage]) {
    for p in pools {
        let in_use = p.open.saturating_sub(p.idle);
        gauge!(DATABASE_CONNECTIONS, "pool" => p.pool, "state" => "in_use").set(f64::from(in_use));
        gauge!(DATABASE_CONNECTIONS, "pool" => p.pool, "state" => "idle").set(f64::from(p.idle));
    }
}

/// Counts a failed database call.
pub fn database_error(kind: &'static str) {
    if enabled() {
        counter!(DATABASE_ERRORS, "kind" => kind).increment(1);
    }
}

/// Sets how far this replica's change feed is behind the database.
pub fn replica_feed_lag(lag: Duration) {
    gauge!(REPLICA_FEED_LAG).set(lag.as_secs_f64());
}

/// Counts numbers whose history was read from the standby and from the primary.
pub fn history_reads(standby: u64, primary: u64) {
    if enabled() {
        counter!(HISTORY_READS, "database" => "standby").increment(standby);
        counter!(HISTORY_READS, "database" => "primary").increment(primary);
    }
}

/// Sets how the webhook queue stands at `now`.
pub fn webhook_backlog(backlog: &DeliveryBacklog, now: DateTime<Utc>) {
    gauge!(WEBHOOK_PENDING).set(backlog.pending as f64);
    let age = backlog
        .oldest_pending
        .and_then(|queued| (now - queued).to_std().ok())
        .unwrap_or_default();
    gauge!(WEBHOOK_OLDEST_PENDING_AGE).set(age.as_secs_f64());
    gauge!(WEBHOOK_FAILING).set(backlog.failing_subscriptions as f64);
}

/// Sets whether a provider's circuit breaker is open.
pub fn upstream_breaker(provider: &str, open: bool) {
    gauge!(UPSTREAM_BREAKER_OPEN, "provider" => provider.to_owned()).set(f64::from(u8::from(open)));
}

/// The canonical name of a gRPC status code, as `grpc-status` carries it.
pub fn grpc_status_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "INVALID_STATUS",
    }
}
