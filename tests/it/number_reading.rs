//! Numbers read as libphonenumber reads them (issue 16): a differential test against
//! Python `phonenumbers` at the metadata version numguard bundles. `tests/numbers/cases.py`
//! writes about 34,000 inputs with libphonenumber's reading of each; every one is read by
//! numguard's reader and, twice (so that cache-dependence shows), by a real server's
//! `CheckNumber`.
//!
//! No deviation is allowed; inputs with letters (vanity numbers) and extensions are not
//! drawn, as numguard refuses extensions on purpose (README, "What a check answers").

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use futures::StreamExt;
use numguard::api::pb::{self, ReasonCode};
use numguard::domain::number::{ParsedNumber, Region};
use numguard_testkit::*;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deviation {
    /// libphonenumber reads a valid number; numguard refuses the input.
    Refused,
    /// numguard accepts what libphonenumber finds invalid.
    Accepted,
    /// Both accept, as different numbers.
    OtherNumber,
    /// Same number, but one says mobile and the other not.
    Mobility,
}

struct Case {
    input: String,
    region: String,
    expected: Option<(String, bool)>,
}

/// What numguard made of a case: its E.164 form and mobile-ness, or a refusal.
type Reading = Option<(String, bool)>;

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("examples/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which makes the venv with phonenumbers",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/numbers/cases.py"))
        .output()
        .expect("run tests/numbers/cases.py");
    assert!(
        out.status.success(),
        "cases.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON case");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Case {
                input: text("input"),
                region: text("region"),
                expected: v["valid"]
                    .as_bool()
                    .unwrap_or(false)
                    .then(|| (text("e164"), v["mobile"].as_bool().unwrap_or(false))),
            }
        })
        .collect()
}

fn deviation(expected: &Reading, got: &Reading) -> Option<Deviation> {
    match (expected, got) {
        (None, None) => None,
        (Some(_), None) => Some(Deviation::Refused),
        (None, Some(_)) => Some(Deviation::Accepted),
        (Some((e, _)), Some((g, _))) if e != g => Some(Deviation::OtherNumber),
        (Some((_, e)), Some((_, g))) if e != g => Some(Deviation::Mobility),
        _ => None,
    }
}

/// Fails on any deviation, naming how many of each kind, with a few examples of each.
fn judge(how: &str, found: &[(Deviation, &Case, Reading)]) {
    let mut counts: BTreeMap<Deviation, usize> = BTreeMap::new();
    for (kind, _, _) in found {
        *counts.entry(*kind).or_default() += 1;
    }
    let mut report = String::new();
    for (kind, count) in &counts {
        report.push_str(&format!("{how}: {kind:?} {count}, e.g.\n"));
        for (_, case, got) in found.iter().filter(|(k, _, _)| k == kind).take(8) {
            report.push_str(&format!(
                "  {:?} region {:?}: libphonenumber {:?}, numguard {:?}\n",
                case.input, case.region, case.expected, got
            ));
        }
    }
    assert!(
        found.is_empty(),
        "{} deviations from libphonenumber\n{report}",
        found.len()
    );
}

fn read_in_process(case: &Case) -> Reading {
    let region: Option<Region> = (!case.region.is_empty()).then(|| case.region.parse().unwrap());
    ParsedNumber::parse(&case.input, region)
        .ok()
        .map(|p| (p.e164.as_str().to_string(), p.mobile))
}

#[test]
fn the_reader_agrees_with_libphonenumber() {
    let cases = cases();
    assert!(cases.len() >= 20_000, "only {} cases", cases.len());
    let found: Vec<_> = cases
        .iter()
        .filter_map(|case| {
            let got = read_in_process(case);
            deviation(&case.expected, &got).map(|kind| (kind, case, got))
        })
        .collect();
    judge("reader", &found);
}

/// Through a real server, every input twice: the second answer may come from the history
/// cache, and must be the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_number_agrees_with_libphonenumber_cold_and_warm() {
    let cases = cases();
    let server = TestServer::start(Backend::Sqlite).await;
    let channel = server.channel().await;
    for round in ["cold", "warm"] {
        let readings: Vec<Reading> = futures::stream::iter(cases.iter())
            .map(|case| {
                let mut client = pb::number_check_client::NumberCheckClient::new(channel.clone());
                async move {
                    let request = pb::CheckNumberRequest {
                        phone_number: case.input.clone(),
                        region: case.region.clone(),
                        ..Default::default()
                    };
                    match client.check_number(request).await {
                        Ok(answer) => {
                            let answer = answer.into_inner();
                            let mobile = !answer
                                .reasons
                                .iter()
                                .any(|r| r.code() == ReasonCode::NotMobile);
                            Some((answer.phone_number, mobile))
                        }
                        Err(status) if status.code() == tonic::Code::InvalidArgument => None,
                        Err(status) => panic!("{:?}: {status}", case.input),
                    }
                }
            })
            .buffered(16)
            .collect()
            .await;
        let found: Vec<_> = cases
            .iter()
            .zip(readings)
            .filter_map(|(case, got)| deviation(&case.expected, &got).map(|kind| (kind, case, got)))
            .collect();
        judge(&format!("CheckNumber, {round}"), &found);
    }
    server.stop().await;
}

/// Through `numguard check --json`, on every 100th case (a process each).
#[test]
fn the_cli_agrees_with_libphonenumber() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let served = numguard_testkit::process::Served::start(&format!(
        "sqlite://{}",
        dir.path().join("ng.db").display()
    ));
    let sample: Vec<&Case> = cases.iter().step_by(100).collect();
    let found: Vec<_> = sample
        .into_iter()
        .filter_map(|case| {
            let mut args = vec!["check", case.input.as_str(), "--json"];
            if !case.region.is_empty() {
                args.extend(["--region", case.region.as_str()]);
            }
            let out = served.run(&args);
            let got = if out.status.success() {
                let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
                let not_mobile = answer["reasons"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["code"] == "NOT_MOBILE"));
                Some((
                    answer["phone_number"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    !not_mobile,
                ))
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("phone_number"),
                    "{:?}: {stderr}",
                    case.input
                );
                None
            };
            deviation(&case.expected, &got).map(|kind| (kind, case, got))
        })
        .collect();
    judge("numguard check --json", &found);
}
