//! Webhook subscriptions as their tenants see them.

use chrono::{DateTime, Utc};

use super::event::EventKind;
use super::number::E164;

/// Which CloudEvent types and data a subscription is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEventFormat {
    /// `numguard.alert.v1.*`, with the alert's customer refs and verdict.
    Numguard,
    /// `org.camaraproject.sim-swap-subscriptions.v0.*`.
    Camara,
}

impl CloudEventFormat {
    /// The name stored and shown: `numguard` or `camara`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudEventFormat::Numguard => "numguard",
            CloudEventFormat::Camara => "camara",
        }
    }
}

impl std::str::FromStr for CloudEventFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "numguard" => Ok(CloudEventFormat::Numguard),
            "camara" => Ok(CloudEventFormat::Camara),
            other => Err(format!("unknown CloudEvent format {other:?}")),
        }
    }
}

/// A webhook subscription as the tenant that made it sees it: what it follows, where it
/// sends and whether it still runs. Never the sink's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Random, hex; unique across tenants.
    pub id: String,
    /// Where CloudEvents are POSTed.
    pub sink: String,
    /// The event kinds followed; empty means every kind.
    pub kinds: Vec<EventKind>,
    /// When it ends by itself.
    pub expire_at: Option<DateTime<Utc>>,
    /// It ends once this many events were sent.
    pub max_events: Option<u64>,
    /// Events sent so far.
    pub sent: u64,
    /// Why it ended; `None` while it runs.
    pub ended_reason: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Follows this one number's events (a CAMARA subscription) rather than the tenant's
    /// watchlist.
    pub number: Option<E164>,
    /// How its CloudEvents are written.
    pub format: CloudEventFormat,
    /// When the sink's bearer token stops working; the subscription ends then.
    pub token_expire_at: Option<DateTime<Utc>>,
}

impl Subscription {
    /// Whether it still sends.
    pub fn is_active(&self) -> bool {
        self.ended_reason.is_none()
    }

    /// When it ends by itself: at its expiry or when the sink's token does, if sooner.
    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        [self.expire_at, self.token_expire_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// How a subscription's deliveries stand: what its sink took, what waits, and the last
/// error while something waits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryState {
    /// Deliveries the sink took.
    pub delivered: u64,
    /// Deliveries queued and not yet taken (due, or waiting to be retried).
    pub pending: u64,
    /// Attempts that failed, over all its deliveries.
    pub failed_attempts: u64,
    /// When the sink last took a delivery.
    pub last_success: Option<DateTime<Utc>>,
    /// The last attempt's error of the oldest pending delivery, if it failed.
    pub last_error: Option<String>,
    /// When the oldest pending delivery is tried next.
    pub next_attempt: Option<DateTime<Utc>>,
    /// When the oldest pending delivery was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// When the first still-pending delivery to fail first failed: the sink has been
    /// failing since then.
    pub failing_since: Option<DateTime<Utc>>,
}

impl DeliveryState {
    /// Whether the sink has been failing for longer than `after` at `now`.
    pub fn is_failing(&self, now: DateTime<Utc>, after: chrono::Duration) -> bool {
        self.failing_since.is_some_and(|since| now - since > after)
    }
}

/// A subscription's delivery state as reported, with whether it counts as failing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// How its deliveries stand.
    pub state: DeliveryState,
    /// Its sink has been failing for longer than the server's `webhook_failing_after`.
    pub failing: bool,
}
