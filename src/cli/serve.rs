//! `numguard serve`.

use clap::builder::BoolishValueParser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::FixedOffset;
use clap::Args;
use tokio::net::TcpListener;

use super::demo;
use crate::domain::number::Region;
use crate::server::{Listeners, run_with as run_server};
use crate::settings::{Database, OnUnknown, Settings, SettingsError, parse_offset};

/// Every setting is optional here: what is not given as a flag or in the environment comes
/// from the `--config` file, else from the defaults (see `crate::settings`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML); flags and NUMGUARD_* variables override what it says. See
    /// examples/numguard.toml for every setting and its default.
    #[arg(long, env = "NUMGUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Print the settings the server would run with, as TOML, and exit.
    #[arg(long)]
    print_config: bool,
    /// Address to listen on for gRPC [default: 127.0.0.1:50051].
    #[arg(long, env = "NUMGUARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address for the CAMARA-compatible REST API (off unless set), e.g. 127.0.0.1:8080.
    #[arg(long, env = "NUMGUARD_REST_LISTEN")]
    rest_listen: Option<SocketAddr>,
    /// Address for Prometheus metrics (`/metrics`) and the `/healthz` and `/readyz`
    /// checks (off unless set), e.g. 127.0.0.1:9464. No key is asked there.
    #[arg(long, env = "NUMGUARD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Export traces (one per request, with its store and upstream calls) over OTLP/gRPC
    /// to this collector, e.g. http://127.0.0.1:4317. Off by default.
    #[arg(long, env = "NUMGUARD_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The share of requests traced, in (0, 1] [default: 1]; a trace is kept or dropped
    /// whole (a caller's sampled trace context is followed).
    #[arg(long, env = "NUMGUARD_OTLP_SAMPLE_RATIO")]
    otlp_sample_ratio: Option<f64>,
    /// `/readyz` answers 503 while a live source is stale (not heard from within its max
    /// lag), naming it.
    #[arg(long, env = "NUMGUARD_READY_REQUIRES_FRESH_SOURCES", value_parser = BoolishValueParser::new())]
    ready_requires_fresh_sources: bool,
    /// Database URL; the SQLite file is created and migrated on first start [default:
    /// sqlite://numguard.db].
    #[arg(long, env = "NUMGUARD_DATABASE_URL")]
    database_url: Option<String>,
    /// PostgreSQL only: a hot standby of the database, read by checks and audits while it
    /// has replayed every change they need (anything else goes to the primary).
    #[arg(long, env = "NUMGUARD_DATABASE_STANDBY_URL")]
    database_standby_url: Option<String>,
    /// PostgreSQL only: connections kept at most to the primary for requests, and to the
    /// standby [default: 16]; each server has two more (notifications, heartbeats).
    #[arg(long, env = "NUMGUARD_POSTGRES_POOL_SIZE")]
    postgres_pool_size: Option<u32>,
    /// Region (ISO 3166, e.g. JP) for numbers given in national format without one.
    #[arg(long, env = "NUMGUARD_DEFAULT_REGION")]
    default_region: Option<Region>,
    /// Largest `max_age_hours` a check may ask for.
    #[arg(long, env = "NUMGUARD_MAX_LOOKBACK_HOURS")]
    max_lookback_hours: Option<u32>,
    /// Verdict when the data cannot answer (reason NO_DATA / NOT_COVERED) [default: allow].
    #[arg(long, env = "NUMGUARD_ON_UNKNOWN", value_enum)]
    on_unknown: Option<OnUnknown>,
    /// Numbers whose event history is kept in memory; 0 disables the cache.
    #[arg(long, env = "NUMGUARD_CACHE_CAPACITY")]
    cache_capacity: Option<u64>,
    /// Events per ingest transaction. Larger batches write fewer pages per event (SQLite
    /// rewrites each index page an insert touches) at the cost of memory.
    #[arg(long, env = "NUMGUARD_INGEST_BATCH_SIZE")]
    ingest_batch_size: Option<u64>,
    /// UTC offset in which date-only `owner_since` values are read, e.g. +09:00.
    #[arg(long, env = "NUMGUARD_DATE_ZONE", value_parser = parse_offset)]
    date_zone: Option<FixedOffset>,
    /// After starting, show the server answering through a real gRPC client: a health
    /// check, then a demo dataset (a fresh and an old SIM swap, a recent port, a recycled
    /// number, a stale feed, an uncovered carrier; times relative to now) and each case's
    /// verdict. Without --database-url the demo gets a fresh database of its own in the
    /// temporary directory; it never seeds one you chose. The server keeps running with
    /// that data. Needs --dev or --api-key.
    #[arg(long, env = "NUMGUARD_DEMO", value_parser = BoolishValueParser::new())]
    demo: bool,
    /// Development mode: no API keys (every caller is tenant `dev` with every scope).
    /// Refused unless --listen is a loopback address.
    #[arg(long, env = "NUMGUARD_DEV", value_parser = BoolishValueParser::new())]
    dev: bool,
    /// Key the --demo tour uses when not in --dev mode.
    #[arg(long, env = "NUMGUARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests per second allowed per API key (token bucket); 0 disables the limit.
    #[arg(long, env = "NUMGUARD_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Requests a key may burst to after being idle.
    #[arg(long, env = "NUMGUARD_RATE_BURST")]
    rate_burst: Option<f64>,
    /// Requests in flight before new ones are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "NUMGUARD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Requests, streams included, one tenant may have in flight (with API keys), so one
    /// tenant's open streams cannot take every place.
    #[arg(long, env = "NUMGUARD_MAX_IN_FLIGHT_PER_TENANT")]
    max_in_flight_per_tenant: Option<usize>,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "NUMGUARD_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Longest a unary request may run on the server, in milliseconds.
    #[arg(long, env = "NUMGUARD_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Longest an IngestEvents or AuditNumbers stream may send nothing before it is
    /// closed with DEADLINE_EXCEEDED, in seconds.
    #[arg(long, env = "NUMGUARD_STREAM_IDLE_TIMEOUT_SECS")]
    stream_idle_timeout_secs: Option<u64>,
    /// Connections open at once, gRPC and REST together; past it new ones are closed.
    #[arg(long, env = "NUMGUARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Longest a new connection may take to send its first request (its TLS handshake
    /// included), in seconds.
    #[arg(long, env = "NUMGUARD_FIRST_REQUEST_TIMEOUT_SECS")]
    first_request_timeout_secs: Option<u64>,
    /// Longest a connection may stay open with no request in flight, in seconds.
    #[arg(long, env = "NUMGUARD_CONNECTION_IDLE_TIMEOUT_SECS")]
    connection_idle_timeout_secs: Option<u64>,
    /// Purge events that occurred more than this many days ago (0 keeps them forever).
    #[arg(long, env = "NUMGUARD_RETENTION_DAYS")]
    retention_days: Option<u32>,
    /// SQLite only: skip the integrity check (it reads the whole file; by default it runs
    /// in the background once the server serves).
    #[arg(long, env = "NUMGUARD_SKIP_INTEGRITY_CHECK", value_parser = BoolishValueParser::new())]
    skip_integrity_check: bool,
    /// SQLite only: run the integrity check before serving, so a damaged file refuses to
    /// start (the start then takes about as long as reading the file).
    #[arg(long, env = "NUMGUARD_INTEGRITY_CHECK_BEFORE_SERVING", value_parser = BoolishValueParser::new())]
    integrity_check_before_serving: bool,
    /// SQLite only: create the database readable by the server's group too (0640), e.g.
    /// for a backup user in that group; otherwise it is the server user's alone (0600).
    #[arg(long, env = "NUMGUARD_GROUP_READABLE", value_parser = BoolishValueParser::new())]
    group_readable: bool,
    /// The server's key file, kept apart from the database: it seals sink tokens and keys
    /// the access log. Created on first start; every server of one database needs the
    /// same file [default: numguard.key].
    #[arg(long, env = "NUMGUARD_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Do not record which tenant checked which (hashed) number.
    #[arg(long, env = "NUMGUARD_NO_ACCESS_LOG", value_parser = BoolishValueParser::new())]
    no_access_log: bool,
    /// Register carrier names that range imports and events bring in and nobody
    /// registered, as unreviewed carriers (`numguard carriers list --unreviewed`), instead
    /// of refusing them.
    #[arg(long, env = "NUMGUARD_REGISTER_UNKNOWN_CARRIERS", value_parser = BoolishValueParser::new())]
    register_unknown_carriers: bool,
    /// Replicas on one PostgreSQL database: how long after a commit another replica may
    /// still answer from a history cached before it, in milliseconds [default: 1000];
    /// past it, checks read the database until the replica's change feed catches up.
    #[arg(long, env = "NUMGUARD_MAX_REPLICA_LAG_MS")]
    max_replica_lag_ms: Option<u64>,
    /// A webhook sink failing for longer than this many seconds is marked failing in
    /// `subscriptions list` and the metrics [default: 900].
    #[arg(long, env = "NUMGUARD_WEBHOOK_FAILING_AFTER_SECS")]
    webhook_failing_after_secs: Option<u64>,
    /// SQLite only: the largest the database file may grow to, in MiB; past it ingests
    /// answer RESOURCE_EXHAUSTED while checks go on.
    #[arg(long, env = "NUMGUARD_SQLITE_MAX_SIZE_MB")]
    sqlite_max_size_mb: Option<u64>,
    /// Operator APIs to ask where no source covers a number (see `numguard upstreams`);
    /// read at start and again on SIGHUP; none if the file does not exist [default:
    /// numguard-upstreams.toml].
    #[arg(long, env = "NUMGUARD_UPSTREAMS_FILE")]
    upstreams_file: Option<PathBuf>,
    /// How long an operator's answer is reused, in seconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_CACHE_SECS")]
    upstream_cache_secs: Option<u64>,
    /// How long an operator's failure (or "unknown number") is reused, in seconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_ERROR_CACHE_SECS")]
    upstream_error_cache_secs: Option<u64>,
    /// Longest wait for one operator call, in milliseconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_TIMEOUT_MS")]
    upstream_timeout_ms: Option<u64>,
    /// Failures in a row after which a provider's circuit opens.
    #[arg(long, env = "NUMGUARD_UPSTREAM_BREAKER_FAILURES")]
    upstream_breaker_failures: Option<u32>,
    /// Seconds an open circuit stays open before one trial call.
    #[arg(long, env = "NUMGUARD_UPSTREAM_BREAKER_COOLDOWN_SECS")]
    upstream_breaker_cooldown_secs: Option<u64>,
    /// Let webhooks and operator look-ups reach loopback addresses, and plain http there
    /// (tests, local receivers, the README tour). Refused by default.
    #[arg(long, env = "NUMGUARD_ALLOW_LOOPBACK_SINKS", value_parser = BoolishValueParser::new())]
    allow_loopback_sinks: bool,
    /// A network webhooks and operator look-ups may reach although private, link-local
    /// or otherwise special, e.g. 10.1.0.0/16; repeatable (comma-separated in the
    /// environment).
    #[arg(long, env = "NUMGUARD_ALLOW_SINK_NETWORKS", value_delimiter = ',')]
    allow_sink_network: Vec<ipnet::IpNet>,
    /// A host name webhooks and operator look-ups may reach whatever it resolves to;
    /// repeatable (comma-separated in the environment).
    #[arg(long, env = "NUMGUARD_ALLOW_SINK_HOSTS", value_delimiter = ',')]
    allow_sink_host: Vec<String>,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, env = "NUMGUARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "NUMGUARD_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

/// Sets `target` to `value` when the flag or variable was given.
fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

impl ServeArgs {
    /// The defaults, then the `--config` file, then what the environment and flags say.
    fn settings(&self) -> Result<Settings, SettingsError> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let Settings {
            server,
            tls,
            database,
            engine,
            limits,
            upstream,
            egress,
        } = &mut s;
        set(&mut server.listen, &self.listen);
        if self.metrics_listen.is_some() {
            server.metrics_listen = self.metrics_listen;
        }
        if self.otlp_endpoint.is_some() {
            server.otlp_endpoint = self.otlp_endpoint.clone();
        }
        set(&mut server.otlp_sample_ratio, &self.otlp_sample_ratio);
        server.ready_requires_fresh_sources |= self.ready_requires_fresh_sources;
        if self.rest_listen.is_some() {
            server.rest_listen = self.rest_listen;
        }
        server.dev |= self.dev;
        set(&mut server.max_message_bytes, &self.max_message_bytes);
        set(&mut server.request_timeout_ms, &self.request_timeout_ms);
        set(
            &mut server.stream_idle_timeout_secs,
            &self.stream_idle_timeout_secs,
        );
        set(&mut server.max_connections, &self.max_connections);
        set(
            &mut server.first_request_timeout_secs,
            &self.first_request_timeout_secs,
        );
        set(
            &mut server.connection_idle_timeout_secs,
            &self.connection_idle_timeout_secs,
        );
        if self.tls_cert.is_some() || self.tls_key.is_some() {
            tls.cert = self.tls_cert.clone();
            tls.key = self.tls_key.clone();
        }
        set(&mut database.url, &self.database_url);
        if self.database_standby_url.is_some() {
            database.standby_url.clone_from(&self.database_standby_url);
        }
        set(&mut database.postgres_pool_size, &self.postgres_pool_size);
        if self.sqlite_max_size_mb.is_some() {
            database.sqlite_max_size_mb = self.sqlite_max_size_mb;
        }
        set(&mut database.retention_days, &self.retention_days);
        database.skip_integrity_check |= self.skip_integrity_check;
        database.integrity_check_before_serving |= self.integrity_check_before_serving;
        database.group_readable |= self.group_readable;
        set(&mut database.key_file, &self.key_file);
        if self.default_region.is_some() {
            engine.default_region = self.default_region;
        }
        set(&mut engine.max_lookback_hours, &self.max_lookback_hours);
        set(&mut engine.on_unknown, &self.on_unknown);
        set(&mut engine.cache_capacity, &self.cache_capacity);
        set(&mut engine.ingest_batch_size, &self.ingest_batch_size);
        set(&mut engine.date_zone, &self.date_zone);
        engine.access_log &= !self.no_access_log;
        engine.register_unknown_carriers |= self.register_unknown_carriers;
        set(&mut engine.max_replica_lag_ms, &self.max_replica_lag_ms);
        set(
            &mut engine.webhook_failing_after_secs,
            &self.webhook_failing_after_secs,
        );
        set(&mut limits.rate_limit, &self.rate_limit);
        set(&mut limits.rate_burst, &self.rate_burst);
        set(&mut limits.max_in_flight, &self.max_in_flight);
        set(
            &mut limits.max_in_flight_per_tenant,
            &self.max_in_flight_per_tenant,
        );
        set(&mut upstream.file, &self.upstreams_file);
        set(&mut upstream.cache_secs, &self.upstream_cache_secs);
        set(
            &mut upstream.error_cache_secs,
            &self.upstream_error_cache_secs,
        );
        set(&mut upstream.timeout_ms, &self.upstream_timeout_ms);
        set(
            &mut upstream.breaker_failures,
            &self.upstream_breaker_failures,
        );
        set(
            &mut upstream.breaker_cooldown_secs,
            &self.upstream_breaker_cooldown_secs,
        );
        egress.allow_loopback |= self.allow_loopback_sinks;
        egress
            .allow_networks
            .extend(self.allow_sink_network.iter().copied());
        egress
            .allow_hosts
            .extend(self.allow_sink_host.iter().cloned());
        s.validate()?;
        Ok(s)
    }
}

pub async fn run(args: ServeArgs, logging: super::Logging) -> anyhow::Result<ExitCode> {
    let mut settings = args.settings()?;
    if args.print_config {
        print!("{}", settings.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let traces = logging.start(settings.server.trace_export().as_ref())?;
    // The demo never writes into a database someone chose: without one, it gets its own.
    let demo_database = args.demo && settings.database.url == Database::default().url;
    if demo_database {
        settings.database.url = demo::fresh_database()?;
        eprintln!("--demo: a fresh demo database at {}", settings.database.url);
    }
    let config = settings.server_config()?;
    let listen = settings.server.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let rest = match settings.server.rest_listen {
        Some(rest) => Some(
            TcpListener::bind(rest)
                .await
                .with_context(|| format!("cannot listen on {rest} for REST"))?,
        ),
        None => None,
    };
    let dev = settings.server.dev;
    if args.demo {
        let key = if dev { None } else { args.api_key.clone() };
        if config.tls.is_some() {
            eprintln!("--demo does not run over TLS; serving without the tour");
        } else if dev || key.is_some() {
            tokio::spawn(demo::tour(addr, key, demo_database));
        } else {
            eprintln!("--demo needs --dev (no keys) or --api-key; serving without the tour");
        }
    }
    let metrics = match settings.server.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        grpc: listener,
        rest,
        metrics,
    };
    let served = run_server(config, listeners, shutdown_signal()).await;
    if let Some(traces) = traces {
        // Flushing blocks until the collector has the last spans (or gives up).
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
