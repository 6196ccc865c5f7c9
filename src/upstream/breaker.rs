//! A circuit breaker per provider: after `threshold` failures in a row it opens and calls
//! fail fast for `cooldown`; then one trial call is let through (half-open), whose outcome
//! closes or re-opens it. A 429 holds calls back until its Retry-After has passed.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Why a call is not made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Too many failures; retry after the cooldown.
    Open,
    /// The provider asked for a pause (429 Retry-After); this much of it is left.
    RateLimited(Duration),
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    failures: u32,
    open_until: Option<Instant>,
    /// A half-open trial call is under way.
    trial: bool,
    paused_until: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            failures: 0,
            open_until: None,
            trial: false,
            paused_until: None,
        }
    }

    /// May a call go out at `now`? A granted call must be followed by `succeeded` or
    /// `failed`.
    pub fn permit(&mut self, now: Instant) -> Result<(), Held> {
        if let Some(until) = self.paused_until.filter(|t| now < *t) {
            return Err(Held::RateLimited(until - now));
        }
        match self.open_until {
            None => Ok(()),
            Some(t) if now < t => Err(Held::Open),
            // Half-open: one trial at a time.
            Some(_) if self.trial => Err(Held::Open),
            Some(_) => {
                self.trial = true;
                Ok(())
            }
        }
    }

    /// Whether it is open or half-open (not letting every call through).
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial = false;
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.trial || self.failures >= self.config.threshold {
            self.open_until = Some(now + self.config.cooldown);
        }
        self.trial = false;
    }

    /// The provider answered 429: no calls until `until`. Not a failure of the provider.
    pub fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |t| t.max(until)));
        self.trial = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row() {
        let t = Instant::now();
        let mut b = breaker();
        for _ in 0..2 {
            assert_eq!(b.permit(t), Ok(()));
            b.failed(t);
        }
        b.succeeded(); // a success resets the count
        for _ in 0..3 {
            assert_eq!(b.permit(t), Ok(()));
            b.failed(t);
        }
        assert_eq!(b.permit(t), Err(Held::Open));
        assert_eq!(b.permit(t + Duration::from_secs(9)), Err(Held::Open));
    }

    #[test]
    fn after_the_cooldown_one_trial_decides() {
        let t = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.failed(t);
        }
        let later = t + Duration::from_secs(10);
        assert_eq!(b.permit(later), Ok(()));
        assert_eq!(b.permit(later), Err(Held::Open), "one trial at a time");
        b.failed(later);
        assert_eq!(b.permit(later + Duration::from_secs(5)), Err(Held::Open));
        let again = later + Duration::from_secs(10);
        assert_eq!(b.permit(again), Ok(()));
        b.succeeded();
        assert_eq!(b.permit(again), Ok(()));
        assert_eq!(b.permit(again), Ok(()), "closed: no limit");
    }

    #[test]
    fn a_pause_holds_calls_until_it_ends_without_opening() {
        let t = Instant::now();
        let mut b = breaker();
        b.pause(t + Duration::from_secs(2));
        assert_eq!(
            b.permit(t + Duration::from_millis(500)),
            Err(Held::RateLimited(Duration::from_millis(1500)))
        );
        assert_eq!(b.permit(t + Duration::from_secs(2)), Ok(()));
        b.succeeded();
        assert_eq!(b.permit(t + Duration::from_secs(2)), Ok(()), "not opened");
    }
}
