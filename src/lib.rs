//! numguard: decides whether a phone number still belongs to its registered owner, from
//! carrier ranges and porting / SIM-swap / disconnection / reassignment events.

pub mod api;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod error;
pub mod middleware;
pub mod ranges;
pub mod rest;
pub mod server;
pub mod settings;
pub mod store;
pub mod upstream;
