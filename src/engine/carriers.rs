//! The carrier registry and the ranges that name its carriers: registering carriers and
//! their spellings, and resolving the names that range files and feeds bring in.

use std::collections::BTreeMap;

use super::catalog::Catalog;
use super::{EngineError, dedup_keep_last};
use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::carrier::{Carrier, CarrierId, CarrierRegistry, ResolveError, provisional_id};
use crate::domain::number::calling_code;
use crate::ranges::RangeEntry;

/// What a range import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeImport {
    /// Ranges written.
    pub written: u64,
    /// Ranges in the lookup table afterwards.
    pub total: u64,
    /// `(index in the import, reason)` of each range refused; the rest were imported.
    pub errors: Vec<(usize, String)>,
}

/// Names a batch brought in that nobody registered, to be registered before the batch is
/// written (only when the server registers unknown names).
#[derive(Debug, Default)]
pub(super) struct Unregistered {
    carriers: BTreeMap<CarrierId, Carrier>,
}

impl Unregistered {
    /// The id `name` resolves to in `registry`; an unknown name gets a provisional id,
    /// remembered for [`Catalog::register_unreviewed`], when `register` is on.
    pub fn resolve(
        &mut self,
        registry: &CarrierRegistry,
        register: bool,
        field: Field,
        name: &str,
        country_code: Option<u16>,
    ) -> Result<CarrierId, FieldError> {
        match registry.resolve(name, country_code) {
            Ok(carrier) => Ok(carrier.id.clone()),
            Err(ResolveError::Unknown(_)) if register && country_code.is_some() => {
                let cc = country_code.unwrap_or_default();
                let id = provisional_id(name, cc);
                self.carriers.entry(id.clone()).or_insert_with(|| Carrier {
                    id: id.clone(),
                    name: name.trim().to_string(),
                    country_code: cc,
                    mcc_mnc: Vec::new(),
                    aliases: Vec::new(),
                    reviewed: false,
                });
                Ok(id)
            }
            Err(e) => Err(FieldError::new(field, e.to_string())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.carriers.is_empty()
    }
}

impl Catalog {
    /// Registers the carriers a batch named that nobody registered, as unreviewed.
    pub(super) async fn register_unreviewed(
        &self,
        unregistered: Unregistered,
    ) -> Result<(), EngineError> {
        if unregistered.is_empty() {
            return Ok(());
        }
        let registry = self.carriers();
        let fresh: Vec<Carrier> = unregistered
            .carriers
            .into_values()
            .filter(|c| registry.get(&c.id).is_none())
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        self.store.upsert_carriers(&fresh).await?;
        self.reload_carriers().await?;
        let ids: Vec<&str> = fresh.iter().map(|c| c.id.as_str()).collect();
        tracing::warn!(
            carriers = ?ids,
            "registered carrier names nobody registered; review them with \
             `numguard carriers list --unreviewed`"
        );
        Ok(())
    }

    /// Upserts ranges (a later entry wins over an earlier one with the same prefix) and
    /// rebuilds the lookup table. Each range's carrier name resolves to a carrier of its
    /// prefix's country; a range whose name resolves to none is refused, the rest kept.
    pub async fn import_ranges(&self, ranges: Vec<RangeEntry>) -> Result<RangeImport, EngineError> {
        let registry = self.carriers();
        let register = self.register_unknown;
        let mut unregistered = Unregistered::default();
        let mut errors = Vec::new();
        let mut accepted = Vec::with_capacity(ranges.len());
        for (index, range) in ranges.into_iter().enumerate() {
            let country = calling_code(range.prefix.as_str());
            match unregistered.resolve(&registry, register, Field::Carrier, &range.carrier, country)
            {
                Ok(id) => accepted.push(RangeEntry {
                    prefix: range.prefix,
                    carrier: id.to_string(),
                }),
                Err(e) => errors.push((index, e.to_string())),
            }
        }
        self.register_unreviewed(unregistered).await?;
        let accepted = dedup_keep_last(accepted);
        let written = self.store.upsert_ranges(&accepted).await?;
        self.reload_ranges().await?;
        Ok(RangeImport {
            written,
            total: self.ranges().len() as u64,
            errors,
        })
    }

    /// Creates or replaces a carrier (reviewed, since an operator gave it). Refused when
    /// one of its spellings already names another carrier of its country.
    pub async fn upsert_carrier(&self, mut carrier: Carrier) -> Result<Carrier, EngineError> {
        carrier.reviewed = true;
        self.save_carrier(carrier).await
    }

    /// Adds spellings to a carrier (and marks it reviewed).
    pub async fn alias_carrier(
        &self,
        id: &str,
        aliases: &[String],
    ) -> Result<Carrier, EngineError> {
        let mut carrier = self.carrier(id)?;
        let aliases = aliases
            .iter()
            .map(|a| crate::domain::carrier::carrier_name(Field::Aliases, a))
            .collect::<Result<Vec<_>, _>>()?;
        if aliases.is_empty() {
            return Err(
                FieldError::new(Field::Aliases, "is empty; give at least one spelling").into(),
            );
        }
        carrier.add_aliases(aliases);
        carrier.reviewed = true;
        self.save_carrier(carrier).await
    }

    async fn save_carrier(&self, carrier: Carrier) -> Result<Carrier, EngineError> {
        if let Some(conflict) = self.carriers().conflict(&carrier) {
            return Err(FieldError::new(Field::Aliases, conflict.to_string()).into());
        }
        self.store
            .upsert_carriers(std::slice::from_ref(&carrier))
            .await?;
        self.reload_carriers().await?;
        // Ranges stored under a name that now resolves come into the table.
        self.reload_ranges().await?;
        Ok(carrier)
    }

    /// One carrier by id, or NOT_FOUND.
    pub fn carrier(&self, id: &str) -> Result<Carrier, EngineError> {
        id.trim()
            .parse::<CarrierId>()
            .ok()
            .and_then(|id| self.carriers().get(&id).cloned())
            .ok_or_else(|| EngineError::NotFound(format!("no carrier has the id {:?}", id.trim())))
    }
}
