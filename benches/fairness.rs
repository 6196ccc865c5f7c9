//! Fairness between tenants (issue 17): what one tenant's stalled webhook sinks and idle
//! streams cost another tenant.
//!
//! `cargo bench --bench fairness [-- --stalled 100 --idle-streams 2000 --seconds 5]` starts
//! the release `numguard serve` with API keys on a fresh database and two tenants:
//!
//! 1. **webhooks**: tenant B has one subscription to a sink that answers at once; B's alert
//!    latency (from the ingest's acknowledgement to the sink's receipt) is measured
//!    `--rounds` times, then again after tenant A subscribes `--stalled` sinks that accept
//!    and never answer, each receiving A's alert for the same events;
//! 2. **idle streams**: B's CheckNumber is driven at `--concurrency` for `--seconds`, then
//!    again while A tries to hold `--idle-streams` IngestEvents streams that sent one event
//!    and then nothing, then a third time alone.

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use numguard::api::convert::timestamp;
use numguard::api::pb;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::alerts_client::AlertsClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard_testkit::bench::{Load, Phase, bench_event, connect, run_phase};
use numguard_testkit::process::Served;
use numguard_testkit::receiver::{Receiver, stalled_sink};
use numguard_testkit::{Backend, TestDb, new_key};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Tenant A's sinks that never answer.
    #[arg(long, default_value_t = 100)]
    stalled: usize,
    /// Alerts timed per webhook phase.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// IngestEvents streams tenant A tries to hold open.
    #[arg(long, default_value_t = 2_000)]
    idle_streams: usize,
    #[command(flatten)]
    load: Load,
    /// sqlite or postgres (NUMGUARD_TEST_POSTGRES_URL, default the local server).
    #[arg(long, default_value = "sqlite")]
    backend: Backend,
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

type Keyed = InterceptedService<Channel, Bearer>;

fn bearer(key: &str) -> Bearer {
    Bearer(format!("Bearer {key}").parse().expect("key"))
}

const NUMBER: &str = "+819012345678";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    args.load.pin();
    let db = TestDb::new(args.backend).await;
    let all = "check,ingest,admin,watch,audit";
    let (a_key, b_key) = (
        new_key(&db, "tenant-a", all).await,
        new_key(&db, "tenant-b", all).await,
    );
    let server = Served::start_with_env(
        &db.url,
        &["--rate-limit", "0"],
        &[("NUMGUARD_LOG", "warn,numguard::server=info")],
    );
    let channel = connect(&server.url).await;
    let (a, b) = (bearer(&a_key), bearer(&b_key));
    AdminClient::with_interceptor(channel.clone(), a.clone())
        .upsert_source(pb::Source {
            name: "bench".into(),
            tracking_since: Some(timestamp(Utc::now() - chrono::Duration::days(365))),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .expect("source");
    for tenant in [&a, &b] {
        alerts(&channel, tenant)
            .upsert_watch(pb::UpsertWatchRequest {
                entries: vec![pb::WatchEntry {
                    customer_ref: "c1".into(),
                    phone_number: NUMBER.into(),
                    owner_since: Some(timestamp(Utc::now() - chrono::Duration::days(30))),
                    ..Default::default()
                }],
            })
            .await
            .expect("watch");
    }

    println!(
        "## Webhooks: tenant B's alert latency, {} rounds\n",
        args.rounds
    );
    let receiver = Receiver::start(vec![]).await;
    subscribe(&channel, &b, &receiver.url).await;
    let alone = alert_latencies(&channel, &a, &receiver, args.rounds, 0).await;
    let stalled = stalled_sink().await;
    for i in 0..args.stalled {
        subscribe(&channel, &a, &format!("{stalled}/{i}")).await;
    }
    let with_stalled = alert_latencies(&channel, &a, &receiver, args.rounds, args.rounds).await;
    println!("| tenant A | p50 | max |");
    println!("| --- | ---: | ---: |");
    println!("| no subscriptions | {} | {} |", ms(alone.0), ms(alone.1));
    println!(
        "| {} stalled sinks | {} | {} |",
        args.stalled,
        ms(with_stalled.0),
        ms(with_stalled.1)
    );

    println!(
        "\n## Idle streams: tenant B's CheckNumber, {} in flight, {} s a phase\n",
        args.load.concurrency, args.load.seconds
    );
    let mut checkers = Vec::new();
    for _ in 0..args.load.connections.max(1) {
        checkers.push(NumberCheckClient::with_interceptor(
            connect(&server.url).await,
            b.clone(),
        ));
    }
    let before = checks(&args.load, &checkers).await;
    let (held, refused, idle) = hold_idle_streams(&server.url, &a, args.idle_streams).await;
    let during = checks(&args.load, &checkers).await;
    drop(idle);
    let after = checks(&args.load, &checkers).await;
    println!("| phase | requests | errors | req/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!("{}", before.row("B alone"));
    println!(
        "{}",
        during.row(&format!(
            "B while A holds {held} idle streams ({refused} refused)"
        ))
    );
    println!("{}", after.row("B alone again"));
    println!(
        "\nB's p99 with A's idle streams / alone (mean of before and after): {:.2}",
        during.p99.as_secs_f64() / ((before.p99 + after.p99).as_secs_f64() / 2.0)
    );
    server.stop();
}

fn alerts(channel: &Channel, tenant: &Bearer) -> AlertsClient<Keyed> {
    AlertsClient::with_interceptor(channel.clone(), tenant.clone())
}

async fn subscribe(channel: &Channel, tenant: &Bearer, sink: &str) {
    alerts(channel, tenant)
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: sink.into(),
            ..Default::default()
        })
        .await
        .expect("subscribe");
}

/// Ingests `rounds` SIM swaps of the watched number one at a time (ids from `first`) and
/// times each from acknowledgement to B's receipt: (p50, max).
async fn alert_latencies(
    channel: &Channel,
    tenant: &Bearer,
    receiver: &Receiver,
    rounds: usize,
    first: usize,
) -> (Duration, Duration) {
    let mut events = EventsClient::with_interceptor(channel.clone(), tenant.clone());
    let mut latencies = Vec::new();
    for round in first..first + rounds {
        let event = bench_event(
            format!("fair-{round}"),
            NUMBER.into(),
            pb::EventKind::SimSwap,
        );
        events
            .ingest_events(tokio_stream::iter(vec![event]))
            .await
            .expect("ingest");
        let acked = Instant::now();
        let seen = receiver
            .wait_for("B's alert", |seen| seen.len() > round)
            .await;
        latencies.push(seen[round].at.saturating_duration_since(acked));
    }
    latencies.sort_unstable();
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    )
}

/// Opens `n` IngestEvents streams as `tenant`, each sending one event and then nothing;
/// returns how many the server holds, how many it refused, and the senders that keep the
/// held ones open.
async fn hold_idle_streams(
    url: &str,
    tenant: &Bearer,
    n: usize,
) -> (usize, usize, Vec<tokio::sync::mpsc::Sender<pb::Event>>) {
    let channel = connect(url).await;
    let mut senders = Vec::new();
    let mut calls = Vec::new();
    for i in 0..n {
        let (send, events) = tokio::sync::mpsc::channel(1);
        let event = bench_event(format!("idle-{i}"), NUMBER.into(), pb::EventKind::Port);
        send.send(event).await.expect("queue");
        senders.push(send);
        let mut client = EventsClient::with_interceptor(channel.clone(), tenant.clone());
        calls.push(tokio::spawn(async move {
            client
                .ingest_events(tokio_stream::wrappers::ReceiverStream::new(events))
                .await
        }));
    }
    // Refusals come back at once; held streams answer only when they end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = calls.iter().filter(|c| c.is_finished()).count();
    (n - refused, refused, senders)
}

async fn checks(load: &Load, clients: &[NumberCheckClient<Keyed>]) -> Phase {
    let clients = clients.to_vec();
    run_phase(load, move |worker| {
        let mut client = clients[worker % clients.len()].clone();
        async move {
            client
                .check_number(pb::CheckNumberRequest {
                    phone_number: NUMBER.into(),
                    ..Default::default()
                })
                .await
                .is_ok()
        }
    })
    .await
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}
