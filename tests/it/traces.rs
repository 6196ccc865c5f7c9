//! Traces and request ids, through the real binary: `--otlp-endpoint` exports one trace
//! per request to a real OTLP/gRPC receiver (the OpenTelemetry project's own TraceService,
//! in Python), with the store and upstream calls as its children; JSON log lines and the
//! `x-request-id` response header carry the request's id.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use numguard::api::pb;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard_testkit::operator::{CLIENT_ID, CLIENT_SECRET, Operator};
use numguard_testkit::process::{Served, bin, ok};
use serde_json::Value;
use tonic::Request;

/// The OTLP receiver: its port, and the spans it prints, one JSON object per line.
struct OtlpReceiver {
    child: Child,
    port: u16,
    spans: Receiver<Value>,
}

impl OtlpReceiver {
    fn start() -> OtlpReceiver {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(root.join("examples/python/.venv/bin/python"))
            .arg(root.join("tests/clients/otlp_receiver.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python venv with opentelemetry-proto (scripts/test makes it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .next()
            .expect("the receiver's port")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (tx, spans) = channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        OtlpReceiver { child, port, spans }
    }

    /// Every span received until `done` holds of them, failing after a while.
    fn wait_for(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spans.recv_timeout(left) {
                Ok(span) => seen.push(span),
                Err(_) => panic!("the spans never sufficed: {seen:#?}"),
            }
        }
        seen
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Two workers: the fake operator answers while the test waits on child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_with_its_store_and_upstream_calls_and_one_request_id() {
    let receiver = OtlpReceiver::start();
    let operator = Operator::start().await;
    operator.swapped("+817011012345");
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("upstreams.toml");
    let providers = providers.to_str().unwrap();
    ok(Command::new(bin())
        .args(["upstreams", "--file", providers, "add", "softbank-op"])
        .args([
            "--carrier",
            "jp-softbank",
            "--base-url",
            &operator.base_url(),
        ])
        .args(["--token-url", &operator.token_url()])
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .output()
        .unwrap());
    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let served = Served::start_with(
        &db,
        &[
            "--dev",
            "--log-format",
            "json",
            "--otlp-endpoint",
            &endpoint,
            "--upstreams-file",
            providers,
        ],
    );
    let channel = tonic::transport::Channel::from_shared(served.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    // A SoftBank subscriber no source covers: numguard asks SoftBank's API.
    let mut request = Request::new(pb::CheckNumberRequest {
        phone_number: "+817011012345".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "it-trace-1".parse().unwrap());
    let answered = NumberCheckClient::new(channel.clone())
        .check_number(request)
        .await
        .unwrap();
    assert_eq!(
        answered.metadata().get("x-request-id").unwrap(),
        "it-trace-1"
    );
    assert_eq!(answered.get_ref().verdict(), pb::Verdict::StepUp);
    assert_eq!(operator.calls(), 1);

    // Without one, the server makes one up; the log line written in the request has it.
    let upserted = AdminClient::new(channel)
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: Some(numguard::api::convert::timestamp(numguard_testkit::at(
                "2025-01-01T00:00:00Z",
            ))),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let made_up = upserted
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(made_up.len(), 16, "{made_up}");
    let log = served.stop();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "source upserted")
        .unwrap_or_else(|| panic!("no JSON line for the upsert:\n{log}"));
    assert_eq!(line["span"]["request_id"], made_up, "{line}");

    // Stopped, the server has flushed its spans: the check's trace holds the request, a
    // store read and the upstream call, all under the request's span.
    let named = |spans: &[Value], name: &str| -> Option<Value> {
        spans.iter().find(|s| s["name"] == name).cloned()
    };
    let spans = receiver.wait_for(|spans| {
        named(spans, "/numguard.v1.NumberCheck/CheckNumber").is_some()
            && named(spans, "upstream").is_some()
            && spans
                .iter()
                .any(|s| s["name"].as_str().is_some_and(|n| n.starts_with("store.")))
    });
    let request = named(&spans, "/numguard.v1.NumberCheck/CheckNumber").unwrap();
    assert_eq!(request["service"], "numguard");
    assert_eq!(
        request["attributes"]["request_id"], "it-trace-1",
        "{request}"
    );
    let trace = request["trace_id"].as_str().unwrap();
    let in_trace: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == trace).collect();
    let upstream = in_trace
        .iter()
        .find(|s| s["name"] == "upstream")
        .unwrap_or_else(|| panic!("the upstream call is not in the check's trace: {spans:#?}"));
    assert_eq!(upstream["attributes"]["provider"], "softbank-op");
    assert!(
        in_trace
            .iter()
            .any(|s| s["name"].as_str().unwrap().starts_with("store.")
                && s["parent_span_id"] == request["span_id"]),
        "no store call under the request: {in_trace:#?}"
    );
}
