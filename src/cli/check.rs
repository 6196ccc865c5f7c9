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
    #[command(flatten)]
    server: ServerArgs,
}

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
    Ok(ExitCode::SUCCESS)
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

/// A wire enum's proto name, or the bare number for a value this build does not know.
pub fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(&E) -> &'static str) -> String {
    E::try_from(value).map_or_else(|_| value.to_string(), |e| name(&e).to_string())
}

fn reason_json(r: &pb::Reason) -> Value {
    json!({
        "code": enum_name(r.code, pb::ReasonCode::as_str_name),
        "event_kind": (r.event_kind != 0).then(|| enum_name(r.event_kind, pb::EventKind::as_str_name)),
        "occurred_at": time(r.occurred_at.as_ref()),
        "detail": r.detail,
    })
}

fn carrier_json(c: Option<&pb::CarrierRef>) -> Value {
    c.map_or(Value::Null, |c| json!({ "id": c.id, "name": c.name }))
}

fn coverage_json(c: &pb::Coverage) -> Value {
    json!({
        "question": short(enum_name(c.question, pb::CoverageQuestion::as_str_name), "COVERAGE_QUESTION_"),
        "covered_since": time(c.covered_since.as_ref()),
        "sources": c.sources,
        "gap": (!c.gap.is_empty()).then_some(&c.gap),
    })
}

/// The response in the proto3 JSON style: enum names, RFC 3339 times.
pub fn to_json(r: &pb::CheckNumberResponse) -> Value {
    json!({
        "phone_number": r.phone_number,
        "verdict": enum_name(r.verdict, pb::Verdict::as_str_name),
        "sim_swap": enum_name(r.sim_swap, pb::SimSwapStatus::as_str_name),
        "latest_sim_change": time(r.latest_sim_change.as_ref()),
        "ownership": enum_name(r.ownership, pb::OwnershipStatus::as_str_name),
        "device_swap": enum_name(r.device_swap, pb::SimSwapStatus::as_str_name),
        "latest_device_change": time(r.latest_device_change.as_ref()),
        "original_carrier": r.original_carrier,
        "current_carrier": r.current_carrier,
        "original_carrier_ref": carrier_json(r.original_carrier_ref.as_ref()),
        "current_carrier_ref": carrier_json(r.current_carrier_ref.as_ref()),
        "last_port_at": time(r.last_port_at.as_ref()),
        "port_count": r.port_count,
        "ported_since_owner": r.ported_since_owner,
        "reasons": r.reasons.iter().map(reason_json).collect::<Vec<_>>(),
        "window_start": time(r.window_start.as_ref()),
        "window_end": time(r.window_end.as_ref()),
        "covered_since": time(r.covered_since.as_ref()),
        "coverage": r.coverage.iter().map(coverage_json).collect::<Vec<_>>(),
        "evaluated_at": time(r.evaluated_at.as_ref()),
    })
}

/// An enum name without its type prefix (`VERDICT_ALLOW` -> `ALLOW`).
pub fn short(name: String, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .map(str::to_string)
        .unwrap_or(name)
}

/// A few lines for a person at a terminal.
pub fn render(r: &pb::CheckNumberResponse) -> String {
    let none = || "-".to_string();
    let mut out = String::new();
    let verdict = short(enum_name(r.verdict, pb::Verdict::as_str_name), "VERDICT_");
    let _ = writeln!(out, "{}  {verdict}", r.phone_number);
    let swap = |status: i32, latest: Option<&prost_types::Timestamp>| {
        let status = short(
            enum_name(status, pb::SimSwapStatus::as_str_name),
            "SIM_SWAP_STATUS_",
        );
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
        short(
            enum_name(r.ownership, pb::OwnershipStatus::as_str_name),
            "OWNERSHIP_STATUS_"
        )
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
        let question = short(
            enum_name(c.question, pb::CoverageQuestion::as_str_name),
            "COVERAGE_QUESTION_",
        )
        .to_lowercase();
        let since = match time(c.covered_since.as_ref()) {
            Some(t) => format!("since {t} by {}", c.sources.join(", ")),
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
            let code = short(
                enum_name(reason.code, pb::ReasonCode::as_str_name),
                "REASON_CODE_",
            );
            let _ = writeln!(out, "    - {code}: {}", reason.detail);
        }
    }
    out
}
