//! Every rule and boundary of SPEC §2.

use chrono::{NaiveDate, TimeZone};

use super::*;
use crate::domain::coverage;
use crate::domain::source::{DEFAULT_MAX_LAG, RawScope, Source};
use crate::domain::test_support::{self, carrier_id, carriers};
use crate::domain::upstream::{Question, UpstreamAnswer};

const NOW_Y: i32 = 2026;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(NOW_Y, 6, 10, 12, 0, 0).unwrap()
}

fn ts(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(NOW_Y, m, d, h, 0, 0).unwrap()
}

/// An event of the source `feed`, its id made of its kind and time.
fn ev(kind: EventKind, at: DateTime<Utc>) -> EventFact {
    EventFact {
        source: "feed".parse().unwrap(),
        source_event_id: format!("{kind}-{}", at.timestamp_micros()),
        kind,
        occurred_at: at,
        from_carrier: None,
        to_carrier: None,
    }
}

fn port(at: DateTime<Utc>, from: &str, to: &str) -> EventFact {
    EventFact {
        from_carrier: Some(carrier_id(from).clone()),
        to_carrier: Some(carrier_id(to).clone()),
        ..ev(EventKind::Port, at)
    }
}

fn name_of(carrier: &Option<CarrierRef>) -> Option<&str> {
    carrier.as_ref().map(|c| c.name.as_str())
}

/// The sources of a number covered since `since`, fresh now.
fn covered(since: Option<DateTime<Utc>>) -> &'static SourceSet {
    test_support::covered(since, now())
}

fn hours(h: u32) -> MaxAge {
    MaxAge::new(h, DEFAULT_MAX_LOOKBACK_HOURS).unwrap()
}

/// A mobile number of a known range, covered since long before any window.
fn input(history: &[EventFact]) -> CheckInput<'_> {
    CheckInput {
        now: now(),
        max_age: hours(240),
        owner_since: None,
        mobile: true,
        digits: "819012345678",
        original_carrier: Some(carrier_id("NTT Docomo")),
        carriers: carriers(),
        sources: covered(Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap())),
        history,
        upstream: &[],
    }
}

fn run(input: CheckInput<'_>) -> Decision {
    decide(&input, Policy::default())
}

fn codes(d: &Decision) -> Vec<ReasonCode> {
    d.reasons.iter().map(|r| r.code).collect()
}

fn window_start() -> DateTime<Utc> {
    now() - Duration::hours(240)
}

#[test]
fn quiet_covered_number_is_allowed_without_reasons() {
    let d = run(input(&[]));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.ownership, Ownership::NotEvaluated);
    assert_eq!(d.latest_sim_change, None);
    assert!(d.reasons.is_empty());
    assert_eq!(d.window_start, window_start());
    assert_eq!(d.window_end, now());
    assert_eq!(d.evaluated_at, now());
    assert_eq!(name_of(&d.original_carrier), Some("NTT Docomo"));
    assert_eq!(name_of(&d.current_carrier), Some("NTT Docomo"));
}

#[test]
fn sim_swap_exactly_at_window_start_is_inside() {
    let h = [ev(EventKind::SimSwap, window_start())];
    let d = run(input(&h));
    assert_eq!(d.sim_swap, SimSwap::Swapped);
    assert_eq!(d.verdict, Verdict::StepUp);
    assert_eq!(codes(&d), vec![ReasonCode::SimSwapped]);
    assert_eq!(d.reasons[0].event_kind, Some(EventKind::SimSwap));
    assert_eq!(d.reasons[0].occurred_at, Some(window_start()));
}

#[test]
fn sim_swap_just_before_window_start_is_outside() {
    let at = window_start() - Duration::microseconds(1);
    let h = [ev(EventKind::SimSwap, at)];
    let d = run(input(&h));
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.latest_sim_change, Some(at));
}

#[test]
fn max_age_bounds() {
    assert_eq!(MaxAge::new(0, 2400).unwrap().hours(), 240);
    assert_eq!(MaxAge::new(0, 100).unwrap().hours(), 100);
    assert_eq!(MaxAge::new(1, 2400).unwrap().hours(), 1);
    assert_eq!(MaxAge::new(2400, 2400).unwrap().hours(), 2400);
    let err = MaxAge::new(2401, 2400).unwrap_err();
    assert_eq!(err.field, Field::MaxAgeHours);
    assert_eq!(
        err.to_string(),
        "max_age_hours must be in 1..=2400, got 2401"
    );
}

#[test]
fn one_hour_window() {
    let inside = [ev(EventKind::SimSwap, now() - Duration::minutes(59))];
    let outside = [ev(EventKind::SimSwap, now() - Duration::minutes(61))];
    let mut i = input(&inside);
    i.max_age = hours(1);
    assert_eq!(run(i).sim_swap, SimSwap::Swapped);
    let mut o = input(&outside);
    o.max_age = hours(1);
    let d = run(o);
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.window_start, now() - Duration::hours(1));
}

#[test]
fn longest_window() {
    let inside = [ev(EventKind::SimSwap, now() - Duration::hours(2399))];
    let outside = [ev(EventKind::SimSwap, now() - Duration::hours(2401))];
    let mut i = input(&inside);
    i.max_age = hours(2400);
    assert_eq!(run(i).sim_swap, SimSwap::Swapped);
    let mut o = input(&outside);
    o.max_age = hours(2400);
    assert_eq!(run(o).sim_swap, SimSwap::NotSwapped);
}

#[test]
fn coverage_starting_inside_the_window_gives_unknown() {
    let mut i = input(&[]);
    i.sources = covered(Some(window_start() + Duration::seconds(1)));
    let d = run(i);
    assert_eq!(d.sim_swap, SimSwap::Unknown);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), vec![ReasonCode::NoData]);
    assert!(d.reasons[0].detail.starts_with("sim_swap:"));
    assert_eq!(d.covered_since, Some(window_start() + Duration::seconds(1)));
}

#[test]
fn coverage_starting_exactly_at_window_start_is_enough() {
    let mut i = input(&[]);
    i.sources = covered(Some(window_start()));
    assert_eq!(run(i).sim_swap, SimSwap::NotSwapped);
}

#[test]
fn on_unknown_policy_decides_unknown_answers() {
    let mut i = input(&[]);
    i.sources = covered(None);
    for on_unknown in [Verdict::Allow, Verdict::StepUp, Verdict::Block] {
        let d = decide(&i, Policy { on_unknown });
        assert_eq!(d.verdict, on_unknown);
        assert_eq!(codes(&d), vec![ReasonCode::NoData]);
    }
}

#[test]
fn owner_since_against_coverage() {
    let since = ts(1, 1, 0);
    let mut i = input(&[]);
    i.sources = covered(Some(since));

    i.owner_since = Some(OwnerSince::At(since - Duration::seconds(1)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unknown);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), vec![ReasonCode::NoData]);
    assert!(d.reasons[0].detail.starts_with("ownership:"));
    let blocking = decide(
        &i,
        Policy {
            on_unknown: Verdict::Block,
        },
    );
    assert_eq!(blocking.verdict, Verdict::Block);

    i.owner_since = Some(OwnerSince::At(since));
    assert_eq!(run(i).ownership, Ownership::Unchanged);

    i.owner_since = Some(OwnerSince::At(since + Duration::days(30)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unchanged);
    assert_eq!(d.verdict, Verdict::Allow);
}

#[test]
fn disconnect_after_owner_since_blocks_and_one_at_it_does_not() {
    let owner = ts(3, 1, 0);
    let after = [ev(EventKind::Disconnect, owner + Duration::microseconds(1))];
    let at = [ev(EventKind::Disconnect, owner)];
    let mut i = input(&after);
    i.owner_since = Some(OwnerSince::At(owner));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Changed);
    assert_eq!(d.verdict, Verdict::Block);
    assert_eq!(codes(&d), vec![ReasonCode::OwnerChanged]);

    let mut i = input(&at);
    i.owner_since = Some(OwnerSince::At(owner));
    assert_eq!(run(i).ownership, Ownership::Unchanged);
}

#[test]
fn date_only_owner_since_counts_a_disconnect_on_that_date() {
    let date = NaiveDate::from_ymd_opt(NOW_Y, 3, 1).unwrap();
    let owner = OwnerSince::on_date(date, &Utc).unwrap();
    for hour in [0, 12, 23] {
        let h = [ev(EventKind::Disconnect, ts(3, 1, hour))];
        let mut i = input(&h);
        i.owner_since = Some(owner);
        let d = run(i);
        assert_eq!(d.ownership, Ownership::Changed, "disconnect at {hour}:00");
        assert_eq!(d.verdict, Verdict::Block);
    }
    let before = [ev(EventKind::Disconnect, ts(2, 28, 23))];
    let mut i = input(&before);
    i.owner_since = Some(owner);
    assert_eq!(run(i).ownership, Ownership::Unchanged);
}

#[test]
fn date_only_owner_since_ignores_a_reassign_on_that_date() {
    let date = NaiveDate::from_ymd_opt(NOW_Y, 3, 1).unwrap();
    let owner = OwnerSince::on_date(date, &Utc).unwrap();
    let same_day = [ev(EventKind::Reassign, ts(3, 1, 23))];
    let mut i = input(&same_day);
    i.owner_since = Some(owner);
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unchanged);
    assert_eq!(d.verdict, Verdict::Allow);

    let next_day = [ev(EventKind::Reassign, ts(3, 2, 0))];
    let mut i = input(&next_day);
    i.owner_since = Some(owner);
    assert_eq!(run(i).ownership, Ownership::Changed);
}

#[test]
fn date_only_owner_since_follows_the_configured_zone() {
    // 2026-03-01 in Tokyo starts at 2026-02-28T15:00Z.
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let date = NaiveDate::from_ymd_opt(NOW_Y, 3, 1).unwrap();
    let owner = OwnerSince::on_date(date, &tokyo).unwrap();
    let h = [ev(EventKind::Disconnect, ts(2, 28, 16))];
    let mut i = input(&h);
    i.owner_since = Some(owner);
    assert_eq!(run(i).ownership, Ownership::Changed);
}

#[test]
fn worked_example_from_the_spec() {
    let h = [
        ev(EventKind::Reassign, ts(6, 1, 0)),
        ev(EventKind::Disconnect, ts(5, 10, 0)),
    ];
    let mut i = input(&h);
    i.owner_since = Some(OwnerSince::At(ts(3, 1, 0)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Changed);
    assert_eq!(d.sim_swap, SimSwap::Swapped); // 2026-06-01 is inside 240 h of 06-10
    assert_eq!(d.verdict, Verdict::Block);
    let reasons: Vec<_> = d
        .reasons
        .iter()
        .map(|r| (r.code, r.event_kind, r.occurred_at))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                ReasonCode::OwnerChanged,
                Some(EventKind::Disconnect),
                Some(ts(5, 10, 0))
            ),
            (
                ReasonCode::OwnerChanged,
                Some(EventKind::Reassign),
                Some(ts(6, 1, 0))
            ),
        ]
    );
}

#[test]
fn arrival_order_does_not_matter() {
    let events = vec![
        port(ts(1, 5, 0), "NTT Docomo", "KDDI"),
        ev(EventKind::SimSwap, ts(6, 5, 0)),
        port(ts(4, 5, 0), "KDDI", "Softbank"),
        ev(EventKind::Disconnect, ts(2, 1, 0)),
        ev(EventKind::Reassign, ts(2, 3, 0)),
    ];
    let mut reversed = events.clone();
    reversed.reverse();
    let mut rotated = events.clone();
    rotated.rotate_left(2);
    let baseline = {
        let mut i = input(&events);
        i.owner_since = Some(OwnerSince::At(ts(1, 1, 0)));
        run(i)
    };
    for order in [&reversed, &rotated] {
        let mut i = input(order);
        i.owner_since = Some(OwnerSince::At(ts(1, 1, 0)));
        assert_eq!(run(i), baseline);
    }
    assert_eq!(name_of(&baseline.current_carrier), Some("SoftBank"));
    assert_eq!(baseline.latest_sim_change, Some(ts(6, 5, 0)));
}

#[test]
fn several_ports() {
    let h = [
        port(ts(4, 1, 0), "KDDI", "Softbank"),
        port(ts(1, 1, 0), "NTT Docomo", "KDDI"),
        port(ts(5, 1, 0), "Softbank", "Rakuten Communications"),
    ];
    let mut i = input(&h);
    i.owner_since = Some(OwnerSince::At(ts(4, 15, 0)));
    let d = run(i);
    assert_eq!(d.port_count, 3);
    assert_eq!(d.last_port_at, Some(ts(5, 1, 0)));
    assert_eq!(name_of(&d.original_carrier), Some("NTT Docomo"));
    assert_eq!(name_of(&d.current_carrier), Some("Rakuten Communications"));
    assert!(d.ported_since_owner);
    assert_eq!(d.ownership, Ownership::Unchanged);
    // The newest port is outside the window: nothing to step up for.
    assert_eq!(d.verdict, Verdict::Allow);

    let mut i = input(&h);
    i.owner_since = Some(OwnerSince::At(ts(5, 2, 0)));
    assert!(!run(i).ported_since_owner);
    assert!(!run(input(&h)).ported_since_owner);
}

#[test]
fn port_inside_the_window_steps_up_with_both_reasons() {
    let h = [port(now() - Duration::hours(2), "NTT Docomo", "KDDI")];
    let d = run(input(&h));
    assert_eq!(d.verdict, Verdict::StepUp);
    assert_eq!(d.sim_swap, SimSwap::Swapped);
    assert_eq!(codes(&d), vec![ReasonCode::SimSwapped, ReasonCode::Ported]);
    assert_eq!(
        d.reasons[1].detail,
        "ported from NTT Docomo (jp-docomo) to KDDI (jp-kddi) inside the window"
    );
    assert_eq!(name_of(&d.current_carrier), Some("KDDI"));
}

#[test]
fn reassign_counts_as_a_sim_change() {
    let h = [ev(EventKind::Reassign, now() - Duration::hours(3))];
    let d = run(input(&h));
    assert_eq!(d.sim_swap, SimSwap::Swapped);
    assert_eq!(d.reasons[0].event_kind, Some(EventKind::Reassign));
}

#[test]
fn disconnect_alone_is_not_a_sim_change() {
    let h = [ev(EventKind::Disconnect, now() - Duration::hours(3))];
    let d = run(input(&h));
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.latest_sim_change, None);
    assert_eq!(d.verdict, Verdict::Allow);
}

#[test]
fn device_swap_alone_is_not_a_sim_swap() {
    let h = [ev(EventKind::DeviceSwap, now() - Duration::hours(1))];
    let d = run(input(&h));
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.latest_sim_change, None);
    assert_eq!(d.verdict, Verdict::Allow);

    let mut uncovered = input(&h);
    uncovered.sources = covered(None);
    assert_eq!(run(uncovered).sim_swap, SimSwap::Unknown);
}

#[test]
fn device_swaps_follow_the_sim_swap_rule_on_their_own_events() {
    let inside = now() - Duration::hours(5);
    let h = [
        ev(EventKind::DeviceSwap, now() - Duration::hours(300)),
        ev(EventKind::DeviceSwap, inside),
        ev(EventKind::SimSwap, now() - Duration::hours(2)),
    ];
    let d = run(input(&h));
    assert_eq!(d.device_swap, SimSwap::Swapped);
    assert_eq!(d.latest_device_change, Some(inside));
    assert_eq!(d.verdict, Verdict::StepUp, "decided by the SIM swap alone");

    let d = run(CheckInput {
        max_age: hours(4),
        ..input(&h)
    });
    assert_eq!(d.device_swap, SimSwap::NotSwapped);
    assert_eq!(d.latest_device_change, Some(inside));

    let sim_only = [ev(EventKind::SimSwap, now() - Duration::hours(2))];
    let d = run(input(&sim_only));
    assert_eq!(
        (d.device_swap, d.latest_device_change),
        (SimSwap::NotSwapped, None)
    );

    let mut late = input(&sim_only);
    late.sources = covered(Some(now() - Duration::hours(10)));
    assert_eq!(run(late).device_swap, SimSwap::Unknown);
}

#[test]
fn the_decision_says_whether_the_number_is_mobile() {
    assert!(run(input(&[])).mobile);
    let mut fixed = input(&[]);
    fixed.mobile = false;
    assert!(!run(fixed).mobile);
}

#[test]
fn ownership_change_outranks_a_swap() {
    let h = [
        ev(EventKind::SimSwap, now() - Duration::hours(1)),
        ev(EventKind::Disconnect, now() - Duration::hours(2)),
    ];
    let mut i = input(&h);
    i.owner_since = Some(OwnerSince::At(ts(1, 1, 0)));
    let d = run(i);
    assert_eq!(d.verdict, Verdict::Block);
    assert_eq!(d.sim_swap, SimSwap::Swapped);
    assert_eq!(codes(&d), vec![ReasonCode::OwnerChanged]);
}

#[test]
fn a_swap_outranks_unknown_even_when_unknown_blocks() {
    let h = [ev(EventKind::SimSwap, now() - Duration::hours(1))];
    let mut i = input(&h);
    i.sources = covered(None);
    i.owner_since = Some(OwnerSince::At(ts(1, 1, 0)));
    let d = decide(
        &i,
        Policy {
            on_unknown: Verdict::Block,
        },
    );
    assert_eq!(d.ownership, Ownership::Unknown);
    assert_eq!(d.verdict, Verdict::StepUp);
    assert_eq!(codes(&d), vec![ReasonCode::SimSwapped]);
}

#[test]
fn number_with_no_range_and_no_source_is_not_covered() {
    let mut i = input(&[]);
    i.sources = covered(None);
    i.original_carrier = None;
    let d = run(i);
    assert_eq!(d.sim_swap, SimSwap::Unknown);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), vec![ReasonCode::NotCovered]);
    assert_eq!(d.original_carrier, None);
    assert_eq!(d.current_carrier, None);
    assert_eq!(d.covered_since, None);
}

#[test]
fn a_range_without_a_source_is_no_data_not_not_covered() {
    let mut i = input(&[]);
    i.sources = covered(None);
    i.owner_since = Some(OwnerSince::At(ts(1, 1, 0)));
    let d = run(i);
    assert_eq!(codes(&d), vec![ReasonCode::NoData, ReasonCode::NoData]);
}

#[test]
fn non_mobile_numbers_carry_not_mobile() {
    let mut i = input(&[]);
    i.mobile = false;
    i.original_carrier = None;
    let d = run(i);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), vec![ReasonCode::NotMobile]);

    let mut uncovered = i;
    uncovered.sources = covered(None);
    assert_eq!(
        codes(&run(uncovered)),
        vec![ReasonCode::NotCovered, ReasonCode::NotMobile]
    );
}

#[test]
fn events_newer_than_now_still_count_as_inside_the_window() {
    // Ingest accepts up to five minutes of clock skew.
    let h = [ev(EventKind::SimSwap, now() + Duration::minutes(4))];
    assert_eq!(run(input(&h)).sim_swap, SimSwap::Swapped);
}

fn answer(question: Question, outcome: Result<bool, String>) -> UpstreamAnswer {
    UpstreamAnswer {
        provider: "op".into(),
        question,
        outcome,
        at: now() - Duration::minutes(3),
        cached: true,
    }
}

/// A mobile number no source covers.
fn uncovered<'a>(history: &'a [EventFact], upstream: &'a [UpstreamAnswer]) -> CheckInput<'a> {
    CheckInput {
        sources: covered(None),
        owner_since: Some(OwnerSince::At(ts(1, 1, 0))),
        upstream,
        ..input(history)
    }
}

#[test]
fn operator_answers_fill_in_what_local_data_cannot() {
    let answers = [
        answer(Question::SimSwap, Ok(false)),
        answer(Question::NumberRecycling, Ok(false)),
    ];
    let d = run(uncovered(&[], &answers));
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
    assert_eq!(d.ownership, Ownership::Unchanged);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), [ReasonCode::Upstream, ReasonCode::Upstream]);
    assert_eq!(d.reasons[0].occurred_at, Some(now() - Duration::minutes(3)));
    assert!(
        d.reasons[0].detail.contains("op"),
        "{}",
        d.reasons[0].detail
    );
    assert!(d.reasons[0].detail.contains("cache"));
    assert_eq!(d.upstream, answers);

    let answers = [answer(Question::SimSwap, Ok(true))];
    let d = run(CheckInput {
        owner_since: None,
        ..uncovered(&[], &answers)
    });
    assert_eq!(d.sim_swap, SimSwap::Swapped);
    assert_eq!(d.verdict, Verdict::StepUp);
    assert_eq!(codes(&d), [ReasonCode::SimSwapped, ReasonCode::Upstream]);

    let answers = [
        answer(Question::SimSwap, Ok(false)),
        answer(Question::NumberRecycling, Ok(true)),
    ];
    let d = run(uncovered(&[], &answers));
    assert_eq!(d.ownership, Ownership::Changed);
    assert_eq!(d.verdict, Verdict::Block);
    assert_eq!(codes(&d)[0], ReasonCode::OwnerChanged);
}

#[test]
fn local_data_wins_over_operator_answers() {
    // Covered: the operator's "swapped" is not used.
    let answers = [
        answer(Question::SimSwap, Ok(true)),
        answer(Question::NumberRecycling, Ok(true)),
    ];
    let d = run(CheckInput {
        owner_since: Some(OwnerSince::At(ts(1, 1, 0))),
        upstream: &answers,
        ..input(&[])
    });
    assert_eq!(
        (d.sim_swap, d.ownership),
        (SimSwap::NotSwapped, Ownership::Unchanged)
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.reasons.is_empty(), "{:?}", d.reasons);
    // A known swap inside the window stands whatever the operator said.
    let h = [ev(EventKind::SimSwap, now() - Duration::hours(2))];
    let answers = [answer(Question::SimSwap, Ok(false))];
    let d = run(uncovered(&h, &answers));
    assert_eq!(d.sim_swap, SimSwap::Swapped);
}

#[test]
fn an_operator_that_did_not_answer_falls_back_to_on_unknown() {
    let answers = [
        answer(Question::SimSwap, Err("timed out after 800 ms".into())),
        answer(Question::NumberRecycling, Ok(false)),
    ];
    let d = decide(
        &uncovered(&[], &answers),
        Policy {
            on_unknown: Verdict::StepUp,
        },
    );
    assert_eq!(d.sim_swap, SimSwap::Unknown, "never a guessed not-swapped");
    assert_eq!(d.ownership, Ownership::Unchanged);
    assert_eq!(d.verdict, Verdict::StepUp);
    assert_eq!(
        codes(&d),
        [ReasonCode::UpstreamUnavailable, ReasonCode::Upstream]
    );
    assert!(
        d.reasons[0].detail.contains("timed out"),
        "{}",
        d.reasons[0].detail
    );
}

/// `ev` of another source, with its own id.
fn from_source(source: &str, id: &str, e: EventFact) -> EventFact {
    EventFact {
        source: source.parse().unwrap(),
        source_event_id: id.into(),
        ..e
    }
}

#[test]
fn two_ports_at_the_same_instant_are_ordered_by_source_then_id_not_by_arrival() {
    let at = ts(6, 1, 9);
    let to_kddi = from_source("mnp-db", "p-1", port(at, "NTT Docomo", "KDDI"));
    let to_softbank = from_source("mnp-db", "p-2", port(at, "NTT Docomo", "SoftBank"));
    let from_later_source = from_source("z-feed", "a", port(at, "NTT Docomo", "Rakuten"));
    for history in [
        vec![to_kddi.clone(), to_softbank.clone()],
        vec![to_softbank.clone(), to_kddi.clone()],
    ] {
        let d = run(input(&history));
        assert_eq!(
            name_of(&d.current_carrier),
            Some("SoftBank"),
            "p-2 after p-1"
        );
        assert_eq!(d.port_count, 2);
    }
    let history = [from_later_source, to_softbank, to_kddi];
    assert_eq!(
        name_of(&run(input(&history)).current_carrier),
        Some("Rakuten Communications"),
        "source z-feed after mnp-db"
    );
}

#[test]
fn at_the_same_instant_ownership_ends_before_a_new_one_and_a_port_before_a_sim_swap() {
    let at = ts(6, 1, 9);
    // Fed in reverse, and from sources whose names would order them the other way.
    let history = [
        from_source("a", "1", ev(EventKind::SimSwap, at)),
        from_source("b", "1", port(at, "NTT Docomo", "KDDI")),
        from_source("c", "1", ev(EventKind::Reassign, at)),
        from_source("d", "1", ev(EventKind::Disconnect, at)),
    ];
    let mut i = input(&history);
    i.owner_since = Some(OwnerSince::At(ts(3, 1, 0)));
    let d = run(i);
    let owner_changes: Vec<_> = d
        .reasons
        .iter()
        .filter(|r| r.code == ReasonCode::OwnerChanged)
        .map(|r| r.event_kind)
        .collect();
    assert_eq!(
        owner_changes,
        [Some(EventKind::Disconnect), Some(EventKind::Reassign)]
    );
    // Without owner_since the verdict is STEP_UP, with the newest SIM change as its reason.
    let d = run(input(&history));
    let swapped = d
        .reasons
        .iter()
        .find(|r| r.code == ReasonCode::SimSwapped)
        .expect("a SIM change in the window");
    assert_eq!(
        swapped.event_kind,
        Some(EventKind::SimSwap),
        "the SIM swap is the newest SIM change"
    );
}

proptest::proptest! {
    /// Arrival order never decides: any order of the same history gives the same answer.
    /// Times are drawn from a few instants so that many events share one.
    #[test]
    fn any_order_of_a_history_gives_the_same_decision(
        events in proptest::collection::vec((0usize..5, 0u32..3, 0usize..3, 0u8..4), 0..12),
        owner_day in 1u32..28,
        seed in proptest::num::u64::ANY,
    ) {
        let carriers = ["NTT Docomo", "KDDI", "SoftBank", "Rakuten"];
        let history: Vec<EventFact> = events
            .iter()
            .enumerate()
            .map(|(n, &(kind, instant, source, to))| {
                let kind = EventKind::ALL[kind];
                let at = ts(5, 1 + instant * 10, 0);
                let e = if kind == EventKind::Port {
                    port(at, "NTT Docomo", carriers[usize::from(to)])
                } else {
                    ev(kind, at)
                };
                from_source(["a", "b", "c"][source], &format!("e{n}"), e)
            })
            .collect();
        let mut shuffled = history.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let owner = Some(OwnerSince::At(ts(5, owner_day, 0)));
        let mut a = input(&history);
        a.owner_since = owner;
        let mut b = input(&shuffled);
        b.owner_since = owner;
        proptest::prop_assert_eq!(run(a), run(b));
    }
}

/// A source drawn from small choices: prefix, carriers, kinds, start and freshness.
fn arbitrary_source(
    n: usize,
    (prefix, carrier_mask, kind_mask, start, fresh): (usize, u8, u8, u32, u8),
) -> Source {
    let names = ["NTT Docomo", "KDDI", "SoftBank", "Rakuten"];
    let scope = RawScope {
        prefix: ["81", "8190", "44"][prefix].to_string(),
        carriers: (0..4)
            .filter(|b| carrier_mask & (1 << b) != 0)
            .map(|b| names[b].to_string())
            .collect(),
        kinds: (0..5)
            .filter(|b| kind_mask & (1 << b) != 0)
            .map(|b| EventKind::ALL[b])
            .collect(),
    };
    let live = fresh != 2;
    let mut s = Source::new(
        &format!("s{n}"),
        Some(ts(1 + start, 1, 0)),
        &[scope],
        live.then_some(DEFAULT_MAX_LAG),
        carriers(),
    )
    .unwrap();
    // Fresh, stale since May, or a file complete until June 1.
    s.complete_until = Some([now(), ts(5, 1, 0), ts(6, 1, 0)][usize::from(fresh)]);
    s
}

proptest::proptest! {
    /// More coverage only ever answers more: adding a source turns UNKNOWN into a
    /// definite answer or leaves it, and never changes a definite answer.
    #[test]
    fn a_wider_source_never_changes_a_definite_answer(
        events in proptest::collection::vec((0usize..5, 0u32..8, 0u8..4), 0..8),
        sources in proptest::collection::vec((0usize..3, 0u8..16, 0u8..32, 0u32..6, 0u8..3), 0..4),
        added in (0usize..3, 0u8..16, 0u8..32, 0u32..6, 0u8..3),
        holder in 0usize..4,
        owner_month in 1u32..7,
        max_age in 1u32..2400,
    ) {
        let names = ["NTT Docomo", "KDDI", "SoftBank", "Rakuten"];
        let history: Vec<EventFact> = events
            .iter()
            .enumerate()
            .map(|(n, &(kind, day, to))| {
                let at = ts(5, 1 + day * 4, 0);
                let kind = EventKind::ALL[kind];
                let e = if kind == EventKind::Port {
                    port(at, names[holder], names[usize::from(to)])
                } else {
                    ev(kind, at)
                };
                from_source("feed", &format!("e{n}"), e)
            })
            .collect();
        let before: Vec<Source> =
            sources.iter().enumerate().map(|(n, &s)| arbitrary_source(n, s)).collect();
        let mut after = before.clone();
        after.push(arbitrary_source(99, added));
        let before = SourceSet::new(before);
        let after = SourceSet::new(after);
        let decide_with = |sources: &SourceSet| {
            let mut i = input(&history);
            i.sources = sources;
            i.original_carrier = Some(carrier_id(names[holder]));
            i.owner_since = Some(OwnerSince::At(ts(owner_month, 1, 0)));
            i.max_age = hours(max_age);
            run(i)
        };
        let (a, b) = (decide_with(&before), decide_with(&after));
        for (x, y) in [(a.sim_swap, b.sim_swap), (a.device_swap, b.device_swap)] {
            proptest::prop_assert!(x == SimSwap::Unknown || x == y, "{:?} became {:?}", x, y);
        }
        proptest::prop_assert!(
            a.ownership == Ownership::Unknown || a.ownership == b.ownership,
            "{:?} became {:?}", a.ownership, b.ownership
        );
    }
}

/// A porting database (all of +81, PORT) and docomo's own feed (its subscribers, the
/// other kinds), both heard from a minute ago, tracking since 2025.
fn porting_db_and_docomo_feed() -> &'static SourceSet {
    let source = |name: &str, serving: &[&str], kinds: &[EventKind]| {
        let scope = RawScope {
            prefix: "81".into(),
            carriers: serving.iter().map(|c| c.to_string()).collect(),
            kinds: kinds.to_vec(),
        };
        let since = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let mut s = Source::new(
            name,
            Some(since),
            &[scope],
            Some(DEFAULT_MAX_LAG),
            carriers(),
        )
        .unwrap();
        s.complete_until = Some(now() - Duration::minutes(1));
        s
    };
    let others = [
        EventKind::SimSwap,
        EventKind::Disconnect,
        EventKind::Reassign,
        EventKind::DeviceSwap,
    ];
    Box::leak(Box::new(SourceSet::new(vec![
        source("mnp-db", &[], &[EventKind::Port]),
        source("docomo-feed", &["jp-docomo"], &others),
    ])))
}

#[test]
fn a_carrier_feed_answers_for_its_subscribers_and_names_the_gap_for_others() {
    let mut docomo = input(&[]);
    docomo.sources = porting_db_and_docomo_feed();
    docomo.owner_since = Some(OwnerSince::At(ts(3, 1, 0)));
    let d = run(docomo);
    assert_eq!(
        (d.sim_swap, d.ownership),
        (SimSwap::NotSwapped, Ownership::Unchanged)
    );
    assert!(d.reasons.is_empty());
    let sim = d.coverage_of(coverage::Question::SimSwap).unwrap();
    let sources_of = |c: &coverage::QuestionCoverage| -> Vec<&str> {
        c.source_indexes
            .iter()
            .map(|&i| d.sources[i as usize].as_str())
            .collect()
    };
    let names = sources_of(sim);
    assert_eq!(names, ["docomo-feed", "mnp-db"]);
    let owner = d.coverage_of(coverage::Question::Ownership).unwrap();
    assert_eq!(sources_of(owner), ["docomo-feed"]);
    let all: Vec<&str> = d.sources.iter().map(|s| s.as_str()).collect();
    assert_eq!(all, ["docomo-feed", "mnp-db"], "each source named once");

    let mut softbank = docomo;
    softbank.original_carrier = Some(carrier_id("SoftBank"));
    let d = run(softbank);
    assert_eq!(
        (d.sim_swap, d.ownership),
        (SimSwap::Unknown, Ownership::Unknown)
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(codes(&d), [ReasonCode::NoData, ReasonCode::NoData]);
    let detail = &d.reasons[0].detail;
    assert!(
        detail.starts_with(
            "sim_swap: no source reports SIM_SWAP or REASSIGN for subscribers of SoftBank (jp-softbank)"
        ),
        "{detail}"
    );
    assert!(detail.contains("REASSIGN"), "{detail}");
    assert!(!detail.contains("PORT for"), "ports are seen: {detail}");
    let gap = d
        .coverage_of(coverage::Question::DeviceSwap)
        .unwrap()
        .gap
        .as_deref();
    assert!(gap.is_some_and(|g| g.contains("DEVICE_SWAP")), "{gap:?}");
}

#[test]
fn a_stale_feed_gives_feed_stale_naming_the_source_and_its_complete_until() {
    let until = now() - Duration::hours(2);
    let mut i = input(&[]);
    i.sources = test_support::covered(Some(ts(1, 1, 0)), until);
    let d = run(i);
    assert_eq!(d.sim_swap, SimSwap::Unknown);
    assert_eq!(codes(&d), [ReasonCode::FeedStale]);
    assert_eq!(d.reasons[0].occurred_at, Some(until));
    assert!(
        d.reasons[0].detail.contains("source feed is stale"),
        "{}",
        d.reasons[0].detail
    );
    // A swap the stale feed did deliver still counts.
    let h = [ev(EventKind::SimSwap, until - Duration::hours(1))];
    let mut i = input(&h);
    i.sources = test_support::covered(Some(ts(1, 1, 0)), until);
    assert_eq!(run(i).sim_swap, SimSwap::Swapped);
}

#[test]
fn an_owner_since_before_coverage_names_when_coverage_starts() {
    let mut i = input(&[]);
    i.sources = covered(Some(ts(4, 1, 0)));
    i.owner_since = Some(OwnerSince::At(ts(3, 1, 0)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unknown);
    let detail = &d.reasons[0].detail;
    assert!(
        detail.starts_with(
            "ownership: no source reports DISCONNECT before 2026-04-01T00:00:00Z, after owner_since"
        ),
        "{detail}"
    );
}

#[test]
fn an_owner_since_older_than_the_retention_period_is_unknown_not_unchanged() {
    // The purge may have deleted a DISCONNECT before the kept period: "unchanged" since
    // an earlier owner_since would be a claim about evidence numguard no longer has.
    let retained: &'static SourceSet = Box::leak(Box::new(
        covered(Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()))
            .clone()
            .retaining(Some(Duration::days(30))),
    ));
    let mut i = input(&[]);
    i.sources = retained;
    i.owner_since = Some(OwnerSince::At(now() - Duration::days(31)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unknown);
    assert_eq!(codes(&d), vec![ReasonCode::NoData]);
    assert!(
        d.reasons[0]
            .detail
            .contains("no longer kept (retention period)"),
        "{}",
        d.reasons[0].detail
    );
    // Evidence still held counts, even from before the kept period.
    let old_disconnect = [ev(
        EventKind::Disconnect,
        now() - Duration::days(31) + Duration::hours(1),
    )];
    let mut i = input(&old_disconnect);
    i.sources = retained;
    i.owner_since = Some(OwnerSince::At(now() - Duration::days(31)));
    assert_eq!(run(i).ownership, Ownership::Changed);
    // Inside the kept period the answer is what it was.
    let mut i = input(&[]);
    i.sources = retained;
    i.owner_since = Some(OwnerSince::At(now() - Duration::days(29)));
    let d = run(i);
    assert_eq!(d.ownership, Ownership::Unchanged);
    assert_eq!(d.sim_swap, SimSwap::NotSwapped);
}
