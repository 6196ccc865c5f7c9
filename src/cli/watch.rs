//! `numguard watch import|list` and `numguard alerts tail`.

use clap::builder::BoolishValueParser;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;

use super::check::time;
use super::client::{ServerArgs, status_message};
use super::line_records::{CsvLines, Lines, csv_header};
use super::progress;
use crate::api::convert::timestamp;
use crate::api::pb;
use crate::ranges::LineError;

/// Entries per UpsertWatch request.
const ENTRIES_PER_REQUEST: usize = 1_000;

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(subcommand)]
    command: WatchCommand,
}

#[derive(Debug, Subcommand)]
enum WatchCommand {
    /// Add or replace watched numbers from a CSV with header
    /// customer_ref,phone_number,owner_since (and optionally region); owner_since is a
    /// date (YYYY-MM-DD) or an RFC 3339 time.
    Import {
        /// The file; `-` reads stdin.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the watched numbers of this key's tenant.
    List {
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Deserialize)]
struct WatchLine {
    customer_ref: String,
    phone_number: String,
    owner_since: String,
    #[serde(default)]
    region: Option<String>,
}

impl WatchLine {
    fn into_entry(self) -> Result<pb::WatchEntry, String> {
        let mut entry = pb::WatchEntry {
            customer_ref: self.customer_ref,
            phone_number: self.phone_number,
            region: self.region.unwrap_or_default(),
            ..Default::default()
        };
        let owner_since = self.owner_since.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(owner_since) {
            entry.owner_since = Some(timestamp(t.with_timezone(&Utc)));
        } else if NaiveDate::parse_from_str(owner_since, "%Y-%m-%d").is_ok() {
            entry.owner_since_date = owner_since.to_string();
        } else {
            return Err(format!(
                "owner_since {owner_since:?} is neither a YYYY-MM-DD date nor an RFC 3339 time"
            ));
        }
        Ok(entry)
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WatchCommand::Import { file, server } => import(file, &server).await,
        WatchCommand::List { json, server } => list(json, &server).await,
    }
}

async fn import(file: PathBuf, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (input, _) = super::files::open_input(&file)?;
    let mut lines = Lines::new(std::io::BufReader::new(input));
    let headers = csv_header(&mut lines)?;
    for required in ["customer_ref", "phone_number", "owner_since"] {
        if !headers.iter().any(|h| h == required) {
            anyhow::bail!("the CSV header has no {required:?} column");
        }
    }
    let mut errors = Vec::new();
    let mut entries: Vec<(u64, pb::WatchEntry)> = Vec::new();
    let mut csv = CsvLines::default();
    while let Some((line, text)) = lines
        .next_line()
        .with_context(|| format!("cannot read {}", file.display()))?
    {
        let parsed = text
            .and_then(|text| csv.record(text, Some(&headers)))
            .and_then(|record| {
                record
                    .deserialize::<WatchLine>(Some(&headers))
                    .map_err(|e| e.to_string())
            })
            .and_then(WatchLine::into_entry);
        match parsed {
            Ok(entry) => entries.push((line, entry)),
            Err(reason) => errors.push(LineError {
                line: line as usize,
                reason,
            }),
        }
    }
    let mut client = server.alerts().await?;
    let bar = progress::bar(entries.len() as u64, "watch", false);
    let mut upserted = 0;
    for chunk in entries.chunks(ENTRIES_PER_REQUEST) {
        let response = client
            .upsert_watch(pb::UpsertWatchRequest {
                entries: chunk.iter().map(|(_, e)| e.clone()).collect(),
            })
            .await
            .map_err(status_message)?
            .into_inner();
        upserted += response.upserted;
        errors.extend(response.errors.into_iter().map(|e| LineError {
            line: chunk.get(e.index as usize).map_or(0, |(line, _)| *line) as usize,
            reason: e.reason,
        }));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    errors.sort_by_key(|e| e.line);
    for e in &errors {
        eprintln!("line {}: {}", e.line, e.reason);
    }
    println!(
        "{}: {} entries watched, {} bad lines",
        file.display(),
        upserted,
        errors.len()
    );
    Ok(super::finished(errors.len() as u64))
}

async fn list(as_json: bool, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let mut client = server.alerts().await?;
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .list_watch(pb::ListWatchRequest {
                page_size: 1_000,
                page_token: token,
            })
            .await
            .map_err(status_message)?
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    if as_json {
        let list: Vec<_> = all
            .iter()
            .map(|e| {
                json!({
                    "customer_ref": e.customer_ref,
                    "phone_number": e.phone_number,
                    "owner_since": time(e.owner_since.as_ref()),
                    "owner_since_date": (!e.owner_since_date.is_empty()).then_some(&e.owner_since_date),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if all.is_empty() {
        println!("no watched numbers");
    } else {
        for e in &all {
            let since = if e.owner_since_date.is_empty() {
                time(e.owner_since.as_ref()).unwrap_or_default()
            } else {
                e.owner_since_date.clone()
            };
            println!(
                "{}  {}  owner since {since}",
                e.customer_ref, e.phone_number
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
