//! numguard: decides whether a phone number still belongs to its registered owner, from
//! carrier ranges and porting / SIM-swap / disconnection / reassignment events.

#[allow(missing_docs)]
pub mod api;
#[allow(missing_docs)]
pub mod cli;
pub mod connections;
pub mod domain;
pub mod egress;
pub mod engine;
#[allow(missing_docs)]
pub mod error;

pub mod metrics;
#[allow(missing_docs)]
pub mod middleware;
pub mod ops_http;
pub mod private_files;
#[allow(missing_docs)]
pub mod ranges;
#[allow(missing_docs)]
pub mod rest;
#[allow(missing_docs)]
pub mod server;
pub mod server_key;
#[allow(missing_docs)]
pub mod settings;
pub mod store;
pub mod telemetry;
#[allow(missing_docs)]
pub mod upstream;

/// The hasher of maps keyed by phone numbers, prefixes and ids on the check path: foldhash,
/// seeded per process. std's SipHash was about a tenth of an audit's server instructions
/// (it is built to resist collision attacks with a secret key; a per-process random seed
/// is enough for keys that stay inside one server).
pub type FastHash = foldhash::fast::RandomState;
