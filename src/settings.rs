//! Settings of `numguard serve`, as one typed tree: the defaults, then an optional TOML file
//! (`--config`), then `NUMGUARD_*` environment variables, then flags, each later layer
//! overriding the earlier ones. [`Settings::validate`] refuses what cannot run, with the
//! setting's name, instead of quietly raising it. `examples/numguard.toml` lists every
//! setting with its default.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{FixedOffset, Offset, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ipnet::IpNet;

use crate::connections::ConnectionLimits;
use crate::domain::decision::{Policy, Verdict};
use crate::domain::egress::EgressPolicy;
use crate::domain::number::Region;
use crate::engine::EngineConfig;
use crate::engine::auth::{AuthMode, Limits as RequestLimits};
use crate::server::{ServerConfig, TlsFiles, TransportConfig};
use crate::store::{IntegrityCheck, StandbyOptions, StoreOptions};
use crate::upstream::config::{ConfigError, ProvidersFile};
use crate::upstream::{UpstreamConfig, UpstreamSettings};

/// The providers file `numguard upstreams` edits and `serve` reads.
pub const DEFAULT_UPSTREAMS_FILE: &str = "numguard-upstreams.toml";

/// The key file's default path, beside the default database.
pub const DEFAULT_KEY_FILE: &str = "numguard.key";

/// Everything `numguard serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: Server,
    pub tls: Tls,
    pub database: Database,
    pub engine: Engine,
    pub limits: Limits,
    pub upstream: Upstream,
    pub egress: Egress,
}

/// Where the server listens and what each request may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// The gRPC address.
    pub listen: SocketAddr,
    /// The CAMARA REST facade's address; off when absent.
    pub rest_listen: Option<SocketAddr>,
    /// The address of `/metrics` (Prometheus), `/healthz` and `/readyz`; off when absent.
    /// No key is asked there.
    pub metrics_listen: Option<SocketAddr>,
    /// Where traces go, over OTLP/gRPC (e.g. `http://127.0.0.1:4317`); off when absent.
    pub otlp_endpoint: Option<String>,
    /// The share of requests traced when traces are exported, in (0, 1].
    pub otlp_sample_ratio: f64,
    /// `/readyz` answers 503 while a live source is stale (so a load balancer takes a
    /// replica whose feeds stopped out of rotation).
    pub ready_requires_fresh_sources: bool,
    /// No API keys: every caller is tenant `dev` with every scope. Loopback only.
    pub dev: bool,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Longest a unary request may run on the server, in milliseconds.
    pub request_timeout_ms: u64,
    /// Longest an IngestEvents or AuditNumbers stream may send nothing before it is
    /// closed, in seconds.
    pub stream_idle_timeout_secs: u64,
    /// Connections open at once, gRPC and REST together; past it new ones are closed.
    pub max_connections: usize,
    /// Longest a new connection may take to send its first request, in seconds.
    pub first_request_timeout_secs: u64,
    /// Longest a connection may stay open with no request in flight, in seconds.
    pub connection_idle_timeout_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        let transport = TransportConfig::default();
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            rest_listen: None,
            metrics_listen: None,
            otlp_endpoint: None,
            otlp_sample_ratio: 1.0,
            ready_requires_fresh_sources: false,
            dev: false,
            max_message_bytes: transport.max_message_bytes,
            request_timeout_ms: millis(transport.request_timeout),
            stream_idle_timeout_secs: transport.stream_idle_timeout.as_secs(),
            max_connections: transport.connections.max_connections,
            first_request_timeout_secs: transport.connections.first_request_timeout.as_secs(),
            connection_idle_timeout_secs: transport.connections.idle_timeout.as_secs(),
        }
    }
}

/// TLS on the gRPC port: both files or neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// The database and what is kept in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://FILE` (created and migrated on first start) or `postgres://...`.
    pub url: String,
    /// SQLite only: the largest the file may grow to, in MiB.
    pub sqlite_max_size_mb: Option<u64>,
    /// Events that occurred more than this many days ago are purged; 0 keeps them.
    pub retention_days: u32,
    /// SQLite only: skip the integrity check (it reads the whole file).
    pub skip_integrity_check: bool,
    /// SQLite only: run the integrity check before serving, refusing a damaged file at
    /// start, rather than in the background while serving.
    pub integrity_check_before_serving: bool,
    /// SQLite only: create the database readable by the server's group too (0640), for
    /// a backup user in that group; otherwise 0600.
    pub group_readable: bool,
    /// The server's key file, apart from the database: it seals sink tokens and keys the
    /// access log. Created on first start; every server of one database needs the same.
    pub key_file: PathBuf,
    /// PostgreSQL only: a hot standby of the database (`postgres://...`). Check and audit
    /// reads go to it while it has replayed every change they need; everything else, and
    /// every read it cannot serve, goes to the primary named by `url`.
    pub standby_url: Option<String>,
    /// PostgreSQL only: the most connections this server keeps to the primary for
    /// requests, and to the standby; one more each for change notifications and
    /// heartbeats. Replicas × (this + 2) must stay under the primary's `max_connections`.
    pub postgres_pool_size: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "sqlite://numguard.db".to_string(),
            sqlite_max_size_mb: None,
            retention_days: 0,
            skip_integrity_check: false,
            integrity_check_before_serving: false,
            group_readable: false,
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            standby_url: None,
            postgres_pool_size: crate::store::postgres::DEFAULT_POOL_SIZE,
        }
    }
}

/// How checks are read and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// Region (ISO 3166) for national-format numbers given without one.
    #[serde(with = "text_option")]
    pub default_region: Option<Region>,
    /// Largest `max_age_hours` a check may ask for.
    pub max_lookback_hours: u32,
    /// Verdict when the data cannot answer.
    pub on_unknown: OnUnknown,
    /// Numbers whose history is kept in memory; 0 disables the cache.
    pub cache_capacity: u64,
    /// Events per ingest transaction.
    pub ingest_batch_size: u64,
    /// UTC offset in which date-only `owner_since` values are read, e.g. `+09:00`.
    #[serde(with = "utc_offset")]
    pub date_zone: FixedOffset,
    /// Record which tenant checked which (hashed) number.
    pub access_log: bool,
    /// Register unknown carrier names as unreviewed carriers instead of refusing them.
    pub register_unknown_carriers: bool,
    /// Replicas sharing a PostgreSQL database: how long after a commit another replica
    /// may still answer from a history it cached before; past it, checks read the
    /// database until the replica's change feed catches up.
    pub max_replica_lag_ms: u64,
    /// A webhook sink failing for longer than this many seconds is reported as failing.
    pub webhook_failing_after_secs: u64,
}

impl Default for Engine {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Engine {
            default_region: engine.default_region,
            max_lookback_hours: engine.max_lookback_hours,
            on_unknown: OnUnknown::from(engine.policy.on_unknown),
            cache_capacity: engine.cache_capacity,
            ingest_batch_size: engine.ingest_batch_size as u64,
            date_zone: engine.date_zone,
            access_log: engine.access_log,
            register_unknown_carriers: engine.register_unknown_carriers,
            max_replica_lag_ms: engine.max_replica_lag.as_millis() as u64,
            webhook_failing_after_secs: engine.webhook_failing_after.as_secs(),
        }
    }
}

impl Server {
    /// Where traces go, if anywhere.
    pub fn trace_export(&self) -> Option<crate::telemetry::TraceExport> {
        self.otlp_endpoint
            .clone()
            .map(|endpoint| crate::telemetry::TraceExport {
                endpoint,
                sample_ratio: self.otlp_sample_ratio,
            })
    }
}

/// The verdict a check gets when the data cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnknown {
    Allow,
    StepUp,
    Block,
}

impl From<Verdict> for OnUnknown {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => OnUnknown::Allow,
            Verdict::StepUp => OnUnknown::StepUp,
            Verdict::Block => OnUnknown::Block,
        }
    }
}

impl From<OnUnknown> for Verdict {
    fn from(v: OnUnknown) -> Self {
        match v {
            OnUnknown::Allow => Verdict::Allow,
            OnUnknown::StepUp => Verdict::StepUp,
            OnUnknown::Block => Verdict::Block,
        }
    }
}

/// What one API key may ask, and the whole server at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests per second per API key (token bucket); 0 disables the limit.
    pub rate_limit: f64,
    /// Requests a key may burst to after being idle.
    pub rate_burst: f64,
    /// Requests in flight before new ones are shed.
    pub max_in_flight: usize,
    /// Requests, streams included, one tenant may have in flight (with API keys).
    pub max_in_flight_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let limits = RequestLimits::default();
        Limits {
            rate_limit: limits.rate_per_second,
            rate_burst: limits.burst,
            max_in_flight: limits.max_in_flight,
            max_in_flight_per_tenant: limits.max_in_flight_per_tenant,
        }
    }
}

/// Operator APIs asked where no source covers a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The providers file, read at start and on SIGHUP; none if it does not exist.
    pub file: PathBuf,
    /// How long an operator's answer is reused, in seconds.
    pub cache_secs: u64,
    /// How long a failure (or "unknown number") is reused, in seconds.
    pub error_cache_secs: u64,
    /// Longest wait for one operator call, in milliseconds.
    pub timeout_ms: u64,
    /// Failures in a row after which a provider's circuit opens.
    pub breaker_failures: u32,
    /// Seconds an open circuit stays open before one trial call.
    pub breaker_cooldown_secs: u64,
}

impl Default for Upstream {
    fn default() -> Self {
        let upstream = UpstreamSettings::default();
        Upstream {
            file: PathBuf::from(DEFAULT_UPSTREAMS_FILE),
            cache_secs: upstream.answer_ttl.as_secs(),
            error_cache_secs: upstream.error_ttl.as_secs(),
            timeout_ms: millis(upstream.timeout),
            breaker_failures: upstream.breaker.threshold,
            breaker_cooldown_secs: upstream.breaker.cooldown.as_secs(),
        }
    }
}

/// Where webhooks and operator look-ups may send, beyond public addresses (see
/// `crate::domain::egress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Egress {
    /// Loopback addresses, and plain http to them: tests and the README tour.
    pub allow_loopback: bool,
    /// Networks reached although private or otherwise special, e.g. `10.1.0.0/16`.
    pub allow_networks: Vec<IpNet>,
    /// Host names reached whatever they resolve to.
    pub allow_hosts: Vec<String>,
}

impl Egress {
    fn policy(&self) -> EgressPolicy {
        EgressPolicy {
            allow_loopback: self.allow_loopback,
            allow_networks: self.allow_networks.clone(),
            allow_hosts: self
                .allow_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    /// A value that cannot run, named by its key in the file.
    #[error("{key} {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Providers(#[from] ConfigError),
}

fn invalid(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        message: message.into(),
    }
}

/// Refuses `value` outside `1..=max`, naming `key`.
fn one_to(key: &'static str, value: u64, max: u64) -> Result<(), SettingsError> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be in 1..={max}, got {value}")))
    }
}

/// The largest ingest batch: bigger ones hold too much in one transaction.
pub const MAX_INGEST_BATCH_SIZE: u64 = 1_000_000;
/// Largest `database.postgres_pool_size`: PostgreSQL's own default `max_connections` is
/// 100, and a thousand per server is past any single machine's use.
pub const MAX_POSTGRES_POOL_SIZE: u32 = 1_000;

impl Settings {
    /// The defaults overlaid with the TOML file at `path`; every key it names must exist.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::from_toml(&text).map_err(|message| SettingsError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// The defaults overlaid with TOML text.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    /// The settings as a TOML file that [`Settings::from_toml`] reads back the same.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot write settings: {e}\n"))
    }

    /// Refuses values the server cannot run with, naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let Settings {
            server,
            tls,
            engine,
            limits,
            upstream,
            database,
            egress,
        } = self;
        if let Some(host) = egress.allow_hosts.iter().find(|h| h.trim().is_empty()) {
            return Err(invalid(
                "egress.allow_hosts",
                format!("names an empty host {host:?}"),
            ));
        }
        if server.dev {
            for (key, addr) in [
                ("server.listen", Some(server.listen)),
                ("server.rest_listen", server.rest_listen),
            ] {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(invalid(
                        key,
                        format!(
                            "is {addr}, but server.dev (--dev) turns authentication off, so it \
                             only listens on loopback"
                        ),
                    ));
                }
            }
        }
        if server.max_message_bytes == 0 {
            return Err(invalid("server.max_message_bytes", "must be at least 1"));
        }
        if server.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms", "must be at least 1"));
        }
        for (key, value) in [
            (
                "server.stream_idle_timeout_secs",
                server.stream_idle_timeout_secs,
            ),
            ("server.max_connections", server.max_connections as u64),
            (
                "server.first_request_timeout_secs",
                server.first_request_timeout_secs,
            ),
            (
                "server.connection_idle_timeout_secs",
                server.connection_idle_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if let Some(endpoint) = &server.otlp_endpoint {
            let scheme = url::Url::parse(endpoint).map(|u| u.scheme().to_string());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                return Err(invalid(
                    "server.otlp_endpoint",
                    format!("must be an http:// or https:// URL, got {endpoint:?}"),
                ));
            }
        }
        if !(server.otlp_sample_ratio > 0.0 && server.otlp_sample_ratio <= 1.0) {
            return Err(invalid(
                "server.otlp_sample_ratio",
                format!("must be in (0, 1], got {}", server.otlp_sample_ratio),
            ));
        }
        match (&tls.cert, &tls.key) {
            (Some(_), None) => return Err(invalid("tls.key", "is needed with tls.cert")),
            (None, Some(_)) => return Err(invalid("tls.cert", "is needed with tls.key")),
            _ => {}
        }
        one_to(
            "database.postgres_pool_size",
            database.postgres_pool_size.into(),
            MAX_POSTGRES_POOL_SIZE.into(),
        )?;
        if let Some(standby) = &database.standby_url {
            let postgres =
                |url: &str| url.starts_with("postgres:") || url.starts_with("postgresql:");
            if !postgres(&database.url) {
                return Err(invalid(
                    "database.standby_url",
                    "needs a PostgreSQL database.url (a standby replays a PostgreSQL primary)",
                ));
            }
            if !postgres(standby) {
                return Err(invalid("database.standby_url", "must be a postgres:// URL"));
            }
        }
        // Below a few heartbeats, a replica would read the database for almost every check.
        let least_lag = 2 * crate::store::postgres::HEARTBEAT_INTERVAL.as_millis() as u64;
        if engine.max_replica_lag_ms < least_lag {
            return Err(invalid(
                "engine.max_replica_lag_ms",
                format!("must be at least {least_lag} (two heartbeats)"),
            ));
        }
        if engine.webhook_failing_after_secs == 0 {
            return Err(invalid(
                "engine.webhook_failing_after_secs",
                "must be at least 1",
            ));
        }
        if engine.max_lookback_hours == 0 {
            return Err(invalid("engine.max_lookback_hours", "must be at least 1"));
        }
        one_to(
            "engine.ingest_batch_size",
            engine.ingest_batch_size,
            MAX_INGEST_BATCH_SIZE,
        )?;
        if !(limits.rate_limit.is_finite() && limits.rate_limit >= 0.0) {
            return Err(invalid(
                "limits.rate_limit",
                format!("must be 0 (no limit) or more, got {}", limits.rate_limit),
            ));
        }
        if !(limits.rate_burst.is_finite() && limits.rate_burst >= 1.0) {
            return Err(invalid(
                "limits.rate_burst",
                format!("must be at least 1, got {}", limits.rate_burst),
            ));
        }
        if limits.max_in_flight == 0 {
            return Err(invalid("limits.max_in_flight", "must be at least 1"));
        }
        if limits.max_in_flight_per_tenant == 0 {
            return Err(invalid(
                "limits.max_in_flight_per_tenant",
                "must be at least 1",
            ));
        }
        if upstream.timeout_ms == 0 {
            return Err(invalid("upstream.timeout_ms", "must be at least 1"));
        }
        if upstream.breaker_failures == 0 {
            return Err(invalid("upstream.breaker_failures", "must be at least 1"));
        }
        Ok(())
    }

    /// What the server runs with; reads the upstream providers file.
    pub fn server_config(&self) -> Result<ServerConfig, SettingsError> {
        self.validate()?;
        let Settings {
            server,
            tls,
            database,
            engine,
            limits,
            upstream,
            egress,
        } = self;
        let upstream = UpstreamConfig {
            providers: ProvidersFile::load(&upstream.file)?,
            settings: UpstreamSettings {
                answer_ttl: Duration::from_secs(upstream.cache_secs),
                error_ttl: Duration::from_secs(upstream.error_cache_secs),
                timeout: Duration::from_millis(upstream.timeout_ms),
                breaker: crate::upstream::breaker::BreakerConfig {
                    threshold: upstream.breaker_failures,
                    cooldown: Duration::from_secs(upstream.breaker_cooldown_secs),
                },
                ..UpstreamSettings::default()
            },
        };
        Ok(ServerConfig {
            database_url: database.url.clone(),
            engine: EngineConfig {
                default_region: engine.default_region,
                max_lookback_hours: engine.max_lookback_hours,
                policy: Policy {
                    on_unknown: engine.on_unknown.into(),
                },
                cache_capacity: engine.cache_capacity,
                date_zone: engine.date_zone,
                ingest_batch_size: usize::try_from(engine.ingest_batch_size).unwrap_or(usize::MAX),
                auth: if server.dev {
                    AuthMode::Disabled
                } else {
                    AuthMode::Keys
                },
                limits: RequestLimits {
                    rate_per_second: limits.rate_limit,
                    burst: limits.rate_burst,
                    max_in_flight: limits.max_in_flight,
                    max_in_flight_per_tenant: limits.max_in_flight_per_tenant,
                },
                access_log: engine.access_log,
                register_unknown_carriers: engine.register_unknown_carriers,
                max_replica_lag: Duration::from_millis(engine.max_replica_lag_ms),
                webhook_failing_after: Duration::from_secs(engine.webhook_failing_after_secs),
                ready_requires_fresh_sources: server.ready_requires_fresh_sources,
                retention: (database.retention_days > 0)
                    .then(|| chrono::Duration::days(i64::from(database.retention_days))),
                upstream,
                egress: egress.policy(),
                ..EngineConfig::default()
            },
            transport: TransportConfig {
                max_message_bytes: server.max_message_bytes,
                request_timeout: Duration::from_millis(server.request_timeout_ms),
                stream_idle_timeout: Duration::from_secs(server.stream_idle_timeout_secs),
                connections: ConnectionLimits {
                    max_connections: server.max_connections,
                    first_request_timeout: Duration::from_secs(server.first_request_timeout_secs),
                    idle_timeout: Duration::from_secs(server.connection_idle_timeout_secs),
                },
            },
            store: StoreOptions {
                sqlite_max_bytes: database
                    .sqlite_max_size_mb
                    .map(|mb| mb.saturating_mul(1 << 20)),
                sqlite_integrity_check: match (
                    database.skip_integrity_check,
                    database.integrity_check_before_serving,
                ) {
                    (true, _) => IntegrityCheck::Off,
                    (false, true) => IntegrityCheck::BeforeServing,
                    (false, false) => IntegrityCheck::Background,
                },
                sqlite_group_readable: database.group_readable,
                standby: database.standby_url.as_ref().map(|url| StandbyOptions {
                    url: url.clone(),
                    max_lag: Duration::from_millis(engine.max_replica_lag_ms),
                }),
                postgres_pool_size: database.postgres_pool_size,
            },
            upstreams_file: Some(self.upstream.file.clone()),
            key_file: database.key_file.clone(),
            tls: match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        })
    }
}

/// Reads a UTC offset such as `+09:00` (or `UTC`, `Z`).
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(Utc.fix());
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not a UTC offset such as +09:00"))
}

/// `FixedOffset` as its text, e.g. `"+09:00"`.
mod utc_offset {
    use super::*;

    pub fn serialize<S: Serializer>(offset: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(offset)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FixedOffset, D::Error> {
        parse_offset(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An optional value as its text (`Display` / `FromStr`); absent when `None`.
mod text_option {
    use super::*;

    pub fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/numguard.toml");

    #[test]
    fn the_example_file_lists_the_defaults_and_round_trips() {
        let example = Settings::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(example, Settings::default());
        let written = example.to_toml();
        assert_eq!(
            Settings::from_toml(&written).expect("written parses"),
            example
        );
        example.validate().expect("defaults are valid");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = Settings::from_toml("[limits]\nrate_limt = 5\n").unwrap_err();
        assert!(e.contains("rate_limt"), "{e}");
        let e = Settings::from_toml("[limit]\n").unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let s = Settings::from_toml(
            "[engine]\ndate_zone = \"+09:00\"\ndefault_region = \"JP\"\non_unknown = \"step-up\"\n",
        )
        .unwrap();
        assert_eq!(s.engine.date_zone.local_minus_utc(), 9 * 3600);
        assert_eq!(s.engine.default_region, Some("JP".parse().unwrap()));
        assert_eq!(s.engine.on_unknown, OnUnknown::StepUp);
        assert_eq!(s.limits, Limits::default());
        let e = Settings::from_toml("[engine]\ndate_zone = \"JST\"\n").unwrap_err();
        assert!(e.contains("not a UTC offset"), "{e}");
    }

    fn refused(edit: impl FnOnce(&mut Settings)) -> String {
        let mut s = Settings::default();
        edit(&mut s);
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let cases: Vec<(String, &str)> = vec![
            (
                refused(|s| s.limits.rate_burst = 0.5),
                "limits.rate_burst must be at least 1, got 0.5",
            ),
            (refused(|s| s.limits.rate_limit = -1.0), "limits.rate_limit"),
            (
                refused(|s| s.limits.max_in_flight = 0),
                "limits.max_in_flight must be at least 1",
            ),
            (
                refused(|s| s.engine.ingest_batch_size = 0),
                "engine.ingest_batch_size must be in 1..=1000000, got 0",
            ),
            (
                refused(|s| s.engine.max_lookback_hours = 0),
                "engine.max_lookback_hours",
            ),
            (
                refused(|s| s.upstream.timeout_ms = 0),
                "upstream.timeout_ms",
            ),
            (
                refused(|s| s.upstream.breaker_failures = 0),
                "upstream.breaker_failures",
            ),
            (
                refused(|s| s.server.request_timeout_ms = 0),
                "server.request_timeout_ms",
            ),
            (
                refused(|s| s.server.max_message_bytes = 0),
                "server.max_message_bytes",
            ),
            (
                refused(|s| s.server.otlp_endpoint = Some("collector:4317".into())),
                "server.otlp_endpoint must be an http:// or https:// URL",
            ),
            (
                refused(|s| s.server.otlp_sample_ratio = 0.0),
                "server.otlp_sample_ratio must be in (0, 1], got 0",
            ),
            (
                refused(|s| s.engine.webhook_failing_after_secs = 0),
                "engine.webhook_failing_after_secs must be at least 1",
            ),
            (
                refused(|s| s.database.postgres_pool_size = 0),
                "database.postgres_pool_size must be in 1..=1000, got 0",
            ),
            (
                refused(|s| s.database.postgres_pool_size = 1_001),
                "database.postgres_pool_size must be in 1..=1000, got 1001",
            ),
            (
                refused(|s| s.database.standby_url = Some("postgres://standby/db".into())),
                "database.standby_url needs a PostgreSQL database.url",
            ),
            (
                refused(|s| {
                    s.database.url = "postgres://primary/db".into();
                    s.database.standby_url = Some("sqlite://copy.db".into());
                }),
                "database.standby_url must be a postgres:// URL",
            ),
            (
                refused(|s| s.tls.cert = Some("c.pem".into())),
                "tls.key is needed with tls.cert",
            ),
            (
                refused(|s| {
                    s.server.dev = true;
                    s.server.listen = "0.0.0.0:50051".parse().unwrap();
                }),
                "server.listen is 0.0.0.0:50051, but server.dev",
            ),
            (
                refused(|s| {
                    s.server.dev = true;
                    s.server.rest_listen = Some("10.0.0.1:8080".parse().unwrap());
                }),
                "server.rest_listen is 10.0.0.1:8080",
            ),
        ];
        for (message, expected) in cases {
            assert!(
                message.starts_with(expected),
                "{message:?} is not {expected:?}"
            );
        }
    }

    #[test]
    fn dev_on_loopback_is_fine() {
        let mut s = Settings::default();
        s.server.dev = true;
        s.server.rest_listen = Some("[::1]:8080".parse().unwrap());
        s.validate().unwrap();
    }
}
