//! Completing a decision with the operator's answers (SPEC §5): asked only where local
//! data leaves `sim_swap` or `ownership` UNKNOWN, only for a mobile number whose current
//! carrier has a provider. A provider's failure is an answer too (UPSTREAM_UNAVAILABLE),
//! never an error to the caller.

use std::sync::Arc;

use chrono::NaiveDate;

use super::EngineError;
use super::check::CheckService;
use super::number_cache::NumberState;
use crate::domain::carrier::CarrierRegistry;
use crate::domain::decision::{Decision, MaxAge, Ownership, SimSwap};
use crate::domain::number::E164;
use crate::domain::owner_since::OwnerSince;
use crate::egress::Egress;
use crate::upstream::{Route, UpstreamConfig, Upstreams};

/// The look-ups for `config`, or `None` when it names no provider.
pub(super) fn build(
    config: UpstreamConfig,
    carriers: &CarrierRegistry,
    egress: &Egress,
) -> Result<Option<Arc<Upstreams>>, EngineError> {
    if config.providers.providers.is_empty() {
        return Ok(None);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let upstreams = Upstreams::new(config, egress).map_err(EngineError::UpstreamSetup)?;
    route(&upstreams, carriers);
    tracing::info!(providers = ?upstreams.names(), "upstream look-ups on");
    Ok(Some(Arc::new(upstreams)))
}

/// Points each provider at the carriers its names resolve to, saying which do not.
pub(super) fn route(upstreams: &Upstreams, carriers: &CarrierRegistry) {
    for problem in upstreams.resolve_carriers(carriers) {
        tracing::error!(
            "{problem}; that name routes nowhere until the carrier is registered \
             (numguard carriers add|alias)"
        );
    }
}

/// What a decision still needs from the operator, and which providers routed it.
pub(super) struct Needs {
    upstreams: Arc<Upstreams>,
    route: Route,
    sim_swap: bool,
    /// The date to ask Number Recycling about.
    recycled_since: Option<NaiveDate>,
}

impl CheckService {
    /// What to ask the operator; `None` when the decision needs nothing the operator could
    /// give, or when no provider serves the number's carrier (which the decision's
    /// UNKNOWN reasons then say).
    pub(super) fn upstream_needs(
        &self,
        state: &NumberState,
        decision: &mut Decision,
        owner_since: Option<&OwnerSince>,
    ) -> Option<Needs> {
        let sim_swap = decision.sim_swap == SimSwap::Unknown;
        let recycled_since = match (decision.ownership, owner_since) {
            (Ownership::Unknown, Some(owner)) => Some(self.owner_date(owner)),
            _ => None,
        };
        if !state.mobile || !(sim_swap || recycled_since.is_some()) {
            return None;
        }
        let upstreams = self.catalog.upstreams()?;
        let carrier = decision.current_carrier.as_ref().map(|c| &c.id);
        let Some(route) = upstreams.route(carrier) else {
            decision.note_no_provider();
            return None;
        };
        Some(Needs {
            upstreams,
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
        let upstreams = &needs.upstreams;
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
