//! Property-based tests of the CAMARA facade by a tool nobody here wrote: Schemathesis
//! reads each API's served OpenAPI document and sends generated requests, valid and
//! invalid (and, for subscriptions, create-read-delete sequences). Every answer must be
//! a status the document declares with the body and headers it declares, invalid input
//! must be refused, and nothing may be a server error.

use std::path::Path;

use chrono::{Duration, Utc};
use numguard::api::pb::EventKind;
use numguard_testkit::*;

on_both_backends!(every_camara_operation_answers_generated_requests_as_documented);

/// Schemathesis's checks, all but those that contradict CAMARA: `positive_data_acceptance`
/// (a valid body for a number nobody covers is rightly 404) and `use_after_free` (a
/// deleted subscription is kept, as DELETED).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection";

async fn every_camara_operation_answers_generated_requests_as_documented(backend: Backend) {
    let server = TestServer::start_rest(backend, dev_config()).await;
    add_source(&server, "jp", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let swapped = Utc::now() - Duration::hours(5);
    let number = "+819012345678";
    ingest(
        &server,
        vec![event("jp", "s1", number, EventKind::SimSwap, swapped)],
    )
    .await;
    let rest = server.rest_addr.expect("REST");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    for doc in numguard::rest::openapi::documents().unwrap() {
        let output =
            tokio::process::Command::new(installed("examples/python/.venv/bin/schemathesis"))
                .args(["run", &format!("http://{rest}{}", doc.path())])
                .args(["--url", &format!("http://{rest}{}", doc.base_path)])
                .args(["--checks", &CHECKS.replace(' ', "")])
                .args(["--max-examples", "30", "--workers", "1", "--no-color"])
                .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
                .env("PYTHONPATH", root.join("tests/clients"))
                // Nothing listens there: deliveries fail on loopback.
                .env("NUMGUARD_TEST_SINK", "https://127.0.0.1:9/hook")
                // Hypothesis keeps its example database in the working directory.
                .current_dir(work.path())
                .output()
                .await
                .expect("schemathesis runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{}:\n{report}", doc.path());
        assert!(report.contains("passed"), "{}:\n{report}", doc.path());
    }
}
