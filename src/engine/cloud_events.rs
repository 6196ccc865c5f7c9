//! The CloudEvents 1.0 bodies webhook subscriptions are sent, in each subscription's
//! format: numguard's alerts, or CAMARA SIM Swap Subscriptions v0.3 notifications.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::alerts::Alert;
use crate::domain::event::{EventKind, StoredEvent};
use crate::domain::number::E164;
use crate::domain::subscription::CloudEventFormat;
use crate::store::SubscriptionRecord;

/// A queued event: its CloudEvent id (unique per subscription and occurrence) and body.
pub type Queued = (String, String);

const CAMARA_SWAPPED: &str = "org.camaraproject.sim-swap-subscriptions.v0.swapped";
const CAMARA_ENDED: &str = "org.camaraproject.sim-swap-subscriptions.v0.subscription-ended";

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn envelope(id: String, kind: &str, at: DateTime<Utc>, data: Value) -> Queued {
    let body = json!({
        "specversion": "1.0",
        "id": id,
        "source": "numguard",
        "type": kind,
        "time": time(at),
        "datacontenttype": "application/json",
        "data": data,
    });
    (id, body.to_string())
}

fn kind_type(kind: EventKind) -> String {
    kind.as_str().to_ascii_lowercase().replace('_', "-")
}

/// A watchlist alert (numguard format).
pub fn alert(sub: &SubscriptionRecord, alert: &Alert) -> Queued {
    let event = &alert.event.event;
    let occurred_at = time(event.fact.occurred_at);
    envelope(
        format!("{}-{}", sub.id, alert.cursor),
        &format!("numguard.alert.v1.{}", kind_type(event.fact.kind)),
        event.fact.occurred_at,
        json!({
            "subscription_id": sub.id,
            "cursor": alert.cursor,
            "customer_refs": alert.customer_refs,
            "phone_number": event.number.as_str(),
            "kind": event.fact.kind.as_str(),
            "occurred_at": occurred_at,
            "source": event.fact.source.as_str(),
            "source_event_id": event.fact.source_event_id,
            "verdict": alert.decision.verdict.as_str(),
        }),
    )
}

/// A SIM change on a subscribed number (CAMARA format).
pub fn swapped(sub: &SubscriptionRecord, event: &StoredEvent) -> Queued {
    envelope(
        format!("{}-{}", sub.id, event.id),
        CAMARA_SWAPPED,
        event.event.fact.occurred_at,
        json!({
            "subscriptionId": sub.id,
            "phoneNumber": event.event.number.as_str(),
        }),
    )
}

/// The last event of a subscription, in its format.
pub fn ended(sub: &SubscriptionRecord, reason: &str) -> Queued {
    let id = format!("{}-ended", sub.id);
    match sub.format {
        CloudEventFormat::Numguard => envelope(
            id,
            "numguard.alert.v1.subscription-ended",
            Utc::now(),
            json!({ "subscription_id": sub.id, "termination_reason": reason }),
        ),
        CloudEventFormat::Camara => envelope(
            id,
            CAMARA_ENDED,
            Utc::now(),
            json!({
                "subscriptionId": sub.id,
                // The official test definitions expect the subscribed number here too.
                "phoneNumber": sub.number.as_ref().map(E164::as_str),
                "terminationReason": reason,
                "terminationDescription": termination_description(reason),
            }),
        ),
    }
}

fn termination_description(reason: &str) -> &'static str {
    match reason {
        super::webhooks::ENDED_EXPIRED => "the subscription reached its expiry time",
        super::webhooks::ENDED_MAX_EVENTS => "the subscription reached its maximum of events",
        super::webhooks::ENDED_DELETED => "the subscription was deleted",
        super::webhooks::ENDED_TOKEN_EXPIRED => "the sink's access token expired",
        _ => "the server ended the subscription",
    }
}
