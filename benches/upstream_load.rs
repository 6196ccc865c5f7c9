//! Live look-ups against a fake operator answering in `--delay-ms` (default 50 ms).
//!
//! `cargo bench --bench upstream_load` starts the fake operator (CAMARA SIM Swap v2 and
//! Number Recycling v0.2 behind OAuth2, the one the tests use) and the release `numguard
//! serve` on a fresh SQLite database with a providers file pointing at it; no source
//! covers the numbers, so every check needs the operator. Then:
//!
//! 1. warms a hot set of `--hot` numbers (one AuditNumbers stream);
//! 2. measures `grpc.health.v1.Health/Check`, then `CheckNumber` where `--hit-ratio` of
//!    the requests ask a hot (cached) number and the rest a number never asked before
//!    (one operator call each), then health again;
//! 3. audits `--audit-rows` rows of which `--repeat` repeat an earlier row's number, and
//!    counts the operator's calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use numguard::api::pb;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::upstream::config::{Auth, Provider, ProvidersFile};
use numguard_testkit::bench::{Load, connect, number, run_phase, start_server};
use numguard_testkit::operator;
use numguard_testkit::{Backend, TestDb};
use rand::Rng;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
struct Args {
    /// The fake operator's answer time, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Numbers checked once before the measurement, so that their answers are cached.
    #[arg(long, default_value_t = 10_000)]
    hot: u64,
    /// Share of the measured checks that ask a hot number.
    #[arg(long, default_value_t = 0.9)]
    hit_ratio: f64,
    #[command(flatten)]
    load: Load,
    /// Calls in flight to the operator at most (the provider's max_concurrency).
    #[arg(long, default_value_t = 256)]
    provider_concurrency: usize,
    /// Rows in the audit.
    #[arg(long, default_value_t = 100_000)]
    audit_rows: u64,
    /// Share of the audit's rows that repeat an earlier row's number.
    #[arg(long, default_value_t = 0.2)]
    repeat: f64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Answers and how many of them came from the cache, over some results.
fn lookups(results: &[pb::AuditResult]) -> (u64, u64) {
    let mut asked = 0;
    let mut cached = 0;
    for r in results {
        if let Some(pb::audit_result::Outcome::Check(c)) = &r.outcome {
            for u in &c.upstream {
                asked += 1;
                cached += u64::from(u.cached);
            }
        }
    }
    (asked, cached)
}

async fn audit(channel: Channel, numbers: Vec<String>) -> Vec<pb::AuditResult> {
    let rows = numbers.into_iter().enumerate().map(|(i, n)| pb::AuditRow {
        customer_ref: format!("c{i}"),
        phone_number: n,
        ..Default::default()
    });
    NumberCheckClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .audit_numbers(tokio_stream::iter(rows))
        .await
        .expect("audit")
        .into_inner()
        .map(|r| r.expect("audit result"))
        .collect()
        .await
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    args.load.pin();
    let op = operator::Operator::start().await;
    op.behave(|b| b.delay = Duration::from_millis(args.delay_ms));
    let db = TestDb::new(Backend::Sqlite).await;
    let providers_file = tempfile::NamedTempFile::new().expect("temp file");
    ProvidersFile {
        providers: vec![Provider {
            name: "bench-op".into(),
            carriers: vec!["Alpha Mobile".into()],
            base_url: op.base_url(),
            auth: Auth::Oauth2 {
                token_url: op.token_url(),
                client_id: operator::CLIENT_ID.into(),
                client_secret: operator::CLIENT_SECRET.into(),
                scope: None,
            },
            max_concurrency: args.provider_concurrency,
        }],
    }
    .save(providers_file.path())
    .expect("providers file");
    let server = start_server(
        &db.url,
        &["--upstreams-file", providers_file.path().to_str().unwrap()],
    );
    let mut channels = Vec::new();
    for _ in 0..args.load.connections.max(1) {
        channels.push(connect(&server.url).await);
    }
    // +81 901 000 0000 .. +81 901 099 9999 belong to Alpha Mobile, longer than the
    // shipped ranges there.
    AdminClient::new(channels[0].clone())
        .import_ranges(pb::ImportRangesRequest {
            ranges: (0..100)
                .map(|i| pb::CarrierRange {
                    prefix: format!("81901{i:03}"),
                    carrier: "Alpha Mobile".into(),
                })
                .collect(),
        })
        .await
        .expect("ranges");

    let t = Instant::now();
    let warmed = audit(channels[0].clone(), (0..args.hot).map(number).collect()).await;
    println!(
        "warm-up: {} hot numbers through one audit in {:.2} s ({} operator calls)",
        warmed.len(),
        t.elapsed().as_secs_f64(),
        op.calls()
    );

    let health = |channels: Vec<Channel>| {
        run_phase(&args.load, move |worker| {
            let channel = channels[worker % channels.len()].clone();
            async move {
                HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok()
            }
        })
    };
    let health_a = health(channels.clone()).await;
    // Fresh numbers follow the hot ones; each is asked once.
    let next_fresh = Arc::new(AtomicU64::new(args.hot));
    let hits = Arc::new(AtomicU64::new(0));
    let before = op.calls();
    let mix = {
        let channels = channels.clone();
        let (next_fresh, hits) = (next_fresh.clone(), hits.clone());
        let (hot, hit_ratio) = (args.hot, args.hit_ratio);
        run_phase(&args.load, move |worker| {
            let channel = channels[worker % channels.len()].clone();
            let mut rng = rand::rng();
            let i = if rng.random_bool(hit_ratio) {
                rng.random_range(0..hot)
            } else {
                next_fresh.fetch_add(1, Ordering::Relaxed)
            };
            let hits = hits.clone();
            async move {
                match NumberCheckClient::new(channel)
                    .check_number(pb::CheckNumberRequest {
                        phone_number: number(i),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        hits.fetch_add(
                            r.upstream.iter().filter(|u| u.cached).count() as u64,
                            Ordering::Relaxed,
                        );
                        r.upstream.iter().all(|u| u.answer.is_some())
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    };
    let mix_calls = op.calls() - before;
    let health_b = health(channels.clone()).await;

    println!(
        "\n{} in flight over {} connections, {} s per phase, operator answering in {} ms",
        args.load.concurrency, args.load.connections, args.load.seconds, args.delay_ms
    );
    println!("| phase | requests | errors | req/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!("{}", health_a.row("Health/Check (before)"));
    println!(
        "{}",
        mix.row(&format!(
            "CheckNumber, {:.0}% hot numbers",
            args.hit_ratio * 100.0
        ))
    );
    println!("{}", health_b.row("Health/Check (after)"));
    let health_rps = (health_a.rps() + health_b.rps()) / 2.0;
    println!(
        "\nCheckNumber at the mix / Health: {:.3}; operator calls during it: {mix_calls}; \
         answers from the cache: {} of {} checks ({:.1}%)",
        mix.rps() / health_rps,
        hits.load(Ordering::Relaxed),
        mix.requests,
        100.0 * hits.load(Ordering::Relaxed) as f64 / mix.requests.max(1) as f64
    );

    // The audit: numbers after every one used so far; a repeat reuses an earlier row's.
    let first = next_fresh.load(Ordering::Relaxed) + 1_000;
    let mut rng = rand::rng();
    let mut distinct = 0u64;
    let mut rows = Vec::with_capacity(args.audit_rows as usize);
    for _ in 0..args.audit_rows {
        if distinct > 0 && rng.random_bool(args.repeat) {
            rows.push(number(first + rng.random_range(0..distinct)));
        } else {
            rows.push(number(first + distinct));
            distinct += 1;
        }
    }
    let before = op.calls();
    let t = Instant::now();
    let results = audit(channels[0].clone(), rows).await;
    let took = t.elapsed();
    let calls = op.calls() - before;
    let (asked, cached) = lookups(&results);
    println!(
        "\naudit: {} rows ({distinct} distinct numbers, {} repeats) in {:.2} s = {:.0} rows/s; \
         operator calls: {calls}; look-ups answered from the cache: {cached} of {asked}; \
         most calls in flight at the operator: {}",
        results.len(),
        args.audit_rows - distinct,
        took.as_secs_f64(),
        results.len() as f64 / took.as_secs_f64(),
        op.counters().max_in_flight.load(Ordering::Relaxed)
    );
    drop(server);
}
