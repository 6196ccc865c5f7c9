//! Values the domain's tests share.

use chrono::{DateTime, Utc};

use super::carrier::{Carrier, CarrierId, CarrierRegistry};
use super::source::{DEFAULT_MAX_LAG, RawScope, Source, SourceSet};

/// Japan's four operators, as tests spell them.
pub fn carriers() -> &'static CarrierRegistry {
    static CARRIERS: std::sync::LazyLock<CarrierRegistry> = std::sync::LazyLock::new(|| {
        let c = |id: &str, name: &str, aliases: &[&str]| {
            let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
            Carrier::new(id, name, 81, &[], &aliases).unwrap()
        };
        CarrierRegistry::new(vec![
            c("jp-docomo", "NTT Docomo", &[]),
            c("jp-softbank", "SoftBank", &[]),
            c("jp-kddi", "KDDI", &[]),
            c("jp-rakuten", "Rakuten Communications", &["Rakuten"]),
        ])
    });
    &CARRIERS
}

/// The id of a test carrier, by any of its names.
pub fn carrier_id(name: &str) -> &'static CarrierId {
    &carriers().resolve(name, Some(81)).unwrap().id
}

/// The sources of a +81 number covered since `since` (every kind, any carrier, heard from
/// at `heard`); no source at all for `None`. Leaked: inputs borrow them, and tests are
/// short-lived.
pub fn covered(since: Option<DateTime<Utc>>, heard: DateTime<Utc>) -> &'static SourceSet {
    let sources = since.map(|since| {
        let mut s = Source::new(
            "feed",
            Some(since),
            &[RawScope::whole("81")],
            Some(DEFAULT_MAX_LAG),
            carriers(),
        )
        .unwrap();
        s.complete_until = Some(heard);
        s
    });
    Box::leak(Box::new(SourceSet::new(sources.into_iter().collect())))
}
