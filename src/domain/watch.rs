//! Watchlists: the numbers a tenant follows, each under the tenant's own reference.

use super::number::E164;
use super::owner_since::OwnerSince;

/// One watched number of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEntry {
    /// The tenant's own key for the entry (unique per tenant), e.g. a customer id.
    pub customer_ref: String,
    /// The number watched.
    pub number: E164,
    /// Since when the tenant's customer has held the number; alerts concern what
    /// happened after it.
    pub owner_since: OwnerSince,
}
