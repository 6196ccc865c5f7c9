//! What one warm check's own work costs in-process, without the network (issue 14): the
//! decision (coverage included), its conversion to the protobuf answer and the encoding
//! the server does, and the decoding a client does, for numbers seen by one source and by
//! the 20 carrier-scoped sources of `check_load --scoped` besides (or with those scoped
//! elsewhere). One thread, so the figures are CPU time per check; alternated rounds, so
//! the machine's drift weighs on each placement alike.
//!
//! `cargo bench --bench decision_cost -- [--numbers 20000] [--rounds 6]`

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use numguard::api::convert::check_response;
use numguard::api::pb;
use numguard::domain::auth::TimePrecision;
use numguard::domain::carrier::CarrierRegistry;
use numguard::domain::decision::{CheckInput, MaxAge, Policy, decide};
use numguard::domain::event::{EventFact, EventKind};
use numguard::domain::number::{E164, ParsedNumber};
use numguard::domain::owner_since::OwnerSince;
use numguard::domain::source::{DEFAULT_MAX_LAG, RawScope, Source, SourceSet};
use numguard::ranges::shipped::shipped_carriers;
use numguard_testkit::bench::SCOPED_CARRIERS;
use prost::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Distinct numbers checked in turn (each with ten events, as `check_load` seeds them).
    #[arg(long, default_value_t = 20_000)]
    numbers: u64,
    /// Alternated rounds of the two placements.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A live source heard from at `now`.
fn source(
    name: &str,
    scopes: &[RawScope],
    carriers: &CarrierRegistry,
    now: DateTime<Utc>,
) -> Source {
    let since = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut s = Source::new(name, Some(since), scopes, Some(DEFAULT_MAX_LAG), carriers)
        .expect("a valid source");
    s.complete_until = Some(now);
    s
}

/// The bench's own source over `81`, and with `scoped` the 20 sources `check_load
/// --scoped` registers, their first scope under `first_prefix`.
fn sources(scoped: Option<&str>, carriers: &CarrierRegistry, now: DateTime<Utc>) -> SourceSet {
    let mut all = vec![source("bench", &[RawScope::whole("81")], carriers, now)];
    let scope = |prefix: &str, carriers: &[&str], kinds: &[EventKind]| RawScope {
        prefix: prefix.into(),
        carriers: carriers.iter().map(|c| c.to_string()).collect(),
        kinds: kinds.to_vec(),
    };
    if let Some(first_prefix) = scoped {
        for i in 0..20 {
            let scopes = [
                scope(
                    first_prefix,
                    &[SCOPED_CARRIERS[i % 5]],
                    &[
                        EventKind::SimSwap,
                        EventKind::Disconnect,
                        EventKind::Reassign,
                        EventKind::DeviceSwap,
                    ],
                ),
                scope(
                    "8180",
                    &[SCOPED_CARRIERS[(i + 1) % 5]],
                    &[EventKind::SimSwap, EventKind::Reassign],
                ),
                scope("8170", &[], &[EventKind::Disconnect]),
            ];
            all.push(source(&format!("feed-{i:02}"), &scopes, carriers, now));
        }
    }
    SourceSet::new(all)
}

/// Number `i`'s ten events, of one kind as `check_load` seeds them (ports to KDDI).
fn history(i: u64, now: DateTime<Utc>) -> Vec<EventFact> {
    let kind = match i % 10 {
        0 => EventKind::Port,
        1 => EventKind::Disconnect,
        2 => EventKind::Reassign,
        3 | 4 => EventKind::DeviceSwap,
        _ => EventKind::SimSwap,
    };
    (0..10u64)
        .map(|j| EventFact {
            source: "bench".parse().expect("name"),
            source_event_id: format!("ev-{i}-{j}"),
            kind,
            occurred_at: now - Duration::minutes(((i * 7919 + j * 104_729) % 432_000) as i64),
            from_carrier: None,
            to_carrier: (kind == EventKind::Port).then(|| "jp-kddi".parse().expect("id")),
        })
        .collect()
}

struct Numbers {
    e164: Vec<E164>,
    histories: Vec<Vec<EventFact>>,
}

/// Microseconds per check of each step, in the order a warm check takes them.
#[derive(Clone, Copy, Default)]
struct Steps {
    decide: f64,
    encode: f64,
    decode: f64,
    /// Mean size of an encoded answer.
    bytes: f64,
}

/// Times each step over all the numbers: `decide`, then `convert::check_response` with
/// protobuf encoding (the server's share), then a client's decoding.
fn per_check(numbers: &Numbers, sources: &SourceSet, carriers: &CarrierRegistry) -> Steps {
    let holder = "jp-docomo".parse().expect("id");
    let owner_since = OwnerSince::at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let max_age = MaxAge::new(0, 24 * 365).expect("default window");
    let per_number =
        |started: Instant| started.elapsed().as_secs_f64() * 1e6 / numbers.e164.len() as f64;
    let started = Instant::now();
    let decisions: Vec<_> = numbers
        .e164
        .iter()
        .zip(&numbers.histories)
        .map(|(e164, history)| {
            let input = CheckInput {
                now: Utc::now(),
                max_age,
                owner_since: Some(owner_since),
                mobile: true,
                digits: e164.digits(),
                original_carrier: Some(&holder),
                carriers,
                sources,
                history,
                upstream: &[],
            };
            decide(&input, Policy::default())
        })
        .collect();
    let decide = per_number(started);
    let started = Instant::now();
    let encoded: Vec<Vec<u8>> = numbers
        .e164
        .iter()
        .zip(decisions)
        .map(|(e164, decision)| {
            check_response(e164, decision, TimePrecision::Exact).encode_to_vec()
        })
        .collect();
    let encode = per_number(started);
    let started = Instant::now();
    for bytes in &encoded {
        black_box(pb::CheckNumberResponse::decode(bytes.as_slice()).expect("decodes"));
    }
    let decode = per_number(started);
    let bytes = encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len() as f64;
    Steps {
        decide,
        encode,
        decode,
        bytes,
    }
}

fn main() {
    let args = Args::parse();
    let now = Utc::now();
    let carriers = CarrierRegistry::new(shipped_carriers());
    let numbers = Numbers {
        e164: (0..args.numbers)
            .map(|i| {
                ParsedNumber::parse(&format!("+81901{i:07}"), None)
                    .expect("a valid number")
                    .e164
            })
            .collect(),
        histories: (0..args.numbers).map(|i| history(i, now)).collect(),
    };
    let placements = [
        ("1 source", sources(None, &carriers, now)),
        (
            "20 scoped sources elsewhere",
            sources(Some("8160"), &carriers, now),
        ),
        (
            "20 scoped sources seeing the numbers",
            sources(Some("8190"), &carriers, now),
        ),
    ];
    let mut sums = [Steps::default(); 3];
    for _ in 0..args.rounds {
        for ((_, sources), sum) in placements.iter().zip(&mut sums) {
            let steps = per_check(&numbers, sources, &carriers);
            sum.decide += steps.decide;
            sum.encode += steps.encode;
            sum.decode += steps.decode;
            sum.bytes = steps.bytes;
        }
    }
    let rounds = args.rounds as f64;
    println!(
        "| sources | server µs/check: decide | convert + encode | client µs/check: decode | answer bytes |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((name, _), sum) in placements.iter().zip(sums) {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.0} |",
            sum.decide / rounds,
            sum.encode / rounds,
            sum.decode / rounds,
            sum.bytes
        );
    }
}
