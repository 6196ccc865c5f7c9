use chrono::{Duration, TimeZone};

use super::*;
use crate::domain::carrier::{Carrier, CarrierRegistry};
use crate::domain::source::{DEFAULT_MAX_LAG, RawScope, Source};

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

pub(crate) fn days_ago(days: i64) -> DateTime<Utc> {
    now() - Duration::days(days)
}

pub(crate) fn registry() -> CarrierRegistry {
    let c = |id: &str, name: &str| Carrier::new(id, name, 81, &[], &[]).unwrap();
    CarrierRegistry::new(vec![
        c("jp-docomo", "NTT docomo"),
        c("jp-softbank", "SoftBank"),
        c("jp-kddi", "KDDI"),
    ])
}

pub(crate) fn id(s: &str) -> CarrierId {
    s.parse().unwrap()
}

/// A live source heard from a minute ago, tracking for a year.
pub(crate) fn live(name: &str, scopes: &[(&str, &[&str], &[EventKind])]) -> Source {
    let raw: Vec<RawScope> = scopes
        .iter()
        .map(|(prefix, carriers, kinds)| RawScope {
            prefix: prefix.to_string(),
            carriers: carriers.iter().map(|c| c.to_string()).collect(),
            kinds: kinds.to_vec(),
        })
        .collect();
    let mut s = Source::new(
        name,
        Some(days_ago(365)),
        &raw,
        Some(DEFAULT_MAX_LAG),
        &registry(),
    )
    .unwrap();
    s.complete_until = Some(now() - Duration::minutes(1));
    s
}

pub(crate) fn port(at: DateTime<Utc>, from: &str, to: &str, event_id: &str) -> EventFact {
    EventFact {
        source: "mnp".parse().unwrap(),
        source_event_id: event_id.into(),
        kind: EventKind::Port,
        occurred_at: at,
        from_carrier: Some(id(from)),
        to_carrier: Some(id(to)),
    }
}

const PORTING: &[EventKind] = &[EventKind::Port];
const NOT_PORTS: &[EventKind] = &[
    EventKind::SimSwap,
    EventKind::Disconnect,
    EventKind::Reassign,
    EventKind::DeviceSwap,
];

fn porting_db_and_docomo_feed() -> SourceSet {
    SourceSet::new(vec![
        live("mnp", &[("81", &[], PORTING)]),
        live("docomo-feed", &[("81", &["jp-docomo"], NOT_PORTS)]),
    ])
}

fn coverage<'a>(
    sources: &'a SourceSet,
    holder: &'a CarrierId,
    history: &'a [EventFact],
) -> Coverage<'a> {
    Coverage::new(CoverageInput {
        digits: "819012345678",
        now: now(),
        range_holder: Some(holder),
        history,
        sources,
    })
}

/// The names of the sources that supply `question` from `from`, in the order given.
fn names(c: &Coverage<'_>, question: Question, from: DateTime<Utc>) -> Vec<String> {
    let mut named = NamedSources::default();
    let q = c.of(question, from, &mut named);
    let all = named.into_names(c.input.sources);
    q.source_indexes
        .iter()
        .map(|&i| all[i as usize].to_string())
        .collect()
}

#[test]
fn sources_supplying_several_questions_are_named_once_and_referred_to_by_position() {
    let sources = SourceSet::new(vec![
        live("docomo-feed", &[("81", &["jp-docomo"], NOT_PORTS)]),
        live("fcc-rnd", &[("81", &[], &[EventKind::Disconnect])]),
        live("mnp", &[("81", &[], PORTING)]),
    ]);
    let docomo = id("jp-docomo");
    let c = coverage(&sources, &docomo, &[]);
    let mut named = NamedSources::default();
    let sim = c.of(Question::SimSwap, days_ago(10), &mut named);
    let owner = c.of(Question::Ownership, days_ago(10), &mut named);
    let device = c.of(Question::DeviceSwap, days_ago(10), &mut named);
    let names: Vec<String> = named
        .into_names(&sources)
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, ["docomo-feed", "mnp", "fcc-rnd"]);
    assert_eq!(sim.source_indexes, [0, 1]);
    assert_eq!(owner.source_indexes, [0, 2]);
    assert_eq!(device.source_indexes, [0]);
}

#[test]
fn a_carrier_feed_and_a_porting_database_cover_that_carriers_subscribers() {
    let sources = porting_db_and_docomo_feed();
    let docomo = id("jp-docomo");
    let c = coverage(&sources, &docomo, &[]);
    let sim = c.of(
        Question::SimSwap,
        days_ago(10),
        &mut NamedSources::default(),
    );
    assert_eq!(sim.covered_since, Some(days_ago(365)));
    assert_eq!(
        names(&c, Question::SimSwap, days_ago(10)),
        ["docomo-feed", "mnp"]
    );
    assert_eq!(c.covered_since(Question::Ownership), Some(days_ago(365)));
    assert!(
        c.gaps(Question::SimSwap)
            .iter()
            .all(|g| g.at < days_ago(365))
    );
}

#[test]
fn another_carriers_subscriber_is_not_covered_and_the_gap_names_the_carrier() {
    let sources = porting_db_and_docomo_feed();
    let softbank = id("jp-softbank");
    let c = coverage(&sources, &softbank, &[]);
    assert_eq!(c.covered_since(Question::SimSwap), None);
    assert_eq!(c.covered_since(Question::Ownership), None);
    let gaps = c.gaps(Question::SimSwap);
    let kinds: Vec<EventKind> = gaps.iter().map(|g| g.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::SimSwap, EventKind::Reassign],
        "PORT is seen"
    );
    for gap in gaps {
        assert_eq!(gap.at, now());
        assert_eq!(
            gap.cause,
            GapCause::OtherCarriers {
                serving: Some(softbank.clone())
            }
        );
    }
    assert_eq!(
        c.of(
            Question::SimSwap,
            days_ago(10),
            &mut NamedSources::default()
        ),
        QuestionCoverage {
            question: Question::SimSwap,
            covered_since: None,
            source_indexes: vec![],
            gap: None,
        }
    );
}

#[test]
fn a_number_ported_away_is_covered_by_its_old_carriers_feed_only_until_the_port() {
    let sources = porting_db_and_docomo_feed();
    let docomo = id("jp-docomo");
    let ported = [port(days_ago(30), "jp-docomo", "jp-softbank", "p1")];
    let c = coverage(&sources, &docomo, &ported);
    assert_eq!(
        c.serving_at(days_ago(30)),
        Some(&docomo),
        "the donor at the port"
    );
    assert_eq!(
        c.serving_at(days_ago(30) + Duration::microseconds(1)),
        Some(&id("jp-softbank"))
    );
    assert_eq!(c.covered_since(Question::SimSwap), None);
    // Ported the other way, the feed covers from just after the port.
    let softbank = id("jp-softbank");
    let ported_in = [port(days_ago(30), "jp-softbank", "jp-docomo", "p1")];
    let c = coverage(&sources, &softbank, &ported_in);
    let since = days_ago(30) + Duration::microseconds(1);
    assert_eq!(c.covered_since(Question::SimSwap), Some(since));
    let gaps = c.gaps(Question::SimSwap);
    assert_eq!(gaps.len(), 2);
    assert!(gaps.iter().all(|g| g.at == days_ago(30)
        && g.cause
            == GapCause::OtherCarriers {
                serving: Some(softbank.clone())
            }));
}

#[test]
fn a_disconnect_database_answers_ownership_but_never_sim_swap() {
    let sources = SourceSet::new(vec![live(
        "fcc-rnd",
        &[("1", &[], &[EventKind::Disconnect])],
    )]);
    let c = Coverage::new(CoverageInput {
        digits: "12015550123",
        now: now(),
        range_holder: None,
        history: &[],
        sources: &sources,
    });
    assert_eq!(c.covered_since(Question::Ownership), Some(days_ago(365)));
    assert_eq!(c.covered_since(Question::SimSwap), None);
    assert_eq!(c.covered_since(Question::DeviceSwap), None);
    let causes: Vec<GapCause> = c
        .gaps(Question::SimSwap)
        .into_iter()
        .map(|g| g.cause)
        .collect();
    assert_eq!(causes, vec![GapCause::NoSource; 3]);
    assert!(c.touched());
}

#[test]
fn kinds_may_come_from_different_sources_and_coverage_starts_with_the_latest() {
    let mut late = live("swaps", &[("81", &[], &[EventKind::SimSwap])]);
    late.tracking_since = days_ago(10);
    let sources = SourceSet::new(vec![
        live(
            "mnp",
            &[("81", &[], &[EventKind::Port, EventKind::Reassign])],
        ),
        late,
    ]);
    let holder = id("jp-kddi");
    let c = coverage(&sources, &holder, &[]);
    assert_eq!(c.covered_since(Question::SimSwap), Some(days_ago(10)));
    let gaps = c.gaps(Question::SimSwap);
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].kind, EventKind::SimSwap);
    assert_eq!(
        gaps[0].cause,
        GapCause::NotYetTracking { from: days_ago(10) }
    );
}

#[test]
fn a_stale_feed_stops_covering_at_its_complete_until() {
    let mut feed = live("docomo-feed", &[("81", &[], &[])]);
    let until = now() - DEFAULT_MAX_LAG - Duration::seconds(1);
    feed.complete_until = Some(until);
    let sources = SourceSet::new(vec![feed]);
    let holder = id("jp-docomo");
    let c = coverage(&sources, &holder, &[]);
    assert_eq!(c.covered_since(Question::SimSwap), None);
    let gaps = c.gaps(Question::SimSwap);
    assert_eq!(gaps.len(), 3);
    assert_eq!(
        gaps[0].cause,
        GapCause::Stale {
            source: "docomo-feed".parse().unwrap(),
            complete_until: Some(until)
        }
    );
}

#[test]
fn a_file_source_is_bounded_by_its_cut_off_and_a_live_one_continues_it() {
    let mut file = live("daily", &[("81", &[], &[])]);
    file.max_lag = None;
    file.complete_until = Some(days_ago(1));
    let mut live_feed = live("live", &[("81", &[], &[])]);
    live_feed.tracking_since = days_ago(1) + Duration::microseconds(1);
    let holder = id("jp-docomo");
    let alone = SourceSet::new(vec![file.clone()]);
    assert_eq!(
        coverage(&alone, &holder, &[]).covered_since(Question::Ownership),
        None
    );
    // Adjacent stretches join into one run.
    let both = SourceSet::new(vec![file, live_feed]);
    let c = coverage(&both, &holder, &[]);
    assert_eq!(c.covered_since(Question::Ownership), Some(days_ago(365)));
    assert_eq!(
        names(&c, Question::Ownership, days_ago(400)),
        ["daily", "live"]
    );
}

#[test]
fn equal_time_ports_serve_the_later_one_in_the_fixed_order() {
    let sources = porting_db_and_docomo_feed();
    let holder = id("jp-kddi");
    let t = days_ago(5);
    // Same instant: ordered by source then id, so "b" is the newer port whatever the order.
    let history = [
        port(t, "jp-kddi", "jp-docomo", "b"),
        port(t, "jp-kddi", "jp-softbank", "a"),
    ];
    let c = coverage(&sources, &holder, &history);
    assert_eq!(c.serving_at(now()), Some(&id("jp-docomo")));
    assert_eq!(
        c.covered_since(Question::SimSwap),
        Some(t + Duration::microseconds(1))
    );
}

#[test]
fn a_number_no_scope_takes_in_is_untouched() {
    let sources = porting_db_and_docomo_feed();
    let c = Coverage::new(CoverageInput {
        digits: "447700900123",
        now: now(),
        range_holder: None,
        history: &[],
        sources: &sources,
    });
    assert!(!c.touched());
    assert_eq!(c.covered_since(Question::Ownership), None);
}

#[test]
fn the_sources_named_are_those_that_supply_the_period_asked_about() {
    let sources = SourceSet::new(vec![
        live("mnp", &[("81", &[], PORTING)]),
        live("docomo-feed", &[("81", &["jp-docomo"], NOT_PORTS)]),
        live("softbank-feed", &[("81", &["jp-softbank"], NOT_PORTS)]),
    ]);
    let docomo = id("jp-docomo");
    let ported = [port(days_ago(30), "jp-docomo", "jp-softbank", "p1")];
    let c = coverage(&sources, &docomo, &ported);
    assert_eq!(
        names(&c, Question::SimSwap, days_ago(10)),
        ["mnp", "softbank-feed"]
    );
    assert_eq!(
        names(&c, Question::SimSwap, days_ago(40)),
        ["docomo-feed", "mnp", "softbank-feed"]
    );
    assert_eq!(c.covered_since(Question::SimSwap), Some(days_ago(365)));
}

#[test]
fn coverage_stops_where_the_retention_purge_deleted_events() {
    let sources = porting_db_and_docomo_feed().retaining(Some(Duration::days(30)));
    let docomo = id("jp-docomo");
    let c = coverage(&sources, &docomo, &[]);
    assert_eq!(c.covered_since(Question::SimSwap), Some(days_ago(30)));
    assert_eq!(c.covered_since(Question::Ownership), Some(days_ago(30)));
    let gaps = c.gaps(Question::Ownership);
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].at, days_ago(30) - Duration::microseconds(1));
    assert_eq!(gaps[0].cause, GapCause::Purged { from: days_ago(30) });
    // A window inside the kept period names the same sources as without retention.
    assert_eq!(
        names(&c, Question::SimSwap, days_ago(10)),
        ["docomo-feed", "mnp"]
    );
}

#[test]
fn a_source_that_starts_inside_the_kept_period_is_named_as_not_yet_tracking() {
    let mut feed = live("feed", &[("81", &[], &[])]);
    feed.tracking_since = days_ago(5);
    let sources = SourceSet::new(vec![feed]).retaining(Some(Duration::days(30)));
    let holder = id("jp-docomo");
    let c = coverage(&sources, &holder, &[]);
    assert_eq!(c.covered_since(Question::SimSwap), Some(days_ago(5)));
    assert!(
        c.gaps(Question::SimSwap)
            .iter()
            .all(|g| g.cause == GapCause::NotYetTracking { from: days_ago(5) })
    );
}
