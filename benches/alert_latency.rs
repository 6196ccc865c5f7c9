//! Alert latency: with many `WatchAlerts` streams open on a large watchlist, the time from
//! an `IngestEvents` acknowledgement to each stream's receipt of the alert.
//!
//! `cargo bench --bench alert_latency [-- --backend postgres]` starts `numguard serve --dev`
//! (release build) on a fresh database, watches `--watched` numbers, opens `--streams`
//! streams, then ingests one event at a time on a random watched number, `--rounds` times,
//! and times every stream's copy of each alert, from the acknowledgement and from the
//! ingest call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use clap::Parser;
use numguard::api::convert::timestamp;
use numguard::api::pb;
use numguard::api::pb::alerts_client::AlertsClient;
use numguard::api::pb::events_client::EventsClient;
use numguard_testkit::bench::{add_source, bench_event, connect, cpu_time, number, start_server};
use numguard_testkit::{Backend, TestDb};
use rand::Rng;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    streams: usize,
    #[arg(long, default_value_t = 100_000)]
    watched: u64,
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// HTTP/2 connections the streams share.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// sqlite or postgres (NUMGUARD_TEST_POSTGRES_URL, default the local server).
    #[arg(long, default_value = "sqlite")]
    backend: Backend,
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::new(args.backend).await;
    let server = start_server(&db.url, &["--rate-limit", "0", "--max-in-flight", "100000"]);
    let url = server.url.clone();
    let channel = connect(&url).await;

    add_source(channel.clone()).await;
    let mut alerts = AlertsClient::new(channel.clone());
    let owner_since = timestamp(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    for chunk in (0..args.watched).collect::<Vec<_>>().chunks(5_000) {
        alerts
            .upsert_watch(pb::UpsertWatchRequest {
                entries: chunk
                    .iter()
                    .map(|i| pb::WatchEntry {
                        customer_ref: format!("c{i}"),
                        phone_number: number(*i),
                        owner_since: Some(owner_since),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .expect("watch");
    }

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(connect(&url).await);
    }
    // Each stream reports (round, receipt time).
    // A blocking lock held for one push, and a counter per round for the wait below: this
    // process shares the cores with the server, so its own bookkeeping stays small.
    let receipts = Arc::new(Mutex::new(Vec::<(usize, Instant)>::new()));
    let per_round: Arc<Vec<AtomicUsize>> =
        Arc::new((0..args.rounds).map(|_| AtomicUsize::new(0)).collect());
    let mut opened = Vec::new();
    for s in 0..args.streams {
        let mut client = AlertsClient::new(channels[s % channels.len()].clone());
        let mut stream = client
            .watch_alerts(pb::WatchAlertsRequest::default())
            .await
            .expect("stream")
            .into_inner();
        let (receipts, per_round) = (receipts.clone(), per_round.clone());
        opened.push(tokio::spawn(async move {
            while let Ok(Some(alert)) = stream.message().await {
                let at = Instant::now();
                let round: usize = alert
                    .event
                    .map(|e| {
                        e.source_event_id
                            .trim_start_matches("r")
                            .parse()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                receipts.lock().unwrap().push((round, at));
                if let Some(count) = per_round.get(round) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut events = EventsClient::new(channel.clone());
    let (mut sent, mut acks) = (Vec::new(), Vec::new());
    let (server_cpu, bench_cpu) = (cpu_time(server.pid()), cpu_time(std::process::id()));
    for round in 0..args.rounds {
        let i = rand::rng().random_range(0..args.watched);
        let event = bench_event(format!("r{round}"), number(i), pb::EventKind::SimSwap);
        sent.push(Instant::now());
        events
            .ingest_events(tokio_stream::iter(vec![event]))
            .await
            .expect("ingest");
        acks.push(Instant::now());
        // Let every stream receive it before the next round.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = per_round[round].load(Ordering::Relaxed);
            if got >= args.streams || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let server_cpu = cpu_time(server.pid()) - server_cpu;
    let bench_cpu = cpu_time(std::process::id()) - bench_cpu;
    let receipts = receipts.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = receipts
        .iter()
        .map(|(round, at)| at.saturating_duration_since(acks[*round]))
        .collect();
    latencies.sort_unstable();
    // From the ingest call instead: the acknowledgement itself and the receipts, which
    // may come before this process has taken the acknowledgement in.
    let mut round_trips: Vec<Duration> = sent.iter().zip(&acks).map(|(s, a)| *a - *s).collect();
    round_trips.sort_unstable();
    let mut from_sent: Vec<Duration> = receipts
        .iter()
        .map(|(round, at)| at.saturating_duration_since(sent[*round]))
        .collect();
    from_sent.sort_unstable();
    let expected = args.streams * args.rounds;
    let at = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1e3
    };
    println!(
        "backend {}: {} streams, {} watched numbers, {} rounds: {} of {} alerts received",
        args.backend,
        args.streams,
        args.watched,
        args.rounds,
        latencies.len(),
        expected
    );
    println!(
        "ack -> alert receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(&latencies, 0.50),
        at(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "ingest call -> acknowledgement: p50 {:.1} ms; ingest call -> alert receipt: p50 {:.1} ms, p99 {:.1} ms",
        at(&round_trips, 0.5),
        at(&from_sent, 0.5),
        at(&from_sent, 0.99)
    );
    // The fan-out: from a round's first receipt to its last, the time the server takes
    // to send one alert down every stream and this process to take each one in, both
    // on the same two cores; a p99 cannot be lower than most of it.
    let mut spreads: Vec<Duration> = (0..args.rounds)
        .filter_map(|round| {
            let times = receipts
                .iter()
                .filter(|(r, _)| *r == round)
                .map(|(_, at)| *at);
            let (first, last) = (times.clone().min()?, times.max()?);
            Some(last - first)
        })
        .collect();
    spreads.sort_unstable();
    let delivered = latencies.len().max(1) as f64;
    println!(
        "fan-out (first to last receipt of a round): median {:.1} ms, max {:.1} ms; CPU per delivered alert during the rounds: server {:.1} us, bench {:.1} us",
        spreads
            .get(spreads.len() / 2)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        spreads.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        server_cpu.as_secs_f64() * 1e6 / delivered,
        bench_cpu.as_secs_f64() * 1e6 / delivered,
    );
    for task in opened {
        task.abort();
    }
    drop(server);
}
