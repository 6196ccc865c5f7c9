//! `numguard check`: one CheckNumber against a running server.

use clap::builder::BoolishValueParser;
use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::Args;
use prost_types::Timestamp;
use serde_json::{Value, json};

use super::client::{ServerArgs, status_message};
use crate::api::convert::{received, timestamp};
use crate::api::pb;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The number: E.164 (+819012345678) or national format with --region.
    number: String,
    /// ISO 3166 region for a national-format number (e.g. JP).
    #[arg(long, env = "NUMGUARD_REGION")]
    region: Option<String>,
    /// When the customer was last verified to hold the number: RFC 3339 or YYYY-MM-DD.
    #[arg(long, env = "NUMGUARD_OWNER_SINCE")]
    owner_since: Option<String>,
    /// Look-back window in hours (default 240).
    #[arg(long, env = "NUMGUARD_MAX_AGE_HOURS")]
    max_age_hours: Option<u32>,
    /// Print the response as JSON.
    #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    /// Exit with the verdict: 0 ALLOW, 10 STEP_UP, 11 BLOCK (errors stay 1 and 2).
    #[arg(long, env = "NUMGUARD_EXIT_CODE", value_parser = BoolishValueParser::new())]
    exit_code: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `--exit-code`'s status for STEP_UP and BLOCK, clear of the codes every command uses.
const EXIT_STEP_UP: u8 = 10;
const EXIT_BLOCK: u8 = 11;

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut request = pb::CheckNumberRequest {
        phone_number: args.number.clone(),
        region: args.region.clone().unwrap_or_default(),
        max_age_hours: args.max_age_hours.unwrap_or(0),
        ..Default::default()
    };
    if let Some(owner) = &args.owner_since {
        match OwnerSinceArg::parse(owner).map_err(|e| anyhow::anyhow!("--owner-since {e}"))? {
            OwnerSinceArg::At(t) => request.owner_since = Some(t),
            OwnerSinceArg::Date(d) => request.owner_since_date = d,
        }
    }
    let response = args
        .server
        .check()
        .await?
        .check_number(request)
        .await
        .map_err(status_message)?
        .into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&response))?);
    } else {
        print!("{}", render(&response));
    }
    Ok(match (args.exit_code, response.verdict()) {
        (true, pb::Verdict::StepUp) => ExitCode::from(EXIT_STEP_UP),
        (true, pb::Verdict::Block) => ExitCode::from(EXIT_BLOCK),
        _ => ExitCode::SUCCESS,
    })
}

/// `owner_since` as a user writes it: an instant, or a calendar date that the server reads
/// by SPEC's date-only rules.
pub enum OwnerSinceArg {
    At(Timestamp),
    Date(String),
}

impl OwnerSinceArg {
    /// The error reads after the field's name.
    pub fn parse(s: &str) -> Result<OwnerSinceArg, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(OwnerSinceArg::At(timestamp(t.with_timezone(&Utc))));
        }
        if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
            return Ok(OwnerSinceArg::Date(s.to_string()));
        }
        Err(format!(
            "{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"
        ))
    }
}

/// An optional timestamp as RFC 3339 UTC.
pub fn time(ts: Option<&Timestamp>) -> Option<String> {
    ts.and_then(received)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A wire enum's name in numguard's one vocabulary: the proto name without its type
/// prefix (`VERDICT_STEP_UP` -> `STEP_UP`), or the bare number for a value this build does
/// not know.
pub fn label<E: TryFrom<i32>>(value: i32, name: impl Fn(&E) -> &'static str) -> String {
    let Ok(e) = E::try_from(value) else {
        return value.to_string();
    };
    let full = name(&e);
    let prefix = [
        "VERDICT_",
        "SIM_SWAP_STATUS_",
        "OWNERSHIP_STATUS_",
        "REASON_CODE_",
        "EVENT_KIND_",
        "COVERAGE_QUESTION_",
    ]
    .into_iter()
    .find(|p| full.starts_with(p))
    .unwrap_or("");
    full[prefix.len()..].to_string()
}

fn reason_json(r: &pb::Reason) -> Value {
    json!({
        "code": label(r.code, pb::ReasonCode::as_str_name),
        "event_kind": (r.event_kind != 0).then(|| label(r.event_kind, pb::EventKind::as_str_name)),
        "occurred_at": time(r.occurred_at.as_ref()),
        "detail": r.detail,
    })
}

fn carrier_json(c: Option<&pb::CarrierRef>) -> Value {
    c.map_or(Value::Null, |c| json!({ "id": c.id, "name": c.name }))
}

fn coverage_json(r: &pb::CheckNumberResponse, c: &pb::Coverage) -> Value {
    json!({
        "question": label(c.question, pb::CoverageQuestion::as_str_name),
        "covered_since": time(c.covered_since.as_ref()),
        "sources": r.coverage_sources(c).collect::<Vec<_>>(),
        "gap": (!c.gap.is_empty()).then_some(&c.gap),
    })
}

fn upstream_json(u: &pb::UpstreamLookup) -> Value {
    json!({
        "provider": u.provider,
        "question": u.question,
        "answer": u.answer,
        "error": (!u.error.is_empty()).then_some(&u.error),
        "answered_at": time(u.answered_at.as_ref()),
        "cached": u.cached,
    })
}

/// The whole response, in the vocabulary of every other output (`STEP_UP`, `SWAPPED`)
/// and RFC 3339 times.
pub fn to_json(r: &pb::CheckNumberResponse) -> Value {
    json!({
        "phone_number": r.phone_number,
        "verdict": label(r.verdict, pb::Verdict::as_str_name),
        "sim_swap": label(r.sim_swap, pb::SimSwapStatus::as_str_name),
        "latest_sim_change": time(r.latest_sim_change.as_ref()),
        "ownership": label(r.ownership, pb::OwnershipStatus::as_str_name),
        "device_swap": label(r.device_swap, pb::SimSwapStatus::as_str_name),
        "latest_device_change": time(r.latest_device_change.as_ref()),
        "original_carrier": carrier_json(r.original_carrier_ref.as_ref()),
        "current_carrier": carrier_json(r.current_carrier_ref.as_ref()),
        "last_port_at": time(r.last_port_at.as_ref()),
        "port_count": r.port_count,
        "ported_since_owner": r.ported_since_owner,
        "reasons": r.reasons.iter().map(reason_json).collect::<Vec<_>>(),
        "window_start": time(r.window_start.as_ref()),
        "window_end": time(r.window_end.as_ref()),
        "covered_since": time(r.covered_since.as_ref()),
        "coverage": r.coverage.iter().map(|c| coverage_json(r, c)).collect::<Vec<_>>(),
        "upstream": r.upstream.iter().map(upstream_json).collect::<Vec<_>>(),
        "evaluated_at": time(r.evaluated_at.as_ref()),
    })
}

/// A few lines for a person at a terminal.
pub fn render(r: &pb::CheckNumberResponse) -> String {
    let none = || "-".to_string();
    let mut out = String::new();
    let verdict = label(r.verdict, pb::Verdict::as_str_name);
    let _ = writeln!(out, "{}  {verdict}", r.phone_number);
    let swap = |status: i32, latest: Option<&prost_types::Timestamp>| {
        let status = label(status, pb::SimSwapStatus::as_str_name);
        (status, time(latest).unwrap_or_else(none))
    };
    let (sim, latest_sim) = swap(r.sim_swap, r.latest_sim_change.as_ref());
    let _ = writeln!(
        out,
        "  sim swap:      {sim} (latest SIM change: {latest_sim})"
    );
    let (device, latest_device) = swap(r.device_swap, r.latest_device_change.as_ref());
    let _ = writeln!(
        out,
        "  device swap:   {device} (latest device change: {latest_device})"
    );
    let _ = writeln!(
        out,
        "  ownership:     {}",
        label(r.ownership, pb::OwnershipStatus::as_str_name)
    );
    let carrier =
        |c: Option<&pb::CarrierRef>| c.map_or_else(none, |c| format!("{} [{}]", c.name, c.id));
    let _ = writeln!(
        out,
        "  carrier:       {} (original), {} (current); {} port(s), last {}",
        carrier(r.original_carrier_ref.as_ref()),
        carrier(r.current_carrier_ref.as_ref()),
        r.port_count,
        time(r.last_port_at.as_ref()).unwrap_or_else(none)
    );
    let _ = writeln!(
        out,
        "  window:        {} .. {}",
        time(r.window_start.as_ref()).unwrap_or_else(none),
        time(r.window_end.as_ref()).unwrap_or_else(none)
    );
    let _ = writeln!(out, "  coverage:");
    for c in &r.coverage {
        let question = label(c.question, pb::CoverageQuestion::as_str_name).to_lowercase();
        let since = match time(c.covered_since.as_ref()) {
            Some(t) => format!(
                "since {t} by {}",
                r.coverage_sources(c).collect::<Vec<_>>().join(", ")
            ),
            None => "not covered now".to_string(),
        };
        let _ = writeln!(out, "    - {question}: {since}");
        if !c.gap.is_empty() {
            let _ = writeln!(out, "      gap: {}", c.gap);
        }
    }
    if r.reasons.is_empty() {
        let _ = writeln!(out, "  reasons:       none");
    } else {
        let _ = writeln!(out, "  reasons:");
        for reason in &r.reasons {
            let code = label(reason.code, pb::ReasonCode::as_str_name);
            let _ = writeln!(out, "    - {code}: {}", reason.detail);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::{ReasonCode, Verdict};
    use crate::domain::event::EventKind;

    /// Every value of a wire enum but the unspecified one, as [`label`] names it.
    fn labels<E: TryFrom<i32>>(name: impl Fn(&E) -> &'static str + Copy) -> Vec<String> {
        (1..64)
            .filter(|v| E::try_from(*v).is_ok())
            .map(|v| label(v, name))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The CLI's JSON, CSV and text name each value as the domain does in webhooks,
    /// metrics and the CAMARA facade's own fields: one vocabulary.
    #[test]
    fn labels_are_the_domain_names() {
        let domain = |names: Vec<&str>| {
            names
                .into_iter()
                .map(String::from)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(pb::Verdict::as_str_name),
            domain(Verdict::ALL.map(Verdict::as_str).to_vec())
        );
        assert_eq!(
            labels(pb::ReasonCode::as_str_name),
            domain(ReasonCode::ALL.map(ReasonCode::as_str).to_vec())
        );
        assert_eq!(
            labels(pb::EventKind::as_str_name),
            domain(EventKind::ALL.map(EventKind::as_str).to_vec())
        );
        assert_eq!(
            labels(pb::SimSwapStatus::as_str_name),
            ["NOT_SWAPPED", "SWAPPED", "UNKNOWN"]
        );
        assert_eq!(
            labels(pb::OwnershipStatus::as_str_name),
            ["CHANGED", "NOT_EVALUATED", "UNCHANGED", "UNKNOWN"]
        );
        assert_eq!(label(99, pb::Verdict::as_str_name), "99");
    }
}
