//! Live look-ups at the operator (SPEC §5) against a fake operator speaking CAMARA SIM
//! Swap v2 and Number Recycling v0.2 behind OAuth2 client credentials: routing by current
//! carrier, the answer cache, single flight, timeouts and the circuit breaker, 429, token
//! renewal, audits, and local data winning where a source covers the number.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::{self, EventKind, OwnershipStatus, ReasonCode, SimSwapStatus, Verdict};
use numguard::domain::decision::Policy;
use numguard::domain::decision::Verdict as DomainVerdict;
use numguard::engine::EngineConfig;
use numguard::upstream::breaker::BreakerConfig;
use numguard::upstream::config::{Auth, Provider, ProvidersFile};
use numguard::upstream::{UpstreamConfig, UpstreamSettings};
use numguard_testkit::camara::assert_camara_answer;
use numguard_testkit::operator::{CLIENT_ID, CLIENT_SECRET, Operator};
use numguard_testkit::*;
use tokio_stream::StreamExt;

/// Alpha Mobile's range (81901111...) and Beta Mobile's (81902111...), longer than the
/// shipped ranges they override; no source covers +81.
const ALPHA_NUMBER: &str = "+819011112222";
const BETA_NUMBER: &str = "+819021112222";

fn provider(name: &str, carrier: &str, op: &Operator, max_concurrency: usize) -> Provider {
    Provider {
        name: name.into(),
        carriers: vec![carrier.into()],
        base_url: op.base_url(),
        auth: Auth::Oauth2 {
            token_url: op.token_url(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            scope: None,
        },
        max_concurrency,
    }
}

fn config(providers: Vec<Provider>, settings: UpstreamSettings) -> EngineConfig {
    EngineConfig {
        upstream: UpstreamConfig {
            providers: ProvidersFile { providers },
            settings,
        },
        policy: Policy {
            on_unknown: DomainVerdict::StepUp,
        },
        ..dev_config()
    }
}

async fn start(config: EngineConfig) -> TestServer {
    let db = std::sync::Arc::new(TestDb::new(Backend::Sqlite).await);
    prepare(TestServer::start_in(db, config).await).await
}

/// A server whose one provider, "alpha-op", serves Alpha Mobile through `op`.
async fn start_alpha(
    op: &Operator,
    max_concurrency: usize,
    settings: UpstreamSettings,
) -> TestServer {
    start(config(
        vec![provider("alpha-op", "Alpha Mobile", op, max_concurrency)],
        settings,
    ))
    .await
}

async fn start_rest(config: EngineConfig) -> TestServer {
    prepare(TestServer::start_rest(Backend::Sqlite, config).await).await
}

/// The test carriers and ranges, and a source that covers none of their numbers.
async fn prepare(server: TestServer) -> TestServer {
    for (id, name) in [("jp-alpha", "Alpha Mobile"), ("jp-beta", "Beta Mobile")] {
        server
            .admin()
            .await
            .upsert_carrier(pb::Carrier {
                id: id.into(),
                name: name.into(),
                country_code: 81,
                ..Default::default()
            })
            .await
            .expect("register carrier");
    }
    server
        .admin()
        .await
        .import_ranges(pb::ImportRangesRequest {
            ranges: vec![
                pb::CarrierRange {
                    prefix: "81901111".into(),
                    carrier: "Alpha Mobile".into(),
                },
                pb::CarrierRange {
                    prefix: "81902111".into(),
                    carrier: "Beta Mobile".into(),
                },
            ],
        })
        .await
        .expect("import ranges");
    // Ports are reported by a feed that covers another country.
    add_source(&server, "mnp", at("2025-01-01T00:00:00Z"), &["44"]).await;
    server
}

fn has_reason(r: &pb::CheckNumberResponse, code: ReasonCode) -> bool {
    reason_codes(r).contains(&code)
}

#[tokio::test]
async fn the_current_carriers_provider_is_asked_even_after_a_port() {
    let alpha = Operator::start().await;
    let beta = Operator::start().await;
    beta.swapped(ALPHA_NUMBER);
    let server = start(config(
        vec![
            provider("alpha-op", "Alpha Mobile", &alpha, 4),
            provider("beta-op", "beta mobile", &beta, 4),
        ],
        UpstreamSettings::default(),
    ))
    .await;

    let r = check_number(&server, ALPHA_NUMBER).await;
    assert_eq!((alpha.calls(), beta.calls()), (1, 0));
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
    assert_eq!(r.verdict(), Verdict::Allow);
    assert!(has_reason(&r, ReasonCode::Upstream), "{:?}", r.reasons);
    let lookup = &r.upstream[0];
    assert_eq!(lookup.provider, "alpha-op");
    assert_eq!(lookup.question, "SIM_SWAP");
    assert_eq!(lookup.answer, Some(false));
    assert!(!lookup.cached);
    assert_eq!(
        alpha.asked(),
        [("sim-swap".into(), ALPHA_NUMBER.into(), "240".into())]
    );

    // Ported to Beta Mobile: Beta's operator answers now (carrier names match in any case).
    ingest(
        &server,
        vec![port(
            "mnp",
            "p1",
            ALPHA_NUMBER,
            Utc::now() - chrono::Duration::days(30),
            "Alpha Mobile",
            "Beta Mobile",
        )],
    )
    .await;
    let r = check_number(&server, ALPHA_NUMBER).await;
    assert_eq!((alpha.calls(), beta.calls()), (1, 1));
    assert_eq!(r.current_carrier, "Beta Mobile");
    assert_eq!(r.sim_swap(), SimSwapStatus::Swapped);
    assert_eq!(r.verdict(), Verdict::StepUp);
    assert_eq!(r.upstream[0].provider, "beta-op");

    // A carrier without a provider: as before, NO_DATA and on_unknown.
    let lonely = "+819031112222";
    let r = check_number(&server, lonely).await;
    assert!(r.upstream.is_empty());
    assert!(has_reason(&r, ReasonCode::NoData), "{:?}", r.reasons);
    let why = &r.reasons[0].detail;
    assert!(
        why.ends_with("; no upstream provider serves NTT docomo (jp-docomo)"),
        "the answer says no provider serves the carrier: {why}"
    );
    assert_eq!(r.verdict(), Verdict::StepUp);
}

#[tokio::test]
async fn answers_are_cached_and_concurrent_checks_of_a_number_make_one_call() {
    let op = Operator::start().await;
    op.behave(|b| b.delay = Duration::from_millis(300));
    let server = start_alpha(&op, 8, UpstreamSettings::default()).await;
    check_number(&server, ALPHA_NUMBER).await;
    let again = check_number(&server, ALPHA_NUMBER).await;
    assert_eq!(op.calls(), 1, "the second check is answered from the cache");
    assert!(again.upstream[0].cached);
    assert_eq!(again.sim_swap(), SimSwapStatus::NotSwapped);
    // Another window is another question.
    check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: ALPHA_NUMBER.into(),
            max_age_hours: 24,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(op.calls(), 2);

    // 100 concurrent checks of a number not asked about before: one call.
    let fresh = "+819011115555";
    let mut checks = Vec::new();
    for _ in 0..100 {
        let channel = server.channel().await;
        checks.push(tokio::spawn(async move {
            pb::number_check_client::NumberCheckClient::new(channel)
                .check_number(pb::CheckNumberRequest {
                    phone_number: fresh.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut fresh_calls = 0;
    for check in checks {
        let r = check.await.unwrap();
        assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
        fresh_calls += u64::from(!r.upstream[0].cached);
    }
    assert_eq!(op.calls(), 3, "one call for 100 concurrent checks");
    assert_eq!(fresh_calls, 1, "one check made the call; 99 shared it");
}

#[tokio::test]
async fn recycling_is_asked_with_the_owner_since_date() {
    let op = Operator::start().await;
    op.recycled(ALPHA_NUMBER);
    let server = start_alpha(&op, 4, UpstreamSettings::default()).await;
    let r = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: ALPHA_NUMBER.into(),
            owner_since_date: "2026-03-01".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.ownership(), OwnershipStatus::Changed);
    assert_eq!(r.verdict(), Verdict::Block);
    assert!(has_reason(&r, ReasonCode::OwnerChanged));
    let asked = op.asked();
    assert!(
        asked.contains(&(
            "number-recycling".into(),
            ALPHA_NUMBER.into(),
            "2026-03-01".into()
        )),
        "{asked:?}"
    );
    assert_eq!(r.upstream.len(), 2, "both questions were open");
}

#[tokio::test]
async fn a_slow_provider_times_out_and_then_its_circuit_opens() {
    let op = Operator::start().await;
    op.behave(|b| b.delay = Duration::from_secs(3));
    let settings = UpstreamSettings {
        timeout: Duration::from_millis(300),
        breaker: BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_secs(60),
        },
        ..UpstreamSettings::default()
    };
    let server = start_alpha(&op, 8, settings).await;
    for i in 0..3 {
        let r = check_number(&server, &format!("+8190111150{i:02}")).await;
        assert_eq!(
            r.sim_swap(),
            SimSwapStatus::Unknown,
            "never a guessed answer"
        );
        assert_eq!(r.verdict(), Verdict::StepUp, "the policy's on_unknown");
        assert!(
            has_reason(&r, ReasonCode::UpstreamUnavailable),
            "{:?}",
            r.reasons
        );
        assert!(
            r.upstream[0].error.contains("timed out"),
            "{:?}",
            r.upstream
        );
    }
    assert_eq!(op.calls(), 3);
    let t = Instant::now();
    let r = check_number(&server, "+819011115099").await;
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "fails fast: {:?}",
        t.elapsed()
    );
    assert_eq!(op.calls(), 3, "the open circuit sends nothing");
    assert!(
        r.upstream[0].error.contains("circuit open"),
        "{:?}",
        r.upstream
    );
    assert!(has_reason(&r, ReasonCode::UpstreamUnavailable));
    // A failure is cached briefly: asking again does not call either.
    check_number(&server, "+819011115000").await;
    assert_eq!(op.calls(), 3);
}

#[tokio::test]
async fn a_429_holds_calls_back_until_retry_after() {
    let op = Operator::start().await;
    op.behave(|b| {
        b.fail_with = Some(429);
        b.retry_after = Some(2);
    });
    let settings = UpstreamSettings {
        error_ttl: Duration::from_millis(100),
        ..UpstreamSettings::default()
    };
    let server = start_alpha(&op, 8, settings).await;
    let r = check_number(&server, "+819011116001").await;
    assert!(
        r.upstream[0].error.contains("rate limited"),
        "{:?}",
        r.upstream
    );
    assert!(has_reason(&r, ReasonCode::UpstreamUnavailable));
    assert_eq!(op.calls(), 1);
    // Other numbers are held back too, without a call.
    let r = check_number(&server, "+819011116002").await;
    assert!(
        r.upstream[0].error.contains("rate limited"),
        "{:?}",
        r.upstream
    );
    assert_eq!(op.calls(), 1, "no call during Retry-After");
    op.behave(|b| b.fail_with = None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = check_number(&server, "+819011116003").await;
    assert_eq!(r.upstream[0].answer, Some(false), "{:?}", r.upstream);
    assert_eq!(op.calls(), 2);
}

#[tokio::test]
async fn tokens_are_reused_until_they_expire_and_renewed_when_refused() {
    let op = Operator::start().await;
    op.behave(|b| b.token_lifetime = Duration::from_secs(2));
    let server = start_alpha(&op, 8, UpstreamSettings::default()).await;
    check_number(&server, "+819011117001").await;
    check_number(&server, "+819011117002").await;
    assert_eq!(op.tokens_issued(), 1, "one token for both calls");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = check_number(&server, "+819011117003").await;
    assert_eq!(r.upstream[0].answer, Some(false), "{:?}", r.upstream);
    assert_eq!(op.tokens_issued(), 2, "renewed on expiry");
    assert_eq!(op.counters().unauthorized.load(Ordering::SeqCst), 0);
    // The operator drops its tokens early: one 401, a new token, the call again.
    op.revoke_tokens();
    let r = check_number(&server, "+819011117004").await;
    assert_eq!(r.upstream[0].answer, Some(false), "{:?}", r.upstream);
    assert_eq!(op.tokens_issued(), 3);
    assert_eq!(op.counters().unauthorized.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn local_data_wins_where_a_source_covers_the_number() {
    let op = Operator::start().await;
    op.swapped(ALPHA_NUMBER);
    op.swapped(BETA_NUMBER);
    let server = start(config(
        vec![
            provider("alpha-op", "Alpha Mobile", &op, 4),
            provider("beta-op", "Beta Mobile", &op, 4),
        ],
        UpstreamSettings::default(),
    ))
    .await;
    add_source(&server, "jp", at("2025-01-01T00:00:00Z"), &["81901111"]).await;
    let r = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: ALPHA_NUMBER.into(),
            owner_since: Some(timestamp(at("2026-01-01T00:00:00Z"))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(op.calls(), 0);
    assert!(r.upstream.is_empty());
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
    assert_eq!(r.ownership(), OwnershipStatus::Unchanged);
    // A known swap stands on its own too, on a number no source covers.
    ingest(
        &server,
        vec![event(
            "mnp",
            "s1",
            BETA_NUMBER,
            EventKind::SimSwap,
            Utc::now() - chrono::Duration::hours(2),
        )],
    )
    .await;
    let r = check_number(&server, BETA_NUMBER).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::Swapped);
    assert!(r.upstream.is_empty());
    assert_eq!(op.calls(), 0);
}

#[tokio::test]
async fn an_audit_shares_calls_between_repeated_numbers_within_the_providers_limit() {
    let op = Operator::start().await;
    op.behave(|b| b.delay = Duration::from_millis(50));
    let server = start_alpha(&op, 4, UpstreamSettings::default()).await;
    // 200 rows over 50 numbers.
    let rows: Vec<pb::AuditRow> = (0..200)
        .map(|i| pb::AuditRow {
            customer_ref: format!("c{i}"),
            phone_number: format!("+81901111{:04}", i % 50),
            ..Default::default()
        })
        .collect();
    let results: Vec<pb::AuditResult> = server
        .check()
        .await
        .audit_numbers(tokio_stream::iter(rows))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(results.len(), 200);
    assert_eq!(op.calls(), 50, "one call per distinct number");
    let max = op.counters().max_in_flight.load(Ordering::SeqCst);
    assert!((1..=4).contains(&max), "at most 4 calls at once, saw {max}");
    let mut cached = 0;
    for r in &results {
        let Some(pb::audit_result::Outcome::Check(check)) = &r.outcome else {
            panic!("{r:?}");
        };
        assert_eq!(check.sim_swap(), SimSwapStatus::NotSwapped);
        cached += check.upstream.iter().filter(|u| u.cached).count();
    }
    assert_eq!(cached, 150);
}

#[tokio::test]
async fn the_rest_facade_answers_from_the_operator_or_says_it_cannot() {
    let op = Operator::start().await;
    op.swapped(ALPHA_NUMBER);
    let server = start_rest(config(
        vec![provider("alpha-op", "Alpha Mobile", &op, 4)],
        UpstreamSettings {
            timeout: Duration::from_millis(200),
            ..UpstreamSettings::default()
        },
    ))
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = format!("http://{}/sim-swap/v2/check", server.rest_addr.unwrap());
    let ask = |number: &'static str| {
        http.post(&url)
            .json(&serde_json::json!({ "phoneNumber": number }))
            .send()
    };
    let answer = ask(ALPHA_NUMBER).await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_camara_answer("POST", "/sim-swap/v2/check", 200, &body);
    assert_eq!(body, serde_json::json!({ "swapped": true }));

    op.behave(|b| b.delay = Duration::from_secs(2));
    let refused = ask("+819011118888").await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_camara_answer("POST", "/sim-swap/v2/check", 503, &body);
    assert_eq!(body["code"], "UNAVAILABLE");
    assert!(
        body["message"].as_str().unwrap().contains("alpha-op"),
        "{body}"
    );
}

#[tokio::test]
async fn server_errors_open_the_circuit_but_unknown_numbers_do_not() {
    let op = Operator::start().await;
    let settings = UpstreamSettings {
        breaker: BreakerConfig {
            threshold: 2,
            cooldown: Duration::from_secs(60),
        },
        ..UpstreamSettings::default()
    };
    let server = start_alpha(&op, 8, settings).await;
    // The operator does not know these numbers: an answer, not a fault.
    op.behave(|b| b.fail_with = Some(404));
    for i in 0..3 {
        let r = check_number(&server, &format!("+8190111190{i:02}")).await;
        assert!(r.upstream[0].error.contains("HTTP 404"), "{:?}", r.upstream);
        assert!(has_reason(&r, ReasonCode::UpstreamUnavailable));
    }
    assert_eq!(op.calls(), 3, "the circuit stays closed");
    op.behave(|b| b.fail_with = Some(503));
    for i in 3..5 {
        let r = check_number(&server, &format!("+8190111190{i:02}")).await;
        assert!(r.upstream[0].error.contains("HTTP 503"), "{:?}", r.upstream);
    }
    assert_eq!(op.calls(), 5);
    let r = check_number(&server, "+819011119099").await;
    assert!(
        r.upstream[0].error.contains("circuit open"),
        "{:?}",
        r.upstream
    );
    assert_eq!(r.verdict(), Verdict::StepUp);
    assert_eq!(op.calls(), 5);
}
