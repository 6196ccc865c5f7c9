//! CAMARA's questions (SIM Swap v2, Device Swap v1, Number Recycling v0.2, KYC Tenure
//! v0.2) answered from a [`Decision`]. CAMARA's answers are booleans or dates with no "unknown"; where numguard's
//! answer is UNKNOWN the question is refused with the reason, never answered with a
//! guessed `false`.

use chrono::{DateTime, Utc};

use super::coverage;
use super::decision::{Decision, MaxAge, Ownership, SimSwap};
use super::owner_since::OwnerSince;
use super::upstream::Question;

/// CAMARA's `maxAge` bounds, whatever the server allows.
pub const MAX_AGE_RANGE: std::ops::RangeInclusive<i64> = 1..=2400;
/// The `maxAge` a CAMARA check uses when it gives none, in hours.
pub const DEFAULT_MAX_AGE: i64 = 240;

/// Why a CAMARA question is not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `phoneNumber` in the body, and the token does not name one.
    #[error("phoneNumber is missing: with a two-legged token it must be in the request body")]
    MissingPhoneNumber,
    /// A `phoneNumber` that is not `+` and 5 to 15 digits.
    #[error("phoneNumber {0:?} does not match ^\\+[1-9][0-9]{{4,14}}$")]
    MalformedPhoneNumber(String),
    /// A `maxAge` outside CAMARA's 1..=2400 hours.
    #[error("maxAge must be in 1..=2400 hours, got {0}")]
    MaxAgeOutsideCamara(i64),
    /// A `maxAge` within CAMARA's bounds but over this server's `max_lookback_hours`.
    #[error("maxAge {asked} exceeds this server's monitoring limit of {limit} hours")]
    MaxAgeOverLimit {
        /// The hours asked for.
        asked: i64,
        /// The server's limit.
        limit: u32,
    },
    /// A valid number that is not a mobile number.
    #[error("the service is not applicable: the number is valid but not a mobile number")]
    NotMobile,
    /// What the data cannot see, as the decision names the gap.
    #[error("numguard cannot tell: {0}")]
    NotCovered(String),
    /// The window asked for starts before the number's data does.
    #[error(
        "maxAge reaches before the data for this number begins ({since}); at most {hours} \
         hours can be checked"
    )]
    WindowBeforeCoverage {
        /// When the data begins, as text for the message.
        since: String,
        /// The longest window that can be answered.
        hours: i64,
    },
    /// The date asked about is before the number's data begins.
    #[error("{field} is before the data for this number begins ({since})")]
    DateBeforeCoverage {
        /// The request's date field.
        field: &'static str,
        /// When the data begins, as text for the message.
        since: String,
    },
    /// The date asked about is after today.
    #[error("{field} is in the future")]
    DateInFuture {
        /// The request's date field.
        field: &'static str,
    },
    /// No local data, and the operator asked in its place did not answer.
    #[error("no local data, and the operator's API ({provider}) did not answer: {why}")]
    UpstreamUnavailable {
        /// The provider asked.
        provider: String,
        /// Its failure, in words.
        why: String,
    },
}

/// Which CAMARA "swap" a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// A new SIM for the number (SIM_SWAP, PORT, REASSIGN).
    Sim,
    /// A new handset for the SIM (DEVICE_SWAP).
    Device,
}

impl Swap {
    fn question(self) -> coverage::Question {
        match self {
            Swap::Sim => coverage::Question::SimSwap,
            Swap::Device => coverage::Question::DeviceSwap,
        }
    }
}

/// The latest change, or none inside `monitored_days` of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestChange {
    /// The latest change's instant, as the tenant's precision lets it be shown.
    pub at: Option<DateTime<Utc>>,
    /// Whole days the data covers this number; only given when `at` is `None`.
    pub monitored_days: Option<i64>,
}

/// CAMARA's `phoneNumber` pattern, `^\+[1-9][0-9]{4,14}$`.
pub fn phone_number(value: Option<&str>) -> Result<&str, Refusal> {
    let value = value.ok_or(Refusal::MissingPhoneNumber)?;
    let digits = value.strip_prefix('+').unwrap_or("");
    let well_formed = (5..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if well_formed {
        Ok(value)
    } else {
        Err(Refusal::MalformedPhoneNumber(value.to_string()))
    }
}

/// `maxAge` in hours: CAMARA's range first, then the server's own limit.
pub fn max_age(value: Option<i64>, max_lookback_hours: u32) -> Result<MaxAge, Refusal> {
    let asked = value.unwrap_or(DEFAULT_MAX_AGE);
    if !MAX_AGE_RANGE.contains(&asked) {
        return Err(Refusal::MaxAgeOutsideCamara(asked));
    }
    let hours = u32::try_from(asked).map_err(|_| Refusal::MaxAgeOutsideCamara(asked))?;
    MaxAge::new(hours, max_lookback_hours).map_err(|_| Refusal::MaxAgeOverLimit {
        asked,
        limit: max_lookback_hours,
    })
}

/// `swapped` for the decision's window.
pub fn swapped(d: &Decision, swap: Swap) -> Result<bool, Refusal> {
    applicable(d)?;
    match status(d, swap) {
        SimSwap::Swapped => Ok(true),
        SimSwap::NotSwapped => Ok(false),
        SimSwap::Unknown => Err(
            match (
                unanswered(d, Question::SimSwap),
                covered_since(d, swap.question()),
            ) {
                (Some(refusal), _) => refusal,
                (None, Some(since)) => Refusal::WindowBeforeCoverage {
                    since: since.to_rfc3339(),
                    hours: (d.evaluated_at - since).num_hours().max(0),
                },
                (None, None) => not_covered(d, swap.question()),
            },
        ),
    }
}

/// The latest change known, whenever it was; when there is none, how long the data has
/// watched the number.
pub fn latest_change(d: &Decision, swap: Swap) -> Result<LatestChange, Refusal> {
    applicable(d)?;
    let at = match swap {
        Swap::Sim => d.latest_sim_change,
        Swap::Device => d.latest_device_change,
    };
    match (at, covered_since(d, swap.question())) {
        (Some(at), _) => Ok(LatestChange {
            at: Some(at),
            monitored_days: None,
        }),
        (None, Some(since)) => Ok(LatestChange {
            at: None,
            monitored_days: Some((d.evaluated_at - since).num_days().max(0)),
        }),
        (None, None) => Err(not_covered(d, swap.question())),
    }
}

/// `phoneNumberRecycled`: did the subscriber change after the specified date? The decision
/// must have been made with that date as its `owner_since`.
pub fn recycled(d: &Decision, specified: &OwnerSince) -> Result<bool, Refusal> {
    changed_since(d, specified, "specifiedDate")
}

/// `tenureDateCheck`: has the current subscriber held the number without a break since the
/// date? The same question as [`recycled`], answered the other way round (a port keeps the
/// subscriber, so it keeps the tenure); the decision must have been made with that date as
/// its `owner_since`.
pub fn tenure_held(d: &Decision, since: &OwnerSince) -> Result<bool, Refusal> {
    changed_since(d, since, "tenureDate").map(|changed| !changed)
}

/// Whether ownership changed since the date in the request's `field`; refused where the
/// data cannot tell.
fn changed_since(d: &Decision, since: &OwnerSince, field: &'static str) -> Result<bool, Refusal> {
    if since.coverage_needed_from() > d.evaluated_at {
        return Err(Refusal::DateInFuture { field });
    }
    applicable(d)?;
    match d.ownership {
        Ownership::Changed => Ok(true),
        Ownership::Unchanged => Ok(false),
        Ownership::Unknown | Ownership::NotEvaluated => Err(
            match (
                unanswered(d, Question::NumberRecycling),
                covered_since(d, coverage::Question::Ownership),
            ) {
                (Some(refusal), _) => refusal,
                (None, Some(covered)) => Refusal::DateBeforeCoverage {
                    field,
                    since: covered.date_naive().to_string(),
                },
                (None, None) => not_covered(d, coverage::Question::Ownership),
            },
        ),
    }
}

/// The operator's failure to answer `question`, if it was asked and failed.
fn unanswered(d: &Decision, question: Question) -> Option<Refusal> {
    d.upstream.iter().find_map(|a| match &a.outcome {
        Err(why) if a.question == question => Some(Refusal::UpstreamUnavailable {
            provider: a.provider.clone(),
            why: why.clone(),
        }),
        _ => None,
    })
}

fn covered_since(d: &Decision, question: coverage::Question) -> Option<DateTime<Utc>> {
    d.coverage_of(question).and_then(|c| c.covered_since)
}

fn not_covered(d: &Decision, question: coverage::Question) -> Refusal {
    let gap = d.coverage_of(question).and_then(|c| c.gap.clone());
    Refusal::NotCovered(
        gap.unwrap_or_else(|| format!("{}: no event source covers this number", question.as_str())),
    )
}

fn applicable(d: &Decision) -> Result<(), Refusal> {
    if d.mobile {
        Ok(())
    } else {
        Err(Refusal::NotMobile)
    }
}

fn status(d: &Decision, swap: Swap) -> SimSwap {
    match swap {
        Swap::Sim => d.sim_swap,
        Swap::Device => d.device_swap,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone};

    use super::*;
    use crate::domain::decision::{CheckInput, Policy, decide};
    use crate::domain::event::{EventFact, EventKind};
    use crate::domain::test_support::{carrier_id, carriers, covered};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap()
    }

    fn ev(kind: EventKind, hours_ago: i64) -> EventFact {
        EventFact {
            source: "feed".parse().unwrap(),
            source_event_id: format!("{kind}-{hours_ago}"),
            kind,
            occurred_at: now() - Duration::hours(hours_ago),
            from_carrier: None,
            to_carrier: None,
        }
    }

    fn day(s: &str) -> OwnerSince {
        let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        OwnerSince::on_date(date, &Utc).unwrap()
    }

    /// A mobile number covered for `covered_hours` (none: not covered).
    fn decision(
        history: &[EventFact],
        covered_hours: Option<i64>,
        max_age: u32,
        owner: Option<OwnerSince>,
    ) -> Decision {
        let input = CheckInput {
            now: now(),
            max_age: MaxAge::new(max_age, 2400).unwrap(),
            owner_since: owner,
            mobile: true,
            digits: "819012345678",
            original_carrier: Some(carrier_id("KDDI")),
            carriers: carriers(),
            sources: covered(covered_hours.map(|h| now() - Duration::hours(h)), now()),
            history,
            upstream: &[],
        };
        decide(&input, Policy::default())
    }

    /// Refused as NOT_COVERED, the detail naming the kinds no source reports.
    fn not_covered_by_any_source<T>(answer: Result<T, Refusal>) -> bool {
        matches!(answer, Err(Refusal::NotCovered(gap)) if gap.contains("no source reports"))
    }

    #[test]
    fn phone_numbers_follow_the_camara_pattern() {
        for good in ["+819012345678", "+12345", "+123456789012345"] {
            assert_eq!(phone_number(Some(good)), Ok(good));
        }
        for bad in [
            "819012345678",
            "+0901234567",
            "+1234",
            "+1234567890123456",
            "+81 90 1234 5678",
            "+8190-1234",
            "",
            "+",
        ] {
            assert_eq!(
                phone_number(Some(bad)),
                Err(Refusal::MalformedPhoneNumber(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(phone_number(None), Err(Refusal::MissingPhoneNumber));
    }

    #[test]
    fn max_age_is_checked_against_camara_then_the_server() {
        assert_eq!(max_age(None, 2400).unwrap().hours(), 240);
        assert_eq!(max_age(Some(1), 2400).unwrap().hours(), 1);
        assert_eq!(max_age(Some(2400), 2400).unwrap().hours(), 2400);
        for outside in [0, -5, 2401, 100_000] {
            assert_eq!(
                max_age(Some(outside), 2400),
                Err(Refusal::MaxAgeOutsideCamara(outside))
            );
        }
        let over = max_age(Some(721), 720).unwrap_err();
        assert_eq!(
            over,
            Refusal::MaxAgeOverLimit {
                asked: 721,
                limit: 720
            }
        );
        assert!(over.to_string().contains("720 hours"), "{over}");
        assert_eq!(max_age(Some(720), 720).unwrap().hours(), 720);
    }

    #[test]
    fn swapped_is_true_inside_the_window_and_false_only_when_covered() {
        let h = [ev(EventKind::SimSwap, 30)];
        assert_eq!(
            swapped(&decision(&h, Some(5000), 240, None), Swap::Sim),
            Ok(true)
        );
        assert_eq!(
            swapped(&decision(&h, Some(5000), 24, None), Swap::Sim),
            Ok(false)
        );
        // A swap inside the window is known even without coverage.
        assert_eq!(swapped(&decision(&h, None, 240, None), Swap::Sim), Ok(true));
        assert!(not_covered_by_any_source(swapped(
            &decision(&h, None, 24, None),
            Swap::Sim
        )));
        let late = swapped(&decision(&[], Some(100), 240, None), Swap::Sim).unwrap_err();
        assert!(
            matches!(late, Refusal::WindowBeforeCoverage { hours: 100, .. }),
            "{late:?}"
        );
    }

    #[test]
    fn device_questions_read_device_swaps_only() {
        let h = [ev(EventKind::SimSwap, 3), ev(EventKind::DeviceSwap, 50)];
        let d = decision(&h, Some(5000), 24, None);
        assert_eq!(swapped(&d, Swap::Sim), Ok(true));
        assert_eq!(swapped(&d, Swap::Device), Ok(false));
        assert_eq!(
            latest_change(&d, Swap::Device).unwrap().at,
            Some(now() - Duration::hours(50))
        );
        assert_eq!(
            latest_change(&d, Swap::Sim).unwrap().at,
            Some(now() - Duration::hours(3))
        );
    }

    #[test]
    fn latest_change_without_one_gives_the_monitored_period() {
        let d = decision(&[], Some(24 * 90 + 5), 240, None);
        assert_eq!(
            latest_change(&d, Swap::Sim),
            Ok(LatestChange {
                at: None,
                monitored_days: Some(90)
            })
        );
        // An old change is still the latest change, coverage or not.
        let h = [ev(EventKind::Port, 24 * 400)];
        let d = decision(&h, None, 240, None);
        assert_eq!(
            latest_change(&d, Swap::Sim),
            Ok(LatestChange {
                at: Some(now() - Duration::hours(24 * 400)),
                monitored_days: None
            })
        );
        let d = decision(&[], None, 240, None);
        assert!(not_covered_by_any_source(latest_change(&d, Swap::Sim)));
    }

    #[test]
    fn recycled_follows_the_date_only_ownership_rules() {
        let covered = Some(24 * 365);
        // A reassignment on the specified day is the owner's own contract start.
        let reassign_on_day = [EventFact {
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
            ..ev(EventKind::Reassign, 0)
        }];
        let owner = day("2026-03-01");
        let d = decision(&reassign_on_day, covered, 240, Some(owner));
        assert_eq!(recycled(&d, &owner), Ok(false));
        // A disconnect on the day counts.
        let disconnect_on_day = [EventFact {
            kind: EventKind::Disconnect,
            ..reassign_on_day[0].clone()
        }];
        let d = decision(&disconnect_on_day, covered, 240, Some(owner));
        assert_eq!(recycled(&d, &owner), Ok(true));
        // Before the data begins, or with no data at all: refused, not "false".
        let early = day("2020-01-01");
        let d = decision(&[], covered, 240, Some(early));
        assert!(matches!(
            recycled(&d, &early),
            Err(Refusal::DateBeforeCoverage { .. })
        ));
        let d = decision(&[], None, 240, Some(owner));
        assert!(not_covered_by_any_source(recycled(&d, &owner)));
    }

    #[test]
    fn tenure_is_held_until_a_disconnect_or_reassignment_after_the_date() {
        let covered = Some(24 * 365);
        let since = day("2026-03-01");
        let at = |kind, y, m, d| EventFact {
            kind,
            occurred_at: Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap(),
            ..ev(kind, 0)
        };
        let cases = [
            (vec![], Ok(true)),
            // A port moves the subscriber, who keeps the number: tenure goes on.
            (vec![at(EventKind::Port, 2026, 4, 1)], Ok(true)),
            (vec![at(EventKind::SimSwap, 2026, 4, 1)], Ok(true)),
            (vec![at(EventKind::Disconnect, 2026, 4, 1)], Ok(false)),
            (vec![at(EventKind::Reassign, 2026, 4, 1)], Ok(false)),
            // On the day itself: the date-only rule, as for Number Recycling.
            (vec![at(EventKind::Reassign, 2026, 3, 1)], Ok(true)),
            (vec![at(EventKind::Disconnect, 2026, 3, 1)], Ok(false)),
            // The current subscriber's own start, before the date.
            (vec![at(EventKind::Reassign, 2026, 2, 1)], Ok(true)),
        ];
        for (history, held) in cases {
            let d = decision(&history, covered, 240, Some(since));
            assert_eq!(tenure_held(&d, &since), held, "{history:?}");
            assert_eq!(recycled(&d, &since), held.map(|h| !h), "{history:?}");
        }
        // Unknown is refused, never a guessed false.
        let early = day("2020-01-01");
        let d = decision(&[], covered, 240, Some(early));
        assert!(matches!(
            tenure_held(&d, &early),
            Err(Refusal::DateBeforeCoverage {
                field: "tenureDate",
                ..
            })
        ));
        let d = decision(&[], None, 240, Some(since));
        assert!(not_covered_by_any_source(tenure_held(&d, &since)));
    }

    #[test]
    fn a_future_date_is_out_of_range_but_today_is_not() {
        let tomorrow = day("2026-06-11");
        let d = decision(&[], Some(24 * 365), 240, Some(tomorrow));
        assert_eq!(
            recycled(&d, &tomorrow),
            Err(Refusal::DateInFuture {
                field: "specifiedDate"
            })
        );
        assert_eq!(
            tenure_held(&d, &tomorrow),
            Err(Refusal::DateInFuture {
                field: "tenureDate"
            })
        );
        let today = day("2026-06-10");
        let d = decision(&[], Some(24 * 365), 240, Some(today));
        assert_eq!(recycled(&d, &today), Ok(false));
    }

    #[test]
    fn an_operator_that_did_not_answer_is_unavailable_not_false() {
        let mut d = decision(&[], None, 240, Some(day("2026-03-01")));
        d.upstream = vec![crate::domain::upstream::UpstreamAnswer {
            provider: "op".into(),
            question: Question::SimSwap,
            outcome: Err("timed out after 800 ms".into()),
            at: now(),
            cached: false,
        }];
        assert!(matches!(
            swapped(&d, Swap::Sim),
            Err(Refusal::UpstreamUnavailable { provider, .. }) if provider == "op"
        ));
        // Only the question that failed.
        assert!(not_covered_by_any_source(recycled(&d, &day("2026-03-01"))));
    }

    #[test]
    fn fixed_lines_are_not_applicable() {
        let mut d = decision(&[], Some(5000), 240, None);
        d.mobile = false;
        assert_eq!(swapped(&d, Swap::Sim), Err(Refusal::NotMobile));
        assert_eq!(latest_change(&d, Swap::Device), Err(Refusal::NotMobile));
    }
}
