//! Event files (CSV with a header, or JSON Lines) read into `Event` messages, with bad
//! lines reported by number. Kind and time are read here; the server validates the rest.

use std::io::{BufReader, Read};
use std::path::Path;

use clap::ValueEnum;
use serde::Deserialize;

use super::line_records::{CsvLines, Lines, check_field, csv_header};
use super::sources::parse_time;
use crate::api::convert::{kind_to_pb, timestamp};
use crate::api::pb;
use crate::domain::event::EventKind;
use crate::ranges::LineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFileFormat {
    Csv,
    Jsonl,
}

impl EventFileFormat {
    pub fn from_path(path: &Path) -> Self {
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
    /// The line, if no field is over-long (a CSV line's fields are checked as it is split).
    fn checked(self) -> Result<EventLine, String> {
        check_field("source_event_id", &self.source_event_id)?;
        check_field("phone_number", &self.phone_number)?;
        check_field("kind", &self.kind)?;
        check_field("occurred_at", &self.occurred_at)?;
        check_field("from_carrier", self.from_carrier.as_deref().unwrap_or(""))?;
        check_field("to_carrier", self.to_carrier.as_deref().unwrap_or(""))?;
        Ok(self)
    }

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

/// What the reader saw.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Lines holding an event (blank lines aside).
    pub lines: u64,
    /// The file line of each event sent, by stream index, to place server rejections.
    pub sent_lines: Vec<u64>,
    pub errors: Vec<LineError>,
}

impl ReadReport {
    fn bad_line(&mut self, line: u64, reason: String) {
        self.errors.push(LineError {
            line: line as usize,
            reason,
        });
    }
}

/// Reads an event file line by line, handing each good event to `send` (which answers
/// `false` to stop early, e.g. when the server has gone away) and reporting bad lines by
/// number. `progress` hears the bytes read so far. Only an unreadable file or a CSV header
/// that is bad or lacks the required columns is an error.
pub fn read_events(
    input: impl Read,
    format: EventFileFormat,
    source: &str,
    mut send: impl FnMut(pb::Event) -> bool,
    progress: impl Fn(u64),
) -> anyhow::Result<ReadReport> {
    let mut report = ReadReport::default();
    let mut take =
        |report: &mut ReadReport, line: u64, parsed: Result<EventLine, String>| match parsed
            .and_then(|l| l.into_event(source))
        {
            Ok(event) => {
                report.sent_lines.push(line);
                send(event)
            }
            Err(reason) => {
                report.bad_line(line, reason);
                true
            }
        };
    let mut lines = Lines::new(BufReader::with_capacity(1 << 16, input));
    let headers = match format {
        EventFileFormat::Csv => {
            let headers = csv_header(&mut lines)?;
            for required in REQUIRED {
                if !headers.iter().any(|h| h == required) {
                    anyhow::bail!("the CSV header has no {required:?} column");
                }
            }
            Some(headers)
        }
        EventFileFormat::Jsonl => None,
    };
    let mut csv = CsvLines::default();
    while let Some((line, text)) = lines.next_line()? {
        report.lines += 1;
        let parsed =
            text.and_then(|text| match &headers {
                Some(headers) => csv.record(text, Some(headers)).and_then(|record| {
                    match missing_column(&REQUIRED, headers, &record) {
                        Some(reason) => Err(reason),
                        None => record
                            .deserialize::<EventLine>(Some(headers))
                            .map_err(|e| csv_reason(&e)),
                    }
                }),
                None => serde_json::from_str::<EventLine>(text)
                    .map_err(|e| e.to_string())
                    .and_then(EventLine::checked),
            });
        let more = take(&mut report, line, parsed);
        progress(lines.bytes_read());
        if !more {
            break;
        }
    }
    Ok(report)
}

/// Columns every event row needs.
const REQUIRED: [&str; 4] = ["source_event_id", "phone_number", "kind", "occurred_at"];

/// A short row names the first of `required` columns it lacks.
pub fn missing_column(
    required: &[&str],
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
) -> Option<String> {
    required
        .iter()
        .find(|name| {
            headers
                .iter()
                .position(|h| h == **name)
                .is_some_and(|i| i >= record.len())
        })
        .map(|name| {
            format!(
                "{name} is missing (the row has {} of {} columns)",
                record.len(),
                headers.len()
            )
        })
}

pub fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n";

    fn read(text: &str, format: EventFileFormat) -> (Vec<pb::Event>, ReadReport) {
        let mut sent = Vec::new();
        let report = read_events(
            text.as_bytes(),
            format,
            "feed",
            |e| {
                sent.push(e);
                true
            },
            |_| {},
        )
        .expect("readable");
        (sent, report)
    }

    #[test]
    fn good_and_bad_lines_in_both_formats() {
        let csv = format!(
            "{HEADER}a,+819012345678,PORT,2026-01-01T00:00:00Z,KDDI,Softbank\n\
             b,+819012345678,TELEPORT,2026-01-01T00:00:00Z,,\n\
             c,+819012345678,SIM_SWAP,soon,,\n\
             \n\
             d,+819012345678\n"
        );
        let (sent, report) = read(&csv, EventFileFormat::Csv);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to_carrier, "Softbank");
        let errors: Vec<(usize, &str)> = report
            .errors
            .iter()
            .map(|e| (e.line, e.reason.split(' ').next().unwrap_or("")))
            .collect();
        assert_eq!(errors[0], (3, "kind"));
        assert_eq!(errors[1], (4, "occurred_at"));
        assert_eq!(errors[2].0, 6, "the blank line still counts as a line");
        assert!(
            report.errors[2].reason.contains("kind"),
            "{:?}",
            report.errors[2]
        );

        let jsonl = "{\"source_event_id\":\"x\",\"phone_number\":\"+81\",\"kind\":\"REASSIGN\",\"occurred_at\":\"2026-01-01\"}\n\n[1,2]\n";
        let (sent, report) = read(jsonl, EventFileFormat::Jsonl);
        assert_eq!(sent.len(), 1);
        assert_eq!(report.lines, 2);
        assert_eq!(report.errors[0].line, 3);
    }

    #[test]
    fn a_csv_without_required_columns_is_refused_whole() {
        let err = read_events(
            "id,number\n1,2\n".as_bytes(),
            EventFileFormat::Csv,
            "feed",
            |_| true,
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("source_event_id"), "{err}");
    }

    proptest! {
        /// Any body under a good header, or any JSON Lines text: no panic, and every line
        /// is either sent or reported, once.
        #[test]
        fn any_file_is_read_without_panic(body in ".{0,300}", jsonl in any::<bool>()) {
            let (format, text) = if jsonl {
                (EventFileFormat::Jsonl, body.clone())
            } else {
                (EventFileFormat::Csv, format!("{HEADER}{body}"))
            };
            let mut sent = 0u64;
            let report = read_events(text.as_bytes(), format, "feed", |_| { sent += 1; true }, |_| {});
            if let Ok(report) = report {
                prop_assert_eq!(report.sent_lines.len() as u64, sent);
                prop_assert_eq!(sent + report.errors.len() as u64, report.lines);
                for e in &report.errors {
                    prop_assert!(!e.reason.is_empty());
                }
            }
        }

        /// A row whose only fault is its kind or its time is rejected naming that field.
        #[test]
        fn a_bad_kind_or_time_is_named(kind in "[A-Z_]{1,12}", time in "[a-z0-9:-]{1,12}") {
            prop_assume!(kind.parse::<EventKind>().is_err());
            let bad_kind = format!("{HEADER}e,+819012345678,{kind},2026-01-01T00:00:00Z,,\n");
            let (_, report) = read(&bad_kind, EventFileFormat::Csv);
            prop_assert!(report.errors[0].reason.starts_with("kind"));
            prop_assume!(parse_time(&time).is_err());
            let bad_time = format!("{HEADER}e,+819012345678,SIM_SWAP,{time},,\n");
            let (_, report) = read(&bad_time, EventFileFormat::Csv);
            prop_assert!(report.errors[0].reason.starts_with("occurred_at"));
        }
    }
}
