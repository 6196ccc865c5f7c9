//! The decision rules of `CheckNumber` (SPEC §2): pure, synchronous, no I/O.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::FieldError;
use super::carrier::{CarrierId, CarrierRegistry};
use super::coverage::{
    self, Coverage, CoverageInput, Gap, GapCause, NamedSources, QuestionCoverage,
};
use super::event::{EventFact, EventKind};
use super::owner_since::OwnerSince;
use super::source::{SourceName, SourceSet};
use super::upstream::{Question, UpstreamAnswer};
use crate::domain::Field;

/// The window a check looks back over when it gives none, in hours.
pub const DEFAULT_MAX_AGE_HOURS: u32 = 240;
/// The longest window a check may ask for unless the server says otherwise, in hours.
pub const DEFAULT_MAX_LOOKBACK_HOURS: u32 = 2400;

/// A validated look-back window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(u32);

impl MaxAge {
    /// `0` means the default (240 hours, or the server's limit if that is lower).
    pub fn new(hours: u32, max_lookback_hours: u32) -> Result<MaxAge, FieldError> {
        if hours == 0 {
            return Ok(MaxAge(DEFAULT_MAX_AGE_HOURS.min(max_lookback_hours)));
        }
        if hours > max_lookback_hours {
            return Err(FieldError::new(
                Field::MaxAgeHours,
                format!("must be in 1..={max_lookback_hours}, got {hours}"),
            ));
        }
        Ok(MaxAge(hours))
    }

    /// The window's length in hours.
    pub fn hours(self) -> u32 {
        self.0
    }
}

/// What the caller should do before sending a code to the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Send: nothing suggests the number changed hands.
    Allow,
    /// Ask for another factor first (a recent SIM swap or port, or an unknown answer by policy).
    StepUp,
    /// Do not send: the number has a new owner.
    Block,
}

/// Whether the SIM (or, for device swap, the handset) changed within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimSwap {
    /// A change within the window.
    Swapped,
    /// The question is covered for the whole window and no change was seen.
    NotSwapped,
    /// The data cannot tell; a reason names the gap.
    Unknown,
}

/// Whether the number changed hands since `owner_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Covered since `owner_since`, and no disconnection or reassignment since.
    Unchanged,
    /// Disconnected or reassigned after `owner_since`.
    Changed,
    /// The data cannot tell; a reason names the gap.
    Unknown,
    /// No `owner_since` was given, so the question was not asked.
    NotEvaluated,
}

/// Why a decision came out as it did; answers list one per finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// The SIM changed within the window.
    SimSwapped,
    /// The number was ported within the window.
    Ported,
    /// The number changed hands since `owner_since`.
    OwnerChanged,
    /// No source sees what the question needs; the detail names the gap.
    NoData,
    /// A source that would answer has data only up to some instant before the one asked.
    FeedStale,
    /// The number is outside every source's prefixes.
    NotCovered,
    /// The number is not mobile, so SIM questions do not apply.
    NotMobile,
    /// An answer came from an operator's API: which provider, and when.
    Upstream,
    /// The operator's API was asked and did not answer.
    UpstreamUnavailable,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::StepUp, Verdict::Block];

    /// The verdict's name in every output: `ALLOW`, `STEP_UP`, `BLOCK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "ALLOW",
            Verdict::StepUp => "STEP_UP",
            Verdict::Block => "BLOCK",
        }
    }
}

impl ReasonCode {
    /// Every reason code.
    pub const ALL: [ReasonCode; 9] = [
        ReasonCode::SimSwapped,
        ReasonCode::Ported,
        ReasonCode::OwnerChanged,
        ReasonCode::NoData,
        ReasonCode::FeedStale,
        ReasonCode::NotCovered,
        ReasonCode::NotMobile,
        ReasonCode::Upstream,
        ReasonCode::UpstreamUnavailable,
    ];

    /// The code's name in every output, as the API's enum spells it without its prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::SimSwapped => "SIM_SWAPPED",
            ReasonCode::Ported => "PORTED",
            ReasonCode::OwnerChanged => "OWNER_CHANGED",
            ReasonCode::NoData => "NO_DATA",
            ReasonCode::FeedStale => "FEED_STALE",
            ReasonCode::NotCovered => "NOT_COVERED",
            ReasonCode::NotMobile => "NOT_MOBILE",
            ReasonCode::Upstream => "UPSTREAM",
            ReasonCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
        }
    }
}

/// One finding behind a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// What was found.
    pub code: ReasonCode,
    /// The kind of the event behind it, if one.
    pub event_kind: Option<EventKind>,
    /// When that event happened, if one.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Evidence or the gap, in words (never the full number).
    pub detail: String,
}

/// What a deployment decides when the data cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The verdict when a question's answer is unknown.
    pub on_unknown: Verdict,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_unknown: Verdict::Allow,
        }
    }
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The instant the answer is for.
    pub now: DateTime<Utc>,
    /// How far back a SIM change counts.
    pub max_age: MaxAge,
    /// When the business last verified its customer held the number, if it says.
    pub owner_since: Option<OwnerSince>,
    /// Mobile or mobile-capable, per the numbering plan.
    pub mobile: bool,
    /// The number, E.164 without `+`: what source scopes match.
    pub digits: &'a str,
    /// The range holder, from the carrier ranges.
    pub original_carrier: Option<&'a CarrierId>,
    /// For carriers' display names.
    pub carriers: &'a CarrierRegistry,
    /// Every source, with its scopes and freshness.
    pub sources: &'a SourceSet,
    /// The number's events, in any order.
    pub history: &'a [EventFact],
    /// Answers from the operator's API, used only where the events cannot answer.
    pub upstream: &'a [UpstreamAnswer],
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// Whether the SIM changed within the window.
    pub sim_swap: SimSwap,
    /// The latest SIM change (SIM swap, port or reassignment) seen, if any.
    pub latest_sim_change: Option<DateTime<Utc>>,
    /// The same three answers for `DEVICE_SWAP` events (CAMARA Device Swap); it does not
    /// enter the verdict, as a new handset keeps the SIM and its owner.
    pub device_swap: SimSwap,
    /// The latest handset change seen, if any.
    pub latest_device_change: Option<DateTime<Utc>>,
    /// Mobile or mobile-capable, per the numbering plan.
    pub mobile: bool,
    /// Whether the number changed hands since `owner_since`.
    pub ownership: Ownership,
    /// The range holder.
    pub original_carrier: Option<CarrierRef>,
    /// The carrier serving the number now: the latest port's `to_carrier`, else the range holder.
    pub current_carrier: Option<CarrierRef>,
    /// The latest port, if any.
    pub last_port_at: Option<DateTime<Utc>>,
    /// Ports seen in the number's whole history.
    pub port_count: u32,
    /// Whether a port happened after `owner_since`.
    pub ported_since_owner: bool,
    /// The findings, one per reason.
    pub reasons: Vec<Reason>,
    /// The window's start: `evaluated_at` less `max_age`.
    pub window_start: DateTime<Utc>,
    /// The window's end: `evaluated_at`.
    pub window_end: DateTime<Utc>,
    /// When the SIM-change question's coverage starts (see `coverage` for each question).
    pub covered_since: Option<DateTime<Utc>>,
    /// Per question (SIM change, ownership, device swap): from when it is covered, by
    /// which of `sources`.
    pub coverage: Vec<QuestionCoverage>,
    /// Each source that supplies some question's coverage, once, in order of first mention.
    pub sources: Vec<SourceName>,
    /// The instant the answer is for.
    pub evaluated_at: DateTime<Utc>,
    /// The operator answers this decision was given, used or not.
    pub upstream: Vec<UpstreamAnswer>,
}

/// A carrier as answers report it: id and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierRef {
    /// The carrier's id.
    pub id: CarrierId,
    /// Its display name.
    pub name: String,
}

impl CarrierRef {
    fn new(id: &CarrierId, carriers: &CarrierRegistry) -> CarrierRef {
        CarrierRef {
            id: id.clone(),
            name: carriers.name_of(id).to_string(),
        }
    }
}

impl Decision {
    /// The coverage of one question.
    pub fn coverage_of(&self, question: coverage::Question) -> Option<&QuestionCoverage> {
        self.coverage.iter().find(|c| c.question == question)
    }

    /// Says, in each UNKNOWN reason, that an operator's API was wanted but no provider
    /// serves the number's current carrier.
    pub fn note_no_provider(&mut self) {
        let carrier = match &self.current_carrier {
            Some(c) => format!("{} ({})", c.name, c.id),
            None => "its carrier (unknown)".to_string(),
        };
        for reason in &mut self.reasons {
            if matches!(reason.code, ReasonCode::NoData | ReasonCode::FeedStale) {
                reason
                    .detail
                    .push_str(&format!("; no upstream provider serves {carrier}"));
            }
        }
        for coverage in &mut self.coverage {
            if let Some(gap) = &mut coverage.gap {
                gap.push_str(&format!("; no upstream provider serves {carrier}"));
            }
        }
    }
}

/// Applies SPEC §2. Events are judged by `occurred_at`, never by arrival order.
pub fn decide(input: &CheckInput<'_>, policy: Policy) -> Decision {
    let now = super::event::to_storage_precision(input.now);
    let window_start = now - Duration::hours(i64::from(input.max_age.hours()));
    let coverage = Coverage::new(CoverageInput {
        digits: input.digits,
        now,
        range_holder: input.original_carrier,
        history: input.history,
        sources: input.sources,
    });
    let covered_by =
        |q: coverage::Question, t: DateTime<Utc>| coverage.covered_since(q).is_some_and(|c| c <= t);

    // 1. SIM change (and, by the same rule, device change).
    let swap_in_window = |q: coverage::Question, latest: Option<&EventFact>| match latest {
        Some(e) if e.occurred_at >= window_start => SimSwap::Swapped,
        _ if covered_by(q, window_start) => SimSwap::NotSwapped,
        _ => SimSwap::Unknown,
    };
    let asked = |q: Question| input.upstream.iter().find(|a| a.question == q);
    let latest_sim_change = newest(input.history, |e| e.kind.changes_sim());
    // Local data wins; the operator fills in only what it cannot answer.
    let (sim_swap, sim_upstream) = match (
        swap_in_window(coverage::Question::SimSwap, latest_sim_change),
        asked(Question::SimSwap),
    ) {
        (SimSwap::Unknown, Some(a)) => match a.outcome {
            Ok(true) => (SimSwap::Swapped, Some(a)),
            Ok(false) => (SimSwap::NotSwapped, Some(a)),
            Err(_) => (SimSwap::Unknown, Some(a)),
        },
        (local, _) => (local, None),
    };
    let latest_device_change = newest(input.history, |e| e.kind == EventKind::DeviceSwap);
    let device_swap = swap_in_window(coverage::Question::DeviceSwap, latest_device_change);

    // 2. Ownership.
    let mut owner_changes: Vec<&EventFact> = match &input.owner_since {
        Some(owner) => input
            .history
            .iter()
            .filter(|e| match e.kind {
                EventKind::Disconnect => owner.disconnect_counts(e.occurred_at),
                EventKind::Reassign => owner.reassign_counts(e.occurred_at),
                _ => false,
            })
            .collect(),
        None => Vec::new(),
    };
    owner_changes.sort_by(|a, b| a.chronological(b));
    let local_ownership = match &input.owner_since {
        None => Ownership::NotEvaluated,
        Some(_) if !owner_changes.is_empty() => Ownership::Changed,
        Some(owner) if covered_by(coverage::Question::Ownership, owner.coverage_needed_from()) => {
            Ownership::Unchanged
        }
        Some(_) => Ownership::Unknown,
    };
    let (ownership, owner_upstream) = match (local_ownership, asked(Question::NumberRecycling)) {
        (Ownership::Unknown, Some(a)) => match a.outcome {
            Ok(true) => (Ownership::Changed, Some(a)),
            Ok(false) => (Ownership::Unchanged, Some(a)),
            Err(_) => (Ownership::Unknown, Some(a)),
        },
        (local, _) => (local, None),
    };

    // 3. Porting.
    let ports = || input.history.iter().filter(|e| e.kind == EventKind::Port);
    let newest_port = newest(input.history, |e| e.kind == EventKind::Port);
    let port_count = u32::try_from(ports().count()).unwrap_or(u32::MAX);
    let ported_since_owner = input
        .owner_since
        .is_some_and(|owner| ports().any(|e| owner.port_counts(e.occurred_at)));
    let carrier = |id: &CarrierId| CarrierRef::new(id, input.carriers);
    let original_carrier = input.original_carrier.map(carrier);
    let current_carrier = newest_port
        .and_then(|e| e.to_carrier.as_ref())
        .map(carrier)
        .or_else(|| original_carrier.clone());
    let port_in_window = newest_port.filter(|e| e.occurred_at >= window_start);

    // Why each question is UNKNOWN, where it is.
    let untouched = !coverage.touched() && original_carrier.is_none();
    let explain = |q: coverage::Question, unknown: bool, needed: &str, upstream| {
        (unknown && !untouched)
            .then(|| unknown_reason(q, needed, &coverage.gaps(q), now, input.carriers, upstream))
    };
    let sim_unknown = explain(
        coverage::Question::SimSwap,
        sim_swap == SimSwap::Unknown,
        "the window start",
        sim_upstream,
    );
    let owner_unknown = explain(
        coverage::Question::Ownership,
        ownership == Ownership::Unknown,
        "owner_since",
        owner_upstream,
    );
    let device_unknown = explain(
        coverage::Question::DeviceSwap,
        device_swap == SimSwap::Unknown,
        "the window start",
        None,
    );
    let gap_of = |q: coverage::Question| {
        let reason = match q {
            coverage::Question::SimSwap => &sim_unknown,
            coverage::Question::Ownership => &owner_unknown,
            coverage::Question::DeviceSwap => &device_unknown,
        };
        match reason {
            Some(r) => Some(r.detail.clone()),
            None if untouched => Some(format!(
                "{}: no carrier range and no event source covers this number",
                q.as_str()
            )),
            None => None,
        }
    };
    let mut answer_sources = NamedSources::default();
    let question_coverage: Vec<QuestionCoverage> = coverage::Question::ALL
        .iter()
        .map(|&q| {
            let unknown = match q {
                coverage::Question::SimSwap => sim_swap == SimSwap::Unknown,
                coverage::Question::Ownership => ownership == Ownership::Unknown,
                coverage::Question::DeviceSwap => device_swap == SimSwap::Unknown,
            };
            let from = match (q, &input.owner_since) {
                (coverage::Question::Ownership, Some(owner)) => owner.coverage_needed_from(),
                _ => window_start,
            };
            QuestionCoverage {
                gap: if unknown { gap_of(q) } else { None },
                ..coverage.of(q, from, &mut answer_sources)
            }
        })
        .collect();

    // 4. Verdict, first matching rule wins; the reasons explain the rule that decided.
    let mut reasons = Vec::new();
    let verdict = if ownership == Ownership::Changed {
        reasons.extend(owner_changes.iter().map(|e| {
            event_reason(
                ReasonCode::OwnerChanged,
                e,
                format!("{} after owner_since: the number left its owner", e.kind),
            )
        }));
        if let Some(a) = owner_upstream {
            reasons.push(plain_reason(
                ReasonCode::OwnerChanged,
                format!(
                    "{} says the number was recycled after owner_since",
                    a.provider
                ),
            ));
        }
        Verdict::Block
    } else if sim_swap == SimSwap::Swapped || port_in_window.is_some() {
        match (sim_swap, latest_sim_change, sim_upstream) {
            (SimSwap::Swapped, _, Some(a)) => reasons.push(plain_reason(
                ReasonCode::SimSwapped,
                format!(
                    "{} says the SIM changed inside the {}-hour window",
                    a.provider,
                    input.max_age.hours()
                ),
            )),
            (SimSwap::Swapped, Some(e), None) => reasons.push(event_reason(
                ReasonCode::SimSwapped,
                e,
                format!(
                    "SIM change ({}) inside the {}-hour window",
                    e.kind,
                    input.max_age.hours()
                ),
            )),
            _ => {}
        }
        if let Some(e) = port_in_window {
            reasons.push(event_reason(
                ReasonCode::Ported,
                e,
                format!(
                    "ported from {} to {} inside the window",
                    named(input.carriers, e.from_carrier.as_ref()),
                    named(input.carriers, e.to_carrier.as_ref()),
                ),
            ));
        }
        Verdict::StepUp
    } else if sim_swap == SimSwap::Unknown || ownership == Ownership::Unknown {
        if untouched {
            reasons.push(plain_reason(
                ReasonCode::NotCovered,
                "no carrier range and no event source covers this number",
            ));
        }
        reasons.extend(sim_unknown.clone());
        reasons.extend(owner_unknown.clone());
        policy.on_unknown
    } else {
        Verdict::Allow
    };
    if !input.mobile {
        reasons.push(plain_reason(
            ReasonCode::NotMobile,
            "a valid number, but not a mobile one",
        ));
    }
    // Where each answer the operator gave came from, and when.
    for (what, used) in [("sim_swap", sim_upstream), ("ownership", owner_upstream)] {
        if let Some(
            a @ UpstreamAnswer {
                outcome: Ok(yes), ..
            },
        ) = used
        {
            let answer = match (what, yes) {
                ("sim_swap", true) => "swapped",
                ("sim_swap", false) => "not swapped",
                (_, true) => "recycled",
                (_, false) => "not recycled",
            };
            let cached = if a.cached { ", from the cache" } else { "" };
            reasons.push(Reason {
                code: ReasonCode::Upstream,
                event_kind: None,
                occurred_at: Some(a.at),
                detail: format!("{what}: {answer}, as {} answered{cached}", a.provider),
            });
        }
    }

    Decision {
        verdict,
        sim_swap,
        latest_sim_change: latest_sim_change.map(|e| e.occurred_at),
        device_swap,
        latest_device_change: latest_device_change.map(|e| e.occurred_at),
        mobile: input.mobile,
        ownership,
        original_carrier,
        current_carrier,
        last_port_at: newest_port.map(|e| e.occurred_at),
        port_count,
        ported_since_owner,
        reasons,
        window_start,
        window_end: now,
        covered_since: coverage.covered_since(coverage::Question::SimSwap),
        coverage: question_coverage,
        sources: answer_sources.into_names(input.sources),
        evaluated_at: now,
        upstream: input.upstream.to_vec(),
    }
}

fn newest(history: &[EventFact], wanted: impl Fn(&EventFact) -> bool) -> Option<&EventFact> {
    history
        .iter()
        .filter(|e| wanted(e))
        .max_by(|a, b| a.chronological(b))
}

fn event_reason(code: ReasonCode, e: &EventFact, detail: String) -> Reason {
    Reason {
        code,
        event_kind: Some(e.kind),
        occurred_at: Some(e.occurred_at),
        detail,
    }
}

fn plain_reason(code: ReasonCode, detail: impl Into<String>) -> Reason {
    Reason {
        code,
        event_kind: None,
        occurred_at: None,
        detail: detail.into(),
    }
}

fn named(carriers: &CarrierRegistry, id: Option<&CarrierId>) -> String {
    match id {
        Some(id) => format!("{} ({id})", carriers.name_of(id)),
        None => "an unknown carrier".to_string(),
    }
}

/// NO_DATA naming the gap, FEED_STALE where a source that would answer is stale, or
/// UPSTREAM_UNAVAILABLE when the operator was asked and did not answer.
fn unknown_reason(
    question: coverage::Question,
    needed: &str,
    gaps: &[Gap],
    now: DateTime<Utc>,
    carriers: &CarrierRegistry,
    upstream: Option<&UpstreamAnswer>,
) -> Reason {
    let what = question.as_str();
    if let Some((a, Err(why))) = upstream.map(|a| (a, &a.outcome)) {
        return Reason {
            code: ReasonCode::UpstreamUnavailable,
            event_kind: None,
            occurred_at: Some(a.at),
            detail: format!(
                "{what}: no local data, and {} did not answer: {why}",
                a.provider
            ),
        };
    }
    let stale = gaps.iter().find_map(|g| match &g.cause {
        GapCause::Stale { complete_until, .. } => Some(*complete_until),
        _ => None,
    });
    // Kinds missing for the same cause at the same instant are named together.
    let mut grouped: Vec<(&Gap, Vec<EventKind>)> = Vec::new();
    for gap in gaps {
        match grouped
            .iter_mut()
            .find(|(g, _)| g.cause == gap.cause && g.at == gap.at)
        {
            Some((_, kinds)) => kinds.push(gap.kind),
            None => grouped.push((gap, vec![gap.kind])),
        }
    }
    let details: Vec<String> = grouped
        .iter()
        .map(|(gap, kinds)| gap_detail(gap, kinds, needed, now, carriers))
        .collect();
    let detail = if details.is_empty() {
        format!("{what}: no event source covers this number")
    } else {
        format!("{what}: {}", details.join("; "))
    };
    Reason {
        code: if stale.is_some() {
            ReasonCode::FeedStale
        } else {
            ReasonCode::NoData
        },
        event_kind: gaps.first().map(|g| g.kind),
        occurred_at: stale.flatten(),
        detail,
    }
}

fn gap_detail(
    gap: &Gap,
    kinds: &[EventKind],
    needed: &str,
    now: DateTime<Utc>,
    carriers: &CarrierRegistry,
) -> String {
    let kinds = kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    match &gap.cause {
        GapCause::NoSource => format!("no source reports {kinds} for this number"),
        GapCause::OtherCarriers { serving } if gap.at == now => format!(
            "no source reports {kinds} for subscribers of {}, which serves the number",
            named(carriers, serving.as_ref()),
        ),
        GapCause::OtherCarriers { serving } => format!(
            "no source reports {kinds} for subscribers of {}, which served the number until {}",
            named(carriers, serving.as_ref()),
            gap.at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        GapCause::NotYetTracking { from } => format!(
            "no source reports {kinds} before {}, after {needed}",
            from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        GapCause::Purged { from } => format!(
            "{kinds} events before {} are no longer kept (retention period), after {needed}",
            from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        GapCause::Stale {
            source,
            complete_until: Some(until),
        } => format!(
            "source {source} is stale: its {kinds} data is complete only until {}",
            until.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        GapCause::Stale {
            source,
            complete_until: None,
        } => format!(
            "source {source} has never been heard from, so its {kinds} data counts for nothing yet"
        ),
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
