//! `numguard audit`: a customer list (CSV) through `AuditNumbers`, written as a report
//! with one line per input row, in input order, and a summary at the end.
//!
//! Three parts run at once: a reader thread parses the CSV and sends rows to the server,
//! the gRPC stream carries them, and this task writes the report as results come back.
//! Rows the reader refuses (a short row, an unreadable `owner_since`) never reach the
//! server; the queue of rows in reading order lets the writer put their lines back in
//! place. Every queue is bounded, so memory stays flat for any list length.

use clap::builder::BoolishValueParser;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use super::audit_report::{ReportFormat, ReportWriter, RowContext};
use super::batches::{self, Batcher};
use super::check::OwnerSinceArg;
use super::client::{ServerArgs, status_message};
use super::event_file::missing_column;
use super::line_records::{CsvLines, Lines, csv_header};
use super::progress;
use crate::api::pb;

/// Batches of rows on their way to the server; enough to keep the stream full.
const BATCHES_IN_FLIGHT: usize = 16;
/// Rows read but not yet written to the report (they include the rows in flight).
const ROWS_PENDING: usize = 32_768;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The customer list: CSV with a header naming customer_ref and phone_number, and
    /// optionally owner_since (YYYY-MM-DD or RFC 3339) and region; `-` reads stdin.
    #[arg(long, env = "NUMGUARD_AUDIT_INPUT")]
    input: PathBuf,
    /// Where to write the report (one line per input row); `-` writes stdout (the
    /// summary then goes to stderr).
    #[arg(long, env = "NUMGUARD_AUDIT_OUTPUT")]
    output: PathBuf,
    /// Report format; by default `.jsonl`/`.ndjson` is JSON Lines and anything else CSV.
    #[arg(long, env = "NUMGUARD_AUDIT_FORMAT", value_enum)]
    format: Option<ReportFormat>,
    /// Region for national-format numbers in rows without a region of their own.
    #[arg(long, env = "NUMGUARD_REGION")]
    region: Option<String>,
    /// Look-back window in hours for every row (default 240).
    #[arg(long, env = "NUMGUARD_MAX_AGE_HOURS")]
    max_age_hours: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Where each column is in the input.
#[derive(Debug, Clone)]
struct Columns {
    headers: csv::StringRecord,
    customer_ref: usize,
    phone_number: usize,
    owner_since: Option<usize>,
    region: Option<usize>,
}

impl Columns {
    fn find(headers: &csv::StringRecord) -> anyhow::Result<Columns> {
        let position = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let required = |name: &str| {
            position(name).with_context(|| format!("the CSV header has no {name:?} column"))
        };
        Ok(Columns {
            headers: headers.clone(),
            customer_ref: required("customer_ref")?,
            phone_number: required("phone_number")?,
            owner_since: position("owner_since"),
            region: position("region"),
        })
    }

    /// The columns this row must have: every one the header names that the audit uses.
    fn used(&self) -> Vec<&str> {
        let mut used = vec![
            &self.headers[self.customer_ref],
            &self.headers[self.phone_number],
        ];
        used.extend(self.owner_since.map(|i| &self.headers[i]));
        used.extend(self.region.map(|i| &self.headers[i]));
        used
    }
}

/// An input row in reading order: sent to the server, or refused here.
struct Pending {
    line: u64,
    customer_ref: String,
    phone_number: String,
    outcome: Result<u64, String>,
}

/// What every row shares.
#[derive(Clone)]
struct Defaults {
    region: String,
    max_age_hours: u32,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (input, size) = super::files::open_input(&args.input)?;
    let mut lines = Lines::new(BufReader::with_capacity(1 << 20, input));
    let columns = Columns::find(&csv_header(&mut lines)?)?;
    let format = args
        .format
        .unwrap_or_else(|| ReportFormat::from_path(&args.output));
    let output = super::files::create_output(&args.output)?;
    let mut report = ReportWriter::new(format, BufWriter::with_capacity(1 << 20, output))?;
    let mut client = args.server.check().await?;

    let (rows, to_server) = mpsc::channel(BATCHES_IN_FLIGHT);
    let (pending, mut in_order) = mpsc::channel(ROWS_PENDING);
    let bar = progress::rows_bar(size, "audit");
    let reader_bar = bar.clone();
    let defaults = Defaults {
        region: args.region.clone().unwrap_or_default(),
        max_age_hours: args.max_age_hours.unwrap_or(0),
    };
    let reading = tokio::task::spawn_blocking(move || {
        read_rows(
            &mut lines,
            &columns,
            &defaults,
            &rows,
            &pending,
            &reader_bar,
        )
    });
    let mut results = client
        .audit_numbers(batches::stream(to_server))
        .await
        .map_err(status_message)?
        .into_inner();
    while let Some(row) = in_order.recv().await {
        let context = RowContext {
            line: row.line,
            customer_ref: &row.customer_ref,
            phone_number: &row.phone_number,
        };
        match row.outcome {
            Err(reason) => report.refused(&context, &reason)?,
            Ok(index) => {
                let result = results
                    .message()
                    .await
                    .map_err(status_message)?
                    .context("the server ended the audit before answering every row")?;
                if result.index != index {
                    bail!(
                        "the server answered row {} where row {index} was due",
                        result.index
                    );
                }
                match result.outcome {
                    Some(pb::audit_result::Outcome::Check(r)) => report.answered(&context, &r)?,
                    Some(pb::audit_result::Outcome::Error(e)) => {
                        report.refused(&context, &e.message)?
                    }
                    None => report.refused(&context, "the server sent no outcome")?,
                }
            }
        }
        progress::count_row(&bar, report.summary.rows, started);
    }
    reading.await??;
    let summary = report.finish()?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let text = if args.json {
        let mut json = summary.to_json();
        json["seconds"] = seconds.into();
        format!("{json}\n")
    } else {
        format!(
            "{} -> {} in {seconds:.1} s ({:.0} rows/s)\n{}",
            args.input.display(),
            args.output.display(),
            summary.rows as f64 / seconds.max(1e-9),
            summary.render()
        )
    };
    // With the report on stdout, the summary goes beside it to stderr.
    if super::files::is_std(&args.output) {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(super::finished(summary.rejected))
}

/// Reads every row, sending the good ones to the server (in batches) and every one to the
/// writer in order. Returns early (without error) if either side has gone away: the writer
/// then reports why. Only an I/O error on the input itself is an error here; the rows read
/// before it are still sent.
fn read_rows<R: BufRead>(
    lines: &mut Lines<R>,
    columns: &Columns,
    defaults: &Defaults,
    rows: &mpsc::Sender<Vec<pb::AuditRow>>,
    pending: &mpsc::Sender<Pending>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut outbox = Batcher::new(rows);
    let read = read_into(lines, columns, defaults, &mut outbox, pending, bar);
    // The writer may be waiting for these rows' answers (if the server has gone, it says so).
    outbox.flush();
    read
}

fn read_into<R: BufRead>(
    lines: &mut Lines<R>,
    columns: &Columns,
    defaults: &Defaults,
    outbox: &mut Batcher<'_, pb::AuditRow>,
    pending: &mpsc::Sender<Pending>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let used = columns.used();
    let mut index = 0u64;
    let mut csv = CsvLines::default();
    while let Some((line, text)) = lines.next_line().context("cannot read the customer list")? {
        let row = match text.and_then(|text| csv.record(text, Some(&columns.headers))) {
            Ok(record) => {
                let field = |i: usize| record.get(i).unwrap_or("").to_string();
                let customer_ref = field(columns.customer_ref);
                let phone_number = field(columns.phone_number);
                let outcome = match audit_row(columns, defaults, &used, &record) {
                    Ok(mut row) => {
                        row.customer_ref.clone_from(&customer_ref);
                        row.phone_number.clone_from(&phone_number);
                        if !outbox.push(row) {
                            return Ok(());
                        }
                        index += 1;
                        Ok(index - 1)
                    }
                    Err(reason) => Err(reason),
                };
                Pending {
                    line,
                    customer_ref,
                    phone_number,
                    outcome,
                }
            }
            Err(reason) => Pending {
                line,
                customer_ref: String::new(),
                phone_number: String::new(),
                outcome: Err(reason),
            },
        };
        if pending.blocking_send(row).is_err() {
            return Ok(());
        }
        bar.set_position(lines.bytes_read());
    }
    Ok(())
}

/// The row to send, without its customer_ref and number (the caller fills them in), or
/// why the row is refused here.
fn audit_row(
    columns: &Columns,
    defaults: &Defaults,
    used: &[&str],
    record: &csv::StringRecord,
) -> Result<pb::AuditRow, String> {
    if let Some(reason) = missing_column(used, &columns.headers, record) {
        return Err(reason);
    }
    let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
    let mut row = pb::AuditRow {
        max_age_hours: defaults.max_age_hours,
        ..Default::default()
    };
    let region = field(columns.region);
    row.region = if region.is_empty() {
        defaults.region.clone()
    } else {
        region.to_string()
    };
    let owner_since = field(columns.owner_since);
    if !owner_since.is_empty() {
        match OwnerSinceArg::parse(owner_since).map_err(|e| format!("owner_since {e}"))? {
            OwnerSinceArg::At(t) => row.owner_since = Some(t),
            OwnerSinceArg::Date(d) => row.owner_since_date = d,
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(u64, Result<pb::AuditRow, String>)> {
        let mut lines = Lines::new(text.as_bytes());
        let columns = Columns::find(&csv_header(&mut lines).unwrap()).unwrap();
        let defaults = Defaults {
            region: "JP".into(),
            max_age_hours: 48,
        };
        let (rows, mut sent) = mpsc::channel(100);
        let (pending, mut order) = mpsc::channel(100);
        read_rows(
            &mut lines,
            &columns,
            &defaults,
            &rows,
            &pending,
            &ProgressBar::hidden(),
        )
        .unwrap();
        drop((rows, pending));
        let mut sent_rows = Vec::new();
        while let Ok(batch) = sent.try_recv() {
            sent_rows.extend(batch);
        }
        let mut sent_rows = sent_rows.into_iter();
        let mut out = Vec::new();
        while let Ok(p) = order.try_recv() {
            out.push((
                p.line,
                p.outcome.map(|_| sent_rows.next().expect("sent in order")),
            ));
        }
        out
    }

    #[test]
    fn rows_keep_their_lines_and_refusals_name_the_column() {
        let rows = read(
            "customer_ref,phone_number,owner_since\n\
             c1,+819012345678,2026-03-01\n\
             \n\
             c2, 090-1234-5678 ,2026-03-01T09:00:00+09:00\n\
             c3,+819012345678\n\
             c4,+819012345678,yesterday\n\
             c5,,\n",
        );
        let lines: Vec<u64> = rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7], "the blank line is not a row");
        let first = rows[0].1.as_ref().unwrap();
        assert_eq!(first.customer_ref, "c1");
        assert_eq!(first.owner_since_date, "2026-03-01");
        assert_eq!((first.region.as_str(), first.max_age_hours), ("JP", 48));
        let second = rows[1].1.as_ref().unwrap();
        assert_eq!(second.phone_number, "090-1234-5678");
        assert!(second.owner_since.is_some() && second.owner_since_date.is_empty());
        assert_eq!(
            rows[2].1.as_ref().unwrap_err(),
            "owner_since is missing (the row has 2 of 3 columns)"
        );
        assert!(
            rows[3]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("owner_since \"yesterday\"")
        );
        // An empty number is the server's to refuse, with the field it names.
        assert_eq!(rows[4].1.as_ref().unwrap().phone_number, "");
    }

    #[test]
    fn a_header_without_the_number_column_is_fatal() {
        let headers = csv::StringRecord::from(vec!["customer_ref", "msisdn"]);
        let e = Columns::find(&headers).unwrap_err();
        assert!(e.to_string().contains("phone_number"), "{e}");
        let region = csv::StringRecord::from(vec!["Phone_Number ", "customer_ref", "region"]);
        let c = Columns::find(&region).unwrap();
        assert_eq!((c.phone_number, c.customer_ref, c.region), (0, 1, Some(2)));
    }
}
