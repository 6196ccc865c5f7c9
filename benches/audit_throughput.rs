//! Batch audit benchmark: a customer list through `numguard audit` (the release binary)
//! against `numguard serve` on a fresh SQLite file holding generated events.
//!
//! `cargo bench --bench audit_throughput` stores 1,000,000 events over 250,000 numbers,
//! writes a 1,000,000-row customer list (every number distinct, a quarter of them with
//! events; owner_since as dates, as timestamps and empty; one row in a thousand unusable),
//! and measures in the same run:
//! - the floor: reading that CSV and parsing every number (in this process, one thread);
//! - the audit: wall time of the CLI from start to exit, report written, twice (the
//!   second time the server's cache holds what the first read);
//! - peak RSS of the client (each run) and of the server (during the audits).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use clap::Parser;
use numguard::domain::number::ParsedNumber;
use numguard_testkit::bench::{
    EventOrder, Placement, connect, number, proc_status_mib, reset_peak, run_audit, seed,
    start_server,
};
use numguard_testkit::{Backend, TestDb};

#[derive(Debug, Parser)]
struct Args {
    /// Events stored before the audit.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct numbers the events spread over.
    #[arg(long, default_value_t = 250_000)]
    numbers: u64,
    /// Rows in the customer list.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// After the two audits, audit again with 20 carrier-scoped sources (3 scopes each)
    /// placed onto the listed numbers, alternating with audits with the same sources
    /// placed elsewhere, `--scoped-rounds` rounds, on the same warm server.
    #[arg(long)]
    scoped: bool,
    /// Rounds of the two placements with `--scoped`: more rounds average out more of the
    /// machine's drift.
    #[arg(long, default_value_t = 2)]
    scoped_rounds: usize,
    /// Extra arguments for `numguard serve`, e.g. `--serve-arg=--no-access-log`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Writes the customer list: row r is customer `c<r>` with number r (so rows below
/// `--numbers` have events), an owner_since that cycles through a date, a timestamp and
/// none, and every thousandth number garbled.
fn write_list(path: &Path, rows: u64) {
    let date = (Utc::now() - Span::days(200))
        .format("%Y-%m-%d")
        .to_string();
    let time = (Utc::now() - Span::days(90)).to_rfc3339();
    let mut text = String::with_capacity(rows as usize * 48);
    text.push_str("customer_ref,phone_number,owner_since\n");
    for r in 0..rows {
        let owner_since = match r % 4 {
            0 | 1 => date.as_str(),
            2 => time.as_str(),
            _ => "",
        };
        if r % 1000 == 999 {
            let _ = writeln!(text, "c{r},+81 9x{r},{owner_since}");
        } else {
            let _ = writeln!(text, "c{r},{},{owner_since}", number(r));
        }
    }
    std::fs::write(path, text).expect("write the list");
}

/// What a real reader of the list must at least do: read every record and parse its
/// number.
fn floor(path: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let mut reader = csv::Reader::from_path(path).expect("open the list");
    let mut record = csv::StringRecord::new();
    let mut valid = 0;
    while reader.read_record(&mut record).expect("read") {
        if ParsedNumber::parse(record.get(1).unwrap_or(""), None).is_ok() {
            valid += 1;
        }
    }
    (started.elapsed(), valid)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::new(Backend::Sqlite).await;
    let extra: Vec<&str> = args.serve_args.iter().map(String::as_str).collect();
    let server = start_server(&db.url, &extra);
    let (accepted, took) = seed(
        connect(&server.url).await,
        args.events,
        args.numbers,
        EventOrder::Random,
    )
    .await;
    println!(
        "seeded {accepted} events over {} numbers in {:.1} s",
        args.numbers,
        took.as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("customers.csv");
    write_list(&list, args.rows);
    let (floor_time, valid) = floor(&list);
    println!(
        "floor: read {} rows and parsed {valid} valid numbers in {:.2} s ({:.0} rows/s)",
        args.rows,
        floor_time.as_secs_f64(),
        args.rows as f64 / floor_time.as_secs_f64()
    );

    let pid = server.pid();
    println!(
        "server RSS before the audits: {:.0} MiB (peak while seeding {:.0} MiB)",
        proc_status_mib(pid, "VmRSS:"),
        proc_status_mib(pid, "VmHWM:")
    );
    reset_peak(pid);
    let report = dir.path().join("report.csv");
    let mut steps = vec![
        ("first audit (cold cache)", None),
        ("second audit (warm cache)", None),
    ];
    if args.scoped {
        for _ in 0..args.scoped_rounds {
            steps.push((
                "20 scoped sources seeing the numbers",
                Some(Placement::Onto),
            ));
            steps.push(("20 scoped sources elsewhere", Some(Placement::Away)));
        }
    }
    let (mut onto, mut away) = (0.0, 0.0);
    for (label, placement) in steps {
        if let Some(placement) = placement {
            numguard_testkit::bench::place_scoped_sources(connect(&server.url).await, placement)
                .await;
        }
        let run = run_audit(&server.url, pid, &list, &report);
        let wall = run.wall.as_secs_f64();
        match placement {
            Some(Placement::Onto) => onto += wall,
            Some(Placement::Away) => away += wall,
            None => {}
        }
        let rows = run.summary["rows"].as_u64().unwrap_or(0);
        assert_eq!(rows, args.rows, "one report line per row");
        println!(
            "{label}: {rows} rows in {wall:.2} s = {:.0} rows/s, {:.1}x the floor; \
             client peak RSS {:.0} MiB; server peak RSS so far {:.0} MiB",
            rows as f64 / wall,
            wall / floor_time.as_secs_f64(),
            run.client_peak_mib,
            proc_status_mib(pid, "VmHWM:"),
        );
        println!(
            "  CPU: client {:.2} s, server {:.2} s ({:.2} s until it went idle {:.1} s after the audit)",
            run.client_cpu.as_secs_f64(),
            run.server_cpu.as_secs_f64(),
            run.server_cpu_until_idle.as_secs_f64(),
            run.idle_after.as_secs_f64()
        );
        println!(
            "  verdicts {}, reasons {}, rejected {}",
            run.summary["verdicts"], run.summary["reasons"], run.summary["rejected"]
        );
    }
    if args.scoped {
        println!(
            "20 scoped sources: {:+.1}% rows/s against the same sources scoped elsewhere (same server, {} rounds)",
            (away / onto - 1.0) * 100.0,
            args.scoped_rounds
        );
    }
    drop(server);
}
