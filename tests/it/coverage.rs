//! What the feeds can see (SPEC §1 Carrier, Serving carrier, Source; §2 coverage), end to
//! end over gRPC on both backends: carrier-scoped and kind-scoped sources, the serving
//! carrier across a port, freshness, carrier names in every spelling, and times at
//! microsecond precision.

use chrono::{DateTime, Duration, DurationRound, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb::{
    self, CoverageQuestion, EventKind, OwnershipStatus, ReasonCode, SimSwapStatus, Verdict,
};
use numguard::engine::EngineConfig;
use numguard_testkit::*;

on_both_backends!(
    a_porting_database_and_a_docomo_feed_answer_only_for_docomo_subscribers,
    a_number_ported_away_is_covered_by_its_old_carriers_feed_only_until_the_port,
    a_disconnect_database_answers_ownership_but_never_sim_swap,
    a_live_source_goes_stale_without_heartbeats_and_comes_back_with_one,
    a_file_source_is_bounded_by_its_declared_cut_off,
    carrier_names_resolve_in_every_spelling_and_unknown_ones_are_refused_alone,
    unknown_carrier_names_can_be_registered_for_review,
    times_are_compared_at_microsecond_precision,
);

/// MIC block 070-100: NTT docomo.
const DOCOMO_NUMBER: &str = "+817010012345";
/// MIC block 070-110: SoftBank.
const SOFTBANK_NUMBER: &str = "+817011012345";
/// MIC block 090-123: KDDI.
const KDDI_NUMBER: &str = "+819012345678";
const N_SAME: &str = "+819012340001";
const N_NEXT: &str = "+819012340002";
/// A live test source's max lag: long enough for a check right after a heartbeat on a
/// loaded machine, short enough to wait out.
const TEST_LAG_SECONDS: i64 = 4;

const NOT_PORTS: [EventKind; 4] = [
    EventKind::SimSwap,
    EventKind::Disconnect,
    EventKind::Reassign,
    EventKind::DeviceSwap,
];

fn scope(prefix: &str, carriers: &[&str], kinds: &[EventKind]) -> pb::SourceScope {
    pb::SourceScope {
        prefix: prefix.into(),
        carriers: carriers.iter().map(|c| c.to_string()).collect(),
        kinds: kinds.iter().map(|&k| k.into()).collect(),
    }
}

fn seconds(s: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: s,
        nanos: 0,
    }
}

/// Registers a source tracking since a year ago; `max_lag` `None` takes the default.
async fn upsert(
    server: &TestServer,
    name: &str,
    scopes: Vec<pb::SourceScope>,
    max_lag: Option<prost_types::Duration>,
) -> pb::Source {
    server
        .admin()
        .await
        .upsert_source(pb::Source {
            name: name.into(),
            tracking_since: Some(timestamp(Utc::now() - Duration::days(365))),
            scopes,
            max_lag,
            ..Default::default()
        })
        .await
        .expect("upsert source")
        .into_inner()
}

/// A live source, heard from now.
async fn live(server: &TestServer, name: &str, scopes: Vec<pb::SourceScope>) {
    upsert(server, name, scopes, None).await;
    heartbeat(server, name).await;
}

async fn porting_db_and_docomo_feed(server: &TestServer) {
    live(server, "mnp-db", vec![scope("81", &[], &[EventKind::Port])]).await;
    // The feed names its carrier as the MIC spells it.
    live(
        server,
        "docomo-feed",
        vec![scope("81", &["株式会社ＮＴＴドコモ"], &NOT_PORTS)],
    )
    .await;
}

async fn check_since(
    server: &TestServer,
    number: &str,
    max_age_hours: u32,
    owner_since: Option<DateTime<Utc>>,
) -> pb::CheckNumberResponse {
    check_with(
        server,
        pb::CheckNumberRequest {
            phone_number: number.into(),
            max_age_hours,
            owner_since: owner_since.map(timestamp),
            ..Default::default()
        },
    )
    .await
    .expect("check")
}

fn coverage(r: &pb::CheckNumberResponse, q: CoverageQuestion) -> &pb::Coverage {
    r.coverage
        .iter()
        .find(|c| c.question() == q)
        .expect("every question has its coverage")
}

/// The names of the sources that supply question `q`'s coverage, checking on the way
/// that the answer names each source once, however many questions it supplies.
fn sources(r: &pb::CheckNumberResponse, q: CoverageQuestion) -> Vec<&str> {
    let mut named = r.sources.clone();
    named.sort_unstable();
    named.dedup();
    assert_eq!(named.len(), r.sources.len(), "{:?}", r.sources);
    r.coverage_sources(coverage(r, q)).collect()
}

fn detail(r: &pb::CheckNumberResponse, code: ReasonCode) -> &str {
    r.reasons
        .iter()
        .find(|x| x.code() == code)
        .map(|x| x.detail.as_str())
        .unwrap_or_else(|| panic!("no {code:?} in {:?}", r.reasons))
}

async fn a_porting_database_and_a_docomo_feed_answer_only_for_docomo_subscribers(backend: Backend) {
    let server = TestServer::start(backend).await;
    porting_db_and_docomo_feed(&server).await;
    let month_ago = Some(Utc::now() - Duration::days(30));

    let r = check_since(&server, DOCOMO_NUMBER, 0, month_ago).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
    assert_eq!(r.ownership(), OwnershipStatus::Unchanged);
    assert_eq!(r.verdict(), Verdict::Allow);
    assert!(r.reasons.is_empty(), "{:?}", r.reasons);
    let carrier = r.current_carrier_ref.as_ref().unwrap();
    assert_eq!(
        (carrier.id.as_str(), carrier.name.as_str()),
        ("jp-docomo", "NTT docomo")
    );
    let sim = coverage(&r, CoverageQuestion::SimSwap);
    assert_eq!(
        sources(&r, CoverageQuestion::SimSwap),
        ["docomo-feed", "mnp-db"]
    );
    assert!(sim.gap.is_empty());

    // SoftBank's subscriber: docomo's feed cannot see a SoftBank SIM swap.
    let r = check_since(&server, SOFTBANK_NUMBER, 0, month_ago).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    assert_eq!(r.ownership(), OwnershipStatus::Unknown);
    assert_eq!(r.verdict(), Verdict::Allow, "on_unknown, with reasons");
    assert_eq!(reason_codes(&r), [ReasonCode::NoData, ReasonCode::NoData]);
    let why = detail(&r, ReasonCode::NoData);
    assert!(
        why.contains(
            "no source reports SIM_SWAP or REASSIGN for subscribers of SoftBank (jp-softbank)"
        ),
        "{why}"
    );
    assert!(
        coverage(&r, CoverageQuestion::SimSwap)
            .covered_since
            .is_none()
    );
    assert!(
        coverage(&r, CoverageQuestion::DeviceSwap)
            .gap
            .contains("DEVICE_SWAP")
    );
    server.stop().await;
}

async fn a_number_ported_away_is_covered_by_its_old_carriers_feed_only_until_the_port(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    porting_db_and_docomo_feed(&server).await;
    let ported_at = Utc::now() - Duration::days(30);
    // The porting database spells the carriers as libphonenumber does.
    let summary = ingest(
        &server,
        vec![port(
            "mnp-db",
            "p1",
            DOCOMO_NUMBER,
            ported_at,
            "NTT Docomo",
            "Softbank",
        )],
    )
    .await;
    assert_eq!((summary.accepted, summary.rejected), (1, 0));

    // Now SoftBank's: the last day is not covered, since docomo's feed saw it only until
    // the port.
    let r = check_since(&server, DOCOMO_NUMBER, 24, None).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    assert_eq!(r.current_carrier_ref.as_ref().unwrap().id, "jp-softbank");
    assert_eq!(r.original_carrier_ref.as_ref().unwrap().id, "jp-docomo");
    let why = detail(&r, ReasonCode::NoData);
    assert!(
        why.contains("subscribers of SoftBank (jp-softbank)"),
        "{why}"
    );
    // A window reaching back past the port sees the port itself: a SIM change.
    let r = check_since(&server, DOCOMO_NUMBER, 24 * 40, None).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::Swapped);
    assert_eq!(r.verdict(), Verdict::StepUp);

    // With SoftBank's own feed, the number is covered again, across the port.
    live(
        &server,
        "softbank-feed",
        vec![scope("81", &["ソフトバンク株式会社"], &NOT_PORTS)],
    )
    .await;
    let r = check_since(
        &server,
        DOCOMO_NUMBER,
        24,
        Some(ported_at - Duration::days(10)),
    )
    .await;
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
    assert_eq!(r.ownership(), OwnershipStatus::Unchanged);
    assert_eq!(
        sources(&r, CoverageQuestion::Ownership),
        ["docomo-feed", "softbank-feed"]
    );
    server.stop().await;
}

async fn a_disconnect_database_answers_ownership_but_never_sim_swap(backend: Backend) {
    let server = TestServer::start(backend).await;
    live(
        &server,
        "fcc-rnd",
        vec![scope("1", &[], &[EventKind::Disconnect])],
    )
    .await;
    let us = "+12015550123";
    let owner = Some(Utc::now() - Duration::days(90));
    let r = check_since(&server, us, 0, owner).await;
    assert_eq!(r.ownership(), OwnershipStatus::Unchanged);
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    let why = detail(&r, ReasonCode::NoData);
    assert!(
        why == "sim_swap: no source reports SIM_SWAP or PORT or REASSIGN for this number",
        "{why}"
    );
    assert_eq!(sources(&r, CoverageQuestion::Ownership), ["fcc-rnd"]);

    ingest(
        &server,
        vec![event(
            "fcc-rnd",
            "d1",
            us,
            EventKind::Disconnect,
            Utc::now() - Duration::days(3),
        )],
    )
    .await;
    let r = check_since(&server, us, 0, owner).await;
    assert_eq!(r.ownership(), OwnershipStatus::Changed);
    assert_eq!(r.verdict(), Verdict::Block);
    server.stop().await;
}

/// Waits for `wanted` of the number's SIM-swap answer, up to twenty seconds.
async fn until_sim_swap(
    server: &TestServer,
    number: &str,
    wanted: SimSwapStatus,
) -> pb::CheckNumberResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = check_since(server, number, 24, None).await;
        if r.sim_swap() == wanted {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {wanted:?}: {:?}",
            r.reasons
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_live_source_goes_stale_without_heartbeats_and_comes_back_with_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let source = upsert(
        &server,
        "feed",
        vec![scope("81", &[], &[])],
        Some(seconds(TEST_LAG_SECONDS)),
    )
    .await;
    assert!(source.complete_until.is_none() && !source.fresh);
    // Never heard from: it sees nothing yet.
    let r = check_since(&server, KDDI_NUMBER, 24, None).await;
    assert_eq!(reason_codes(&r), [ReasonCode::FeedStale]);
    assert!(detail(&r, ReasonCode::FeedStale).contains("never been heard from"));

    let heard = heartbeat(&server, "feed").await;
    assert!(heard.fresh);
    let r = check_since(&server, KDDI_NUMBER, 24, None).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);

    // Past its max lag without a word: stale, and the answer says which source and since
    // when.
    let r = until_sim_swap(&server, KDDI_NUMBER, SimSwapStatus::Unknown).await;
    assert_eq!(reason_codes(&r), [ReasonCode::FeedStale]);
    let stale = &r.reasons[0];
    assert_eq!(stale.occurred_at, heard.complete_until);
    assert!(
        stale.detail.contains("source feed is stale"),
        "{}",
        stale.detail
    );
    let listed = server
        .admin()
        .await
        .list_sources(pb::ListSourcesRequest {})
        .await
        .unwrap()
        .into_inner()
        .sources;
    assert!(!listed[0].fresh);

    // An ingest is a sign of life too.
    ingest(
        &server,
        vec![event(
            "feed",
            "e1",
            KDDI_NUMBER,
            EventKind::DeviceSwap,
            Utc::now() - Duration::days(2),
        )],
    )
    .await;
    until_sim_swap(&server, KDDI_NUMBER, SimSwapStatus::NotSwapped).await;
    until_sim_swap(&server, KDDI_NUMBER, SimSwapStatus::Unknown).await;
    heartbeat(&server, "feed").await;
    let r = check_since(&server, KDDI_NUMBER, 24, None).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::NotSwapped);
    server.stop().await;
}

async fn a_file_source_is_bounded_by_its_declared_cut_off(backend: Backend) {
    let server = TestServer::start(backend).await;
    // max_lag zero: fed by files.
    let source = upsert(
        &server,
        "daily",
        vec![scope("81", &[], &[])],
        Some(seconds(0)),
    )
    .await;
    assert_eq!(source.max_lag, Some(seconds(0)));
    let cut_off = Utc::now() - Duration::hours(6);
    let swap_at = Utc::now() - Duration::days(3);
    ingest(
        &server,
        vec![event(
            "daily",
            "s1",
            KDDI_NUMBER,
            EventKind::SimSwap,
            swap_at,
        )],
    )
    .await;
    let declared = server
        .admin()
        .await
        .heartbeat(pb::HeartbeatRequest {
            source: "daily".into(),
            complete_until: Some(timestamp(cut_off)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!declared.fresh, "a file never counts up to now");

    // What the file holds still counts; what it cannot know (the last six hours) does not.
    assert_eq!(
        check_since(&server, KDDI_NUMBER, 24 * 4, None)
            .await
            .sim_swap(),
        SimSwapStatus::Swapped
    );
    let r = check_since(&server, KDDI_NUMBER, 24, None).await;
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    assert_eq!(reason_codes(&r), [ReasonCode::FeedStale]);
    assert_eq!(r.reasons[0].occurred_at, declared.complete_until);
    // A later ingest does not move a file's cut-off, and a cut-off never moves back.
    ingest(
        &server,
        vec![event(
            "daily",
            "s2",
            KDDI_NUMBER,
            EventKind::DeviceSwap,
            swap_at,
        )],
    )
    .await;
    let again = server
        .admin()
        .await
        .heartbeat(pb::HeartbeatRequest {
            source: "daily".into(),
            complete_until: Some(timestamp(cut_off - Duration::days(1))),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.complete_until, declared.complete_until);
    let future = server
        .admin()
        .await
        .heartbeat(pb::HeartbeatRequest {
            source: "daily".into(),
            complete_until: Some(timestamp(Utc::now() + Duration::days(1))),
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), tonic::Code::InvalidArgument);
    assert!(
        future.message().starts_with("complete_until"),
        "{}",
        future.message()
    );
    server.stop().await;
}

async fn carrier_names_resolve_in_every_spelling_and_unknown_ones_are_refused_alone(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    live(
        &server,
        "mnp-db",
        vec![scope("81", &[], &[EventKind::Port])],
    )
    .await;
    let day = |d: i64| Utc::now() - Duration::days(d);
    // The MIC's, libphonenumber's, a feed's and the id: all the same operator.
    let spellings = [
        ("p1", "ＫＤＤＩ株式会社", "NTT Docomo"),
        ("p2", "株式会社NTTドコモ", "kddi"),
        ("p3", "KDDI Corp.", "docomo"),
        ("p4", "jp-docomo", "Unheard Of Telecom"),
        ("p5", "docomo", "au"),
    ];
    let events = spellings
        .iter()
        .enumerate()
        .map(|(i, (id, from, to))| port("mnp-db", id, KDDI_NUMBER, day(50 - i as i64), from, to))
        .collect();
    let summary = ingest(&server, events).await;
    assert_eq!((summary.accepted, summary.rejected), (4, 1));
    assert_eq!(summary.errors[0].index, 3);
    assert!(
        summary.errors[0]
            .reason
            .starts_with("to_carrier \"Unheard Of Telecom\" is not a known carrier name"),
        "{}",
        summary.errors[0].reason
    );
    let listed = server
        .events()
        .await
        .list_events(pb::ListEventsRequest {
            phone_number: KDDI_NUMBER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let moves: Vec<(&str, &str)> = listed
        .iter()
        .map(|e| (e.from_carrier.as_str(), e.to_carrier.as_str()))
        .collect();
    assert_eq!(
        moves,
        [
            ("jp-docomo", "jp-kddi"),
            ("jp-kddi", "jp-docomo"),
            ("jp-docomo", "jp-kddi"),
            ("jp-kddi", "jp-docomo"),
        ],
        "newest first, as ids"
    );
    let r = check_number(&server, KDDI_NUMBER).await;
    assert_eq!(r.current_carrier_ref.as_ref().unwrap().id, "jp-kddi");
    assert_eq!(r.port_count, 4);

    // A scope naming an unknown carrier is refused, naming the field and the name.
    let err = server
        .admin()
        .await
        .upsert_source(pb::Source {
            name: "x".into(),
            tracking_since: Some(timestamp(day(1))),
            scopes: vec![scope("81", &["Unheard Of Telecom"], &[])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("scopes.carriers"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("Unheard Of Telecom"),
        "{}",
        err.message()
    );

    // Once registered under that spelling, the name resolves.
    let mut admin = server.admin().await;
    admin
        .add_carrier_aliases(pb::AddCarrierAliasesRequest {
            id: "jp-rakuten".into(),
            aliases: vec!["Unheard Of Telecom".into()],
        })
        .await
        .unwrap();
    // Another carrier of the country cannot take a spelling that is already taken.
    let clash = admin
        .add_carrier_aliases(pb::AddCarrierAliasesRequest {
            id: "jp-softbank".into(),
            aliases: vec!["UNHEARD-OF TELECOM".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(clash.code(), tonic::Code::InvalidArgument);
    assert!(
        clash.message().contains("jp-rakuten"),
        "{}",
        clash.message()
    );
    let summary = ingest(
        &server,
        vec![port(
            "mnp-db",
            "p4",
            KDDI_NUMBER,
            day(46),
            "jp-docomo",
            "Unheard Of Telecom",
        )],
    )
    .await;
    assert_eq!(summary.accepted, 1);
    let missing = admin
        .get_carrier(pb::GetCarrierRequest {
            id: "jp-nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.stop().await;
}

async fn unknown_carrier_names_can_be_registered_for_review(backend: Backend) {
    let config = EngineConfig {
        register_unknown_carriers: true,
        ..dev_config()
    };
    let server = TestServer::start_in(TestDb::new(backend).await.into(), config).await;
    live(
        &server,
        "mnp-db",
        vec![scope("81", &[], &[EventKind::Port])],
    )
    .await;
    let summary = ingest(
        &server,
        vec![port(
            "mnp-db",
            "p1",
            KDDI_NUMBER,
            Utc::now() - Duration::days(2),
            "KDDI",
            "Mobile Example Inc.",
        )],
    )
    .await;
    assert_eq!((summary.accepted, summary.rejected), (1, 0));
    let mut admin = server.admin().await;
    let unreviewed = admin
        .list_carriers(pb::ListCarriersRequest {
            unreviewed_only: true,
            country_code: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .carriers;
    assert_eq!(unreviewed.len(), 1);
    let new = &unreviewed[0];
    assert_eq!(
        (
            new.id.as_str(),
            new.name.as_str(),
            new.country_code,
            new.reviewed
        ),
        ("new-81-mobileexample", "Mobile Example Inc.", 81, false)
    );
    let r = check_number(&server, KDDI_NUMBER).await;
    assert_eq!(
        r.current_carrier_ref.as_ref().unwrap().id,
        "new-81-mobileexample"
    );
    // Reviewing it: another spelling, and it leaves the review list.
    admin
        .add_carrier_aliases(pb::AddCarrierAliasesRequest {
            id: new.id.clone(),
            aliases: vec!["MobEx".into()],
        })
        .await
        .unwrap();
    let unreviewed = admin
        .list_carriers(pb::ListCarriersRequest {
            unreviewed_only: true,
            country_code: 81,
        })
        .await
        .unwrap()
        .into_inner()
        .carriers;
    assert!(unreviewed.is_empty());
    server.stop().await;
}

async fn times_are_compared_at_microsecond_precision(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let micro = (Utc::now() - Duration::days(10))
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let ns = |n: i64| micro + Duration::nanoseconds(n);
    // owner_since 100 ns into a microsecond; a DISCONNECT 500 ns later is in the same
    // microsecond, so it is not after owner_since; one 1,500 ns later is.
    ingest(
        &server,
        vec![event(
            "feed",
            "same-us",
            N_SAME,
            EventKind::Disconnect,
            ns(600),
        )],
    )
    .await;
    ingest(
        &server,
        vec![event(
            "feed",
            "next-us",
            N_NEXT,
            EventKind::Disconnect,
            ns(1_600),
        )],
    )
    .await;
    let r = check_since(&server, N_SAME, 0, Some(ns(100))).await;
    assert_eq!(r.ownership(), OwnershipStatus::Unchanged);
    let r = check_since(&server, N_NEXT, 0, Some(ns(100))).await;
    assert_eq!(r.ownership(), OwnershipStatus::Changed);
    assert_eq!(
        r.reasons[0].occurred_at,
        Some(timestamp(micro + Duration::microseconds(1))),
        "stored and answered cut to the microsecond"
    );
    server.stop().await;
}
