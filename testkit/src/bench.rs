//! What only the benchmarks share: seeding a server with events and scoped sources, and
//! running timed phases of requests against it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::process::Served;

/// A valid Japanese mobile number for each `i` (+81 90-1xxx-xxxx).
pub fn number(i: u64) -> String {
    format!("+81901{i:07}")
}

/// Starts the release `numguard serve --dev` with `extra` arguments, logging only what a
/// bench reads (the bound addresses) and warnings.
pub fn start_server(database_url: &str, extra: &[&str]) -> Served {
    Served::start_with_env(
        database_url,
        &[&["--dev"], extra].concat(),
        &[(
            "NUMGUARD_LOG",
            "warn,numguard::server=info,numguard::engine=info",
        )],
    )
}

/// An event of the source `bench` that occurred now.
pub fn bench_event(id: String, number: String, kind: pb::EventKind) -> pb::Event {
    pb::Event {
        source: "bench".into(),
        source_event_id: id,
        phone_number: number,
        kind: kind.into(),
        occurred_at: Some(timestamp(Utc::now())),
        ..Default::default()
    }
}

/// A connected gRPC channel to `url`.
pub async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// Registers the source `bench`: every kind of event for all of +81, since 2025-01-01.
pub async fn add_source(channel: Channel) {
    AdminClient::new(channel)
        .upsert_source(pb::Source {
            name: "bench".into(),
            tracking_since: Some(timestamp(
                Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            )),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .expect("source");
}

/// The order of the times of the events [`seed`] ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrder {
    /// Each event at a random time within the last 300 days: every insert into the time
    /// index lands at a random place (a worst case, like an unsorted historical file).
    Random,
    /// Oldest first over the last 300 days, as a live feed delivers them.
    Chronological,
}

/// Registers the source `bench` (see [`add_source`]) and ingests `total` events spread over
/// `numbers` numbers (a fixed mix of kinds, times within the last 300 days in `order`);
/// returns how many were accepted and how long the ingest took.
pub async fn seed(
    channel: Channel,
    total: u64,
    numbers: u64,
    order: EventOrder,
) -> (u64, Duration) {
    add_source(channel.clone()).await;
    let now = Utc::now();
    let events = futures::stream::iter((0..total).map(move |i| {
        let mut rng = SmallRng::seed_from_u64(i);
        let kind = match i % 10 {
            0 => pb::EventKind::Port,
            1 => pb::EventKind::Disconnect,
            2 => pb::EventKind::Reassign,
            3 | 4 => pb::EventKind::DeviceSwap,
            _ => pb::EventKind::SimSwap,
        };
        const SPAN_MINUTES: u64 = 300 * 24 * 60;
        let minutes = match order {
            EventOrder::Random => rng.random_range(0..SPAN_MINUTES),
            EventOrder::Chronological => (total - i) * SPAN_MINUTES / total,
        };
        let age = chrono::Duration::minutes(i64::try_from(minutes).unwrap_or(i64::MAX));
        pb::Event {
            source: "bench".into(),
            source_event_id: format!("ev-{i}"),
            phone_number: number(i % numbers),
            kind: kind.into(),
            occurred_at: Some(timestamp(now - age)),
            from_carrier: String::new(),
            to_carrier: if kind == pb::EventKind::Port {
                "KDDI".into()
            } else {
                String::new()
            },
            ingested_at: None,
        }
    }));
    let started = Instant::now();
    let summary = EventsClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .ingest_events(events)
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(summary.rejected, 0, "{:?}", summary.errors.first());
    (summary.accepted, started.elapsed())
}

/// Carrier-scoped feeds a bench registers beside its own source, so that every check
/// weighs them (issue 14's cost of scoped coverage).
pub const SCOPED_SOURCES: usize = 20;

/// Where [`place_scoped_sources`] puts the first scope of each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Under 8190, so every bench number (+81 90-1…) is seen by it.
    Onto,
    /// Under 8160, which takes in no bench number: the sources exist but no check
    /// consults them, the baseline for what `Onto` costs.
    Away,
}

/// The carriers [`place_scoped_sources`] rotates its sources' scopes over.
pub const SCOPED_CARRIERS: [&str; 5] = [
    "jp-docomo",
    "jp-kddi",
    "jp-softbank",
    "jp-rakuten",
    "jp-okinawa-cellular",
];

/// Registers (or re-registers) [`SCOPED_SOURCES`] live sources with three scopes each:
/// one carrier's subscribers under 8190 (or 8160, see [`Placement`]) with every kind but
/// PORT, another carrier's under 8180 with SIM_SWAP and REASSIGN, any carrier's
/// DISCONNECTs under 8170; carriers rotated over the five Japanese ids. Each is heard from,
/// so it is fresh and really consulted.
pub async fn place_scoped_sources(channel: Channel, placement: Placement) {
    let first_prefix = match placement {
        Placement::Onto => "8190",
        Placement::Away => "8160",
    };
    let mut admin = AdminClient::new(channel);
    let kinds = |k: &[pb::EventKind]| k.iter().map(|&k| i32::from(k)).collect::<Vec<_>>();
    for i in 0..SCOPED_SOURCES {
        let name = format!("feed-{i:02}");
        let scope = |prefix: &str, carriers: &[&str], k: &[pb::EventKind]| pb::SourceScope {
            prefix: prefix.into(),
            carriers: carriers.iter().map(|c| c.to_string()).collect(),
            kinds: kinds(k),
        };
        admin
            .upsert_source(pb::Source {
                name: name.clone(),
                tracking_since: Some(timestamp(
                    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
                )),
                scopes: vec![
                    scope(
                        first_prefix,
                        &[SCOPED_CARRIERS[i % 5]],
                        &[
                            pb::EventKind::SimSwap,
                            pb::EventKind::Disconnect,
                            pb::EventKind::Reassign,
                            pb::EventKind::DeviceSwap,
                        ],
                    ),
                    scope(
                        "8180",
                        &[SCOPED_CARRIERS[(i + 1) % 5]],
                        &[pb::EventKind::SimSwap, pb::EventKind::Reassign],
                    ),
                    scope("8170", &[], &[pb::EventKind::Disconnect]),
                ],
                ..Default::default()
            })
            .await
            .expect("scoped source");
        admin
            .heartbeat(pb::HeartbeatRequest {
                source: name,
                complete_until: None,
            })
            .await
            .expect("heartbeat");
    }
}

/// One `grpc.health.v1.Health/Check`; whether it succeeded.
pub async fn health_check(channel: Channel) -> bool {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

/// One `CheckNumber` of `phone_number` with an `owner_since` of 2026-01-01; whether it
/// succeeded.
pub async fn check_number(channel: Channel, phone_number: String) -> bool {
    let owner_since = timestamp(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    NumberCheckClient::new(channel)
        .check_number(pb::CheckNumberRequest {
            phone_number,
            owner_since: Some(owner_since),
            ..Default::default()
        })
        .await
        .is_ok()
}

/// How hard a measured phase drives the server.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the in-flight requests share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Servers on CPU 0 and this bench on CPU 1, so that neither takes the other's core
    /// and a run does not depend on how the bench's tasks and the server's threads happen
    /// to share the two (see issue 15's section of BENCHMARKS.md).
    #[arg(long)]
    pub pin: bool,
}

impl Load {
    /// Applies `--pin`: call before starting servers.
    pub fn pin(&self) {
        if !self.pin {
            return;
        }
        crate::process::hold_servers_to(0);
        // Every thread of this process; threads started later inherit it.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("taskset (util-linux)");
        assert!(status.success(), "taskset could not pin the bench to CPU 1");
    }
}

/// One measured phase: how many requests, how fast, how long they took.
#[derive(Debug)]
pub struct Phase {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Phase {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// A Markdown table row: `| name | requests | errors | req/s | p50 | p99 |`.
    pub fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
            self.requests,
            self.errors,
            self.rps(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// Runs `request(worker)` in a loop on `concurrency` workers for `seconds`; each call
/// answers whether the request succeeded.
pub async fn run_phase<F, Fut>(load: &Load, request: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..load.concurrency {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = request(worker).await;
                latencies.push(t.elapsed());
                errors += u64::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("worker");
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Phase {
        requests: all.len() as u64,
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// A field of `/proc/<pid>/status` given in kB (e.g. `VmHWM:`), in MiB.
pub fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time a process has used so far, user and system, all threads (Linux: fields 14 and
/// 15 of /proc/PID/stat, in clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are counted from its ')'.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Resets a process's peak RSS to its current RSS (Linux: write 5 to clear_refs).
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Resources of the children this process has waited for: peak resident memory (MiB) and
/// CPU time (user + system).
#[allow(unsafe_code)] // getrusage has no safe wrapper in std
fn children_usage() -> (f64, Duration) {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        usage.ru_maxrss as f64 / 1024.0, // kilobytes on Linux
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    )
}

/// Waits (up to 60 s) until process `pid` has used under 1% of a core for two seconds
/// (longer than the server's one-second ticks); returns its CPU time then.
fn until_idle(pid: u32) -> Duration {
    const WINDOW: Duration = Duration::from_millis(500);
    const QUIET_WINDOWS: u32 = 4;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut before, mut quiet) = (cpu_time(pid), 0);
    while quiet < QUIET_WINDOWS && Instant::now() < deadline {
        std::thread::sleep(WINDOW);
        let now = cpu_time(pid);
        quiet = if now - before < WINDOW / 100 {
            quiet + 1
        } else {
            0
        };
        before = now;
    }
    before
}

/// One `numguard audit` run, measured.
pub struct AuditRun {
    /// From start to exit, report written.
    pub wall: Duration,
    /// The client's peak RSS (of every child waited for so far: take the largest).
    pub client_peak_mib: f64,
    /// The client's CPU time.
    pub client_cpu: Duration,
    /// The server's CPU time during the run.
    pub server_cpu: Duration,
    /// The server's CPU time from the start until it went idle after the run: with what
    /// it finishes afterwards (its access log's last write).
    pub server_cpu_until_idle: Duration,
    /// How long after the run the server was seen idle (two seconds after it went idle).
    pub idle_after: Duration,
    /// The summary the client printed (`--json`).
    pub summary: serde_json::Value,
}

/// Runs `numguard audit --json` over the list at `list` against the server at `url`
/// (process `server_pid`), writing the report to `report`. The client is the same binary
/// as the server ([`crate::process::bin`]), so a bench comparing builds through
/// `NUMGUARD_SERVER_BIN` compares clients that read their own server's answers. Exit code
/// 3 (done, some rows refused) counts as success.
pub fn run_audit(url: &str, server_pid: u32, list: &Path, report: &Path) -> AuditRun {
    let (_, cpu_before) = children_usage();
    let server_before = cpu_time(server_pid);
    let started = Instant::now();
    let out = Command::new(crate::process::bin())
        .args(["audit", "--json", "--server", url, "--input"])
        .arg(list)
        .arg("--output")
        .arg(report)
        .output()
        .expect("run numguard audit");
    let wall = started.elapsed();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "audit failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (client_peak_mib, cpu_after) = children_usage();
    let server_cpu = cpu_time(server_pid) - server_before;
    let ended = Instant::now();
    let server_after = until_idle(server_pid);
    AuditRun {
        wall,
        client_peak_mib,
        client_cpu: cpu_after - cpu_before,
        server_cpu,
        server_cpu_until_idle: server_after - server_before,
        idle_after: ended.elapsed(),
        summary: serde_json::from_slice(&out.stdout).expect("summary JSON"),
    }
}
