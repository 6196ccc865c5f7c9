//! Translation between wire messages and domain values.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::pb;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::auth::TimePrecision;
use crate::domain::carrier::Carrier;
use crate::domain::coverage::{Question, QuestionCoverage};
use crate::domain::decision::{
    CarrierRef, Decision, Ownership, Reason, ReasonCode, SimSwap, Verdict,
};
use crate::domain::event::{EventKind, RawEvent, StoredEvent};
use crate::domain::number::E164;
use crate::domain::prefix::Prefix;
use crate::domain::source::{DEFAULT_MAX_LAG, RawScope, Source};
use crate::domain::upstream::UpstreamAnswer;
use crate::engine::{AlertStart, SourceDefinition};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A request's `page_size`: 0 means the default.
pub fn page_size(n: u32) -> Result<u32, FieldError> {
    match n {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(FieldError::new(
            Field::PageSize,
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

fn instant(ts: &Timestamp) -> Result<DateTime<Utc>, &'static str> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or("has nanos outside 0..1e9")?;
    DateTime::from_timestamp(ts.seconds, nanos).ok_or("is out of the supported time range")
}

/// A request's timestamp field as an instant.
pub fn datetime(field: Field, ts: &Timestamp) -> Result<DateTime<Utc>, FieldError> {
    instant(ts).map_err(|message| FieldError::new(field, message))
}

/// A timestamp the server sent, for display; `None` if it is no instant.
pub fn received(ts: &Timestamp) -> Option<DateTime<Utc>> {
    instant(ts).ok()
}

pub fn optional_datetime(
    field: Field,
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
                .ok_or_else(|| FieldError::new(Field::Kinds, format!("has an unknown kind {k}")))
        })
        .collect()
}

/// Where a WatchAlerts stream starts; an unset `start` keeps the meaning `resume_after`
/// had before it existed (0: from now on).
pub fn alert_start_from_pb(req: &pb::WatchAlertsRequest) -> Result<AlertStart, FieldError> {
    match pb::AlertsStart::try_from(req.start) {
        Ok(pb::AlertsStart::Unspecified) if req.resume_after == 0 => Ok(AlertStart::Now),
        Ok(pb::AlertsStart::Unspecified | pb::AlertsStart::AfterCursor) => {
            Ok(AlertStart::After(req.resume_after))
        }
        Ok(pb::AlertsStart::Now) if req.resume_after == 0 => Ok(AlertStart::Now),
        Ok(pb::AlertsStart::Now) => Err(FieldError::new(
            Field::ResumeAfter,
            "must be 0 with start ALERTS_START_NOW",
        )),
        Err(_) => Err(FieldError::new(
            Field::Start,
            format!("has an unknown value {}", req.start),
        )),
    }
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
        occurred_at: optional_datetime(Field::OccurredAt, e.occurred_at.as_ref())?,
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
        source: fact.source.as_str().to_owned(),
        source_event_id: fact.source_event_id,
        phone_number: e.event.number.as_str().to_owned(),
        kind: kind_to_pb(fact.kind).into(),
        occurred_at: Some(timestamp(fact.occurred_at)),
        from_carrier: fact
            .from_carrier
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        to_carrier: fact
            .to_carrier
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        ingested_at: Some(timestamp(e.ingested_at)),
    }
}

/// A source as answers show it, with its freshness as of `now`.
pub fn source_to_pb(s: &Source, now: DateTime<Utc>) -> pb::Source {
    pb::Source {
        name: s.name.to_string(),
        tracking_since: Some(timestamp(s.tracking_since)),
        covers: s
            .scopes
            .iter()
            .filter(|scope| scope.is_whole())
            .map(|scope| scope.prefix.to_string())
            .collect(),
        scopes: s
            .scopes
            .iter()
            .map(|scope| pb::SourceScope {
                prefix: scope.prefix.to_string(),
                carriers: scope.carriers.iter().map(|c| c.to_string()).collect(),
                kinds: if scope.kinds.len() == EventKind::ALL.len() {
                    Vec::new()
                } else {
                    scope.kinds.iter().map(|&k| kind_to_pb(k).into()).collect()
                },
            })
            .collect(),
        max_lag: Some(duration(s.max_lag.unwrap_or_else(chrono::Duration::zero))),
        complete_until: s.complete_until.map(timestamp),
        fresh: s.is_fresh(now),
    }
}

fn duration(d: chrono::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.num_seconds(),
        nanos: d.subsec_nanos(),
    }
}

/// A source's definition as received: `covers` and `scopes` together make its scopes; an
/// unset `max_lag` is the default, a zero one a source fed by files.
pub fn source_definition_from_pb(s: &pb::Source) -> Result<SourceDefinition, FieldError> {
    let tracking_since = optional_datetime(Field::TrackingSince, s.tracking_since.as_ref())?;
    let mut scopes = Vec::with_capacity(s.covers.len() + s.scopes.len());
    for prefix in &s.covers {
        prefix
            .parse::<Prefix>()
            .map_err(|e| FieldError::new(Field::Covers, format!("has a prefix that {e}")))?;
        scopes.push(RawScope::whole(prefix));
    }
    for scope in &s.scopes {
        scopes.push(RawScope {
            prefix: scope.prefix.clone(),
            carriers: scope.carriers.clone(),
            kinds: kinds_from_pb(&scope.kinds)
                .map_err(|e| FieldError::new(Field::ScopesKinds, e.message))?,
        });
    }
    let max_lag = match &s.max_lag {
        None => Some(DEFAULT_MAX_LAG),
        Some(d) if d.seconds == 0 && d.nanos == 0 => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(FieldError::new(Field::MaxLag, "must not be negative"));
        }
        Some(d) => Some(
            chrono::Duration::seconds(d.seconds)
                + chrono::Duration::nanoseconds(i64::from(d.nanos)),
        ),
    };
    Ok(SourceDefinition {
        name: s.name.clone(),
        tracking_since,
        scopes,
        max_lag,
    })
}

pub fn carrier_to_pb(c: &Carrier) -> pb::Carrier {
    pb::Carrier {
        id: c.id.to_string(),
        name: c.name.clone(),
        country_code: u32::from(c.country_code),
        mcc_mnc: c.mcc_mnc.clone(),
        aliases: c.aliases.clone(),
        reviewed: c.reviewed,
    }
}

pub fn carrier_from_pb(c: &pb::Carrier) -> Result<Carrier, FieldError> {
    Carrier::new(&c.id, &c.name, c.country_code, &c.mcc_mnc, &c.aliases)
}

fn carrier_ref(c: &CarrierRef) -> pb::CarrierRef {
    pb::CarrierRef {
        id: c.id.as_str().to_owned(),
        name: c.name.clone(),
    }
}

/// Each question's coverage; the sources are referred to by their positions in the
/// answer's `sources`, as the decision names them.
fn coverage(questions: Vec<QuestionCoverage>) -> Vec<pb::Coverage> {
    questions
        .into_iter()
        .map(|c| {
            let question = match c.question {
                Question::SimSwap => pb::CoverageQuestion::SimSwap,
                Question::Ownership => pb::CoverageQuestion::Ownership,
                Question::DeviceSwap => pb::CoverageQuestion::DeviceSwap,
            };
            pb::Coverage {
                question: question.into(),
                covered_since: c.covered_since.map(timestamp),
                source_indexes: c.source_indexes,
                gap: c.gap.unwrap_or_default(),
            }
        })
        .collect()
}

impl pb::CheckNumberResponse {
    /// The names of the sources that supply one question's coverage, resolved from the
    /// answer's list of sources (an index past its end, which numguard never sends, is
    /// skipped).
    pub fn coverage_sources<'a>(&'a self, c: &'a pb::Coverage) -> impl Iterator<Item = &'a str> {
        c.source_indexes
            .iter()
            .filter_map(|&i| self.sources.get(usize::try_from(i).ok()?))
            .map(String::as_str)
    }
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
        ReasonCode::FeedStale => pb::ReasonCode::FeedStale,
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
        phone_number: number.as_str().to_owned(),
        verdict: verdict(d.verdict).into(),
        sim_swap: sim_swap(d.sim_swap).into(),
        latest_sim_change: event_time(d.latest_sim_change),
        ownership: ownership(d.ownership).into(),
        original_carrier: d
            .original_carrier
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        current_carrier: d
            .current_carrier
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        original_carrier_ref: d.original_carrier.as_ref().map(carrier_ref),
        current_carrier_ref: d.current_carrier.as_ref().map(carrier_ref),
        coverage: coverage(d.coverage),
        sources: d.sources.into_iter().map(String::from).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics and text outputs name verdicts and reasons as the API's enums do, without
    /// their prefixes.
    #[test]
    fn short_names_are_the_api_names_without_their_prefix() {
        for v in Verdict::ALL {
            assert_eq!(
                verdict(v).as_str_name().strip_prefix("VERDICT_"),
                Some(v.as_str())
            );
        }
        for c in ReasonCode::ALL {
            assert_eq!(
                reason_code(c).as_str_name().strip_prefix("REASON_CODE_"),
                Some(c.as_str())
            );
        }
    }
}
