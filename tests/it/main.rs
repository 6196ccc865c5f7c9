//! numguard's integration tests, one binary: each module drives the real server (in this
//! process or as the built binary) through real clients, on SQLite and on PostgreSQL.
//! What they share is in the `numguard-testkit` crate, which the benches use too.

mod alerts;
mod alerts_tail;
mod audits;
mod camara_fuzz;
mod cli;
mod clients;
mod connections;
mod coverage;
mod db_outage;
mod faults;
mod frames;
mod grpc_api;
mod number_reading;
mod operations;
mod prometheus;
mod readme;
mod replicas;
mod rest_api;
mod security;
mod store_story;
mod traces;
mod upstream;
mod webhooks;
