//! Batch audits: `AuditNumbers` over gRPC on both backends, and `numguard audit` (the real
//! binary) from a CSV list to a report.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind, OwnershipStatus, ReasonCode, SimSwapStatus, Verdict};
use numguard_testkit::process::{Served, refused_some};
use numguard_testkit::*;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    an_audit_answers_every_row_exactly_like_check_number,
    rows_beyond_one_chunk_come_back_in_order,
    the_forms_of_a_number_read_alike_in_audits_and_watchlists,
);

/// The numbers of the known-answers list, each with its story.
const RECYCLED: &str = "+819011110001";
const SWAPPED_NOW: &str = "+819011110002";
const SWAPPED_LONG_AGO: &str = "+819011110003";
const PORTED: &str = "+819011110004";
const QUIET: &str = "+819011110005";
/// New Jersey: no shipped range and no source.
const UNCOVERED: &str = "+12015550123";
/// A Tokyo fixed line.
const FIXED_LINE: &str = "+81312345678";

/// One "now" for the whole test binary, in whole seconds, so that an event's time and
/// the time a test expects to see in a report are the same instant.
static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| Utc::now().trunc_subsecs(0));

fn days_ago(days: i64) -> DateTime<Utc> {
    *NOW - Duration::days(days)
}

/// A source covering 8190 since 2025-01-01 and one event story per number.
fn known_events() -> Vec<pb::Event> {
    vec![
        event("feed", "r1", RECYCLED, EventKind::Disconnect, days_ago(100)),
        event("feed", "r2", RECYCLED, EventKind::Reassign, days_ago(60)),
        event("feed", "s1", SWAPPED_NOW, EventKind::SimSwap, days_ago(2)),
        event(
            "feed",
            "s2",
            SWAPPED_LONG_AGO,
            EventKind::SimSwap,
            days_ago(30),
        ),
        port("feed", "p1", PORTED, days_ago(3), "NTT DOCOMO", "KDDI"),
    ]
}

async fn serve_known_answers(backend: Backend) -> TestServer {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["8190"]).await;
    let summary = ingest(&server, known_events()).await;
    assert_eq!(summary.accepted, 5);
    server
}

fn row(customer_ref: &str, number: &str) -> pb::AuditRow {
    pb::AuditRow {
        customer_ref: customer_ref.into(),
        phone_number: number.into(),
        ..Default::default()
    }
}

/// The same question as a CheckNumber request.
fn as_check(row: &pb::AuditRow) -> pb::CheckNumberRequest {
    pb::CheckNumberRequest {
        phone_number: row.phone_number.clone(),
        region: row.region.clone(),
        max_age_hours: row.max_age_hours,
        owner_since: row.owner_since,
        owner_since_date: row.owner_since_date.clone(),
    }
}

/// A response without the fields that move with the clock between two calls.
fn timeless(mut r: pb::CheckNumberResponse) -> pb::CheckNumberResponse {
    r.evaluated_at = None;
    r.window_start = None;
    r.window_end = None;
    r
}

async fn audit(
    client: &mut NumberCheckClient<Channel>,
    rows: Vec<pb::AuditRow>,
) -> Vec<pb::AuditResult> {
    let mut stream = client
        .audit_numbers(tokio_stream::iter(rows))
        .await
        .expect("audit")
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.expect("result") {
        results.push(result);
    }
    results
}

async fn an_audit_answers_every_row_exactly_like_check_number(backend: Backend) {
    let server = serve_known_answers(backend).await;
    let rows = vec![
        pb::AuditRow {
            owner_since_date: days_ago(400).format("%Y-%m-%d").to_string(),
            ..row("recycled-by-date", RECYCLED)
        },
        pb::AuditRow {
            // Between the disconnect and the reassignment: only the latter counts.
            owner_since: Some(timestamp(days_ago(80))),
            ..row("recycled-by-time", RECYCLED)
        },
        pb::AuditRow {
            owner_since: Some(timestamp(days_ago(10))),
            ..row("own-contract", RECYCLED)
        },
        row("swapped", SWAPPED_NOW),
        pb::AuditRow {
            region: "JP".into(),
            ..row("swapped-national", "090-1111-0002")
        },
        row("swapped-again", SWAPPED_NOW),
        row("swapped-long-ago", SWAPPED_LONG_AGO),
        pb::AuditRow {
            max_age_hours: 24 * 40,
            ..row("swapped-in-a-wide-window", SWAPPED_LONG_AGO)
        },
        row("ported", PORTED),
        row("quiet", QUIET),
        row("uncovered", UNCOVERED),
        row("fixed-line", FIXED_LINE),
        row("invalid", "+8190123"),
        row("empty", ""),
        row("no-region", "090-1111-0002"),
        pb::AuditRow {
            region: "XX".into(),
            ..row("bad-region", "090-1111-0002")
        },
        pb::AuditRow {
            max_age_hours: 99_999,
            ..row("bad-window", QUIET)
        },
        pb::AuditRow {
            owner_since: Some(timestamp(days_ago(1))),
            owner_since_date: "2026-01-01".into(),
            ..row("both-owner-since", QUIET)
        },
        row("after-the-bad-rows", QUIET),
    ];
    let mut client = server.check().await;
    let results = audit(&mut client, rows.clone()).await;
    assert_eq!(results.len(), rows.len(), "one result per row");

    let mut by_ref = HashMap::new();
    for (i, (row, result)) in rows.iter().zip(&results).enumerate() {
        assert_eq!(result.index, i as u64);
        assert_eq!(result.customer_ref, row.customer_ref);
        // Every answer is CheckNumber's for the same row, errors included.
        let single = client.check_number(as_check(row)).await;
        match (&result.outcome, single) {
            (Some(pb::audit_result::Outcome::Check(audited)), Ok(single)) => {
                assert_eq!(
                    timeless(audited.clone()),
                    timeless(single.into_inner()),
                    "{}",
                    row.customer_ref
                );
            }
            (Some(pb::audit_result::Outcome::Error(e)), Err(status)) => {
                assert_eq!(status.code(), Code::InvalidArgument);
                assert_eq!(e.message, status.message(), "{}", row.customer_ref);
                assert!(e.message.starts_with(&e.field), "{e:?}");
            }
            (outcome, single) => panic!("{}: {outcome:?} vs {single:?}", row.customer_ref),
        }
        by_ref.insert(row.customer_ref.as_str(), result.outcome.clone());
    }

    let answer = |r: &str| match &by_ref[r] {
        Some(pb::audit_result::Outcome::Check(c)) => c.clone(),
        other => panic!("{r}: expected an answer, got {other:?}"),
    };
    let error_field = |r: &str| match &by_ref[r] {
        Some(pb::audit_result::Outcome::Error(e)) => e.field.clone(),
        other => panic!("{r}: expected an error, got {other:?}"),
    };
    // The known answers.
    for r in ["recycled-by-date", "recycled-by-time"] {
        let a = answer(r);
        assert_eq!(a.verdict(), Verdict::Block, "{r}");
        assert_eq!(a.ownership(), OwnershipStatus::Changed, "{r}");
    }
    assert_eq!(
        answer("recycled-by-date")
            .reasons
            .iter()
            .filter(|x| x.code() == ReasonCode::OwnerChanged)
            .count(),
        2
    );
    assert_eq!(
        answer("recycled-by-time")
            .reasons
            .iter()
            .filter(|x| x.code() == ReasonCode::OwnerChanged)
            .count(),
        1
    );
    assert_eq!(
        answer("own-contract").ownership(),
        OwnershipStatus::Unchanged
    );
    assert_eq!(answer("own-contract").verdict(), Verdict::Allow);
    for r in ["swapped", "swapped-national", "swapped-again"] {
        let a = answer(r);
        assert_eq!(a.phone_number, SWAPPED_NOW);
        assert_eq!(
            (a.verdict(), a.sim_swap()),
            (Verdict::StepUp, SimSwapStatus::Swapped)
        );
    }
    assert_eq!(
        answer("swapped-long-ago").sim_swap(),
        SimSwapStatus::NotSwapped
    );
    assert_eq!(answer("swapped-long-ago").verdict(), Verdict::Allow);
    assert_eq!(
        answer("swapped-in-a-wide-window").sim_swap(),
        SimSwapStatus::Swapped
    );
    let ported = answer("ported");
    assert_eq!(ported.verdict(), Verdict::StepUp);
    assert_eq!(ported.current_carrier, "KDDI (au)");
    assert_eq!(ported.current_carrier_ref.as_ref().unwrap().id, "jp-kddi");
    assert!(reason_codes(&ported).contains(&ReasonCode::Ported));
    assert_eq!(answer("quiet").verdict(), Verdict::Allow);
    assert!(answer("quiet").reasons.is_empty());
    assert_eq!(
        reason_codes(&answer("uncovered")),
        vec![ReasonCode::NotCovered]
    );
    assert!(reason_codes(&answer("fixed-line")).contains(&ReasonCode::NotMobile));
    assert_eq!(error_field("invalid"), "phone_number");
    assert_eq!(error_field("empty"), "phone_number");
    assert_eq!(error_field("no-region"), "phone_number");
    assert_eq!(error_field("bad-region"), "region");
    assert_eq!(error_field("bad-window"), "max_age_hours");
    assert_eq!(error_field("both-owner-since"), "owner_since_date");
    assert_eq!(answer("after-the-bad-rows").verdict(), Verdict::Allow);
    server.stop().await;
}

async fn rows_beyond_one_chunk_come_back_in_order(backend: Backend) {
    let server = serve_known_answers(backend).await;
    // 5,000 rows: several server chunks, the five story numbers again and again.
    let numbers = [RECYCLED, SWAPPED_NOW, SWAPPED_LONG_AGO, PORTED, QUIET];
    let rows: Vec<pb::AuditRow> = (0..5_000)
        .map(|i| row(&format!("c{i}"), numbers[i % numbers.len()]))
        .collect();
    let results = audit(&mut server.check().await, rows).await;
    assert_eq!(results.len(), 5_000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            (r.index, r.customer_ref.as_str()),
            (i as u64, &*format!("c{i}"))
        );
        let Some(pb::audit_result::Outcome::Check(c)) = &r.outcome else {
            panic!("row {i} not answered");
        };
        assert_eq!(c.phone_number, numbers[i % numbers.len()]);
    }
    server.stop().await;
}

// ---- numguard audit, the real binary ----

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A served binary on a fresh SQLite file with a source covering 8190 and `events`.
async fn served_with(dir: &Path, events: Vec<pb::Event>) -> Served {
    let served = Served::start(&format!("sqlite://{}", dir.join("ng.db").display()));
    served.add_feed("8190");
    let channel = Channel::from_shared(served.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let sent = events.len() as u64;
    let summary = pb::events_client::EventsClient::new(channel)
        .ingest_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, sent);
    served
}

/// `numguard audit --json` from `input` to `output`; the summary it printed. It exits 0,
/// or 3 exactly when some rows were rejected.
fn audit_cli(served: &Served, input: &Path, output: &Path) -> Value {
    let run = served.run(&[
        "audit",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--json",
    ]);
    let summary: Value = serde_json::from_str(text(&run.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&run.stdout), text(&run.stderr)));
    let rejected = summary["rejected"].as_u64().unwrap();
    assert_eq!(
        run.status.code(),
        Some(if rejected > 0 { 3 } else { 0 }),
        "{summary}"
    );
    summary
}

#[tokio::test]
async fn the_cli_writes_the_expected_report_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let served = served_with(dir.path(), known_events()).await;
    let old = days_ago(400).format("%Y-%m-%d").to_string();
    let between = rfc3339(days_ago(80));
    // Line numbers matter: the report names them. Line 1 is the header.
    let input = format!(
        "customer_ref,phone_number,owner_since,region\n\
         recycled,{RECYCLED},{old},\n\
         recycled-since-time,{RECYCLED},{between},\n\
         \n\
         swapped,{SWAPPED_NOW},,\n\
         swapped-national,090-1111-0002,,JP\n\
         swapped-again,{SWAPPED_NOW},,\n\
         long-ago,{SWAPPED_LONG_AGO},{old},\n\
         ported,{PORTED},,\n\
         uncovered,{UNCOVERED},,\n\
         fixed,{FIXED_LINE},,\n\
         invalid,+8190123,,\n\
         short-row,{QUIET}\n\
         bad-date,{QUIET},last spring,\n\
         \n\
         quiet,{QUIET},{old},\n"
    );
    let list = dir.path().join("customers.csv");
    std::fs::write(&list, &input).unwrap();
    let report = dir.path().join("report.csv");
    let summary = audit_cli(&served, &list, &report);
    assert_eq!(summary["rows"], 13);
    assert_eq!(summary["rejected"], 3);
    assert_eq!(summary["verdicts"]["BLOCK"], 2);
    assert_eq!(summary["verdicts"]["STEP_UP"], 4);
    assert_eq!(summary["verdicts"]["ALLOW"], 4);
    assert_eq!(summary["reasons"]["OWNER_CHANGED"], 2);
    assert_eq!(summary["reasons"]["PORTED"], 1);
    assert_eq!(summary["reasons"]["NOT_COVERED"], 2);
    assert_eq!(summary["reasons"]["NOT_MOBILE"], 1);

    let mut reader = csv::Reader::from_path(&report).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<HashMap<String, String>> = reader
        .records()
        .map(|r| {
            headers
                .iter()
                .map(str::to_string)
                .zip(r.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    // (line, customer_ref, verdict, sim_swap, ownership, current_carrier, reason codes,
    // error prefix)
    let disconnect = rfc3339(days_ago(100));
    let expected: Vec<(u64, &str, &str, &str, &str, &str, &str)> = vec![
        (
            2,
            "recycled",
            "BLOCK",
            "NOT_SWAPPED",
            "CHANGED",
            "OWNER_CHANGED OWNER_CHANGED",
            "",
        ),
        (
            3,
            "recycled-since-time",
            "BLOCK",
            "NOT_SWAPPED",
            "CHANGED",
            "OWNER_CHANGED",
            "",
        ),
        (
            5,
            "swapped",
            "STEP_UP",
            "SWAPPED",
            "NOT_EVALUATED",
            "SIM_SWAPPED",
            "",
        ),
        (
            6,
            "swapped-national",
            "STEP_UP",
            "SWAPPED",
            "NOT_EVALUATED",
            "SIM_SWAPPED",
            "",
        ),
        (
            7,
            "swapped-again",
            "STEP_UP",
            "SWAPPED",
            "NOT_EVALUATED",
            "SIM_SWAPPED",
            "",
        ),
        (8, "long-ago", "ALLOW", "NOT_SWAPPED", "UNCHANGED", "", ""),
        (
            9,
            "ported",
            "STEP_UP",
            "SWAPPED",
            "NOT_EVALUATED",
            "SIM_SWAPPED PORTED",
            "",
        ),
        (
            10,
            "uncovered",
            "ALLOW",
            "UNKNOWN",
            "NOT_EVALUATED",
            "NOT_COVERED",
            "",
        ),
        (
            11,
            "fixed",
            "ALLOW",
            "UNKNOWN",
            "NOT_EVALUATED",
            "NOT_COVERED NOT_MOBILE",
            "",
        ),
        (12, "invalid", "", "", "", "", "line 12: phone_number"),
        (
            13,
            "short-row",
            "",
            "",
            "",
            "",
            "line 13: owner_since is missing",
        ),
        (
            14,
            "bad-date",
            "",
            "",
            "",
            "",
            "line 14: owner_since \"last spring\"",
        ),
        (16, "quiet", "ALLOW", "NOT_SWAPPED", "UNCHANGED", "", ""),
    ];
    assert_eq!(rows.len(), 13, "one line per input row, blank lines aside");
    let got: Vec<(u64, String, String, String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let codes: Vec<&str> = r["reasons"]
                .split("; ")
                .filter(|s| !s.is_empty())
                .map(|s| s.split([':', '@']).next().unwrap_or(""))
                .collect();
            let error_prefix = expected
                .iter()
                .find(|e| e.1 == r["customer_ref"])
                .map_or("", |e| e.6);
            (
                r["line"].parse().unwrap(),
                r["customer_ref"].clone(),
                r["verdict"].clone(),
                r["sim_swap"].clone(),
                r["ownership"].clone(),
                codes.join(" "),
                if r["error"].starts_with(error_prefix) {
                    error_prefix.to_string()
                } else {
                    r["error"].clone()
                },
            )
        })
        .collect();
    let want: Vec<(u64, String, String, String, String, String, String)> = expected
        .iter()
        .map(|e| {
            (
                e.0,
                e.1.to_string(),
                e.2.to_string(),
                e.3.to_string(),
                e.4.to_string(),
                e.5.to_string(),
                e.6.to_string(),
            )
        })
        .collect();
    assert_eq!(got[..], want[..]);
    let by_ref = |r: &str| rows.iter().find(|x| x["customer_ref"] == r).unwrap();
    assert_eq!(by_ref("ported")["current_carrier"], "KDDI (au)");
    assert_eq!(by_ref("swapped-national")["phone_number"], SWAPPED_NOW);
    assert!(
        by_ref("recycled")["reasons"].contains(&format!("OWNER_CHANGED:DISCONNECT@{disconnect}"))
    );
    assert_eq!(by_ref("invalid")["phone_number"], "+8190123");

    // Every answered line is what CheckNumber says for that row.
    let mut client = NumberCheckClient::new(
        Channel::from_shared(served.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let owner = |r: &HashMap<String, String>| match r["customer_ref"].as_str() {
        "recycled" | "long-ago" | "quiet" => (None, old.clone()),
        "recycled-since-time" => (Some(timestamp(at(&between))), String::new()),
        _ => (None, String::new()),
    };
    for r in rows.iter().filter(|r| r["error"].is_empty()) {
        let (owner_since, owner_since_date) = owner(r);
        let single = client
            .check_number(pb::CheckNumberRequest {
                phone_number: r["phone_number"].clone(),
                owner_since,
                owner_since_date,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r["verdict"],
            single
                .verdict()
                .as_str_name()
                .trim_start_matches("VERDICT_"),
            "{}",
            r["customer_ref"]
        );
        assert_eq!(
            r["sim_swap"],
            single
                .sim_swap()
                .as_str_name()
                .trim_start_matches("SIM_SWAP_STATUS_")
        );
        assert_eq!(
            r["ownership"],
            single
                .ownership()
                .as_str_name()
                .trim_start_matches("OWNERSHIP_STATUS_")
        );
        assert_eq!(r["original_carrier"], single.original_carrier);
        assert_eq!(r["current_carrier"], single.current_carrier);
        assert_eq!(r["port_count"], single.port_count.to_string());
        assert_eq!(
            r["reasons"].split("; ").filter(|s| !s.is_empty()).count(),
            single.reasons.len()
        );
    }

    // The same list as JSON Lines: one object per row, same order.
    let jsonl = dir.path().join("report.jsonl");
    refused_some(served.run(&[
        "audit",
        "--input",
        list.to_str().unwrap(),
        "--output",
        jsonl.to_str().unwrap(),
    ]));
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[0]["result"]["verdict"], "BLOCK");
    assert_eq!(lines[9]["line"], 12);
    assert!(
        lines[9]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 12: phone_number")
    );
    served.stop();
}

/// Exit codes: 1 when the audit cannot go on, 3 when it finished with bad rows.
#[tokio::test]
async fn fatal_errors_exit_1_and_bad_rows_3() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&format!("sqlite://{}", dir.path().join("ng.db").display()));
    let report = dir.path().join("report.csv");
    let report = report.to_str().unwrap();
    let missing = served.run(&["audit", "--input", "/no/such/list.csv", "--output", report]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("cannot read"),
        "{}",
        text(&missing.stderr)
    );

    let no_number_column = dir.path().join("bad-header.csv");
    std::fs::write(&no_number_column, "customer_ref,msisdn\nc1,+819012345678\n").unwrap();
    let o = served.run(&[
        "audit",
        "--input",
        no_number_column.to_str().unwrap(),
        "--output",
        report,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("phone_number"),
        "{}",
        text(&o.stderr)
    );

    let all_bad = dir.path().join("all-bad.csv");
    std::fs::write(
        &all_bad,
        "customer_ref,phone_number\nc1,not a number\nc2,\n",
    )
    .unwrap();
    let o = refused_some(served.run(&[
        "audit",
        "--input",
        all_bad.to_str().unwrap(),
        "--output",
        report,
        "--json",
    ]));
    let summary: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(
        (summary["rows"].as_u64(), summary["rejected"].as_u64()),
        (Some(2), Some(2))
    );

    let unreachable = std::process::Command::new(numguard_testkit::process::bin())
        .args([
            "audit",
            "--input",
            all_bad.to_str().unwrap(),
            "--output",
            report,
        ])
        .env("NUMGUARD_SERVER", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(
        text(&unreachable.stderr).contains("cannot reach"),
        "{}",
        text(&unreachable.stderr)
    );
    served.stop();
}

/// 100,000 rows through the CLI: 10,000 numbers with known stories, each ten times.
#[tokio::test]
async fn a_hundred_thousand_row_audit_counts_right() {
    let dir = tempfile::tempdir().unwrap();
    // Number i: i % 10 == 0 swapped two days ago, == 1 reassigned 60 days ago, the rest quiet.
    let number = |i: usize| format!("+8190{:08}", 20_000_000 + i);
    let mut events = Vec::new();
    for i in 0..10_000 {
        match i % 10 {
            0 => events.push(event(
                "feed",
                &format!("s{i}"),
                &number(i),
                EventKind::SimSwap,
                days_ago(2),
            )),
            1 => events.push(event(
                "feed",
                &format!("r{i}"),
                &number(i),
                EventKind::Reassign,
                days_ago(60),
            )),
            _ => {}
        }
    }
    let served = served_with(dir.path(), events).await;

    let owner_since = days_ago(400).format("%Y-%m-%d").to_string();
    let mut list = String::from("customer_ref,phone_number,owner_since\n");
    for row in 0..100_000 {
        let i = row % 10_000;
        // Every 1,000th row is unusable.
        if row % 1_000 == 999 {
            list.push_str(&format!("c{row},+81 not a number,{owner_since}\n"));
        } else {
            list.push_str(&format!("c{row},{},{owner_since}\n", number(i)));
        }
    }
    let input = dir.path().join("customers.csv");
    std::fs::write(&input, list).unwrap();
    let report = dir.path().join("report.csv");
    let summary = audit_cli(&served, &input, &report);
    // Bad rows are rows 999, 1999, ...: i = 999, 1999, ... (i % 10 == 9, quiet numbers).
    assert_eq!(summary["rows"], 100_000);
    assert_eq!(summary["rejected"], 100);
    assert_eq!(summary["verdicts"]["STEP_UP"], 10_000);
    assert_eq!(summary["verdicts"]["BLOCK"], 10_000);
    assert_eq!(summary["verdicts"]["ALLOW"], 79_900);
    assert_eq!(summary["reasons"]["SIM_SWAPPED"], 10_000);
    assert_eq!(summary["reasons"]["OWNER_CHANGED"], 10_000);
    let lines = std::fs::read_to_string(&report).unwrap().lines().count();
    assert_eq!(lines, 100_001, "a header and one line per row");
    served.stop();
}

/// A full-width Japanese number, an RFC 3966 URI and a Russian toll-free number in
/// national form are read as libphonenumber reads them by audits and watchlists alike
/// (checks and ingest: `grpc_api.rs`).
async fn the_forms_of_a_number_read_alike_in_audits_and_watchlists(backend: Backend) {
    let server = serve_known_answers(backend).await;
    let forms = [
        ("full-width", "０９０-１１１１-０００２", "JP", SWAPPED_NOW),
        ("tel-uri", "tel:+81-90-1111-0002", "", SWAPPED_NOW),
        ("ru-toll-free", "8 (800) 123-45-67", "RU", "+78001234567"),
    ];
    let rows = forms
        .iter()
        .map(|(name, number, region, _)| pb::AuditRow {
            region: (*region).into(),
            ..row(name, number)
        })
        .collect();
    let mut client = NumberCheckClient::new(server.channel().await);
    let results = audit(&mut client, rows).await;
    for ((name, number, _, e164), result) in forms.iter().zip(&results) {
        match &result.outcome {
            Some(pb::audit_result::Outcome::Check(check)) => {
                assert_eq!(check.phone_number, *e164, "{name}: {number:?}")
            }
            other => panic!("{name}: {number:?} gave {other:?}"),
        }
    }
    let mut alerts = pb::alerts_client::AlertsClient::new(server.channel().await);
    let entries = forms
        .iter()
        .map(|(name, number, region, _)| pb::WatchEntry {
            customer_ref: (*name).into(),
            phone_number: (*number).into(),
            region: (*region).into(),
            owner_since_date: "2026-01-01".into(),
            ..Default::default()
        })
        .collect();
    let upserted = alerts
        .upsert_watch(pb::UpsertWatchRequest { entries })
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(upserted.upserted, 3, "{upserted:?}");
    let listed = alerts
        .list_watch(pb::ListWatchRequest::default())
        .await
        .expect("list")
        .into_inner();
    let stored: HashMap<String, String> = listed
        .entries
        .into_iter()
        .map(|e| (e.customer_ref, e.phone_number))
        .collect();
    for (name, number, _, e164) in forms {
        assert_eq!(
            stored.get(name).map(String::as_str),
            Some(e164),
            "{name}: {number:?}"
        );
    }
    server.stop().await;
}
