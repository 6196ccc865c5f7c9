//! How long reading a number takes (issue 16): `ParsedNumber::parse` per number, for
//! canonical E.164 input, for punctuated international input and for national input with
//! a region, on one thread and on two threads at once; the phonenumber crate's own
//! `parse` + `is_valid` beside it on the same inputs, for scale.
//!
//! `cargo bench --bench number_reading -- [--numbers 200000]`

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use numguard::domain::number::{ParsedNumber, Region};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
struct Args {
    /// Numbers per input shape.
    #[arg(long, default_value_t = 200_000)]
    numbers: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Microseconds per number over `inputs`, read on `threads` threads at once.
fn per_number(inputs: &[String], threads: usize, read: impl Fn(&str) -> bool + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for part in inputs.chunks(inputs.len().div_ceil(threads)) {
            let read = &read;
            scope.spawn(move || {
                let valid = part.iter().filter(|n| read(n)).count();
                assert_eq!(valid, part.len(), "every input is a valid number");
            });
        }
    });
    started.elapsed().as_secs_f64() * 1e6 / inputs.len() as f64
}

fn main() {
    let args = Args::parse();
    let mut rng = SmallRng::seed_from_u64(16);
    let subscribers: Vec<u32> = (0..args.numbers)
        .map(|_| rng.random_range(10_000_000..100_000_000))
        .collect();
    let shapes: [(&str, Vec<String>, Option<Region>); 3] = [
        (
            "canonical E.164 (+8190xxxxxxxx)",
            subscribers.iter().map(|s| format!("+8190{s}")).collect(),
            None,
        ),
        (
            "international with punctuation (+81 90-xxxx-xxxx)",
            subscribers
                .iter()
                .map(|s| format!("+81 90-{}-{:04}", s / 10_000, s % 10_000))
                .collect(),
            None,
        ),
        (
            "national with region JP (090-xxxx-xxxx)",
            subscribers
                .iter()
                .map(|s| format!("090-{}-{:04}", s / 10_000, s % 10_000))
                .collect(),
            Some("JP".parse().expect("JP")),
        ),
    ];
    println!("| input | threads | numguard µs/number | phonenumber crate µs/number |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, inputs, region) in &shapes {
        for threads in [1, 2] {
            let ours = per_number(inputs, threads, |n| {
                black_box(ParsedNumber::parse(n, *region)).is_ok()
            });
            let id = region.map(|r| {
                r.to_string()
                    .parse::<phonenumber::country::Id>()
                    .expect("id")
            });
            let crate_only = per_number(inputs, threads, |n| {
                phonenumber::parse(id, n).is_ok_and(|p| black_box(p.is_valid()))
            });
            println!("| {name} | {threads} | {ours:.2} | {crate_only:.2} |");
        }
    }
}
