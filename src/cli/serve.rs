//! `numguard serve`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{FixedOffset, Offset, Utc};
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::demo;
use crate::domain::decision::{DEFAULT_MAX_LOOKBACK_HOURS, Policy, Verdict};
use crate::domain::number::Region;
use crate::engine::{DEFAULT_INGEST_BATCH_SIZE, EngineConfig};
use crate::server::{ServerConfig, run as run_server};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "NUMGUARD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
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
    /// CheckNumber through a real gRPC client. The server keeps running.
    #[arg(long, env = "NUMGUARD_DEMO")]
    demo: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnUnknown {
    Allow,
    StepUp,
    Block,
}

fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(Utc.fix());
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not a UTC offset such as +09:00"))
}

impl ServeArgs {
    fn config(&self) -> ServerConfig {
        let on_unknown = match self.on_unknown {
            OnUnknown::Allow => Verdict::Allow,
            OnUnknown::StepUp => Verdict::StepUp,
            OnUnknown::Block => Verdict::Block,
        };
        ServerConfig {
            database_url: self.database_url.clone(),
            engine: EngineConfig {
                default_region: self.default_region,
                max_lookback_hours: self.max_lookback_hours,
                policy: Policy { on_unknown },
                cache_capacity: self.cache_capacity,
                date_zone: self.date_zone,
                ingest_batch_size: usize::try_from(self.ingest_batch_size).unwrap_or(usize::MAX),
                ..EngineConfig::default()
            },
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if args.demo {
        tokio::spawn(demo::tour(addr));
    }
    run_server(args.config(), listener, shutdown_signal()).await?;
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
