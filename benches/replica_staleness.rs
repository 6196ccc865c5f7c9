//! Replica staleness (issue 17): how long after replica A acknowledges a change replica B
//! still answers without it, for events and for source, carrier and range changes, while
//! B serves a concurrent check load.
//!
//! `cargo bench --bench replica_staleness [-- --rounds 100 --concurrency 32]` starts two
//! release `numguard serve --dev` processes on one fresh PostgreSQL database
//! (NUMGUARD_TEST_POSTGRES_URL, default the local server). For each kind of change, each
//! round makes the change through A and then probes B, one request at a time, until B's
//! answer shows it; the propagation is the time from A's acknowledgement to the start of
//! the first probe that saw the change (0 when the first probe, sent at once, did). For
//! events, B has the number's quiet history cached before each round. Meanwhile
//! `--concurrency` checks of cached numbers run against B without pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use numguard::api::convert::timestamp;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, SimSwapStatus};
use numguard_testkit::bench::{add_source, bench_event, connect};
use numguard_testkit::process::Served;
use numguard_testkit::{Backend, TestDb};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Changes timed per kind.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
    /// Checks in flight against B throughout.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

/// Numbers the background load checks (all cached after the first pass).
const LOAD_NUMBERS: u32 = 10_000;

fn load_number(i: u32) -> String {
    format!("+81902{:07}", i % LOAD_NUMBERS)
}

fn round_number(round: u32) -> String {
    format!("+81903{round:07}")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::new(Backend::Postgres).await;
    let quiet = [("NUMGUARD_LOG", "warn,numguard::server=info")];
    let a = Served::start_with_env(&db.url, &["--dev"], &quiet);
    let b = Served::start_with_env(&db.url, &["--dev"], &quiet);
    let (to_a, to_b) = (connect(&a.url).await, connect(&b.url).await);
    add_source(to_a.clone()).await;
    // Heard from now, so its data counts as complete up to now.
    AdminClient::new(to_a.clone())
        .heartbeat(pb::HeartbeatRequest {
            source: "bench".into(),
            complete_until: None,
        })
        .await
        .expect("heartbeat");
    // B hears of the source too before anything is timed.
    wait_until(|| async {
        let sources = AdminClient::new(to_b.clone())
            .list_sources(pb::ListSourcesRequest {})
            .await;
        sources.is_ok_and(|s| s.into_inner().sources.iter().any(|s| s.name == "bench"))
    })
    .await;

    let load = Load::start(&b.url, args.concurrency).await;
    let mut rows = Vec::new();
    rows.push((
        "events (a SIM swap of a cached number)",
        events(&to_a, &to_b, args.rounds).await,
    ));
    rows.push((
        "sources (a new source)",
        sources(&to_a, &to_b, args.rounds).await,
    ));
    rows.push((
        "carriers (a new carrier)",
        carriers(&to_a, &to_b, args.rounds).await,
    ));
    rows.push((
        "ranges (a new range)",
        ranges(&to_a, &to_b, args.rounds).await,
    ));
    let (checks, errors, elapsed) = load.stop().await;

    println!(
        "## Propagation from A's acknowledgement to B, {} rounds each, {} checks in flight on B\n",
        args.rounds, args.concurrency
    );
    println!("| change | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, mut times) in rows {
        times.sort();
        println!(
            "| {name} | {} | {} | {} |",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.99)),
            ms(*times.last().expect("rounds > 0"))
        );
    }
    println!(
        "\nB's background checks: {checks} in {:.1} s ({:.0}/s), {errors} errors",
        elapsed.as_secs_f64(),
        checks as f64 / elapsed.as_secs_f64()
    );
    let behind = b.log().matches("the change feed is behind").count();
    println!("B's log: the feed fell behind its bound {behind} times");
    a.stop();
    b.stop();
}

/// Times one change: `change` runs through A, then `seen` is probed on B until it holds.
async fn propagation<C, CF, S, SF>(change: C, seen: S) -> Duration
where
    C: FnOnce() -> CF,
    CF: Future<Output = ()>,
    S: Fn() -> SF,
    SF: Future<Output = bool>,
{
    change().await;
    let acknowledged = Instant::now();
    let deadline = acknowledged + Duration::from_secs(30);
    loop {
        let probe = Instant::now();
        if seen().await {
            return probe - acknowledged;
        }
        assert!(Instant::now() < deadline, "B never saw the change");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn check(to: &Channel, number: &str) -> Option<pb::CheckNumberResponse> {
    NumberCheckClient::new(to.clone())
        .check_number(pb::CheckNumberRequest {
            phone_number: number.into(),
            ..Default::default()
        })
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

async fn events(to_a: &Channel, to_b: &Channel, rounds: u32) -> Vec<Duration> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let number = round_number(round);
        let cached = check(to_b, &number).await.expect("check on B");
        assert_eq!(cached.sim_swap(), SimSwapStatus::NotSwapped);
        let event = bench_event(
            format!("swap-{round}"),
            number.clone(),
            pb::EventKind::SimSwap,
        );
        times.push(
            propagation(
                || async {
                    EventsClient::new(to_a.clone())
                        .ingest_events(tokio_stream::iter(vec![event]))
                        .await
                        .expect("ingest on A");
                },
                || async {
                    check(to_b, &number)
                        .await
                        .is_some_and(|r| r.sim_swap() == SimSwapStatus::Swapped)
                },
            )
            .await,
        );
    }
    times
}

async fn sources(to_a: &Channel, to_b: &Channel, rounds: u32) -> Vec<Duration> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let name = format!("feed-{round}");
        times.push(
            propagation(
                || async {
                    AdminClient::new(to_a.clone())
                        .upsert_source(pb::Source {
                            name: name.clone(),
                            tracking_since: Some(timestamp(Utc::now())),
                            covers: vec![format!("44{round:04}")],
                            ..Default::default()
                        })
                        .await
                        .expect("source on A");
                },
                || async {
                    AdminClient::new(to_b.clone())
                        .list_sources(pb::ListSourcesRequest {})
                        .await
                        .is_ok_and(|s| s.into_inner().sources.iter().any(|s| s.name == name))
                },
            )
            .await,
        );
    }
    times
}

async fn carriers(to_a: &Channel, to_b: &Channel, rounds: u32) -> Vec<Duration> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let id = format!("bench-carrier-{round}");
        times.push(
            propagation(
                || async {
                    AdminClient::new(to_a.clone())
                        .upsert_carrier(pb::Carrier {
                            id: id.clone(),
                            name: format!("Bench Carrier {round}"),
                            country_code: 44,
                            ..Default::default()
                        })
                        .await
                        .expect("carrier on A");
                },
                || async {
                    AdminClient::new(to_b.clone())
                        .get_carrier(pb::GetCarrierRequest { id: id.clone() })
                        .await
                        .is_ok()
                },
            )
            .await,
        );
    }
    times
}

async fn ranges(to_a: &Channel, to_b: &Channel, rounds: u32) -> Vec<Duration> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let prefix = format!("81904{round:04}");
        times.push(
            propagation(
                || async {
                    let imported = AdminClient::new(to_a.clone())
                        .import_ranges(pb::ImportRangesRequest {
                            ranges: vec![pb::CarrierRange {
                                prefix: prefix.clone(),
                                carrier: "jp-docomo".into(),
                            }],
                        })
                        .await
                        .expect("range on A")
                        .into_inner();
                    assert!(imported.errors.is_empty(), "{:?}", imported.errors);
                },
                || async {
                    AdminClient::new(to_b.clone())
                        .lookup_range(pb::LookupRangeRequest {
                            phone_number: format!("+{prefix}000"),
                            region: String::new(),
                        })
                        .await
                        .is_ok_and(|r| r.into_inner().prefix == prefix)
                },
            )
            .await,
        );
    }
    times
}

/// Checks of cached numbers against one server, without pause, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(url: &str, concurrency: usize) -> Load {
        let channel = connect(url).await;
        // Every load number cached before anything is timed.
        for i in 0..LOAD_NUMBERS {
            check(&channel, &load_number(i))
                .await
                .expect("warm-up check");
        }
        let (stop, checks, errors) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let workers = (0..concurrency)
            .map(|worker| {
                let (stop, checks, errors) = (stop.clone(), checks.clone(), errors.clone());
                let channel = channel.clone();
                tokio::spawn(async move {
                    let mut i = worker as u32 * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        i = i.wrapping_add(1);
                        let counter = match check(&channel, &load_number(i)).await {
                            Some(_) => &checks,
                            None => &errors,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            checks,
            errors,
            started: Instant::now(),
            workers,
        }
    }

    /// Stops the load: (checks answered, errors, how long it ran).
    async fn stop(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        for worker in self.workers {
            let _ = worker.await;
        }
        (
            self.checks.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            elapsed,
        )
    }
}

async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
