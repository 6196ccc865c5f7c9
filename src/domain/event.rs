//! Events fed in by carriers and brokers, and their validation.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

use super::FieldError;
use super::carrier::{CarrierId, CarrierRegistry, carrier_name};
use super::number::{E164, Region, calling_code};
use super::source::SourceName;
use crate::domain::Field;

/// How far in the future an `occurred_at` may lie: feeds' clocks drift a little, not more.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Longest accepted `source_event_id`.
pub const MAX_EVENT_ID_LEN: usize = 200;

/// What happened to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A new SIM for the same subscription.
    SimSwap,
    /// The number moved to another carrier.
    Port,
    /// The subscription ended; the number may be recycled.
    Disconnect,
    /// The number was given to a new subscriber.
    Reassign,
    /// A new handset for the same SIM.
    DeviceSwap,
}

impl EventKind {
    /// Every kind, in the order lists show them.
    pub const ALL: [EventKind; 5] = [
        EventKind::SimSwap,
        EventKind::Port,
        EventKind::Disconnect,
        EventKind::Reassign,
        EventKind::DeviceSwap,
    ];

    /// Puts the number on a new SIM, as CAMARA SIM Swap counts it: a port or a new
    /// subscription does too.
    pub fn changes_sim(self) -> bool {
        matches!(
            self,
            EventKind::SimSwap | EventKind::Port | EventKind::Reassign
        )
    }

    /// Ends the registered owner's hold on the number.
    pub fn ends_ownership(self) -> bool {
        matches!(self, EventKind::Disconnect | EventKind::Reassign)
    }

    /// A bit of its own, for sets of kinds.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Place among events with the same `occurred_at` (SPEC §2): an ownership ends before
    /// a new one starts, and the number is ported or re-SIMmed before its device changes.
    pub fn rank_at_equal_time(self) -> u8 {
        match self {
            EventKind::Disconnect => 0,
            EventKind::Reassign => 1,
            EventKind::Port => 2,
            EventKind::SimSwap => 3,
            EventKind::DeviceSwap => 4,
        }
    }

    /// The kind's wire name, e.g. `SIM_SWAP`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SimSwap => "SIM_SWAP",
            EventKind::Port => "PORT",
            EventKind::Disconnect => "DISCONNECT",
            EventKind::Reassign => "REASSIGN",
            EventKind::DeviceSwap => "DEVICE_SWAP",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that is not one of [`EventKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of SIM_SWAP, PORT, DISCONNECT, REASSIGN, DEVICE_SWAP")]
pub struct UnknownKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownKind;

    /// Accepts `PORT`, `port` and the proto spelling `EVENT_KIND_PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("EVENT_KIND_").unwrap_or(&upper);
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == bare)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// What the decision rules need to know of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    /// The source that reported it.
    pub source: SourceName,
    /// Unique within the source.
    pub source_event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened, to the microsecond.
    pub occurred_at: DateTime<Utc>,
    /// For a port, the carrier it left.
    pub from_carrier: Option<CarrierId>,
    /// For a port, the carrier it joined.
    pub to_carrier: Option<CarrierId>,
}

impl EventFact {
    /// The order of events in time (SPEC §2): by `occurred_at`, then, for equal times, by
    /// kind, source and id, so that arrival order never decides. No two events compare
    /// equal, since `(source, source_event_id)` is unique.
    pub fn chronological(&self, other: &EventFact) -> std::cmp::Ordering {
        self.time_order().cmp(&other.time_order())
    }

    fn time_order(&self) -> (DateTime<Utc>, u8, &str, &str) {
        (
            self.occurred_at,
            self.kind.rank_at_equal_time(),
            self.source.as_str(),
            self.source_event_id.as_str(),
        )
    }
}

/// An event as received, before validation. Empty strings mean "not given".
#[derive(Debug, Clone, Default)]
pub struct RawEvent {
    /// The source's name.
    pub source: String,
    /// The event's id within the source.
    pub source_event_id: String,
    /// The number as sent.
    pub phone_number: String,
    /// `None` when the sender gave no kind or one this server does not know.
    pub kind: Option<EventKind>,
    /// When it happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// For a port, the carrier it left, as the source names it.
    pub from_carrier: String,
    /// For a port, the carrier it joined, as the source names it.
    pub to_carrier: String,
}

/// A validated event, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The number it happened to.
    pub number: E164,
    /// What happened.
    pub fact: EventFact,
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The store's id, increasing in ingest order: the alert cursor.
    pub id: i64,
    /// The event.
    pub event: NewEvent,
    /// When the store received it.
    pub ingested_at: DateTime<Utc>,
}

impl NewEvent {
    /// Checks everything that does not need the store, resolving carrier names in
    /// `carriers`. Whether the source exists is the caller's question, since the set of
    /// sources lives elsewhere.
    pub fn validate(
        raw: RawEvent,
        default_region: Option<Region>,
        now: DateTime<Utc>,
        carriers: &CarrierRegistry,
    ) -> Result<NewEvent, FieldError> {
        NewEvent::validate_with(
            raw,
            now,
            |input| E164::parse(input, default_region),
            |field, name, number| resolve_carrier(carriers, field, name, number),
        )
    }

    /// [`NewEvent::validate`] with the number read by `parse_number` (for callers that can
    /// answer numbers they have already parsed) and carrier names by `carrier` (for a
    /// server that registers names it does not know).
    pub fn validate_with(
        raw: RawEvent,
        now: DateTime<Utc>,
        parse_number: impl FnOnce(&str) -> Result<E164, super::number::NumberError>,
        mut carrier: impl FnMut(Field, &str, &E164) -> Result<CarrierId, FieldError>,
    ) -> Result<NewEvent, FieldError> {
        let source: SourceName = raw
            .source
            .parse()
            .map_err(|e| FieldError::new(Field::Source, format!("{e}")))?;
        let source_event_id =
            super::text::plain_text(Field::SourceEventId, raw.source_event_id.trim())?.to_string();
        if source_event_id.is_empty() {
            return Err(FieldError::new(Field::SourceEventId, "is empty"));
        }
        if source_event_id.len() > MAX_EVENT_ID_LEN {
            return Err(FieldError::new(
                Field::SourceEventId,
                format!("is longer than {MAX_EVENT_ID_LEN} bytes"),
            ));
        }
        let number = parse_number(&raw.phone_number)
            .map_err(|e| FieldError::new(Field::PhoneNumber, e.to_string()))?;
        let kind = raw.kind.ok_or_else(|| {
            FieldError::new(
                Field::Kind,
                "is missing or unknown; use SIM_SWAP, PORT, DISCONNECT, REASSIGN or DEVICE_SWAP",
            )
        })?;
        let occurred_at = raw
            .occurred_at
            .ok_or_else(|| FieldError::new(Field::OccurredAt, "is missing"))?;
        if occurred_at > now + MAX_CLOCK_SKEW {
            return Err(FieldError::new(
                Field::OccurredAt,
                format!(
                    "is more than {} minutes in the future",
                    MAX_CLOCK_SKEW.num_minutes()
                ),
            ));
        }
        let mut carrier_field = |field: Field, name: &str| {
            if name.trim().is_empty() {
                return Ok(None);
            }
            let name = carrier_name(field, name)?;
            carrier(field, &name, &number).map(Some)
        };
        let from_carrier = carrier_field(Field::FromCarrier, &raw.from_carrier)?;
        let to_carrier = carrier_field(Field::ToCarrier, &raw.to_carrier)?;
        if kind == EventKind::Port && to_carrier.is_none() {
            return Err(FieldError::new(
                Field::ToCarrier,
                "is required for a PORT event",
            ));
        }
        Ok(NewEvent {
            number,
            fact: EventFact {
                source,
                source_event_id,
                kind,
                occurred_at: to_storage_precision(occurred_at),
                from_carrier,
                to_carrier,
            },
        })
    }
}

/// The id of the carrier `name` means for `number` (its country tells apart names that
/// several countries' carriers share), or an error naming `field` and the name.
pub fn resolve_carrier(
    carriers: &CarrierRegistry,
    field: Field,
    name: &str,
    number: &E164,
) -> Result<CarrierId, FieldError> {
    carriers
        .resolve(name, calling_code(number.digits()))
        .map(|c| c.id.clone())
        .map_err(|e| FieldError::new(field, e.to_string()))
}

/// Times are stored with microsecond precision (both backends hold that much), so values
/// are cut to it on the way in and a read-back equals what was validated.
pub fn to_storage_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    // Cheaper than `duration_trunc`, and this runs on every check.
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn raw(kind: EventKind) -> RawEvent {
        RawEvent {
            source: "docomo-feed".into(),
            source_event_id: "e-1".into(),
            phone_number: "+819012345678".into(),
            kind: Some(kind),
            occurred_at: Some(now() - Duration::hours(1)),
            from_carrier: String::new(),
            to_carrier: String::new(),
        }
    }

    fn carriers() -> CarrierRegistry {
        let kddi = crate::domain::carrier::Carrier::new(
            "jp-kddi",
            "KDDI",
            81,
            &[],
            &["KDDI株式会社".into()],
        );
        CarrierRegistry::new(vec![kddi.unwrap()])
    }

    fn validate(r: RawEvent) -> Result<NewEvent, FieldError> {
        NewEvent::validate(r, None, now(), &carriers())
    }

    fn field_of(r: RawEvent) -> Field {
        validate(r).unwrap_err().field
    }

    #[test]
    fn a_good_event_validates() {
        let e = validate(raw(EventKind::SimSwap)).unwrap();
        assert_eq!(e.number.as_str(), "+819012345678");
        assert_eq!(e.fact.kind, EventKind::SimSwap);
        assert_eq!(e.fact.from_carrier, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = raw(EventKind::SimSwap);
        r.source = String::new();
        assert_eq!(field_of(r), Field::Source);

        let mut r = raw(EventKind::SimSwap);
        r.source_event_id = " ".into();
        assert_eq!(field_of(r), Field::SourceEventId);

        let mut r = raw(EventKind::SimSwap);
        r.phone_number = "garbage".into();
        assert_eq!(field_of(r), Field::PhoneNumber);

        let mut r = raw(EventKind::SimSwap);
        r.kind = None;
        assert_eq!(field_of(r), Field::Kind);

        let mut r = raw(EventKind::SimSwap);
        r.occurred_at = None;
        assert_eq!(field_of(r), Field::OccurredAt);

        let mut r = raw(EventKind::SimSwap);
        r.to_carrier = "x".repeat(201);
        assert_eq!(field_of(r), Field::ToCarrier);

        let mut r = raw(EventKind::Port);
        r.to_carrier = "Unheard Of Telecom".into();
        let err = validate(r).unwrap_err();
        assert_eq!(err.field, Field::ToCarrier);
        assert!(err.message.contains("Unheard Of Telecom"), "{err}");

        assert_eq!(field_of(raw(EventKind::Port)), Field::ToCarrier);
    }

    #[test]
    fn carrier_names_resolve_to_ids() {
        let mut r = raw(EventKind::Port);
        r.from_carrier = "ＫＤＤＩ株式会社".into();
        r.to_carrier = "kddi corp.".into();
        let e = validate(r).unwrap();
        assert_eq!(e.fact.from_carrier, Some("jp-kddi".parse().unwrap()));
        assert_eq!(e.fact.to_carrier, e.fact.from_carrier);
    }

    #[test]
    fn future_events_are_allowed_only_within_clock_skew() {
        let mut r = raw(EventKind::SimSwap);
        r.occurred_at = Some(now() + MAX_CLOCK_SKEW);
        assert!(validate(r).is_ok());
        let mut r = raw(EventKind::SimSwap);
        r.occurred_at = Some(now() + MAX_CLOCK_SKEW + Duration::seconds(1));
        let err = validate(r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "occurred_at is more than 5 minutes in the future"
        );
    }

    #[test]
    fn kinds_parse_in_every_spelling() {
        assert_eq!("PORT".parse::<EventKind>().unwrap(), EventKind::Port);
        assert_eq!("sim_swap".parse::<EventKind>().unwrap(), EventKind::SimSwap);
        assert_eq!(
            "EVENT_KIND_DEVICE_SWAP".parse::<EventKind>().unwrap(),
            EventKind::DeviceSwap
        );
        assert!("UNSPECIFIED".parse::<EventKind>().is_err());
    }

    #[test]
    fn times_are_cut_to_microseconds() {
        let mut r = raw(EventKind::SimSwap);
        let t = now() - Duration::nanoseconds(1_234_567);
        r.occurred_at = Some(t);
        let e = validate(r).unwrap();
        assert_eq!(e.fact.occurred_at, now() - Duration::microseconds(1_235));
    }
}
