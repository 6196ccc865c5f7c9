//! Translation between wire messages and domain values.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::pb;
use crate::domain::FieldError;
use crate::domain::auth::TimePrecision;
use crate::domain::decision::{Decision, Ownership, Reason, ReasonCode, SimSwap, Verdict};
use crate::domain::event::{EventKind, RawEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::source::Source;
use crate::domain::upstream::UpstreamAnswer;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A request's `page_size`: 0 means the default.
pub fn page_size(n: u32) -> Result<u32, FieldError> {
    match n {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(FieldError::new(
            "page_size",
            format!("must be in 0..={MAX_PAGE_SIZE}, got {n}"),
        )),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn datetime(field: &'static str, ts: &Timestamp) -> Result<DateTime<Utc>, FieldError> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldError::new(field, "has nanos outside 0..1e9"))?;
    DateTime::from_timestamp(ts.seconds, nanos)
        .ok_or_else(|| FieldError::new(field, "is out of the supported time range"))
}

pub fn optional_datetime(
    field: &'static str,
    ts: Option<&Timestamp>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    ts.map(|t| datetime(field, t)).transpose()
}

pub fn kind_from_pb(value: i32) -> Option<EventKind> {
    match pb::EventKind::try_from(value).ok()? {
        pb::EventKind::Unspecified => None,
        pb::EventKind::SimSwap => Some(EventKind::SimSwap),
        pb::EventKind::Port => Some(EventKind::Port),
        pb::EventKind::Disconnect => Some(EventKind::Disconnect),
        pb::EventKind::Reassign => Some(EventKind::Reassign),
        pb::EventKind::DeviceSwap => Some(EventKind::DeviceSwap),
    }
}

/// A request's `kinds` filter; an unknown value is refused, not ignored.
pub fn kinds_from_pb(kinds: &[i32]) -> Result<Vec<EventKind>, FieldError> {
    kinds
        .iter()
        .map(|k| {
            kind_from_pb(*k)
                .ok_or_else(|| FieldError::new("kinds", format!("has an unknown kind {k}")))
        })
        .collect()
}

pub fn kind_to_pb(kind: EventKind) -> pb::EventKind {
    match kind {
        EventKind::SimSwap => pb::EventKind::SimSwap,
        EventKind::Port => pb::EventKind::Port,
        EventKind::Disconnect => pb::EventKind::Disconnect,
        EventKind::Reassign => pb::EventKind::Reassign,
        EventKind::DeviceSwap => pb::EventKind::DeviceSwap,
    }
}

/// An incoming event, not yet validated. Only a malformed timestamp fails here (with its
/// own message, rather than passing for a missing one); the rest is checked by the domain.
pub fn raw_event(e: pb::Event) -> Result<RawEvent, FieldError> {
    Ok(RawEvent {
        occurred_at: optional_datetime("occurred_at", e.occurred_at.as_ref())?,
        kind: kind_from_pb(e.kind),
        source: e.source,
        source_event_id: e.source_event_id,
        phone_number: e.phone_number,
        from_carrier: e.from_carrier,
        to_carrier: e.to_carrier,
    })
}

pub fn stored_event(e: StoredEvent) -> pb::Event {
    let fact = e.event.fact;
    pb::Event {
        source: fact.source.to_string(),
        source_event_id: fact.source_event_id,
        phone_number: e.event.number.to_string(),
        kind: kind_to_pb(fact.kind).into(),
        occurred_at: Some(timestamp(fact.occurred_at)),
        from_carrier: fact.from_carrier.unwrap_or_default(),
        to_carrier: fact.to_carrier.unwrap_or_default(),
        ingested_at: Some(timestamp(e.ingested_at)),
    }
}

pub fn source_to_pb(s: &Source) -> pb::Source {
    pb::Source {
        name: s.name.to_string(),
        tracking_since: Some(timestamp(s.tracking_since)),
        covers: s.covers.iter().map(|p| p.to_string()).collect(),
    }
}

pub fn source_from_pb(s: &pb::Source) -> Result<Source, FieldError> {
    let tracking_since = optional_datetime("tracking_since", s.tracking_since.as_ref())?;
    Source::new(&s.name, tracking_since, &s.covers)
}

fn verdict(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Allow => pb::Verdict::Allow,
        Verdict::StepUp => pb::Verdict::StepUp,
        Verdict::Block => pb::Verdict::Block,
    }
}

fn sim_swap(s: SimSwap) -> pb::SimSwapStatus {
    match s {
        SimSwap::Swapped => pb::SimSwapStatus::Swapped,
        SimSwap::NotSwapped => pb::SimSwapStatus::NotSwapped,
        SimSwap::Unknown => pb::SimSwapStatus::Unknown,
    }
}

fn ownership(o: Ownership) -> pb::OwnershipStatus {
    match o {
        Ownership::Unchanged => pb::OwnershipStatus::Unchanged,
        Ownership::Changed => pb::OwnershipStatus::Changed,
        Ownership::Unknown => pb::OwnershipStatus::Unknown,
        Ownership::NotEvaluated => pb::OwnershipStatus::NotEvaluated,
    }
}

fn reason_code(c: ReasonCode) -> pb::ReasonCode {
    match c {
        ReasonCode::SimSwapped => pb::ReasonCode::SimSwapped,
        ReasonCode::Ported => pb::ReasonCode::Ported,
        ReasonCode::OwnerChanged => pb::ReasonCode::OwnerChanged,
        ReasonCode::NoData => pb::ReasonCode::NoData,
        ReasonCode::NotCovered => pb::ReasonCode::NotCovered,
        ReasonCode::NotMobile => pb::ReasonCode::NotMobile,
        ReasonCode::Upstream => pb::ReasonCode::Upstream,
        ReasonCode::UpstreamUnavailable => pb::ReasonCode::UpstreamUnavailable,
    }
}

fn upstream_lookup(a: UpstreamAnswer) -> pb::UpstreamLookup {
    pb::UpstreamLookup {
        provider: a.provider,
        question: a.question.as_str().to_string(),
        answer: a.outcome.as_ref().ok().copied(),
        error: a.outcome.err().unwrap_or_default(),
        answered_at: Some(timestamp(a.at)),
        cached: a.cached,
    }
}

fn reason(r: Reason, precision: TimePrecision) -> pb::Reason {
    pb::Reason {
        code: reason_code(r.code).into(),
        event_kind: r
            .event_kind
            .map_or(pb::EventKind::Unspecified, kind_to_pb)
            .into(),
        occurred_at: r
            .occurred_at
            .and_then(|t| precision.apply(t))
            .map(timestamp),
        detail: r.detail,
    }
}

/// The response for one decision; event times are cut to the caller's `precision`
/// (`latest_sim_change`, `last_port_at` and the reasons' times).
pub fn check_response(
    number: &E164,
    d: Decision,
    precision: TimePrecision,
) -> pb::CheckNumberResponse {
    let event_time = |t: Option<DateTime<Utc>>| t.and_then(|t| precision.apply(t)).map(timestamp);
    pb::CheckNumberResponse {
        phone_number: number.to_string(),
        verdict: verdict(d.verdict).into(),
        sim_swap: sim_swap(d.sim_swap).into(),
        latest_sim_change: event_time(d.latest_sim_change),
        ownership: ownership(d.ownership).into(),
        original_carrier: d.original_carrier.unwrap_or_default(),
        current_carrier: d.current_carrier.unwrap_or_default(),
        last_port_at: event_time(d.last_port_at),
        port_count: d.port_count,
        ported_since_owner: d.ported_since_owner,
        reasons: d
            .reasons
            .into_iter()
            .map(|r| reason(r, precision))
            .collect(),
        window_start: Some(timestamp(d.window_start)),
        window_end: Some(timestamp(d.window_end)),
        covered_since: d.covered_since.map(timestamp),
        evaluated_at: Some(timestamp(d.evaluated_at)),
        upstream: d.upstream.into_iter().map(upstream_lookup).collect(),
        device_swap: sim_swap(d.device_swap).into(),
        latest_device_change: event_time(d.latest_device_change),
    }
}
