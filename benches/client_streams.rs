//! Streams from clients nobody here wrote: IngestEvents and AuditNumbers from the Python
//! (grpcio) and Node (grpc-js) examples, one message per event or row, next to the Rust CLI
//! (which packs 256 to a message) in the same run, against the release server.
//!
//! `cargo bench --bench client_streams` (needs what `scripts/test` installs):
//! 1. one after another on an idle server: `numguard import events`, `ingest_events.py`,
//!    `ingest_events.js` (1,000,000 events each, into three sources), then `numguard audit`,
//!    `audit_numbers.py`, `audit_numbers.js` (1,000,000 rows each); events/s and rows/s,
//!    and each as a ratio of the CLI's;
//! 2. all four Python and Node streams at once while 4 tasks keep CheckNumber calls in
//!    flight: every stream must complete with every message accounted for.
//!
//! The server's peak RSS is reported for each phase.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use numguard::api::pb;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard_testkit::bench::{connect, number, proc_status_mib, reset_peak, start_server};
use numguard_testkit::{Backend, TestDb};

#[derive(Debug, Parser)]
struct Args {
    /// Events in each ingest, rows in each audit.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Skip phase 2 (the streams at once under a CheckNumber load).
    #[arg(long)]
    no_busy: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn installed(relative: &str) -> PathBuf {
    let path = Path::new(ROOT).join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test first",
        path.display()
    );
    path
}

/// A client program with its arguments, and the name it is reported under.
struct Client {
    name: String,
    command: Command,
}

impl Client {
    fn cli(name: &str, args: &[&str]) -> Client {
        let mut command = Command::new(env!("CARGO_BIN_EXE_numguard"));
        command.args(args);
        Client {
            name: format!("numguard {name} (Rust CLI)"),
            command,
        }
    }

    fn python(program: &str, args: &[&str]) -> Client {
        let mut command = Command::new(installed("examples/python/.venv/bin/python"));
        command.arg(installed(&format!("examples/python/{program}.py")));
        command.args(args);
        Client {
            name: format!("{program}.py (grpcio)"),
            command,
        }
    }

    fn node(program: &str, args: &[&str]) -> Client {
        let mut command = Command::new("node");
        command.arg(installed(&format!("examples/node/{program}.js")));
        command.args(args);
        Client {
            name: format!("{program}.js (grpc-js)"),
            command,
        }
    }
}

/// Runs a client to the end against `url`; returns its wall time and stdout.
fn run(client: &mut Client, url: &str) -> (Duration, String) {
    let started = Instant::now();
    let out = client
        .command
        .env("NUMGUARD_SERVER", url)
        .output()
        .expect("run client");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{} failed: {}\n{}",
        client.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `clients` one after another, each sending `n` messages, and prints a table of
/// their rates as a ratio of the first's; `done` checks each one's output.
fn rate_table(
    rpc: &str,
    unit: &str,
    n: u64,
    clients: impl IntoIterator<Item = Client>,
    url: &str,
    done: impl Fn(&str) -> bool,
) {
    println!("| client | {rpc} | {unit} | × CLI |");
    println!("| --- | ---: | ---: | ---: |");
    let mut baseline = None;
    for mut client in clients {
        let (took, out) = run(&mut client, url);
        assert!(done(&out), "{}: {out}", client.name);
        let rate = n as f64 / took.as_secs_f64();
        let base = *baseline.get_or_insert(rate);
        let seconds = took.as_secs_f64();
        println!(
            "| {} | {seconds:.2} s | {rate:.0} | {:.2} |",
            client.name,
            rate / base
        );
    }
}

fn write_events(path: &Path, n: u64) {
    let mut text = String::with_capacity(n as usize * 64);
    text.push_str("source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n");
    for i in 0..n {
        let at = chrono::DateTime::from_timestamp(1_767_225_600 + i as i64, 0).unwrap();
        let _ = writeln!(
            text,
            "ev-{i},{},SIM_SWAP,{},,",
            number(i),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    std::fs::write(path, text).unwrap();
}

fn write_customers(path: &Path, n: u64) {
    let mut text = String::with_capacity(n as usize * 40);
    text.push_str("customer_ref,phone_number,owner_since\n");
    for i in 0..n {
        let _ = writeln!(text, "cust-{i},{},2026-01-01", number(i));
    }
    std::fs::write(path, text).unwrap();
}

fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).unwrap().lines().count() as u64
}

/// CheckNumber calls kept in flight by `tasks` tasks until stopped.
async fn check_load(url: &str, tasks: u64, stop: Arc<AtomicBool>) -> (u64, u64) {
    let channel = connect(url).await;
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let mut client = NumberCheckClient::new(channel.clone());
            let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let request = pb::CheckNumberRequest {
                        phone_number: number(i % 100_000),
                        ..Default::default()
                    };
                    match client.check_number(request).await {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += tasks;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let n = args.messages;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = start_server(&db.url, &[]);
    let pid = server.pid();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.csv");
    let customers = dir.path().join("customers.csv");
    write_events(&events, n);
    write_customers(&customers, n);
    let (events, customers) = (events.to_str().unwrap(), customers.to_str().unwrap());
    for source in ["cli", "py", "js", "py-busy", "js-busy"] {
        let args = [
            "sources",
            "add",
            source,
            "--covers",
            "81",
            "--tracking-since",
            "2025-01-01",
        ];
        run(&mut Client::cli("sources add", &args), &server.url);
    }
    let report = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    println!("Phase 1: one client at a time, {n} messages each, release server on SQLite");
    reset_peak(pid);
    let ingests = [
        Client::cli(
            "import events",
            &["import", "events", events, "--source", "cli"],
        ),
        Client::python("ingest_events", &[events, "--source", "py"]),
        Client::node("ingest_events", &[events, "--source", "js"]),
    ];
    let (cli_report, py_report, js_report) =
        (report("cli.csv"), report("py.csv"), report("js.csv"));
    let audits = [
        Client::cli(
            "audit",
            &["audit", "--input", customers, "--output", &cli_report],
        ),
        Client::python("audit_numbers", &[customers, "--out", &py_report]),
        Client::node("audit_numbers", &[customers, "--out", &js_report]),
    ];
    let ingest_done = |out: &str| {
        out.contains(&format!("{n} accepted, 0 duplicates, 0 rejected"))
            || out.contains(&format!("accepted {n}, duplicates 0, rejected 0"))
    };
    let url = server.url.as_str();
    rate_table("IngestEvents", "events/s", n, ingests, url, ingest_done);
    rate_table("AuditNumbers", "rows/s", n, audits, url, |_| true);
    for path in [&cli_report, &py_report, &js_report] {
        assert_eq!(lines(Path::new(path)), n + 1, "{path}: a line per row");
    }
    println!("server peak RSS: {:.0} MiB", proc_status_mib(pid, "VmHWM:"));

    if args.no_busy {
        return;
    }
    println!(
        "\nPhase 2: Python and Node ingest and audit at once, under a CheckNumber load (4 tasks)"
    );
    reset_peak(pid);
    let (py_busy, js_busy) = (report("py-busy.csv"), report("js-busy.csv"));
    let busy = vec![
        Client::python("ingest_events", &[events, "--source", "py-busy"]),
        Client::node("ingest_events", &[events, "--source", "js-busy"]),
        Client::python("audit_numbers", &[customers, "--out", &py_busy]),
        Client::node("audit_numbers", &[customers, "--out", &js_busy]),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (server.url.clone(), stop.clone());
        tokio::spawn(async move { check_load(&url, 4, stop).await })
    };
    let started = Instant::now();
    let runs: Vec<_> = busy
        .into_iter()
        .map(|mut client| {
            let url = server.url.clone();
            tokio::task::spawn_blocking(move || {
                let (took, out) = run(&mut client, &url);
                (client.name, took, out)
            })
        })
        .collect();
    for handle in runs {
        let (name, took, out) = handle.await.unwrap();
        println!("| {name} | {:.2} s | {} |", took.as_secs_f64(), out.trim());
        if name.starts_with("ingest") {
            assert!(
                out.contains(&format!("accepted {n}, duplicates 0, rejected 0")),
                "{out}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = load.await.unwrap();
    for path in [&py_busy, &js_busy] {
        assert_eq!(lines(Path::new(path)), n + 1, "{path}: a line per row");
    }
    println!(
        "all four done in {:.1} s; CheckNumber meanwhile: {answered} answered ({:.0}/s), {failed} failed; server peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        answered as f64 / started.elapsed().as_secs_f64(),
        proc_status_mib(pid, "VmHWM:")
    );
}
