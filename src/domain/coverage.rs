//! What the sources can see of one number (SPEC §1 "sees", §2 "covered"): the serving
//! carrier instant by instant, which kinds each source reports while it serves, how far
//! each source's data is complete, and so from when each question can be answered and, where
//! it cannot, why. Pure: the history, the sources and `now` in; intervals out.
//!
//! Instants are whole microseconds (every input instant is cut to them), so an interval is
//! a closed range of integers and "just after t" is `t + 1`.

use chrono::{DateTime, Utc};

use super::carrier::CarrierId;
use super::event::{EventFact, EventKind};
use super::source::{ScopeEntry, SourceName, SourceSet};

/// A question a check answers, each needing its own kinds to be seen (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Question {
    /// Needs `SIM_SWAP`, `PORT` and `REASSIGN`.
    SimSwap,
    /// Needs `DISCONNECT`.
    Ownership,
    /// Needs `DEVICE_SWAP`.
    DeviceSwap,
}

impl Question {
    /// Every question, in the order answers list them.
    pub const ALL: [Question; 3] = [Question::SimSwap, Question::Ownership, Question::DeviceSwap];

    /// The event kinds a source must report for this question to be answered.
    pub fn needs(self) -> &'static [EventKind] {
        match self {
            Question::SimSwap => &[EventKind::SimSwap, EventKind::Port, EventKind::Reassign],
            Question::Ownership => &[EventKind::Disconnect],
            Question::DeviceSwap => &[EventKind::DeviceSwap],
        }
    }

    /// The field of the answer it fills.
    pub fn as_str(self) -> &'static str {
        match self {
            Question::SimSwap => "sim_swap",
            Question::Ownership => "ownership",
            Question::DeviceSwap => "device_swap",
        }
    }
}

/// What coverage looks at for one number.
#[derive(Debug, Clone, Copy)]
pub struct CoverageInput<'a> {
    /// The number, E.164 without `+`.
    pub digits: &'a str,
    /// The instant the answer is for.
    pub now: DateTime<Utc>,
    /// The range holder.
    pub range_holder: Option<&'a CarrierId>,
    /// The number's events, in any order; its ports make the serving-carrier timeline.
    pub history: &'a [EventFact],
    /// Every source, with its scopes and freshness.
    pub sources: &'a SourceSet,
}

/// One question's coverage, as answers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionCoverage {
    /// The question covered.
    pub question: Question,
    /// The earliest instant from which the question is covered at every instant up to
    /// now; `None` when it is not covered now.
    pub covered_since: Option<DateTime<Utc>>,
    /// The sources that supply its kinds for the period asked about (from the later of
    /// `covered_since` and the instant the question needs, to now), as positions in the
    /// answer's [`NamedSources`].
    pub source_indexes: Vec<u32>,
    /// When the question's answer is UNKNOWN, why: the gap in coverage, named.
    pub gap: Option<String>,
}

/// The sources one answer names, each once, in the order questions first name them.
///
/// Questions refer to them by position, as the wire answer does: a source that supplies
/// three questions is named once, not copied into each (each copy was a reference count
/// that every core bumped on every check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedSources {
    /// Positions in the source set, in order of first mention.
    positions: Vec<u32>,
}

impl NamedSources {
    /// The answer's position of the source at `position` in the source set, naming it if
    /// it is new.
    fn index_of(&mut self, position: u32) -> u32 {
        match self.positions.iter().position(|&p| p == position) {
            // Fewer names than sources in the set, whose positions are u32.
            Some(at) => at as u32,
            None => {
                self.positions.push(position);
                (self.positions.len() - 1) as u32
            }
        }
    }

    /// The names, in order of first mention, from the source set the positions are of.
    pub fn into_names(self, set: &SourceSet) -> Vec<SourceName> {
        self.positions
            .iter()
            .filter_map(|&p| set.at(p as usize))
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Why one needed kind is not seen at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The kind not seen.
    pub kind: EventKind,
    /// The instant it is not seen at.
    pub at: DateTime<Utc>,
    /// Why not.
    pub cause: GapCause,
}

/// Why a kind is not seen at an instant, as a `NO_DATA` or `FEED_STALE` detail names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapCause {
    /// No source reports the kind for numbers under this number's prefixes.
    NoSource,
    /// Sources report it only for other carriers' subscribers; `serving` served it then.
    OtherCarriers {
        /// The carrier serving the number then, if known.
        serving: Option<CarrierId>,
    },
    /// The sources that would see it start tracking only at `from`.
    NotYetTracking {
        /// The earliest `tracking_since` among them.
        from: DateTime<Utc>,
    },
    /// The events before `from` are no longer kept: the retention purge deleted them.
    Purged {
        /// The earliest instant whose events are kept.
        from: DateTime<Utc>,
    },
    /// A source that would see it has data only up to `complete_until` (`None`: it was
    /// never heard from).
    Stale {
        /// The stale source.
        source: SourceName,
        /// Where its data ends.
        complete_until: Option<DateTime<Utc>>,
    },
}

/// Who served a number when: `carriers[i]` from `starts[i]` on (SPEC §1: the `to_carrier`
/// of the newest `PORT` strictly before the instant, else the range holder).
#[derive(Debug, Clone)]
struct Timeline<'a> {
    starts: Vec<i64>,
    carriers: Vec<Option<&'a CarrierId>>,
}

impl<'a> Timeline<'a> {
    fn new(holder: Option<&'a CarrierId>, history: &'a [EventFact]) -> Timeline<'a> {
        let mut ports: Vec<&EventFact> = history
            .iter()
            .filter(|e| e.kind == EventKind::Port)
            .collect();
        ports.sort_by(|a, b| a.chronological(b));
        let mut timeline = Timeline {
            starts: Vec::with_capacity(ports.len() + 1),
            carriers: Vec::with_capacity(ports.len() + 1),
        };
        timeline.starts.push(i64::MIN);
        timeline.carriers.push(holder);
        for port in ports {
            let start = micros(port.occurred_at).saturating_add(1);
            let carrier = port.to_carrier.as_ref();
            if timeline.starts.last() == Some(&start) {
                // Equal times: the later port in the fixed order wins.
                if let Some(last) = timeline.carriers.last_mut() {
                    *last = carrier;
                }
            } else {
                timeline.starts.push(start);
                timeline.carriers.push(carrier);
            }
        }
        timeline.join_repeats();
        timeline
    }

    /// Joins neighbouring stretches served by the same carrier (a port to the carrier
    /// already serving, as when two feeds report one port), so coverage cuts
    /// the number's time no finer than a change of carrier.
    fn join_repeats(&mut self) {
        let mut i = 1;
        while i < self.starts.len() {
            if self.carriers[i] == self.carriers[i - 1] {
                self.starts.remove(i);
                self.carriers.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn serving_at(&self, t: i64) -> Option<&'a CarrierId> {
        let i = self.starts.partition_point(|&s| s <= t).saturating_sub(1);
        self.carriers.get(i).copied().flatten()
    }

    /// Each stretch as `(first, last, carrier)`.
    fn segments(&self) -> impl Iterator<Item = (i64, i64, Option<&'a CarrierId>)> + '_ {
        self.starts.iter().enumerate().map(|(i, &start)| {
            let last = self.starts.get(i + 1).map_or(i64::MAX, |next| next - 1);
            (start, last, self.carriers[i])
        })
    }
}

/// Coverage of one number as of `now`: the stretches in which sources see kinds of events
/// on it.
#[derive(Debug, Clone)]
pub struct Coverage<'a> {
    input: CoverageInput<'a>,
    timeline: Timeline<'a>,
    now: i64,
    /// Who sees which kinds when, sorted by start.
    stretches: Vec<Stretch>,
    /// Per kind (in `EventKind::ALL` order): the start of the covered run that reaches now.
    runs: [Option<i64>; 5],
    /// Some source's prefix takes in the number.
    touched: bool,
}

/// A stretch of instants in which one source sees some kinds on the number.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    first: i64,
    last: i64,
    /// [`EventKind::bit`]s.
    kinds: u8,
    /// The source's position in the (name-ordered) source set.
    source: usize,
}

impl<'a> Coverage<'a> {
    /// The serving-carrier timeline and per-kind stretches of one number.
    pub fn new(input: CoverageInput<'a>) -> Coverage<'a> {
        let timeline = Timeline::new(input.range_holder, input.history);
        let now = micros(input.now);
        let (mut stretches, touched) = stretches(&input, &timeline);
        stretches.sort_unstable_by_key(|s| (s.first, s.last));
        let runs = EventKind::ALL.map(|kind| run_reaching(&stretches, kind.bit(), now));
        Coverage {
            input,
            timeline,
            now,
            stretches,
            runs,
            touched,
        }
    }

    /// Whether any source's prefix takes in the number at all.
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// The carrier serving the number at `t`.
    pub fn serving_at(&self, t: DateTime<Utc>) -> Option<&'a CarrierId> {
        self.timeline.serving_at(micros(t))
    }

    fn covered_since_micros(&self, question: Question) -> Option<i64> {
        question
            .needs()
            .iter()
            .map(|&k| self.runs[index(k)])
            .try_fold(i64::MIN, |latest, run| run.map(|r| latest.max(r)))
    }

    /// From when `question` is covered through now.
    pub fn covered_since(&self, question: Question) -> Option<DateTime<Utc>> {
        self.covered_since_micros(question).map(instant)
    }

    /// The question's coverage, with the sources that supply it from `from` (the instant
    /// the question needs: the window start, or `owner_since`) to now, named in `named`.
    pub fn of(
        &self,
        question: Question,
        from: DateTime<Utc>,
        named: &mut NamedSources,
    ) -> QuestionCoverage {
        let since = self.covered_since_micros(question);
        let needs = question.needs().iter().fold(0, |bits, k| bits | k.bit());
        // Sized up front: grown one push at a time it reallocated on every check.
        let mut source_indexes: Vec<u32> = Vec::with_capacity(self.stretches.len());
        if let Some(since) = since {
            let from = since.max(micros(from));
            source_indexes.extend(
                self.stretches
                    .iter()
                    .filter(|s| s.kinds & needs != 0 && s.last >= from && s.first <= self.now)
                    .filter_map(|s| u32::try_from(s.source).ok()),
            );
        }
        source_indexes.sort_unstable();
        source_indexes.dedup();
        // From positions in the source set to positions in the answer's list of names.
        for i in &mut source_indexes {
            *i = named.index_of(*i);
        }
        QuestionCoverage {
            question,
            covered_since: since.map(instant),
            source_indexes,
            gap: None,
        }
    }

    /// Why `question` is not covered further back: for each needed kind not seen at the
    /// latest instant that is uncovered (now, when it is not covered now), the cause.
    pub fn gaps(&self, question: Question) -> Vec<Gap> {
        let at = match self.covered_since_micros(question) {
            Some(since) => since.saturating_sub(1),
            None => self.now,
        };
        question
            .needs()
            .iter()
            .filter(|&&k| self.runs[index(k)].is_none_or(|run| run > at))
            .map(|&kind| Gap {
                kind,
                at: instant(at),
                cause: self.cause(kind, at),
            })
            .collect()
    }

    fn cause(&self, kind: EventKind, at: i64) -> GapCause {
        let digits = self.input.digits;
        let now = self.input.now;
        let reporting: Vec<_> = self
            .input
            .sources
            .iter()
            .flat_map(|s| s.scopes.iter().map(move |scope| (s, scope)))
            .filter(|(_, scope)| scope.reports(digits, kind))
            .collect();
        if reporting.is_empty() {
            return GapCause::NoSource;
        }
        let serving = self.timeline.serving_at(at);
        let seeing: Vec<_> = reporting
            .into_iter()
            .filter(|(_, scope)| scope.sees_carrier(serving))
            .map(|(s, _)| s)
            .collect();
        if seeing.is_empty() {
            return GapCause::OtherCarriers {
                serving: serving.cloned(),
            };
        }
        if let Some(kept) = self.input.sources.kept_since(self.now)
            && at < kept
            && seeing.iter().any(|s| micros(s.tracking_since) <= at)
        {
            return GapCause::Purged {
                from: instant(kept),
            };
        }
        let stale = seeing
            .iter()
            .filter(|s| micros(s.tracking_since) <= at)
            .filter(|s| s.complete_to(now).is_none_or(|end| micros(end) < at))
            .max_by_key(|s| s.complete_until);
        if let Some(s) = stale {
            return GapCause::Stale {
                source: s.name.clone(),
                complete_until: s.complete_until,
            };
        }
        match seeing
            .iter()
            .map(|s| s.tracking_since)
            .filter(|&t| micros(t) > at)
            .min()
        {
            Some(from) => GapCause::NotYetTracking { from },
            None => GapCause::NoSource,
        }
    }
}

/// Every stretch in which some source sees some kinds on the number, and whether any
/// source's prefix takes the number in at all.
fn stretches(input: &CoverageInput<'_>, timeline: &Timeline<'_>) -> (Vec<Stretch>, bool) {
    let now = micros(input.now);
    let sources = input.sources;
    let mut stretches = Vec::with_capacity(16);
    let mut touched = false;
    let mut add = |entry: &ScopeEntry, from: i64, to: i64| {
        if let Some((first, last)) = sources.complete_stretch(entry.source, now) {
            let (first, last) = (first.max(from), last.min(to));
            if first <= last {
                stretches.push(Stretch {
                    first,
                    last,
                    kinds: entry.kinds,
                    source: entry.source,
                });
            }
        }
    };
    for scopes in sources.scopes_taking_in(input.digits) {
        touched = true;
        for entry in &scopes.any_carrier {
            add(entry, i64::MIN, i64::MAX);
        }
        for (from, to, carrier) in timeline.segments() {
            for entry in scopes.of_carrier(carrier) {
                add(entry, from, to);
            }
        }
    }
    (stretches, touched)
}

/// The first instant of the unbroken stretch of `kind`'s stretches (sorted by start) that
/// contains `now`.
fn run_reaching(stretches: &[Stretch], kind: u8, now: i64) -> Option<i64> {
    let mut run: Option<(i64, i64)> = None;
    for &Stretch { first, last, .. } in stretches.iter().filter(|s| s.kinds & kind != 0) {
        run = match run {
            Some((start, end)) if first <= end.saturating_add(1) => Some((start, end.max(last))),
            Some((start, end)) if start <= now && now <= end => return Some(start),
            _ => Some((first, last)),
        };
    }
    run.filter(|&(start, end)| start <= now && now <= end)
        .map(|(start, _)| start)
}

fn index(kind: EventKind) -> usize {
    match kind {
        EventKind::SimSwap => 0,
        EventKind::Port => 1,
        EventKind::Disconnect => 2,
        EventKind::Reassign => 3,
        EventKind::DeviceSwap => 4,
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn instant(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
#[path = "coverage_tests.rs"]
mod tests;
