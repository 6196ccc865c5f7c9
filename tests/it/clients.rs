//! Clients nobody here wrote, against the real binary: the Python (grpcio) and Node
//! (grpc-js) example programs in `examples/`, a grpcio-reflection (v1alpha) client and
//! `buf curl`. They need what `scripts/test` installs (`examples/python/.venv` with the
//! generated modules, `examples/node/node_modules`, `tools/node_modules`) and fail with
//! that advice when it is missing.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use numguard::api::pb;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard_testkit::process::{Served, bin};
use numguard_testkit::proxy::Proxy;
use numguard_testkit::{Backend, TestDb, installed, new_key};
use tonic::metadata::MetadataValue;

const EVERY_SCOPE: &str = "check,ingest,admin,watch,audit";
/// Messages in each of the big streams (the 1,000,000-message runs are a benchmark).
const STREAM_MESSAGES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
enum Lang {
    Python,
    Node,
}

impl Lang {
    /// The command that runs one of this language's example programs, e.g. "check_number".
    fn example(self, program: &str) -> Command {
        match self {
            Lang::Python => {
                installed("examples/python/gen/numguard/v1/check_pb2.py");
                let mut command = Command::new(installed("examples/python/.venv/bin/python"));
                command.arg(installed(&format!("examples/python/{program}.py")));
                command
            }
            Lang::Node => {
                installed("examples/node/node_modules/@grpc/grpc-js");
                let mut command = Command::new("node");
                command.arg(installed(&format!("examples/node/{program}.js")));
                command
            }
        }
    }

    /// A test client of this language from `tests/clients/`.
    fn test_client(self, name: &str) -> Command {
        match self {
            Lang::Python => {
                let mut command = Command::new(installed("examples/python/.venv/bin/python"));
                command.arg(installed(&format!("tests/clients/{name}.py")));
                command
            }
            Lang::Node => {
                let mut command = Command::new("node");
                command.arg(installed(&format!("tests/clients/{name}.js")));
                command
            }
        }
    }
}

/// What a finished client process left behind.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(self) -> Ran {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
}

/// Runs a client against `served` with `key`, killing it (and failing) past `limit`.
/// Output goes to files, so a chatty client never blocks on a full pipe.
fn run(mut command: Command, served_url: &str, key: &str, limit: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = command
        .env("NUMGUARD_SERVER", served_url)
        .env("NUMGUARD_API_KEY", key)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn client");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} ran past {limit:?}\nstdout: {}\nstderr: {}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// A server with API keys on, over a new SQLite file, and a key with every scope.
async fn keyed_server() -> (Served, String, Arc<TestDb>) {
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let key = new_key(&db, "acme", EVERY_SCOPE).await;
    let served = Served::start_with(&db.url, &[]);
    (served, key, db)
}

/// The numguard CLI against `served` with `key`.
fn cli(served: &Served, key: &str, args: &[&str]) -> Ran {
    let mut command = Command::new(bin());
    command.args(args);
    run(command, &served.url, key, Duration::from_secs(60)).ok()
}

/// Registers a source complete since 2025 for every +81 number.
fn add_source(served: &Served, key: &str, name: &str) {
    let args = [
        "sources",
        "add",
        name,
        "--tracking-since",
        "2025-01-01",
        "--covers",
        "81",
    ];
    cli(served, key, &args);
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The number of row or event `i` of the big streams: all valid Japanese mobiles.
fn number(i: usize) -> String {
    format!("+8190{}", 10_000_000 + i)
}

fn events_csv(prefix: &str, n: usize) -> String {
    let mut text =
        String::from("source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n");
    for i in 0..n {
        let at = chrono::DateTime::from_timestamp(1_767_225_600 + i as i64, 0).unwrap();
        let _ = writeln!(
            text,
            "{prefix}-{i},{},SIM_SWAP,{},,",
            number(i),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    text
}

/// Customers for the big audits; every 10,000th row has a number no country has, to show a
/// bad row is answered in its place and the stream goes on.
fn customers_csv(n: usize) -> String {
    let mut text = String::from("customer_ref,phone_number,owner_since\n");
    for i in 0..n {
        let phone = if i % 10_000 == 9_999 {
            "12".to_string()
        } else {
            number(i)
        };
        let _ = writeln!(text, "cust-{i},{phone},2026-01-01");
    }
    text
}

/// Checks an audit report line by line against the input: every row once, in order.
fn assert_report(report: &str, n: usize) {
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), n + 1, "header and one line per row");
    assert_eq!(
        lines[0],
        "customer_ref,phone_number,verdict,sim_swap,ownership,reasons,error"
    );
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], format!("cust-{i}"), "line {}", i + 2);
        if i % 10_000 == 9_999 {
            assert!(fields[6].starts_with("phone_number"), "{line}");
        } else {
            assert_eq!(fields[1], number(i), "line {}", i + 2);
            assert!(!fields[2].is_empty(), "{line}");
        }
    }
}

/// Keeps `tasks` CheckNumber calls in flight until told to stop; counts answers and errors.
struct CheckLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CheckLoad {
    async fn start(url: &str, key: &str, tasks: usize) -> CheckLoad {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bearer: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..tasks)
            .map(|t| {
                let bearer = bearer.clone();
                let mut client = NumberCheckClient::with_interceptor(
                    channel.clone(),
                    move |mut request: tonic::Request<()>| {
                        request
                            .metadata_mut()
                            .insert("authorization", bearer.clone());
                        Ok(request)
                    },
                );
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let request = pb::CheckNumberRequest {
                            phone_number: number(i % STREAM_MESSAGES),
                            ..Default::default()
                        };
                        match client.check_number(request).await {
                            Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        i += 7;
                    }
                })
            })
            .collect();
        CheckLoad {
            stop,
            answered,
            failed,
            tasks,
        }
    }

    /// Stops the load; returns (answered, failed).
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs clients at once, each on its own thread; returns their results in order.
async fn run_together(runs: Vec<(Command, Duration)>, url: &str, key: &str) -> Vec<Ran> {
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(command, limit)| {
            let (url, key) = (url.to_string(), key.to_string());
            tokio::task::spawn_blocking(move || run(command, &url, &key, limit))
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_of_single_messages_from_python_and_node_complete_while_checks_run() {
    let (served, key, _db) = keyed_server().await;
    let dir = tempfile::tempdir().unwrap();
    add_source(&served, &key, "py-feed");
    add_source(&served, &key, "js-feed");
    let py_events = write_file(dir.path(), "py.csv", &events_csv("py", STREAM_MESSAGES));
    let js_events = write_file(dir.path(), "js.csv", &events_csv("js", STREAM_MESSAGES));
    let customers = write_file(dir.path(), "customers.csv", &customers_csv(STREAM_MESSAGES));
    let py_report = dir.path().join("py-report.csv");
    let js_report = dir.path().join("js-report.csv");

    let load = CheckLoad::start(&served.url, &key, 4).await;
    let limit = Duration::from_secs(400);
    let mut py_ingest = Lang::Python.example("ingest_events");
    py_ingest.args([&py_events, "--source", "py-feed"]);
    let mut js_ingest = Lang::Node.example("ingest_events");
    js_ingest.args([&js_events, "--source", "js-feed"]);
    let mut py_audit = Lang::Python.example("audit_numbers");
    py_audit.args([&customers, "--out", py_report.to_str().unwrap()]);
    let mut js_audit = Lang::Node.example("audit_numbers");
    js_audit.args([&customers, "--out", js_report.to_str().unwrap()]);
    let ran = run_together(
        vec![
            (py_ingest, limit),
            (js_ingest, limit),
            (py_audit, limit),
            (js_audit, limit),
        ],
        &served.url,
        &key,
    )
    .await;
    let (answered, failed) = load.stop().await;

    let expected = format!("accepted {STREAM_MESSAGES}, duplicates 0, rejected 0\n");
    let mut ran = ran.into_iter().map(Ran::ok);
    assert_eq!(ran.next().unwrap().stdout, expected, "Python ingest");
    assert_eq!(ran.next().unwrap().stdout, expected, "Node ingest");
    let audited = format!("audited {STREAM_MESSAGES} rows");
    assert!(
        ran.next().unwrap().stdout.starts_with(&audited),
        "Python audit"
    );
    assert!(
        ran.next().unwrap().stdout.starts_with(&audited),
        "Node audit"
    );
    assert_report(
        &std::fs::read_to_string(&py_report).unwrap(),
        STREAM_MESSAGES,
    );
    assert_report(
        &std::fs::read_to_string(&js_report).unwrap(),
        STREAM_MESSAGES,
    );
    assert!(answered > 0, "the check load ran");
    assert_eq!(failed, 0, "no check failed while the streams ran");

    // Each file again, through the other language: every event is already stored, once.
    let mut py_again = Lang::Python.example("ingest_events");
    py_again.args([&js_events, "--source", "js-feed"]);
    let mut js_again = Lang::Node.example("ingest_events");
    js_again.args([&py_events, "--source", "py-feed"]);
    let again = format!("accepted 0, duplicates {STREAM_MESSAGES}, rejected 0\n");
    for ran in run_together(
        vec![(py_again, limit), (js_again, limit)],
        &served.url,
        &key,
    )
    .await
    {
        assert_eq!(ran.ok().stdout, again);
    }
}

/// A client may send a whole list before it reads any answer: the server stops reading
/// rows once its answers wait, and flow control holds the client back until they are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_client_that_reads_late_is_held_back_by_flow_control_not_cut_off() {
    let (served, key, _db) = keyed_server().await;
    let rows = 50_000;
    let runs = [Lang::Python, Lang::Node]
        .into_iter()
        .map(|lang| {
            let mut command = lang.test_client("late_reader");
            command.args([rows.to_string().as_str(), "3"]);
            (command, Duration::from_secs(300))
        })
        .collect();
    for ran in run_together(runs, &served.url, &key).await {
        assert_eq!(ran.ok().stdout, format!("results {rows}\n"));
    }
}

/// A server that closes connections idle for a second does not fail the next call of a
/// grpcio or grpc-js client that kept its channel open past that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_call_again_after_the_server_closed_their_idle_connection() {
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let key = new_key(&db, "acme", EVERY_SCOPE).await;
    let served = Served::start_with(&db.url, &["--connection-idle-timeout-secs", "1"]);
    let runs = [Lang::Python, Lang::Node]
        .into_iter()
        .map(|lang| {
            let mut command = lang.test_client("across_idle_close");
            command.arg("3");
            (command, Duration::from_secs(60))
        })
        .collect();
    for ran in run_together(runs, &served.url, &key).await {
        assert_eq!(ran.ok().stdout, "checks 2\n");
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service_without_a_key() {
    let (served, key, _db) = keyed_server().await;
    let services = [
        "numguard.v1.NumberCheck",
        "numguard.v1.Events",
        "numguard.v1.Admin",
        "numguard.v1.Alerts",
        "grpc.health.v1.Health",
    ];
    let listed = run(
        Lang::Python.test_client("reflection_v1alpha"),
        &served.url,
        "",
        Duration::from_secs(60),
    )
    .ok()
    .stdout;
    for service in services {
        assert!(
            listed.lines().any(|line| line.starts_with(service)),
            "{service} in {listed}"
        );
    }
    assert!(listed.contains("numguard.v1.NumberCheck CheckNumber AuditNumbers"));

    let buf = |args: &[&str]| {
        let mut command = Command::new(installed("tools/node_modules/.bin/buf"));
        command.args(["curl", "--protocol", "grpc", "--http2-prior-knowledge"]);
        command.args(args);
        run(command, &served.url, "", Duration::from_secs(60))
    };
    for protocol in ["grpc-v1", "grpc-v1alpha"] {
        let listed = buf(&[
            "--reflect-protocol",
            protocol,
            "--list-services",
            &served.url,
        ])
        .ok()
        .stdout;
        for service in services {
            assert!(
                listed.lines().any(|line| line == service),
                "{protocol}: {listed}"
            );
        }
    }

    // buf curl calls CheckNumber with the key; without one it is refused.
    let method = format!("{}/numguard.v1.NumberCheck/CheckNumber", served.url);
    let body = r#"{"phone_number":"090-1234-5678","region":"JP"}"#;
    let header = format!("authorization: Bearer {key}");
    let answer = buf(&["-H", &header, "-d", body, &method]).ok().stdout;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["phoneNumber"], "+819012345678");
    assert_eq!(answer["verdict"], "VERDICT_ALLOW");
    let refused = buf(&["-d", body, &method]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("unauthenticated"), "{refused:?}");
}

/// Everything the README's Clients section promises of one language's examples.
async fn examples_work_as_documented(lang: Lang) {
    let (served, key, _db) = keyed_server().await;
    let dir = tempfile::tempdir().unwrap();
    let seconds = Duration::from_secs;
    let example = |program: &str, args: &[&str]| {
        let mut command = lang.example(program);
        command.args(args);
        run(command, &served.url, &key, seconds(120))
    };
    add_source(&served, &key, "feed");

    // IngestEvents from a CSV file: refused lines are named by line number.
    let events = write_file(
        dir.path(),
        "events.csv",
        "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
         ev-1,+819012345678,PORT,2026-05-02T10:00:00Z,KDDI,NTT Docomo\n\
         ev-2,+819012345678,SIM_SWAP,2099-01-01T00:00:00Z,,\n\
         ev-3,+818012345678,DISCONNECT,2026-05-10T00:00:00Z,,\n\
         ev-4,not-a-number,REASSIGN,2026-06-01T00:00:00Z,,\n\
         ev-5,+818012345678,FLY,2026-06-01T00:00:00Z,,\n",
    );
    let ingested = example("ingest_events", &[&events, "--source", "feed"]);
    assert_eq!(ingested.code, 1, "{ingested:?}");
    assert_eq!(ingested.stdout, "accepted 2, duplicates 0, rejected 3\n");
    for line in ["line 3: ", "line 5: phone_number", "line 6: "] {
        assert!(ingested.stderr.contains(line), "{line} in {ingested:?}");
    }
    let missing = example("ingest_events", &["/nonexistent.csv", "--source", "feed"]);
    assert_eq!(missing.code, 2, "{missing:?}");

    // CheckNumber with a key: the verdict and its reasons.
    let swapped = write_file(
        dir.path(),
        "swap.csv",
        &format!(
            "source_event_id,phone_number,kind,occurred_at\nev-6,+819012345678,SIM_SWAP,{}\n",
            (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339()
        ),
    );
    example("ingest_events", &[&swapped, "--source", "feed"]).ok();
    let checked = example("check_number", &["090-1234-5678", "--region", "JP"]).ok();
    assert!(
        checked.stdout.starts_with("+819012345678 STEP_UP\n"),
        "{checked:?}"
    );
    assert!(checked.stdout.contains("SIM_SWAPPED"), "{checked:?}");
    assert!(
        checked
            .stdout
            .contains("\n  ownership covered by feed since "),
        "{checked:?}"
    );
    let json = example(
        "check_number",
        &["+818012345678", "--owner-since", "2026-03-01", "--json"],
    )
    .ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["verdict"], "VERDICT_BLOCK");
    // An answer over 1 KiB (a reason per change of owner), which the server sends in
    // DATA frames under 1 KiB (tests/it/frames.rs), reaches the client whole.
    let now = chrono::Utc::now();
    let mut changes = String::from("source_event_id,phone_number,kind,occurred_at\n");
    for i in 0..16 {
        let at = now - chrono::Duration::days(20 + i);
        writeln!(
            changes,
            "ow-{i},+817012345678,DISCONNECT,{}",
            at.to_rfc3339()
        )
        .unwrap();
    }
    let changes = write_file(dir.path(), "changes.csv", &changes);
    example("ingest_events", &[&changes, "--source", "feed"]).ok();
    let owner_since = (now - chrono::Duration::days(100))
        .format("%Y-%m-%d")
        .to_string();
    let long = example(
        "check_number",
        &["+817012345678", "--owner-since", &owner_since, "--json"],
    )
    .ok();
    assert!(long.stdout.len() > 1_024, "{long:?}");
    let long: serde_json::Value = serde_json::from_str(&long.stdout).unwrap();
    assert_eq!(long["verdict"], "VERDICT_BLOCK");
    assert_eq!(long["reasons"].as_array().map(Vec::len), Some(16), "{long}");
    let invalid = example("check_number", &["+8190"]);
    assert_eq!(invalid.code, 1, "{invalid:?}");
    assert!(invalid.stderr.contains("INVALID_ARGUMENT"), "{invalid:?}");
    let mut wrong_key = lang.example("check_number");
    wrong_key.arg("+819012345678");
    let refused = run(
        wrong_key,
        &served.url,
        "ng_0000000000000000_nope",
        seconds(60),
    );
    assert_eq!(refused.code, 3, "{refused:?}");
    let mut nowhere = lang.example("check_number");
    nowhere.arg("+819012345678");
    let unreachable = run(nowhere, "127.0.0.1:9", &key, seconds(60));
    assert_eq!(unreachable.code, 4, "{unreachable:?}");

    // An AuditNumbers report: one line per row, in order, a bad row in its place.
    let customers = write_file(
        dir.path(),
        "customers.csv",
        "customer_ref,phone_number,owner_since,region\n\
         c1,+819012345678,2026-03-01,\n\
         c2,080-1234-5678,2026-03-01,JP\n\
         c3,12,,\n",
    );
    let report = dir.path().join("report.csv");
    let audited = example(
        "audit_numbers",
        &[&customers, "--out", report.to_str().unwrap()],
    )
    .ok();
    assert_eq!(
        audited.stdout,
        "audited 3 rows: 1 BLOCK, 1 ERROR, 1 STEP_UP\n"
    );
    let report = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines[1],
        "c1,+819012345678,STEP_UP,SWAPPED,UNCHANGED,SIM_SWAPPED,"
    );
    assert_eq!(
        lines[2],
        "c2,+818012345678,BLOCK,NOT_SWAPPED,CHANGED,OWNER_CHANGED,"
    );
    assert!(lines[3].starts_with("c3,,,,,,phone_number"), "{report}");
    assert_eq!(lines.len(), 4);

    watch_alerts_resumes_after_a_cut(lang, &served, &key, dir.path()).await;
}

/// WatchAlerts through a link that is cut and restored: the example reconnects from its
/// saved cursor and prints every alert once, in order.
async fn watch_alerts_resumes_after_a_cut(lang: Lang, served: &Served, key: &str, dir: &Path) {
    let watched = write_file(
        dir,
        "watch.csv",
        "customer_ref,phone_number,owner_since,region\ncust-9,+819099990000,2026-01-01,\n",
    );
    cli(served, key, &["watch", "import", &watched]);
    let grpc_addr = served.url.trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(grpc_addr).await;
    let cursor_file = dir.join("alerts.cursor");
    let mut watch = lang.example("watch_alerts");
    watch.args([
        "--cursor-file",
        cursor_file.to_str().unwrap(),
        "--max-alerts",
        "4",
    ]);
    let url = format!("http://{}", proxy.addr);
    let key_for_watch = key.to_string();
    let watching = tokio::task::spawn_blocking(move || {
        run(watch, &url, &key_for_watch, Duration::from_secs(120))
    });
    let ingest_swaps = |ids: &[&str]| {
        let mut text =
            String::from("source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n");
        for (n, id) in ids.iter().enumerate() {
            let _ = writeln!(
                text,
                "{id},+819099990000,SIM_SWAP,2026-11-0{}T00:00:00Z,,",
                n + 1
            );
        }
        let file = write_file(dir, &format!("{}.csv", ids[0]), &text);
        cli(
            served,
            key,
            &["import", "events", &file, "--source", "feed"],
        );
    };

    // Without a cursor file the example starts "from now on" and saves where that was (the
    // stream's start cursor): the first event must come after that.
    let deadline = Instant::now() + Duration::from_secs(60);
    let start = loop {
        if let Ok(start) = std::fs::read_to_string(&cursor_file) {
            break start;
        }
        assert!(Instant::now() < deadline, "the example opened no stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ingest_swaps(&["w-1"]);
    while std::fs::read_to_string(&cursor_file).unwrap() == start {
        assert!(Instant::now() < deadline, "no alert reached the example");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ingest_swaps(&["w-2"]);
    proxy.cut();
    ingest_swaps(&["w-3", "w-4"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();

    let ran = watching.await.unwrap().ok();
    let alerts: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let cursors: Vec<u64> = alerts
        .iter()
        .map(|a| a["cursor"].as_u64().unwrap())
        .collect();
    assert_eq!(alerts.len(), 4, "{ran:?}");
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a["kind"] == "SIM_SWAP" && a["customer_refs"][0] == "cust-9")
    );
    let saved = std::fs::read_to_string(&cursor_file).unwrap();
    assert_eq!(saved.trim(), cursors[3].to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_examples_work_as_documented() {
    examples_work_as_documented(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_examples_work_as_documented() {
    examples_work_as_documented(Lang::Node).await;
}

/// Both languages' examples over TLS with a private CA (`NUMGUARD_CA_CERT`); without it
/// the handshake fails and they say the server is unreachable (exit 4), never a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_speak_tls_to_a_server_with_a_private_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = write_file(dir.path(), "cert.pem", &generated.cert.pem());
    let key_file = write_file(
        dir.path(),
        "key.pem",
        &generated.signing_key.serialize_pem(),
    );
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let key = new_key(&db, "acme", EVERY_SCOPE).await;
    let served = Served::start_with(&db.url, &["--tls-cert", &cert, "--tls-key", &key_file]);
    let port = served.url.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    for lang in [Lang::Python, Lang::Node] {
        let mut trusting = lang.example("check_number");
        trusting.arg("+819012345678").env("NUMGUARD_CA_CERT", &cert);
        let answered = run(trusting, &url, &key, Duration::from_secs(60)).ok();
        assert!(
            answered.stdout.starts_with("+819012345678 ALLOW"),
            "{lang:?}: {answered:?}"
        );
        let mut untrusting = lang.example("check_number");
        untrusting.arg("+819012345678");
        let refused = run(untrusting, &url, &key, Duration::from_secs(60));
        assert_eq!(refused.code, 4, "{lang:?}: {refused:?}");
    }
    // The CLI over plain http to this TLS port says what to try.
    let plain = std::process::Command::new(numguard_testkit::process::bin())
        .args(["check", "+819012345678", "--api-key", &key])
        .env("NUMGUARD_SERVER", format!("http://localhost:{port}"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(1), "{said}");
    assert!(said.contains("use an https:// address"), "{said}");
}
