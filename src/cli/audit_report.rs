//! The audit report (one line per input row, CSV or JSON Lines) and the summary counted
//! while writing it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use clap::ValueEnum;
use serde_json::{Value, json};

use super::check::{label, time, to_json};
use crate::api::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Jsonl,
}

impl ReportFormat {
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext)
                if ext.eq_ignore_ascii_case("jsonl") || ext.eq_ignore_ascii_case("ndjson") =>
            {
                ReportFormat::Jsonl
            }
            _ => ReportFormat::Csv,
        }
    }
}

/// The columns of a CSV report, in order.
pub const CSV_COLUMNS: [&str; 20] = [
    "line",
    "customer_ref",
    "phone_number",
    "verdict",
    "sim_swap",
    "ownership",
    "original_carrier",
    "current_carrier",
    "original_carrier_id",
    "current_carrier_id",
    "latest_sim_change",
    "last_port_at",
    "port_count",
    "ported_since_owner",
    // The SIM-change question's coverage start, then the ownership question's.
    "covered_since",
    "ownership_covered_since",
    // Every source that supplies a question's coverage, `;`-separated.
    "coverage_sources",
    // Why each UNKNOWN answer is unknown, `; `-separated.
    "gaps",
    "reasons",
    "error",
];

/// What is known about an input row when its line is written.
pub struct RowContext<'a> {
    /// The input file's line number.
    pub line: u64,
    pub customer_ref: &'a str,
    /// The number as the input gave it (reported for rows that were refused).
    pub phone_number: &'a str,
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

pub struct ReportWriter<W: Write> {
    sink: Sink<W>,
    pub summary: Summary,
}

impl<W: Write> ReportWriter<W> {
    pub fn new(format: ReportFormat, out: W) -> anyhow::Result<Self> {
        let sink = match format {
            ReportFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(CSV_COLUMNS)?;
                Sink::Csv(Box::new(csv))
            }
            ReportFormat::Jsonl => Sink::Jsonl(out),
        };
        Ok(ReportWriter {
            sink,
            summary: Summary::default(),
        })
    }

    pub fn answered(
        &mut self,
        row: &RowContext<'_>,
        r: &pb::CheckNumberResponse,
    ) -> anyhow::Result<()> {
        self.summary.count(r);
        match &mut self.sink {
            Sink::Csv(csv) => {
                let reasons = reasons_text(&r.reasons);
                let coverage = |q: pb::CoverageQuestion| {
                    r.coverage.iter().find(|c| c.question == i32::from(q))
                };
                let ownership_since = coverage(pb::CoverageQuestion::Ownership)
                    .and_then(|c| time(c.covered_since.as_ref()))
                    .unwrap_or_default();
                // The answer names each source once; sorted, the column reads the same
                // whatever order the questions first named them in.
                let mut sources: Vec<&str> = r.sources.iter().map(String::as_str).collect();
                sources.sort_unstable();
                let gaps: Vec<&str> = r
                    .coverage
                    .iter()
                    .filter(|c| !c.gap.is_empty())
                    .map(|c| c.gap.as_str())
                    .collect();
                let id = |c: Option<&pb::CarrierRef>| c.map(|c| c.id.clone()).unwrap_or_default();
                csv.write_record([
                    row.line.to_string().as_str(),
                    row.customer_ref,
                    &r.phone_number,
                    &label(r.verdict, pb::Verdict::as_str_name),
                    &label(r.sim_swap, pb::SimSwapStatus::as_str_name),
                    &label(r.ownership, pb::OwnershipStatus::as_str_name),
                    &r.original_carrier,
                    &r.current_carrier,
                    &id(r.original_carrier_ref.as_ref()),
                    &id(r.current_carrier_ref.as_ref()),
                    &time(r.latest_sim_change.as_ref()).unwrap_or_default(),
                    &time(r.last_port_at.as_ref()).unwrap_or_default(),
                    &r.port_count.to_string(),
                    if r.ported_since_owner {
                        "true"
                    } else {
                        "false"
                    },
                    &time(r.covered_since.as_ref()).unwrap_or_default(),
                    &ownership_since,
                    &sources.join(";"),
                    &gaps.join("; "),
                    &reasons,
                    "",
                ])?;
            }
            Sink::Jsonl(out) => write_json_line(
                out,
                json!({
                    "line": row.line,
                    "customer_ref": row.customer_ref,
                    "result": to_json(r),
                }),
            )?,
        }
        Ok(())
    }

    /// A row that could not be checked; `reason` names the field.
    pub fn refused(&mut self, row: &RowContext<'_>, reason: &str) -> anyhow::Result<()> {
        self.summary.rows += 1;
        self.summary.rejected += 1;
        let error = format!("line {}: {reason}", row.line);
        match &mut self.sink {
            Sink::Csv(csv) => {
                let mut fields = [""; CSV_COLUMNS.len()];
                let line = row.line.to_string();
                fields[0] = &line;
                fields[1] = row.customer_ref;
                fields[2] = row.phone_number;
                fields[CSV_COLUMNS.len() - 1] = &error;
                csv.write_record(fields)?;
            }
            Sink::Jsonl(out) => write_json_line(
                out,
                json!({
                    "line": row.line,
                    "customer_ref": row.customer_ref,
                    "phone_number": row.phone_number,
                    "error": error,
                }),
            )?,
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<Summary> {
        match self.sink {
            Sink::Csv(mut csv) => csv.flush()?,
            Sink::Jsonl(mut out) => out.flush()?,
        }
        Ok(self.summary)
    }
}

fn write_json_line(out: &mut impl Write, value: Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reasons in one cell: `CODE` or `CODE:EVENT_KIND@TIME`, separated by `; `.
fn reasons_text(reasons: &[pb::Reason]) -> String {
    let mut text = String::new();
    for r in reasons {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&label(r.code, pb::ReasonCode::as_str_name));
        if r.event_kind != 0 {
            text.push(':');
            text.push_str(&label(r.event_kind, pb::EventKind::as_str_name));
        }
        if let Some(at) = time(r.occurred_at.as_ref()) {
            text.push('@');
            text.push_str(&at);
        }
    }
    text
}

/// Counts over the rows written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub rejected: u64,
    pub verdicts: BTreeMap<String, u64>,
    /// Rows carrying each reason code (a row with two reasons of one code counts once).
    pub reasons: BTreeMap<String, u64>,
    pub upstream: UpstreamCounts,
}

/// Questions put to operators' APIs for the audit's rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Calls made for a row.
    pub calls: u64,
    /// Answered from numguard's cache (an earlier row's call, or an earlier check's).
    pub cache_hits: u64,
    /// Questions the operator did not answer (fresh or cached failures).
    pub failures: u64,
}

impl Summary {
    fn count(&mut self, r: &pb::CheckNumberResponse) {
        self.rows += 1;
        for lookup in &r.upstream {
            match lookup.cached {
                true => self.upstream.cache_hits += 1,
                false => self.upstream.calls += 1,
            }
            self.upstream.failures += u64::from(lookup.answer.is_none());
        }
        *self
            .verdicts
            .entry(label(r.verdict, pb::Verdict::as_str_name))
            .or_default() += 1;
        let mut seen: Vec<i32> = Vec::with_capacity(r.reasons.len());
        for reason in &r.reasons {
            if !seen.contains(&reason.code) {
                seen.push(reason.code);
                *self
                    .reasons
                    .entry(label(reason.code, pb::ReasonCode::as_str_name))
                    .or_default() += 1;
            }
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rows": self.rows,
            "checked": self.rows - self.rejected,
            "rejected": self.rejected,
            "verdicts": self.verdicts,
            "reasons": self.reasons,
            "upstream": {
                "calls": self.upstream.calls,
                "cache_hits": self.upstream.cache_hits,
                "failures": self.upstream.failures,
            },
        })
    }

    /// A few lines for a person.
    pub fn render(&self) -> String {
        let counts = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                return "none".to_string();
            }
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "{} rows: {} checked, {} rejected (see the error column)\n  verdicts: {}\n  reasons:  {}\n",
            self.rows,
            self.rows - self.rejected,
            self.rejected,
            counts(&self.verdicts),
            counts(&self.reasons),
        );
        let u = self.upstream;
        if u != UpstreamCounts::default() {
            text.push_str(&format!(
                "  operator look-ups: {} calls, {} cache hits, {} unanswered\n",
                u.calls, u.cache_hits, u.failures
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::convert::timestamp;
    use chrono::TimeZone;

    fn response() -> pb::CheckNumberResponse {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .unwrap();
        pb::CheckNumberResponse {
            phone_number: "+819012345678".into(),
            verdict: pb::Verdict::Block.into(),
            sim_swap: pb::SimSwapStatus::Swapped.into(),
            ownership: pb::OwnershipStatus::Changed.into(),
            latest_sim_change: Some(timestamp(at)),
            original_carrier: "NTT DOCOMO".into(),
            current_carrier: "NTT DOCOMO".into(),
            original_carrier_ref: Some(pb::CarrierRef {
                id: "jp-docomo".into(),
                name: "NTT DOCOMO".into(),
            }),
            current_carrier_ref: Some(pb::CarrierRef {
                id: "jp-docomo".into(),
                name: "NTT DOCOMO".into(),
            }),
            coverage: vec![
                pb::Coverage {
                    question: pb::CoverageQuestion::SimSwap.into(),
                    covered_since: Some(timestamp(at)),
                    source_indexes: vec![0, 1],
                    gap: String::new(),
                },
                pb::Coverage {
                    question: pb::CoverageQuestion::DeviceSwap.into(),
                    covered_since: None,
                    source_indexes: vec![],
                    gap: "device_swap: no source reports DEVICE_SWAP for this number".into(),
                },
            ],
            sources: vec!["mnp".into(), "docomo".into()],
            reasons: vec![
                pb::Reason {
                    code: pb::ReasonCode::OwnerChanged.into(),
                    event_kind: pb::EventKind::Reassign.into(),
                    occurred_at: Some(timestamp(at)),
                    detail: "x".into(),
                },
                pb::Reason {
                    code: pb::ReasonCode::OwnerChanged.into(),
                    event_kind: pb::EventKind::Disconnect.into(),
                    occurred_at: Some(timestamp(at)),
                    detail: "y".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn csv_lines_and_summary() {
        let mut out = Vec::new();
        let mut w = ReportWriter::new(ReportFormat::Csv, &mut out).unwrap();
        let row = |line, c| RowContext {
            line,
            customer_ref: c,
            phone_number: "090",
        };
        w.answered(&row(2, "c1"), &response()).unwrap();
        w.refused(&row(3, "c2"), "phone_number is not valid")
            .unwrap();
        let summary = w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "2,c1,+819012345678,BLOCK,SWAPPED,CHANGED,NTT DOCOMO,NTT DOCOMO,jp-docomo,jp-docomo,\
             2026-06-01T00:00:00Z,,0,false,,,docomo;mnp,\
             device_swap: no source reports DEVICE_SWAP for this number,\
             OWNER_CHANGED:REASSIGN@2026-06-01T00:00:00Z; OWNER_CHANGED:DISCONNECT@2026-06-01T00:00:00Z,"
        );
        assert_eq!(
            lines[2],
            "3,c2,090,,,,,,,,,,,,,,,,,line 3: phone_number is not valid"
        );
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.rejected, 1);
        assert_eq!(summary.verdicts.get("BLOCK"), Some(&1));
        assert_eq!(summary.reasons.get("OWNER_CHANGED"), Some(&1));
    }

    #[test]
    fn jsonl_lines_carry_the_full_result() {
        let mut out = Vec::new();
        let mut w = ReportWriter::new(ReportFormat::Jsonl, &mut out).unwrap();
        let row = RowContext {
            line: 2,
            customer_ref: "c1",
            phone_number: "+819012345678",
        };
        w.answered(&row, &response()).unwrap();
        w.finish().unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["line"], 2);
        assert_eq!(v["result"]["verdict"], "BLOCK");
        assert_eq!(v["result"]["reasons"].as_array().unwrap().len(), 2);
    }
}
