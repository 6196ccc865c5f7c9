//! Load benchmark for `CheckNumber`, against `grpc.health.v1.Health/Check` on the same
//! server in the same run as the baseline.
//!
//! `cargo bench --bench check_load [-- --backend postgres]` starts `numguard serve`
//! (release build) on a fresh database, ingests the events through `IngestEvents`, warms
//! the cache with one check per number, then drives each RPC with a fixed number of
//! requests in flight; then restarts the server with its cache disabled on the same data
//! and measures cold checks the same way. With `--rest`, the server also serves the CAMARA
//! REST facade and `POST /sim-swap/v2/check` is measured beside `CheckNumber` (HTTP/1.1,
//! one connection per request in flight).

use std::time::Instant;

use clap::Parser;
use numguard::api::pb;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard_testkit::bench::{
    EventOrder, Load, Phase, Placement, SCOPED_SOURCES, check_number, connect, cpu_time,
    health_check, number, place_scoped_sources, run_phase, seed, start_server,
};
use numguard_testkit::process::Served;
use numguard_testkit::{Backend, TestDb};
use rand::Rng;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Events stored before the checks.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct numbers the events and checks spread over.
    #[arg(long, default_value_t = 100_000)]
    numbers: u64,
    #[command(flatten)]
    load: Load,
    /// Database: `sqlite` (a fresh temporary file) or `postgres` (a fresh database on
    /// NUMGUARD_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres,
    /// dropped afterwards).
    #[arg(long, default_value = "sqlite")]
    backend: Backend,
    /// Stop after the ingest measurement.
    #[arg(long)]
    ingest_only: bool,
    /// Ingest the events oldest first, as a live feed delivers them, instead of at random
    /// times (every insert into the time index at a random place).
    #[arg(long)]
    in_time_order: bool,
    /// Also measure the REST facade's SIM Swap check.
    #[arg(long)]
    rest: bool,
    /// Also measure what 20 carrier-scoped sources with 3 scopes each cost: on the same
    /// warm server, phases with the sources scoped onto the checked numbers alternate with
    /// phases with them scoped elsewhere; then cold, the same way.
    #[arg(long)]
    scoped: bool,
    /// Extra arguments for `numguard serve`, e.g. `--serve-arg=--no-access-log`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Rounds of the alternation `--scoped` runs.
    #[arg(long, default_value_t = 2)]
    scoped_rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone)]
enum Rpc {
    Health,
    Check,
    /// `POST /sim-swap/v2/check` at this URL.
    RestSimSwap(reqwest::Client, String),
}

async fn drive(channels: &[Channel], rpc: Rpc, args: &Args) -> Phase {
    let numbers = args.numbers;
    let channels = channels.to_vec();
    run_phase(&args.load, move |worker| {
        let channel = channels[worker % channels.len()].clone();
        let rpc = rpc.clone();
        let phone_number = number(rand::rng().random_range(0..numbers));
        async move {
            match rpc {
                Rpc::Health => health_check(channel).await,
                Rpc::Check => check_number(channel, phone_number).await,
                Rpc::RestSimSwap(http, url) => {
                    match rest_sim_swap(&http, &url, &phone_number).await {
                        Some((200, body)) => !body.is_empty(),
                        _ => false,
                    }
                }
            }
        }
    })
    .await
}

/// One REST SIM Swap check, its status and whole body.
async fn rest_sim_swap(
    http: &reqwest::Client,
    url: &str,
    number: &str,
) -> Option<(u16, bytes::Bytes)> {
    let response = http
        .post(url)
        .json(&serde_json::json!({ "phoneNumber": number, "maxAge": 240 }))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.bytes().await.ok()?))
}

/// Before REST is timed: a sample of its answers, each held to SIM Swap's released schema.
async fn assert_rest_answers_schema_exact(http: &reqwest::Client, url: &str, numbers: u64) {
    for i in 0..200 {
        let (status, body) = rest_sim_swap(http, url, &number(i * numbers / 200))
            .await
            .expect("a REST answer");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        numguard_testkit::camara::assert_camara_answer("POST", "/sim-swap/v2/check", status, &body);
    }
    println!("200 REST answers checked against the released SIM Swap schema");
}

/// Checks every number once, which fills the cache.
async fn warm_up(channel: &Channel, numbers: u64) {
    let mut check = NumberCheckClient::new(channel.clone());
    let t = Instant::now();
    for i in 0..numbers {
        check
            .check_number(pb::CheckNumberRequest {
                phone_number: number(i),
                ..Default::default()
            })
            .await
            .expect("warm-up check");
    }
    println!(
        "warm-up: {numbers} sequential checks in {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

async fn connect_all(server: &Served, connections: usize) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(connect(&server.url).await);
    }
    channels
}

fn print_row(name: &str, p: &Phase) {
    println!("{}", p.row(name));
}

/// Server and bench (client) CPU time per request while `phase` ran, in microseconds:
/// steadier than throughput on a shared machine, as it does not count the time a process
/// waited for a core. With both processes on the same two cores, the throughput ratio of
/// two phases is about the inverse ratio of their summed CPU per request.
async fn with_cpu(server: &Served, phase: impl Future<Output = Phase>) -> (Phase, f64, f64) {
    let (server_before, bench_before) = (cpu_time(server.pid()), cpu_time(std::process::id()));
    let phase = phase.await;
    let per_request =
        |used: std::time::Duration| used.as_secs_f64() * 1e6 / phase.requests.max(1) as f64;
    let server_cpu = per_request(cpu_time(server.pid()) - server_before);
    let bench_cpu = per_request(cpu_time(std::process::id()) - bench_before);
    (phase, server_cpu, bench_cpu)
}

/// Health, CheckNumber, (REST SIM Swap check,) health on one server; returns (check
/// req/s, mean health req/s, REST check req/s).
async fn measure(
    channels: &[Channel],
    server: &Served,
    args: &Args,
    label: &str,
) -> (f64, f64, Option<f64>) {
    let (health_a, health_cpu, health_bench) =
        with_cpu(server, drive(channels, Rpc::Health, args)).await;
    let (checks, check_cpu, check_bench) =
        with_cpu(server, drive(channels, Rpc::Check, args)).await;
    println!(
        "server CPU per request, {label}: Health {health_cpu:.1} us, CheckNumber {check_cpu:.1} us (Health / CheckNumber {:.2})",
        health_cpu / check_cpu
    );
    println!(
        "bench CPU per request, {label}: Health {health_bench:.1} us, CheckNumber {check_bench:.1} us; both processes: Health / CheckNumber {:.2}",
        (health_cpu + health_bench) / (check_cpu + check_bench)
    );
    let rest = match &server.rest_url {
        Some(base) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(args.load.concurrency)
                .build()
                .expect("HTTP client");
            let url = format!("{base}/sim-swap/v2/check");
            assert_rest_answers_schema_exact(&http, &url, args.numbers).await;
            Some(drive(channels, Rpc::RestSimSwap(http, url), args).await)
        }
        None => None,
    };
    let health_b = drive(channels, Rpc::Health, args).await;
    print_row(&format!("Health/Check (before {label})"), &health_a);
    print_row(&format!("CheckNumber, {label}"), &checks);
    if let Some(rest) = &rest {
        print_row(&format!("REST POST /sim-swap/v2/check, {label}"), rest);
    }
    print_row(&format!("Health/Check (after {label})"), &health_b);
    let health = (health_a.rps() + health_b.rps()) / 2.0;
    (checks.rps(), health, rest.map(|r| r.rps()))
}

/// Alternates phases with the scoped sources placed onto the checked numbers and away
/// from them, on one server, so drift over the run weighs on both alike; returns how much
/// the CheckNumber / Health ratio moves with them, in percent (over the rounds' summed
/// rates). The sources are left placed away.
async fn alternate(channels: &[Channel], server: &Served, args: &Args, label: &str) -> f64 {
    let (mut onto, mut away) = ((0.0, 0.0), (0.0, 0.0));
    for round in 0..args.scoped_rounds {
        let mut order = [Placement::Onto, Placement::Away];
        // Every other round starts with the other placement, so a phase's position in
        // its round (what ran just before it) weighs on both alike.
        if round % 2 == 1 {
            order.reverse();
        }
        for placement in order {
            let (sums, name) = match placement {
                Placement::Onto => (&mut onto, "scoped sources seeing the numbers"),
                Placement::Away => (&mut away, "scoped sources elsewhere"),
            };
            place_scoped_sources(channels[0].clone(), placement).await;
            let label = format!("{label}, {} {name}", SCOPED_SOURCES);
            let (checks, health, _) = measure(channels, server, args, &label).await;
            sums.0 += checks;
            sums.1 += health;
        }
    }
    place_scoped_sources(channels[0].clone(), Placement::Away).await;
    ((onto.0 / onto.1) / (away.0 / away.1) - 1.0) * 100.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    args.load.pin();
    let db = TestDb::new(args.backend).await;
    let mut serve_args: Vec<&str> = args.serve_args.iter().map(String::as_str).collect();
    if args.rest {
        serve_args.extend(["--rest-listen", "127.0.0.1:0"]);
    }
    let extra = serve_args.as_slice();
    let server = start_server(&db.url, extra);
    let channels = connect_all(&server, args.load.connections).await;

    let (accepted, took) = seed(
        channels[0].clone(),
        args.events,
        args.numbers,
        if args.in_time_order {
            EventOrder::Chronological
        } else {
            EventOrder::Random
        },
    )
    .await;
    println!(
        "backend {}: ingest {accepted} events over {} numbers in {:.2} s = {:.0} events/s (one IngestEvents stream)",
        args.backend,
        args.numbers,
        took.as_secs_f64(),
        accepted as f64 / took.as_secs_f64()
    );
    if args.ingest_only {
        drop(server);
        return;
    }

    warm_up(&channels[0], args.numbers).await;
    println!(
        "\n{} in flight over {} connections, {} s per phase",
        args.load.concurrency, args.load.connections, args.load.seconds
    );
    println!("| phase | requests | errors | req/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let (warm, warm_health, warm_rest) = measure(&channels, &server, &args, "warm cache").await;
    let warm_scoped = match args.scoped {
        true => Some(alternate(&channels, &server, &args, "warm cache").await),
        false => None,
    };
    drop(channels);
    drop(server);

    // The same data through a server with its cache disabled: every check reads the store.
    let cold_server = start_server(&db.url, &[&["--cache-capacity", "0"], extra].concat());
    let channels = connect_all(&cold_server, args.load.connections).await;
    let (cold, cold_health, cold_rest) =
        measure(&channels, &cold_server, &args, "cache disabled").await;
    let cold_scoped = match args.scoped {
        true => Some(alternate(&channels, &cold_server, &args, "cache disabled").await),
        false => None,
    };
    drop(channels);
    drop(cold_server);

    println!("\nwarm CheckNumber / Health: {:.2}", warm / warm_health);
    println!("cold CheckNumber / Health: {:.2}", cold / cold_health);
    println!(
        "cold / warm CheckNumber (each against its own server's health): {:.2}",
        (cold / cold_health) / (warm / warm_health)
    );
    for (phase, change) in [("warm", warm_scoped), ("cold", cold_scoped)] {
        if let Some(change) = change {
            println!(
                "{} scoped sources, {phase}: CheckNumber / Health {change:+.1}% against the same sources scoped elsewhere (same server, {} rounds)",
                SCOPED_SOURCES, args.scoped_rounds
            );
        }
    }
    if let (Some(warm_rest), Some(cold_rest)) = (warm_rest, cold_rest) {
        println!(
            "warm REST sim-swap check / Health: {:.2}",
            warm_rest / warm_health
        );
        println!(
            "cold REST sim-swap check / Health: {:.2}",
            cold_rest / cold_health
        );
    }
}
