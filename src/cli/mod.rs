//! The `numguard` command line: one binary for the server and its clients.

mod alerts;
mod audit;
mod audit_report;
mod batches;
mod carriers;
mod check;
mod client;
mod demo;
pub mod event_file;
mod files;
mod import;
mod keys;
mod line_records;
mod progress;
mod serve;
mod shell;
mod sources;
mod subscriptions;
mod upstreams;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::telemetry::{self, TraceExport, Traces};

#[derive(Debug, Parser)]
#[command(
    name = "numguard",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NUMGUARD_COMMIT"), ")"),
    about = "Decides whether a phone number still belongs to its registered owner",
    long_about = "Decides whether a phone number still belongs to its registered owner, from \
        carrier ranges and porting, SIM-swap, disconnection and reassignment events.\n\n\
        Every option can also be set through a NUMGUARD_* environment variable."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `numguard=debug`.
    #[arg(long, env = "NUMGUARD_LOG", default_value = "info", global = true)]
    log: String,
    /// Log lines as text, or as JSON objects one per line (for log pipelines).
    #[arg(
        long,
        env = "NUMGUARD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(Box<serve::ServeArgs>),
    /// Ask a running server whether a number still belongs to its owner.
    Check(check::CheckArgs),
    /// Audit a customer list (CSV) against a running server and write a report.
    Audit(audit::AuditArgs),
    /// Import carrier ranges or events into a running server.
    Import(import::ImportArgs),
    /// Manage event sources on a running server.
    Sources(sources::SourcesArgs),
    /// Manage the carrier registry on a running server: ids, names, MCC-MNC, aliases.
    Carriers(carriers::CarriersArgs),
    /// Manage this tenant's watched numbers on a running server.
    Watch(watch::WatchArgs),
    /// Receive alerts for watched numbers.
    Alerts(alerts::AlertsArgs),
    /// Manage this tenant's webhook subscriptions on a running server, and see how their
    /// deliveries stand.
    Subscriptions(subscriptions::SubscriptionsArgs),
    /// Manage API keys and tenants, directly on the database.
    Keys(keys::KeysArgs),
    /// Show which tenants checked a number, and when (directly on the database).
    AccessLog(keys::AccessLogArgs),
    /// Manage the operator APIs asked where no source covers a number (a local file).
    Upstreams(upstreams::UpstreamsArgs),
    /// Print shell completions for numguard (e.g. `numguard completions bash`).
    Completions(shell::CompletionsArgs),
    /// Print numguard's man page (roff).
    Man,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let logging = Logging {
            filter: self.log,
            format: self.log_format,
        };
        // The server starts logging once its settings (a file, the environment) have said
        // where traces go.
        if !matches!(self.command, Command::Serve(_)) {
            logging.start(None)?;
        }
        match self.command {
            Command::Serve(args) => serve::run(*args, logging).await,
            Command::Check(args) => check::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Sources(args) => sources::run(args).await,
            Command::Carriers(args) => carriers::run(args).await,
            Command::Watch(args) => watch::run(args).await,
            Command::Alerts(args) => alerts::alerts(args).await,
            Command::Subscriptions(args) => subscriptions::run(args).await,
            Command::Keys(args) => keys::run(args).await,
            Command::AccessLog(args) => keys::access_log(args).await,
            Command::Upstreams(args) => upstreams::run(args).await,
            Command::Completions(args) => shell::completions(args),
            Command::Man => shell::man(),
        }
    }
}

/// How the server logs, decided before its settings are read.
pub struct Logging {
    filter: String,
    format: LogFormat,
}

impl Logging {
    /// Starts logging, and trace export where `otlp` names a collector.
    pub fn start(&self, otlp: Option<&TraceExport>) -> anyhow::Result<Option<Traces>> {
        init_logging(&self.filter, self.format, otlp)
    }
}

/// The exit status of a command that finished: 0, or 3 when it refused some of its input
/// (lines, rows or entries, each reported). Errors exit 1 and usage errors 2 (clap).
pub fn finished(refused: u64) -> ExitCode {
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// Logs go to stderr so that stdout stays the command's output; with `otlp`, traces go
/// to that collector too (the returned [`Traces`] flushes them at the end).
fn init_logging(
    filter: &str,
    format: LogFormat,
    otlp: Option<&TraceExport>,
) -> anyhow::Result<Option<Traces>> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => {
            // Each line carries the request id of the span it was written in.
            telemetry::record_request_spans();
            Box::new(
                logs.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
        }
        // Colour only on a terminal, and never when NO_COLOR is set (no-color.org).
        LogFormat::Text => Box::new(logs.with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )),
    };
    let (export, traces) = match otlp {
        Some(export) => {
            let (layer, traces) = Traces::start(export)?;
            // numguard's own spans (requests, store, upstream), whatever the log filter.
            let ours = Targets::new().with_target("numguard", Level::INFO);
            (Some(layer.with_filter(ours)), Some(traces))
        }
        None => (None, None),
    };
    // Only fails if a subscriber is already set, which is harmless.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(export)
        .try_init();
    Ok(traces)
}
