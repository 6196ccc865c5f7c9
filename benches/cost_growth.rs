//! How cost grows with the data: for each size, a fresh database is loaded with that many
//! events over a tenth as many numbers, and measured the same way.
//!
//! `cargo bench --bench cost_growth -- [--sizes 1000000,10000000,30000000] [--backend
//! postgres]` reports per size:
//! - the ingest rate (one `IngestEvents` stream, as `check_load`);
//! - database bytes per event (SQLite: the file and its WAL; PostgreSQL:
//!   `pg_database_size`) and the server's RSS after the load;
//! - warm `CheckNumber` (a hot set of numbers, each checked once first) and, after a
//!   restart with the cache off, cold `CheckNumber` over all numbers: req/s, p50, p99, and
//!   the ratio to `grpc.health.v1` measured beside each;
//! - start-up time of that restart (SQLite's integrity check, which reads the whole file,
//!   runs in the background once it serves; its log line is printed);
//! - a 1,000,000-row audit (`numguard audit`, rows of distinct numbers, as many with events
//!   as the size has).
//!
//! A last table gives each figure's growth between the smallest and the largest size as
//! an exponent k in cost ∝ size^k: 0 is flat, 1 is linear, a logarithmic cost shows as a
//! small k that shrinks as sizes grow.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use numguard_testkit::bench::{
    EventOrder, Load, Phase, check_number, connect, health_check, number, proc_status_mib,
    run_audit, run_phase, seed, start_server,
};
use numguard_testkit::process::Served;
use numguard_testkit::{Backend, TestDb};
use rand::Rng;
use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Event counts, each loaded into a fresh database over a tenth as many numbers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000000,10000000,30000000"
    )]
    sizes: Vec<u64>,
    /// `sqlite` (a temporary file) or `postgres` (a fresh database on
    /// NUMGUARD_TEST_POSTGRES_URL, dropped afterwards).
    #[arg(long, default_value = "sqlite")]
    backend: Backend,
    #[command(flatten)]
    load: Load,
    /// Numbers the warm phase checks (each checked once before it).
    #[arg(long, default_value_t = 50_000)]
    hot_numbers: u64,
    /// Rows of the audited list.
    #[arg(long, default_value_t = 1_000_000)]
    audit_rows: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one size measured.
struct Measured {
    events: u64,
    ingest_per_s: f64,
    bytes_per_event: f64,
    rss_mib: f64,
    warm: Phase,
    warm_ratio: f64,
    cold: Phase,
    cold_ratio: f64,
    startup: Duration,
    audit: Duration,
}

async fn channels(url: &str, load: &Load) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..load.connections {
        channels.push(connect(url).await);
    }
    channels
}

/// Health, CheckNumber over numbers `0..numbers`, health: the phase and its ratio to the
/// mean of the two health phases.
async fn measure(url: &str, load: &Load, numbers: u64) -> (Phase, f64) {
    let channels = channels(url, load).await;
    let on = |channels: &Vec<Channel>, worker: usize| channels[worker % channels.len()].clone();
    let health = {
        let channels = channels.clone();
        move |worker| health_check(on(&channels, worker))
    };
    let before = run_phase(load, health.clone()).await;
    let checks = {
        let channels = channels.clone();
        move |worker| {
            let n = number(rand::rng().random_range(0..numbers));
            check_number(on(&channels, worker), n)
        }
    };
    let phase = run_phase(load, checks).await;
    let after = run_phase(load, health).await;
    let ratio = phase.rps() / ((before.rps() + after.rps()) / 2.0);
    (phase, ratio)
}

/// Checks numbers `0..count` once each, 64 at a time.
async fn warm_up(url: &str, count: u64) {
    let channel = connect(url).await;
    futures::stream::iter(0..count)
        .map(|i| check_number(channel.clone(), number(i)))
        .buffer_unordered(64)
        .for_each(|ok| async move { assert!(ok, "warm-up check failed") })
        .await;
}

async fn database_bytes(db: &TestDb) -> u64 {
    match db.backend {
        Backend::Sqlite => {
            let file = db.url.trim_start_matches("sqlite://");
            ["", "-wal"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(format!("{file}{suffix}")).ok())
                .map(|m| m.len())
                .sum()
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.expect("connect");
            let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut conn)
                .await
                .expect("database size");
            bytes as u64
        }
    }
}

/// A list of `rows` distinct numbers (`number(0..rows)`), no `owner_since`.
fn write_list(path: &Path, rows: u64) {
    let mut text = String::with_capacity(rows as usize * 24);
    text.push_str("customer_ref,phone_number\n");
    for r in 0..rows {
        let _ = writeln!(text, "c{r},{}", number(r));
    }
    std::fs::write(path, text).expect("write the list");
}

async fn one_size(args: &Args, events: u64, list: &Path, report: &Path) -> Measured {
    let numbers = (events / 10).max(1);
    let db = TestDb::new(args.backend).await;
    let server = start_server(&db.url, &[]);
    let (accepted, took) = seed(
        connect(&server.url).await,
        events,
        numbers,
        EventOrder::Random,
    )
    .await;
    assert_eq!(accepted, events);
    let ingest_per_s = events as f64 / took.as_secs_f64();
    println!("{events} events over {numbers} numbers loaded at {ingest_per_s:.0} events/s");
    let rss_mib = proc_status_mib(server.pid(), "VmRSS:");
    let bytes_per_event = database_bytes(&db).await as f64 / events as f64;

    let hot = args.hot_numbers.min(numbers);
    warm_up(&server.url, hot).await;
    let (warm, warm_ratio) = measure(&server.url, &args.load, hot).await;
    println!("{}", warm.row("warm CheckNumber"));
    drop(server);

    let started = Instant::now();
    let server: Served = start_server(&db.url, &["--cache-capacity", "0"]);
    let startup = started.elapsed();
    let (cold, cold_ratio) = measure(&server.url, &args.load, numbers).await;
    println!("{}", cold.row("cold CheckNumber"));

    let audit = run_audit(&server.url, server.pid(), list, report);
    println!(
        "audit of {} rows ({:.0}% with events): {:.2} s",
        args.audit_rows,
        100.0 * numbers.min(args.audit_rows) as f64 / args.audit_rows as f64,
        audit.wall.as_secs_f64()
    );
    // SQLite's integrity check runs while the server serves; say how long it took.
    if let Some(line) = server.log().lines().find(|l| l.contains("integrity check")) {
        println!("{line}");
    }
    drop(server);
    Measured {
        events,
        ingest_per_s,
        bytes_per_event,
        rss_mib,
        warm,
        warm_ratio,
        cold,
        cold_ratio,
        startup,
        audit: audit.wall,
    }
}

/// One figure read off a size's measurements.
type Figure = fn(&Measured) -> f64;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// k in cost ∝ size^k between two sizes.
fn exponent(small: (u64, f64), large: (u64, f64)) -> f64 {
    (large.1 / small.1).ln() / (large.0 as f64 / small.0 as f64).ln()
}

fn growth(k: f64) -> &'static str {
    match k {
        k if k < 0.1 => "flat",
        k if k < 0.35 => "sub-linear (log-like)",
        k if k < 0.8 => "sub-linear",
        _ => "linear or worse",
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    args.load.pin();
    let dir = tempfile::tempdir().expect("temp dir");
    let (list, report) = (dir.path().join("list.csv"), dir.path().join("report.csv"));
    write_list(&list, args.audit_rows);
    let mut all = Vec::new();
    for &events in &args.sizes {
        all.push(one_size(&args, events, &list, &report).await);
    }

    println!("\nbackend {}:\n", args.backend);
    println!(
        "| events | ingest events/s | DB bytes/event | RSS after load | warm p50 / p99 | warm / Health | cold p50 / p99 | cold / Health | start-up | audit of {} rows |",
        args.audit_rows
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &all {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} MiB | {:.2} / {:.2} ms | {:.2} | {:.2} / {:.2} ms | {:.2} | {:.2} s | {:.2} s |",
            m.events,
            m.ingest_per_s,
            m.bytes_per_event,
            m.rss_mib,
            ms(m.warm.p50),
            ms(m.warm.p99),
            m.warm_ratio,
            ms(m.cold.p50),
            ms(m.cold.p99),
            m.cold_ratio,
            m.startup.as_secs_f64(),
            m.audit.as_secs_f64()
        );
    }
    if let (Some(first), Some(last)) = (all.first(), all.last())
        && last.events > first.events
    {
        println!(
            "\ngrowth from {} to {} events (k in cost ∝ size^k):\n",
            first.events, last.events
        );
        println!("| figure | k | growth |");
        println!("| --- | ---: | --- |");
        let figures: [(&str, Figure); 7] = [
            ("time per ingested event", |m| 1.0 / m.ingest_per_s),
            ("database bytes per event", |m| m.bytes_per_event),
            ("warm check p50", |m| ms(m.warm.p50)),
            ("cold check time (1 / (cold / Health))", |m| {
                1.0 / m.cold_ratio
            }),
            ("cold check p99", |m| ms(m.cold.p99)),
            ("start-up", |m| m.startup.as_secs_f64()),
            ("audit", |m| m.audit.as_secs_f64()),
        ];
        for (name, figure) in figures {
            let k = exponent((first.events, figure(first)), (last.events, figure(last)));
            println!("| {name} | {k:.2} | {} |", growth(k));
        }
    }
}
