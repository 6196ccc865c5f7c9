//! `numguard sources add|list`.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::client::{ServerArgs, status_message};
use crate::api::convert::{datetime, timestamp};
use crate::api::pb;

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(subcommand)]
    command: SourcesCommand,
}

#[derive(Debug, Subcommand)]
enum SourcesCommand {
    /// Register (or replace) an event source.
    Add {
        /// Source name: letters, digits, '-', '_', '.'.
        name: String,
        /// From when the source's data is complete: RFC 3339 or YYYY-MM-DD (UTC).
        #[arg(long, env = "NUMGUARD_TRACKING_SINCE")]
        tracking_since: String,
        /// Prefixes it covers, comma-separated, without '+': e.g. 81 or 8190,8180.
        #[arg(long, env = "NUMGUARD_COVERS", value_delimiter = ',', required = true)]
        covers: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the registered sources.
    List {
        /// Print JSON.
        #[arg(long, env = "NUMGUARD_JSON")]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: SourcesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SourcesCommand::Add {
            name,
            tracking_since,
            covers,
            server,
        } => {
            let since = parse_time(&tracking_since)?;
            let source = server
                .admin()
                .await?
                .upsert_source(pb::Source {
                    name,
                    tracking_since: Some(timestamp(since)),
                    covers,
                })
                .await
                .map_err(status_message)?
                .into_inner();
            println!("source {} saved", describe(&source));
        }
        SourcesCommand::List { json, server } => {
            let sources = server
                .admin()
                .await?
                .list_sources(pb::ListSourcesRequest {})
                .await
                .map_err(status_message)?
                .into_inner()
                .sources;
            if json {
                let list: Vec<_> = sources
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name,
                            "tracking_since": since_text(s),
                            "covers": s.covers,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if sources.is_empty() {
                println!("no sources registered");
            } else {
                for s in &sources {
                    println!("{}", describe(s));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn since_text(s: &pb::Source) -> String {
    s.tracking_since
        .as_ref()
        .and_then(|t| datetime("tracking_since", t).ok())
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn describe(s: &pb::Source) -> String {
    format!(
        "{}: tracking since {}, covers {}",
        s.name,
        since_text(s),
        s.covers.join(",")
    )
}

/// RFC 3339, or a date meaning its start in UTC.
pub fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}
