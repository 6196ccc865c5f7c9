//! `numguard import ranges|events`: read a file, report bad lines by number, send the rest
//! to a running server, and print a summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use tokio::sync::mpsc;

use super::batches::{self, Batcher};
use super::client::{ServerArgs, status_message};
use super::event_file::{EventFileFormat, read_events};
use super::progress;
use super::sources::{describe, heartbeat, parse_time};
use crate::api::pb;
use crate::ranges::{LineError, RangeFormat, parse_ranges};

/// Ranges per ImportRanges request.
const RANGES_PER_REQUEST: usize = 10_000;
/// Line errors printed one by one; more are counted.
const MAX_PRINTED_ERRORS: usize = 1_000;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import carrier ranges (libphonenumber `PREFIX|Carrier` files or the MIC block CSV).
    Ranges {
        /// The file; `-` reads stdin.
        file: PathBuf,
        /// File format; by default `.csv` is the MIC list and anything else libphonenumber.
        #[arg(long, env = "NUMGUARD_RANGE_FORMAT", value_enum)]
        format: Option<RangeFormat>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Import events from CSV (header source_event_id,phone_number,kind,occurred_at,
    /// from_carrier,to_carrier) or JSON Lines with the same fields.
    Events {
        /// The file; `-` reads stdin.
        file: PathBuf,
        /// The registered source these events come from.
        #[arg(long, env = "NUMGUARD_SOURCE")]
        source: String,
        /// File format; by default `.jsonl`/`.ndjson` is JSON Lines and anything else CSV.
        #[arg(long, env = "NUMGUARD_EVENT_FORMAT", value_enum)]
        format: Option<EventFileFormat>,
        /// The file's cut-off: its data is complete up to this instant (RFC 3339 or
        /// YYYY-MM-DD, UTC). Declared for the source once every line was accepted, so
        /// checks count the source up to it; a file with refused lines declares nothing.
        #[arg(long, env = "NUMGUARD_COMPLETE_UNTIL")]
        complete_until: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImportCommand::Ranges {
            file,
            format,
            server,
        } => import_ranges(&file, format, &server).await,
        ImportCommand::Events {
            file,
            source,
            format,
            complete_until,
            server,
        } => {
            let complete_until = complete_until.as_deref().map(parse_time).transpose()?;
            import_events(file, source, format, complete_until, &server).await
        }
    }
}

fn print_line_errors(errors: &[LineError]) {
    for e in errors.iter().take(MAX_PRINTED_ERRORS) {
        eprintln!("line {}: {}", e.line, e.reason);
    }
    if errors.len() > MAX_PRINTED_ERRORS {
        eprintln!(
            "... and {} more bad lines",
            errors.len() - MAX_PRINTED_ERRORS
        );
    }
}

async fn import_ranges(
    file: &Path,
    format: Option<RangeFormat>,
    server: &ServerArgs,
) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    super::files::open_input(file)?
        .0
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let format = format.unwrap_or_else(|| RangeFormat::from_path(file));
    let parsed = parse_ranges(&text, format);
    print_line_errors(&parsed.errors);
    let mut admin = server.admin().await?;
    let bar = progress::bar(parsed.entries.len() as u64, "ranges", false);
    let (mut upserted, mut total) = (0, 0);
    let mut refused = Vec::new();
    for (n, chunk) in parsed.entries.chunks(RANGES_PER_REQUEST).enumerate() {
        let request = pb::ImportRangesRequest {
            ranges: chunk
                .iter()
                .map(|r| pb::CarrierRange {
                    prefix: r.prefix.to_string(),
                    carrier: r.carrier.clone(),
                })
                .collect(),
        };
        let response = admin
            .import_ranges(request)
            .await
            .map_err(status_message)?
            .into_inner();
        upserted += response.upserted;
        total = response.total;
        refused.extend(response.errors.into_iter().map(|e| {
            let index = n * RANGES_PER_REQUEST + e.index as usize;
            LineError {
                line: parsed.lines.get(index).copied().unwrap_or(0),
                reason: e.reason,
            }
        }));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    print_line_errors(&refused);
    println!(
        "{}: {} ranges imported, {} bad lines, {} refused by the server; the server now has {} ranges",
        file.display(),
        upserted,
        parsed.errors.len(),
        refused.len(),
        total
    );
    Ok(super::finished(
        (parsed.errors.len() + refused.len()) as u64,
    ))
}

async fn import_events(
    file: PathBuf,
    source: String,
    format: Option<EventFileFormat>,
    complete_until: Option<DateTime<Utc>>,
    server: &ServerArgs,
) -> anyhow::Result<ExitCode> {
    let name = source.clone();
    let (handle, size) = super::files::open_input(&file)?;
    let format = format.unwrap_or_else(|| EventFileFormat::from_path(&file));
    let mut client = server.events().await?;

    let (tx, rx) = mpsc::channel(16);
    let call = tokio::spawn(async move { client.ingest_events(batches::stream(rx)).await });
    let bar = progress::bar(size, "events", true);
    let reader_bar = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut events = Batcher::new(&tx);
        let report = read_events(
            handle,
            format,
            &source,
            |event| events.push(event),
            |bytes| reader_bar.set_position(bytes),
        );
        events.flush();
        drop(tx); // ends the stream: the server commits the rest and answers
        report
    })
    .await??;
    let summary = call.await?.map_err(status_message)?.into_inner();
    bar.finish_and_clear();

    let mut errors = report.errors;
    errors.extend(summary.errors.iter().map(|e| {
        LineError {
            line: report
                .sent_lines
                .get(e.index as usize)
                .copied()
                .unwrap_or(0) as usize,
            reason: e.reason.clone(),
        }
    }));
    errors.sort_by_key(|e| e.line);
    print_line_errors(&errors);
    let unreadable = report.lines - report.sent_lines.len() as u64;
    println!(
        "{}: {} events read; {} accepted, {} duplicates, {} rejected ({} unreadable, {} refused by the server)",
        file.display(),
        report.lines,
        summary.accepted,
        summary.duplicates,
        unreadable + summary.rejected,
        unreadable,
        summary.rejected
    );
    if let Some(until) = complete_until {
        let refused = unreadable + summary.rejected;
        if refused > 0 {
            eprintln!(
                "source {name} was not declared complete until {}: {refused} lines were \
                 refused; correct them and import the file again",
                until.to_rfc3339()
            );
            return Ok(ExitCode::FAILURE);
        }
        let declared = heartbeat(server, name, Some(until)).await?;
        println!("{}", describe(&declared));
    }
    Ok(super::finished(unreadable + summary.rejected))
}
