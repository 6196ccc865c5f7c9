//! Which due webhook deliveries start now, so that one tenant's slow or dead sinks cost
//! only their own subscriptions: one delivery in flight per sink, a cap per tenant and in
//! all, tenants taken in turn, and a circuit breaker per sink that holds its deliveries
//! back after a failure for the same exponential backoff the queue uses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::store::Delivery;

/// Deliveries in flight at most, over every tenant.
pub const MAX_IN_FLIGHT: usize = 64;
/// Deliveries in flight at most for one tenant, so others always have room.
pub const MAX_IN_FLIGHT_PER_TENANT: usize = 16;
/// The longest a sink's breaker stays open (and the queue's longest backoff).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait after `failures` failures in a row: 1, 2, 4 … seconds, at most
/// [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1_u64 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// How a delivery ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sink took it (or ended the subscription with 410).
    Delivered,
    /// The sink failed, timed out or could not be reached.
    Failed,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// The deliveries in flight and each sink's breaker.
#[derive(Debug, Default)]
pub struct DeliveryScheduler {
    sinks_in_flight: HashSet<String>,
    per_tenant: HashMap<String, usize>,
    total: usize,
    breakers: HashMap<String, Breaker>,
    /// Per subscription, the last delivery taken: a read of the queue from a snapshot
    /// older than that write must not send it again.
    delivered: HashMap<String, i64>,
}

impl DeliveryScheduler {
    /// Of `due` (oldest first), those to start now, taken from each tenant in turn; each
    /// is counted in flight until [`DeliveryScheduler::finish`].
    pub fn start(&mut self, due: Vec<Delivery>, now: Instant) -> Vec<Delivery> {
        // Each tenant's due deliveries, tenants in the order of their oldest.
        let mut tenants: Vec<(String, VecDeque<Delivery>)> = Vec::new();
        for d in due {
            match tenants.iter_mut().find(|(t, _)| *t == d.tenant) {
                Some((_, queue)) => queue.push_back(d),
                None => tenants.push((d.tenant.clone(), VecDeque::from([d]))),
            }
        }
        let mut started = Vec::new();
        while self.total < MAX_IN_FLIGHT && !tenants.is_empty() {
            // One delivery from each tenant per turn; a tenant with nothing startable left
            // drops out.
            tenants.retain_mut(|(tenant, queue)| {
                if self.total >= MAX_IN_FLIGHT {
                    return false;
                }
                if self.per_tenant.get(tenant).copied().unwrap_or(0) >= MAX_IN_FLIGHT_PER_TENANT {
                    return false;
                }
                match std::iter::from_fn(|| queue.pop_front()).find(|d| self.may_start(d, now)) {
                    Some(d) => {
                        self.sinks_in_flight.insert(d.sink.clone());
                        *self.per_tenant.entry(tenant.clone()).or_default() += 1;
                        self.total += 1;
                        started.push(d);
                        true
                    }
                    None => false,
                }
            });
        }
        started
    }

    fn may_start(&self, d: &Delivery, now: Instant) -> bool {
        let open = self
            .breakers
            .get(&d.sink)
            .and_then(|b| b.open_until)
            .is_some_and(|until| now < until);
        let stale = self
            .delivered
            .get(&d.subscription_id)
            .is_some_and(|&last| d.id <= last);
        !open && !stale && !self.sinks_in_flight.contains(&d.sink)
    }

    /// Closes the sink's breaker: its next due delivery may start at once.
    pub fn forgive(&mut self, sink: &str) {
        self.breakers.remove(sink);
    }

    /// Records the end of a delivery [`DeliveryScheduler::start`] started.
    pub fn finish(&mut self, d: &Delivery, outcome: Outcome, now: Instant) {
        if self.sinks_in_flight.remove(&d.sink) {
            self.total = self.total.saturating_sub(1);
            if let Some(n) = self.per_tenant.get_mut(&d.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_tenant.remove(&d.tenant);
                }
            }
        }
        match outcome {
            Outcome::Delivered => {
                self.breakers.remove(&d.sink);
                self.delivered.insert(d.subscription_id.clone(), d.id);
            }
            Outcome::Failed => {
                let breaker = self.breakers.entry(d.sink.clone()).or_default();
                breaker.failures = breaker.failures.saturating_add(1);
                breaker.open_until = Some(now + backoff(breaker.failures));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: i64, tenant: &str, sink: &str) -> Delivery {
        Delivery {
            id,
            subscription_id: format!("{tenant}-{sink}"),
            body: String::new(),
            attempts: 0,
            sink: format!("https://{sink}.example/"),
            token: None,
            tenant: tenant.into(),
        }
    }

    #[test]
    fn one_delivery_per_sink_at_a_time() {
        let mut s = DeliveryScheduler::default();
        let now = Instant::now();
        let started = s.start(vec![delivery(1, "a", "x"), delivery(2, "a", "x")], now);
        assert_eq!(started.len(), 1);
        assert!(s.start(vec![delivery(2, "a", "x")], now).is_empty());
        s.finish(&started[0], Outcome::Delivered, now);
        assert_eq!(s.start(vec![delivery(2, "a", "x")], now).len(), 1);
    }

    #[test]
    fn a_tenant_with_many_due_sinks_leaves_room_for_the_others() {
        let mut s = DeliveryScheduler::default();
        let now = Instant::now();
        let mut due: Vec<Delivery> = (0..200)
            .map(|i| delivery(i, "a", &format!("stalled{i}")))
            .collect();
        due.push(delivery(1_000, "b", "ok"));
        let started = s.start(due, now);
        let a = started.iter().filter(|d| d.tenant == "a").count();
        assert_eq!(a, MAX_IN_FLIGHT_PER_TENANT);
        assert!(started.iter().any(|d| d.tenant == "b"));
        // While a's deliveries hang, b's next one still starts.
        assert_eq!(s.start(vec![delivery(1_001, "b", "ok2")], now).len(), 1);
    }

    #[test]
    fn tenants_are_taken_in_turn_up_to_the_global_cap() {
        let mut s = DeliveryScheduler::default();
        let now = Instant::now();
        let due: Vec<Delivery> = (0..10)
            .flat_map(|t| {
                (0..20).map(move |i| delivery(t * 100 + i, &format!("t{t}"), &format!("s{t}-{i}")))
            })
            .collect();
        let started = s.start(due, now);
        assert_eq!(started.len(), MAX_IN_FLIGHT);
        assert_eq!(s.total, MAX_IN_FLIGHT);
        for t in 0..10 {
            let n = started
                .iter()
                .filter(|d| d.tenant == format!("t{t}"))
                .count();
            assert!((6..=7).contains(&n), "tenant t{t} got {n}");
        }
    }

    #[test]
    fn a_failed_sink_is_held_back_for_the_backoff() {
        let mut s = DeliveryScheduler::default();
        let now = Instant::now();
        let first = s.start(vec![delivery(1, "a", "x")], now);
        s.finish(&first[0], Outcome::Failed, now);
        assert!(s.start(vec![delivery(1, "a", "x")], now).is_empty());
        let later = now + backoff(1);
        let again = s.start(vec![delivery(1, "a", "x")], later);
        assert_eq!(again.len(), 1);
        s.finish(&again[0], Outcome::Failed, later);
        assert!(
            s.start(vec![delivery(1, "a", "x")], later + backoff(1))
                .is_empty()
        );
        let third = s.start(vec![delivery(1, "a", "x")], later + backoff(2));
        s.finish(&third[0], Outcome::Delivered, later + backoff(2));
        assert_eq!(
            s.start(vec![delivery(2, "a", "x")], later + backoff(2))
                .len(),
            1
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
