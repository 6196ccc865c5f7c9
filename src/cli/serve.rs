//! `numguard serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{FixedOffset, Offset, Utc};
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::{demo, upstreams};
use crate::domain::decision::{DEFAULT_MAX_LOOKBACK_HOURS, Policy, Verdict};
use crate::domain::number::Region;
use crate::engine::auth::{AuthMode, Limits};
use crate::engine::{DEFAULT_INGEST_BATCH_SIZE, EngineConfig};
use crate::server::{Listeners, ServerConfig, TlsFiles, TransportConfig, run_with as run_server};
use crate::store::StoreOptions;
use crate::upstream::breaker::BreakerConfig;
use crate::upstream::config::ProvidersFile;
use crate::upstream::{UpstreamConfig, UpstreamSettings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "NUMGUARD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Address for the CAMARA-compatible REST API (off unless set), e.g. 127.0.0.1:8080.
    #[arg(long, env = "NUMGUARD_REST_LISTEN")]
    rest_listen: Option<SocketAddr>,
    /// Database URL; the SQLite file is created and migrated on first start.
    #[arg(
        long,
        env = "NUMGUARD_DATABASE_URL",
        default_value = "sqlite://numguard.db"
    )]
    database_url: String,
    /// Region (ISO 3166, e.g. JP) for numbers given in national format without one.
    #[arg(long, env = "NUMGUARD_DEFAULT_REGION")]
    default_region: Option<Region>,
    /// Largest `max_age_hours` a check may ask for.
    #[arg(long, env = "NUMGUARD_MAX_LOOKBACK_HOURS", default_value_t = DEFAULT_MAX_LOOKBACK_HOURS)]
    max_lookback_hours: u32,
    /// Verdict when the data cannot answer (reason NO_DATA / NOT_COVERED).
    #[arg(long, env = "NUMGUARD_ON_UNKNOWN", value_enum, default_value_t = OnUnknown::Allow)]
    on_unknown: OnUnknown,
    /// Numbers whose event history is kept in memory; 0 disables the cache.
    #[arg(long, env = "NUMGUARD_CACHE_CAPACITY", default_value_t = 1_000_000)]
    cache_capacity: u64,
    /// Events per ingest transaction. Larger batches write fewer pages per event (SQLite
    /// rewrites each index page an insert touches) at the cost of memory.
    #[arg(long, env = "NUMGUARD_INGEST_BATCH_SIZE", default_value_t = DEFAULT_INGEST_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    ingest_batch_size: u64,
    /// UTC offset in which date-only `owner_since` values are read, e.g. +09:00.
    #[arg(long, env = "NUMGUARD_DATE_ZONE", default_value = "+00:00", value_parser = parse_offset)]
    date_zone: FixedOffset,
    /// After starting, show the server answering: a health check, a carrier look-up and a
    /// CheckNumber through a real gRPC client. The server keeps running. Needs --dev or
    /// --api-key.
    #[arg(long, env = "NUMGUARD_DEMO")]
    demo: bool,
    /// Development mode: no API keys (every caller is tenant `dev` with every scope).
    /// Refused unless --listen is a loopback address.
    #[arg(long, env = "NUMGUARD_DEV")]
    dev: bool,
    /// Key the --demo tour uses when not in --dev mode.
    #[arg(long, env = "NUMGUARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests per second allowed per API key (token bucket); 0 disables the limit.
    #[arg(long, env = "NUMGUARD_RATE_LIMIT", default_value_t = Limits::default().rate_per_second)]
    rate_limit: f64,
    /// Requests a key may burst to after being idle.
    #[arg(long, env = "NUMGUARD_RATE_BURST", default_value_t = Limits::default().burst)]
    rate_burst: f64,
    /// Requests in flight before new ones are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "NUMGUARD_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    max_in_flight: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "NUMGUARD_MAX_MESSAGE_BYTES", default_value_t = TransportConfig::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Longest a unary request may run on the server, in milliseconds.
    #[arg(long, env = "NUMGUARD_REQUEST_TIMEOUT_MS", default_value_t = default_request_timeout_ms())]
    request_timeout_ms: u64,
    /// Purge events that occurred more than this many days ago (0 keeps them forever).
    #[arg(long, env = "NUMGUARD_RETENTION_DAYS", default_value_t = 0)]
    retention_days: u32,
    /// Do not record which tenant checked which (hashed) number.
    #[arg(long, env = "NUMGUARD_NO_ACCESS_LOG")]
    no_access_log: bool,
    /// Register carrier names that range imports and events bring in and nobody
    /// registered, as unreviewed carriers (`numguard carriers list --unreviewed`), instead
    /// of refusing them.
    #[arg(long, env = "NUMGUARD_REGISTER_UNKNOWN_CARRIERS")]
    register_unknown_carriers: bool,
    /// SQLite only: the largest the database file may grow to, in MiB; past it ingests
    /// answer RESOURCE_EXHAUSTED while checks go on.
    #[arg(long, env = "NUMGUARD_SQLITE_MAX_SIZE_MB")]
    sqlite_max_size_mb: Option<u64>,
    /// Operator APIs to ask where no source covers a number (see `numguard upstreams`);
    /// read at start and again on SIGHUP; none if the file does not exist.
    #[arg(long, env = "NUMGUARD_UPSTREAMS_FILE", default_value = upstreams::DEFAULT_FILE)]
    upstreams_file: PathBuf,
    /// How long an operator's answer is reused, in seconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_CACHE_SECS", default_value_t = 900)]
    upstream_cache_secs: u64,
    /// How long an operator's failure (or "unknown number") is reused, in seconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_ERROR_CACHE_SECS", default_value_t = 30)]
    upstream_error_cache_secs: u64,
    /// Longest wait for one operator call, in milliseconds.
    #[arg(long, env = "NUMGUARD_UPSTREAM_TIMEOUT_MS", default_value_t = 800)]
    upstream_timeout_ms: u64,
    /// Failures in a row after which a provider's circuit opens.
    #[arg(long, env = "NUMGUARD_UPSTREAM_BREAKER_FAILURES", default_value_t = 5)]
    upstream_breaker_failures: u32,
    /// Seconds an open circuit stays open before one trial call.
    #[arg(
        long,
        env = "NUMGUARD_UPSTREAM_BREAKER_COOLDOWN_SECS",
        default_value_t = 30
    )]
    upstream_breaker_cooldown_secs: u64,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, env = "NUMGUARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "NUMGUARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnUnknown {
    Allow,
    StepUp,
    Block,
}

fn default_request_timeout_ms() -> u64 {
    u64::try_from(TransportConfig::default().request_timeout.as_millis()).unwrap_or(u64::MAX)
}

fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(Utc.fix());
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not a UTC offset such as +09:00"))
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let on_unknown = match self.on_unknown {
            OnUnknown::Allow => Verdict::Allow,
            OnUnknown::StepUp => Verdict::StepUp,
            OnUnknown::Block => Verdict::Block,
        };
        let upstream = UpstreamConfig {
            providers: ProvidersFile::load(&self.upstreams_file)?,
            settings: UpstreamSettings {
                answer_ttl: Duration::from_secs(self.upstream_cache_secs),
                error_ttl: Duration::from_secs(self.upstream_error_cache_secs),
                timeout: Duration::from_millis(self.upstream_timeout_ms.max(1)),
                breaker: BreakerConfig {
                    threshold: self.upstream_breaker_failures.max(1),
                    cooldown: Duration::from_secs(self.upstream_breaker_cooldown_secs),
                },
                ..UpstreamSettings::default()
            },
        };
        Ok(ServerConfig {
            database_url: self.database_url.clone(),
            engine: EngineConfig {
                default_region: self.default_region,
                max_lookback_hours: self.max_lookback_hours,
                policy: Policy { on_unknown },
                cache_capacity: self.cache_capacity,
                date_zone: self.date_zone,
                ingest_batch_size: usize::try_from(self.ingest_batch_size).unwrap_or(usize::MAX),
                auth: if self.dev {
                    AuthMode::Disabled
                } else {
                    AuthMode::Keys
                },
                limits: Limits {
                    rate_per_second: self.rate_limit,
                    burst: self.rate_burst.max(1.0),
                    max_in_flight: self.max_in_flight.max(1),
                },
                access_log: !self.no_access_log,
                register_unknown_carriers: self.register_unknown_carriers,
                retention: (self.retention_days > 0)
                    .then(|| chrono::Duration::days(i64::from(self.retention_days))),
                upstream,
                ..EngineConfig::default()
            },
            transport: TransportConfig {
                max_message_bytes: self.max_message_bytes,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
            },
            store: StoreOptions {
                sqlite_max_bytes: self.sqlite_max_size_mb.map(|mb| mb.saturating_mul(1 << 20)),
            },
            upstreams_file: Some(self.upstreams_file.clone()),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        })
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let rest = match args.rest_listen {
        Some(rest) => Some(
            TcpListener::bind(rest)
                .await
                .with_context(|| format!("cannot listen on {rest} for REST"))?,
        ),
        None => None,
    };
    let rest_addr = rest.as_ref().map(TcpListener::local_addr).transpose()?;
    for listening in std::iter::once(addr).chain(rest_addr) {
        if args.dev && !listening.ip().is_loopback() {
            anyhow::bail!(
                "--dev turns authentication off, so it only listens on loopback; {listening} \
                 is not"
            );
        }
    }
    if args.demo {
        let key = if args.dev { None } else { args.api_key.clone() };
        if args.tls_cert.is_some() {
            eprintln!("--demo does not run over TLS; serving without the tour");
        } else if args.dev || key.is_some() {
            tokio::spawn(demo::tour(addr, key));
        } else {
            eprintln!("--demo needs --dev (no keys) or --api-key; serving without the tour");
        }
    }
    let listeners = Listeners {
        grpc: listener,
        rest,
    };
    run_server(args.config()?, listeners, shutdown_signal()).await?;
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
