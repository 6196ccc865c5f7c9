//! `owner_since`: when the business last verified that its customer holds the number.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::event::to_storage_precision;

/// When the business last verified that its customer holds the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSince {
    /// An exact instant (gRPC timestamps, RFC 3339 values).
    At(DateTime<Utc>),
    /// A calendar date (REST facade, CSV audits), as the span of that day in the server's
    /// time zone.
    Day {
        /// The day's first instant.
        start: DateTime<Utc>,
        /// The next day's first instant.
        end: DateTime<Utc>,
    },
}

impl OwnerSince {
    /// An exact instant, cut to the microsecond as every stored event time is (SPEC §2),
    /// so that both sides of a comparison have one precision.
    pub fn at(t: DateTime<Utc>) -> OwnerSince {
        OwnerSince::At(to_storage_precision(t))
    }

    /// The span of `date` in `tz`. `None` only for a date at the edge of chrono's range.
    pub fn on_date<Tz: TimeZone>(date: NaiveDate, tz: &Tz) -> Option<OwnerSince> {
        let start = start_of_day(date, tz)?;
        let end = start_of_day(date.succ_opt()?, tz)?;
        Some(OwnerSince::Day { start, end })
    }

    /// A DISCONNECT ends the owner's contract. For a date, one on that very day counts, as
    /// the FCC Reassigned Numbers Database answers "yes" for a disconnect on or after it.
    pub fn disconnect_counts(&self, t: DateTime<Utc>) -> bool {
        match *self {
            OwnerSince::At(at) => t > at,
            OwnerSince::Day { start, .. } => t >= start,
        }
    }

    /// A REASSIGN on the date itself is the owner's own contract start, so only later
    /// days count.
    pub fn reassign_counts(&self, t: DateTime<Utc>) -> bool {
        match *self {
            OwnerSince::At(at) => t > at,
            OwnerSince::Day { end, .. } => t >= end,
        }
    }

    /// A PORT keeps the subscriber; on the date itself it may follow the verification, so
    /// it counts like a disconnect.
    pub fn port_counts(&self, t: DateTime<Utc>) -> bool {
        self.disconnect_counts(t)
    }

    /// Data covers the owner's period when it starts no later than this instant.
    pub fn coverage_needed_from(&self) -> DateTime<Utc> {
        match *self {
            OwnerSince::At(at) => at,
            OwnerSince::Day { start, .. } => start,
        }
    }
}

fn start_of_day<Tz: TimeZone>(date: NaiveDate, tz: &Tz) -> Option<DateTime<Utc>> {
    // A DST gap can skip midnight; the earliest existing instant of the day is its start.
    let midnight = date.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&date.and_hms_opt(1, 0, 0)?)
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeDelta};

    #[test]
    fn an_instant_is_read_to_the_microsecond() {
        let base = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let owner = OwnerSince::at(base + TimeDelta::nanoseconds(1_700));
        assert_eq!(owner, OwnerSince::At(base + TimeDelta::microseconds(1)));
        // An event stored at that microsecond is not after the owner's verification; one
        // a microsecond later is, whatever nanoseconds either was sent with.
        assert!(!owner.disconnect_counts(base + TimeDelta::microseconds(1)));
        assert!(owner.disconnect_counts(base + TimeDelta::microseconds(2)));
    }

    #[test]
    fn a_date_spans_its_day_in_the_given_zone() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let utc = OwnerSince::on_date(date, &Utc).unwrap();
        assert_eq!(
            utc,
            OwnerSince::Day {
                start: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
            }
        );
        let tokyo = FixedOffset::east_opt(9 * 3600).unwrap();
        let jst = OwnerSince::on_date(date, &tokyo).unwrap();
        assert_eq!(
            jst.coverage_needed_from(),
            Utc.with_ymd_and_hms(2026, 2, 28, 15, 0, 0).unwrap()
        );
    }
}
