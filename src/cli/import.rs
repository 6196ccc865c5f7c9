//! `numguard import ranges|events`: read a file, report bad lines by number, send the rest
//! to a running server, and print a summary.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{ServerArgs, status_message};
use super::progress;
use super::sources::parse_time;
use crate::api::convert::{kind_to_pb, timestamp};
use crate::api::pb;
use crate::domain::event::EventKind;
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
        file: PathBuf,
        /// The registered source these events come from.
        #[arg(long, env = "NUMGUARD_SOURCE")]
        source: String,
        /// File format; by default `.jsonl`/`.ndjson` is JSON Lines and anything else CSV.
        #[arg(long, env = "NUMGUARD_EVENT_FORMAT", value_enum)]
        format: Option<EventFileFormat>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFileFormat {
    Csv,
    Jsonl,
}

impl EventFileFormat {
    fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext)
                if ext.eq_ignore_ascii_case("jsonl") || ext.eq_ignore_ascii_case("ndjson") =>
            {
                EventFileFormat::Jsonl
            }
            _ => EventFileFormat::Csv,
        }
    }
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
            server,
        } => import_events(file, source, format, &server).await,
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
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = format.unwrap_or_else(|| RangeFormat::from_path(file));
    let parsed = parse_ranges(&text, format);
    print_line_errors(&parsed.errors);
    let mut admin = server.admin().await?;
    let bar = progress::bar(parsed.entries.len() as u64, "ranges", false);
    let (mut upserted, mut total) = (0, 0);
    for chunk in parsed.entries.chunks(RANGES_PER_REQUEST) {
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
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    println!(
        "{}: {} ranges imported, {} bad lines; the server now has {} ranges",
        file.display(),
        upserted,
        parsed.errors.len(),
        total
    );
    Ok(ExitCode::SUCCESS)
}

/// One event line as written in the file.
#[derive(Debug, Deserialize)]
struct EventLine {
    source_event_id: String,
    phone_number: String,
    kind: String,
    occurred_at: String,
    #[serde(default)]
    from_carrier: Option<String>,
    #[serde(default)]
    to_carrier: Option<String>,
}

impl EventLine {
    /// Kind and time are read here so their errors point at the line; everything else
    /// is validated by the server.
    fn into_event(self, source: &str) -> Result<pb::Event, String> {
        let kind: EventKind = self.kind.parse().map_err(|e| format!("kind {e}"))?;
        let occurred_at = parse_time(&self.occurred_at).map_err(|e| format!("occurred_at {e}"))?;
        Ok(pb::Event {
            source: source.to_string(),
            source_event_id: self.source_event_id,
            phone_number: self.phone_number,
            kind: kind_to_pb(kind).into(),
            occurred_at: Some(timestamp(occurred_at)),
            from_carrier: self.from_carrier.unwrap_or_default(),
            to_carrier: self.to_carrier.unwrap_or_default(),
            ingested_at: None,
        })
    }
}

/// What the reader thread saw.
#[derive(Default)]
struct ReadReport {
    lines: u64,
    /// The file line of each event sent, by stream index, to place server rejections.
    sent_lines: Vec<u64>,
    errors: Vec<LineError>,
}

impl ReadReport {
    fn bad_line(&mut self, line: u64, reason: String) {
        self.errors.push(LineError {
            line: line as usize,
            reason,
        });
    }
}

/// Reads the file on a blocking thread and feeds events into `tx`; stops early if the
/// server side of the stream has gone away.
fn read_events(
    file: File,
    format: EventFileFormat,
    source: &str,
    tx: &mpsc::Sender<pb::Event>,
    bar: &ProgressBar,
) -> anyhow::Result<ReadReport> {
    let mut report = ReadReport::default();
    let send = |report: &mut ReadReport, line: u64, parsed: Result<EventLine, String>| match parsed
        .and_then(|l| l.into_event(source))
    {
        Ok(event) => {
            report.sent_lines.push(line);
            tx.blocking_send(event).is_ok()
        }
        Err(reason) => {
            report.bad_line(line, reason);
            true
        }
    };
    match format {
        EventFileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(file);
            let headers = reader
                .headers()
                .context("cannot read the CSV header")?
                .clone();
            for required in ["source_event_id", "phone_number", "kind", "occurred_at"] {
                if !headers.iter().any(|h| h == required) {
                    anyhow::bail!("the CSV header has no {required:?} column");
                }
            }
            let mut record = csv::StringRecord::new();
            loop {
                let line = reader.position().line();
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(line, |p| p.line());
                        report.lines += 1;
                        let parsed = record
                            .deserialize::<EventLine>(Some(&headers))
                            .map_err(|e| csv_reason(&e));
                        if !send(&mut report, line, parsed) {
                            break;
                        }
                    }
                    Err(e) => {
                        report.lines += 1;
                        report.bad_line(line, csv_reason(&e));
                    }
                }
                bar.set_position(reader.position().byte());
            }
        }
        EventFileFormat::Jsonl => {
            let mut reader = BufReader::new(file);
            let mut text = String::new();
            let (mut line, mut bytes) = (0u64, 0u64);
            loop {
                text.clear();
                let n = reader.read_line(&mut text)?;
                if n == 0 {
                    break;
                }
                line += 1;
                bytes += n as u64;
                bar.set_position(bytes);
                if text.trim().is_empty() {
                    continue;
                }
                report.lines += 1;
                let parsed = serde_json::from_str::<EventLine>(&text).map_err(|e| e.to_string());
                if !send(&mut report, line, parsed) {
                    break;
                }
            }
        }
    }
    Ok(report)
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

async fn import_events(
    file: PathBuf,
    source: String,
    format: Option<EventFileFormat>,
    server: &ServerArgs,
) -> anyhow::Result<ExitCode> {
    let handle = File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let format = format.unwrap_or_else(|| EventFileFormat::from_path(&file));
    let mut client = server.events().await?;

    let (tx, rx) = mpsc::channel(1024);
    let call = tokio::spawn(async move { client.ingest_events(ReceiverStream::new(rx)).await });
    let bar = progress::bar(size, "events", true);
    let reader_bar = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        let report = read_events(handle, format, &source, &tx, &reader_bar);
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
    Ok(ExitCode::SUCCESS)
}
