//! Completing a decision with the operator's answers (SPEC §5): asked only where local
//! data leaves `sim_swap` or `ownership` UNKNOWN, only for a mobile number whose current
//! carrier has a provider. A provider's failure is an answer too (UPSTREAM_UNAVAILABLE),
//! never an error to the caller.

use chrono::NaiveDate;

use super::Engine;
use super::number_cache::NumberState;
use crate::domain::decision::{Decision, MaxAge, Ownership, SimSwap};
use crate::domain::number::E164;
use crate::domain::owner_since::OwnerSince;
use crate::upstream::Route;

/// What a decision still needs from the operator.
pub(super) struct Needs {
    route: Route,
    sim_swap: bool,
    /// The date to ask Number Recycling about.
    recycled_since: Option<NaiveDate>,
}

impl Engine {
    /// `None` when the decision needs nothing the operator could give.
    pub(super) fn upstream_needs(
        &self,
        state: &NumberState,
        decision: &Decision,
        owner_since: Option<&OwnerSince>,
    ) -> Option<Needs> {
        let upstreams = self.upstreams.as_ref()?;
        let sim_swap = decision.sim_swap == SimSwap::Unknown;
        let recycled_since = match (decision.ownership, owner_since) {
            (Ownership::Unknown, Some(owner)) => Some(self.owner_date(owner)),
            _ => None,
        };
        if !state.mobile || !(sim_swap || recycled_since.is_some()) {
            return None;
        }
        let route = upstreams.route(decision.current_carrier.as_deref())?;
        Some(Needs {
            route,
            sim_swap,
            recycled_since,
        })
    }

    /// The decision again, with the operator's answers to what it needs.
    pub(super) async fn consult_upstream(
        &self,
        e164: &E164,
        state: &NumberState,
        max_age: MaxAge,
        owner_since: Option<OwnerSince>,
        needs: Needs,
    ) -> Decision {
        let Some(upstreams) = &self.upstreams else {
            return self.decide(e164, state, max_age, owner_since, &[]);
        };
        let sim = async {
            match needs.sim_swap {
                true => Some(upstreams.sim_swap(needs.route, e164, max_age.hours()).await),
                false => None,
            }
        };
        let recycled = async {
            match needs.recycled_since {
                Some(date) => Some(upstreams.recycled(needs.route, e164, date).await),
                None => None,
            }
        };
        let (sim, recycled) = tokio::join!(sim, recycled);
        let answers: Vec<_> = sim.into_iter().chain(recycled).collect();
        self.decide(e164, state, max_age, owner_since, &answers)
    }

    /// CAMARA's `specifiedDate` for an owner_since: its calendar date in the server's zone.
    fn owner_date(&self, owner: &OwnerSince) -> NaiveDate {
        owner
            .coverage_needed_from()
            .with_timezone(&self.config.date_zone)
            .date_naive()
    }
}
