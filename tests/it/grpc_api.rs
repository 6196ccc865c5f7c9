//! The gRPC services end to end: a real tonic client against a real server on an
//! ephemeral port with a temporary SQLite file.

use chrono::{Duration, Utc};
use numguard::api::convert::timestamp;
use numguard::api::pb::{self, EventKind, OwnershipStatus, ReasonCode, SimSwapStatus, Verdict};
use numguard::domain::carrier::CarrierRegistry;
use numguard::engine::EngineConfig;
use numguard_testkit::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

on_both_backends!(
    health_reports_serving_for_the_server_and_each_service,
    ingest_then_check_sees_the_swap_immediately,
    the_worked_example_blocks_with_both_owner_changes,
    date_only_owner_since_over_grpc,
    resending_events_counts_duplicates_not_new_events,
    a_stream_mixing_good_and_bad_events_keeps_the_good_ones,
    bad_check_requests_are_invalid_argument_naming_the_field,
    bad_admin_and_list_requests_are_invalid_argument,
    list_events_filters_and_pages_newest_first,
    restart_on_the_same_file_keeps_everything,
    shipped_japanese_data_resolves_mobile_numbers_to_the_mic_carrier,
    uncovered_and_non_mobile_numbers_get_a_row_not_an_error,
    on_unknown_policy_applies_to_no_data_answers,
    a_stream_spanning_many_batches_commits_them_all,
    a_cached_number_answers_exactly_like_a_parsed_one,
    validity_comes_from_the_input_never_from_the_cache,
    control_characters_are_refused_by_field_and_the_rest_of_a_batch_kept,
    full_width_and_tel_uri_numbers_are_read_alike_by_checks_and_ingest,
    equal_times_are_ordered_by_kind_source_and_id_never_by_arrival,
);

const N1: &str = "+819012345678";
const N2: &str = "+818012345678";

async fn health_reports_serving_for_the_server_and_each_service(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = server.health().await;
    for service in [
        "",
        "numguard.v1.NumberCheck",
        "numguard.v1.Events",
        "numguard.v1.Admin",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
    server.stop().await;
}

async fn ingest_then_check_sees_the_swap_immediately(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;

    // A first check caches the quiet history.
    let before = check_number(&server, N1).await;
    assert_eq!(before.sim_swap(), SimSwapStatus::NotSwapped);
    assert_eq!(before.verdict(), Verdict::Allow);

    let swapped_at = Utc::now() - Duration::hours(2);
    let summary = ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, swapped_at)],
    )
    .await;
    assert_eq!(
        (summary.accepted, summary.duplicates, summary.rejected),
        (1, 0, 0)
    );

    let after = check_number(&server, N1).await;
    assert_eq!(after.phone_number, N1);
    assert_eq!(after.sim_swap(), SimSwapStatus::Swapped);
    assert_eq!(after.verdict(), Verdict::StepUp);
    assert_eq!(reason_codes(&after), vec![ReasonCode::SimSwapped]);
    let expected = numguard::domain::event::to_storage_precision(swapped_at);
    assert_eq!(after.latest_sim_change, Some(timestamp(expected)));
    assert_eq!(
        after.covered_since,
        Some(timestamp(at("2025-01-01T00:00:00Z")))
    );
    assert!(after.window_start.is_some() && after.window_end.is_some());
    assert!(after.evaluated_at.is_some());
    server.stop().await;
}

async fn the_worked_example_blocks_with_both_owner_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["8190"]).await;
    let disconnect = Utc::now() - Duration::days(30);
    let reassign = Utc::now() - Duration::days(5);
    // Sent newest first: decisions use occurred_at, not arrival order.
    ingest(
        &server,
        vec![
            event("feed", "r", N1, EventKind::Reassign, reassign),
            event("feed", "d", N1, EventKind::Disconnect, disconnect),
        ],
    )
    .await;
    let r = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: "090-1234-5678".into(),
            region: "JP".into(),
            owner_since: Some(timestamp(Utc::now() - Duration::days(60))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.phone_number, N1);
    assert_eq!(r.ownership(), OwnershipStatus::Changed);
    assert_eq!(r.sim_swap(), SimSwapStatus::Swapped);
    assert_eq!(r.verdict(), Verdict::Block);
    let reasons: Vec<_> = r
        .reasons
        .iter()
        .map(|x| (x.code(), x.event_kind()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (ReasonCode::OwnerChanged, EventKind::Disconnect),
            (ReasonCode::OwnerChanged, EventKind::Reassign),
        ]
    );
    server.stop().await;
}

async fn date_only_owner_since_over_grpc(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    ingest(
        &server,
        vec![
            event(
                "feed",
                "r",
                N1,
                EventKind::Reassign,
                at("2026-03-01T18:00:00Z"),
            ),
            event(
                "feed",
                "d",
                N2,
                EventKind::Disconnect,
                at("2026-03-01T18:00:00Z"),
            ),
        ],
    )
    .await;
    let by_date = |number: &str| pb::CheckNumberRequest {
        phone_number: number.into(),
        owner_since_date: "2026-03-01".into(),
        ..Default::default()
    };
    let reassigned = check_with(&server, by_date(N1)).await.unwrap();
    assert_eq!(reassigned.ownership(), OwnershipStatus::Unchanged);
    let disconnected = check_with(&server, by_date(N2)).await.unwrap();
    assert_eq!(disconnected.ownership(), OwnershipStatus::Changed);

    let both = pb::CheckNumberRequest {
        owner_since: Some(timestamp(Utc::now())),
        ..by_date(N1)
    };
    let err = check_with(&server, both).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("owner_since_date"),
        "{}",
        err.message()
    );
    server.stop().await;
}

async fn resending_events_counts_duplicates_not_new_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let t = at("2026-01-10T00:00:00Z");
    let batch = vec![
        port("feed", "p1", N1, t, "NTT Docomo", "KDDI"),
        port("feed", "p2", N1, t + Duration::days(1), "KDDI", "Softbank"),
    ];
    let first = ingest(&server, batch.clone()).await;
    assert_eq!((first.accepted, first.duplicates), (2, 0));
    // The same two again, plus a repeat inside one stream.
    let mut again = batch.clone();
    again.push(port(
        "feed",
        "p3",
        N1,
        t + Duration::days(2),
        "Softbank",
        "KDDI",
    ));
    again.push(port(
        "feed",
        "p3",
        N1,
        t + Duration::days(2),
        "Softbank",
        "KDDI",
    ));
    let second = ingest(&server, again).await;
    assert_eq!(
        (second.accepted, second.duplicates, second.rejected),
        (1, 3, 0)
    );

    let r = check_number(&server, N1).await;
    assert_eq!(r.port_count, 3);
    assert_eq!(r.current_carrier, "KDDI (au)");
    server.stop().await;
}

async fn a_stream_mixing_good_and_bad_events_keeps_the_good_ones(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let t = Utc::now() - Duration::hours(1);
    let future = Utc::now() + Duration::minutes(30);
    let mut no_time = event("feed", "x5", N1, EventKind::SimSwap, t);
    no_time.occurred_at = None;
    let mut no_kind = event("feed", "x6", N1, EventKind::SimSwap, t);
    no_kind.kind = 0;
    let events = vec![
        event("feed", "ok1", N1, EventKind::DeviceSwap, t),
        event("feed", "x1", "", EventKind::SimSwap, t),
        event("feed", "x2", "not a number", EventKind::SimSwap, t),
        event("nope", "x3", N1, EventKind::SimSwap, t),
        event("feed", "x4", N1, EventKind::SimSwap, future),
        no_time,
        no_kind,
        event("feed", "x7", N1, EventKind::Port, t),
        event("feed", "x8", &"9".repeat(80), EventKind::SimSwap, t),
        event("feed", "", N1, EventKind::SimSwap, t),
        event("feed", "ok2", N2, EventKind::SimSwap, t),
    ];
    let summary = ingest(&server, events).await;
    assert_eq!((summary.accepted, summary.rejected), (2, 9));
    let errors: Vec<(u64, &str)> = summary
        .errors
        .iter()
        .map(|e| (e.index, e.reason.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "phone_number"),
            (2, "phone_number"),
            (3, "source"),
            (4, "occurred_at"),
            (5, "occurred_at"),
            (6, "kind"),
            (7, "to_carrier"),
            (8, "phone_number"),
            (9, "source_event_id"),
        ]
    );
    assert!(summary.errors[2].reason.contains("not registered"));
    assert!(summary.errors[3].reason.contains("future"));

    let listed = server
        .events()
        .await
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .events
        .iter()
        .map(|e| e.source_event_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"ok1") && ids.contains(&"ok2"));
    // The device swap is reported, and does not decide the verdict.
    let r = check_number(&server, N1).await;
    assert_eq!(r.device_swap(), pb::SimSwapStatus::Swapped);
    // Stored times are cut to microseconds.
    assert_eq!(
        r.latest_device_change.map(|ts| ts.seconds),
        Some(t.timestamp())
    );
    assert_eq!(r.sim_swap(), pb::SimSwapStatus::NotSwapped);
    assert_eq!(r.verdict(), pb::Verdict::Allow);
    server.stop().await;
}

async fn bad_check_requests_are_invalid_argument_naming_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases = [
        (pb::CheckNumberRequest::default(), "phone_number"),
        (
            pb::CheckNumberRequest {
                phone_number: "garbage".into(),
                region: "JP".into(),
                ..Default::default()
            },
            "phone_number",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: "+8190".repeat(20),
                ..Default::default()
            },
            "phone_number",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: "+81901234".into(),
                ..Default::default()
            },
            "phone_number",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: "09012345678".into(),
                ..Default::default()
            },
            "phone_number",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: "09012345678".into(),
                region: "ZZ".into(),
                ..Default::default()
            },
            "region",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: N1.into(),
                max_age_hours: 2401,
                ..Default::default()
            },
            "max_age_hours",
        ),
        (
            pb::CheckNumberRequest {
                phone_number: N1.into(),
                owner_since_date: "2026-13-01".into(),
                ..Default::default()
            },
            "owner_since_date",
        ),
    ];
    for (request, field) in cases {
        let err = check_with(&server, request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: got {:?}",
            err.message()
        );
    }
    let err = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: N1.into(),
            max_age_hours: 2401,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.message(), "max_age_hours must be in 1..=2400, got 2401");

    // The edges of the range are fine.
    for hours in [1, 2400] {
        let ok = check_with(
            &server,
            pb::CheckNumberRequest {
                phone_number: N1.into(),
                max_age_hours: hours,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let start = ok.window_start.unwrap().seconds;
        let end = ok.window_end.unwrap().seconds;
        assert_eq!(end - start, i64::from(hours) * 3600);
    }
    server.stop().await;
}

async fn bad_admin_and_list_requests_are_invalid_argument(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin().await;
    let err = admin
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: None,
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("tracking_since"));
    let err = admin
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: Some(timestamp(Utc::now())),
            covers: vec!["+81".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("covers"), "{}", err.message());

    let mut events = server.events().await;
    let err = events
        .list_events(pb::ListEventsRequest {
            page_token: "bogus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_token"));
    let err = events
        .list_events(pb::ListEventsRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_size"));
    server.stop().await;
}

async fn list_events_filters_and_pages_newest_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let base = at("2026-01-01T00:00:00Z");
    let mut events = Vec::new();
    for i in 0..25 {
        let kind = if i % 5 == 0 {
            EventKind::Disconnect
        } else {
            EventKind::SimSwap
        };
        events.push(event(
            "feed",
            &format!("a{i}"),
            N1,
            kind,
            base + Duration::hours(i),
        ));
    }
    // Same instant twice: ties are broken by id, and paging must not lose either.
    events.push(event(
        "feed",
        "tie",
        N1,
        EventKind::SimSwap,
        base + Duration::hours(24),
    ));
    events.push(event("feed", "other", N2, EventKind::SimSwap, base));
    ingest(&server, events).await;

    let mut client = server.events().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                phone_number: N1.into(),
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= 7);
        seen.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 26);
    let times: Vec<i64> = seen
        .iter()
        .map(|e| e.occurred_at.unwrap().seconds)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        seen.iter()
            .all(|e| e.phone_number == N1 && e.ingested_at.is_some())
    );

    let disconnects = client
        .list_events(pb::ListEventsRequest {
            kinds: vec![EventKind::Disconnect.into()],
            since: Some(timestamp(base + Duration::hours(5))),
            until: Some(timestamp(base + Duration::hours(20))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = disconnects
        .events
        .iter()
        .map(|e| e.source_event_id.as_str())
        .collect();
    assert_eq!(ids, vec!["a15", "a10", "a5"]);
    server.stop().await;
}

async fn restart_on_the_same_file_keeps_everything(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let swapped_at = Utc::now() - Duration::hours(3);
    ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, swapped_at)],
    )
    .await;
    let mut admin = server.admin().await;
    admin
        .upsert_carrier(pb::Carrier {
            id: "jp-test".into(),
            name: "Test Carrier".into(),
            country_code: 81,
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .import_ranges(pb::ImportRangesRequest {
            ranges: vec![pb::CarrierRange {
                prefix: "8190123".into(),
                carrier: "test carrier".into(),
            }],
        })
        .await
        .unwrap();
    let before = check_number(&server, N1).await;
    let db = server.stop().await;

    let server = TestServer::start_in(db, dev_config()).await;
    let after = check_number(&server, N1).await;
    assert_eq!(after.sim_swap(), SimSwapStatus::Swapped);
    assert_eq!(after.latest_sim_change, before.latest_sim_change);
    assert_eq!(after.covered_since, before.covered_since);
    assert_eq!(after.original_carrier, "Test Carrier");
    let sources = server
        .admin()
        .await
        .list_sources(pb::ListSourcesRequest {})
        .await
        .unwrap()
        .into_inner()
        .sources;
    assert_eq!(sources.len(), 1);
    let resent = ingest(
        &server,
        vec![event("feed", "e1", N1, EventKind::SimSwap, swapped_at)],
    )
    .await;
    assert_eq!((resent.accepted, resent.duplicates), (0, 1));
    server.stop().await;
}

async fn shipped_japanese_data_resolves_mobile_numbers_to_the_mic_carrier(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The expected carrier comes from the shipped file itself: block 090123 (+81 90-123x).
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/jp-number-blocks/mic_mobile_blocks.csv"
    ))
    .unwrap();
    let in_file = |block: &str| {
        csv.lines()
            .find_map(|l| l.strip_prefix(&format!("{block},")))
            .map(fold_width)
            .unwrap()
    };
    let shipped = CarrierRegistry::new(numguard::ranges::shipped::shipped_carriers());
    let mut admin = server.admin().await;
    for (input, region, block) in [
        ("+81 90-1234-5678", "", "090123"),
        ("090-1234-5678", "JP", "090123"),
        ("080-6001-2345", "JP", "080600"),
        ("070-1001-2345", "JP", "070100"),
    ] {
        let found = admin
            .lookup_range(pb::LookupRangeRequest {
                phone_number: input.into(),
                region: region.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let expected = shipped.resolve(&in_file(block), Some(81)).unwrap();
        assert_eq!(found.carrier_id, expected.id.as_str(), "{input}");
        assert_eq!(found.carrier, expected.name, "{input}");
        assert_eq!(found.prefix, format!("81{}", &block[1..]));
        assert!(found.mobile);
    }
    let r = check_number(&server, N1).await;
    let holder = shipped.resolve(&in_file("090123"), Some(81)).unwrap();
    assert_eq!(r.original_carrier, holder.name);
    let original = r.original_carrier_ref.as_ref().unwrap();
    assert_eq!(
        (original.id.as_str(), original.name.as_str()),
        (holder.id.as_str(), holder.name.as_str())
    );
    assert_eq!(r.current_carrier, r.original_carrier);
    // Covered by a range but by no source: the data cannot say, so NO_DATA, not NOT_COVERED.
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    assert_eq!(reason_codes(&r), vec![ReasonCode::NoData]);
    server.stop().await;
}

async fn uncovered_and_non_mobile_numbers_get_a_row_not_an_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    // +1 201 (New Jersey): no shipped range (1.txt has no US mainland) and no source.
    let r = check_number(&server, "+12015550123").await;
    assert_eq!(r.verdict(), Verdict::Allow);
    assert_eq!(r.sim_swap(), SimSwapStatus::Unknown);
    assert_eq!(reason_codes(&r), vec![ReasonCode::NotCovered]);
    // A Tokyo fixed line.
    let r = check_number(&server, "+81312345678").await;
    assert!(reason_codes(&r).contains(&ReasonCode::NotMobile));
    server.stop().await;
}

async fn on_unknown_policy_applies_to_no_data_answers(backend: Backend) {
    let db = std::sync::Arc::new(TestDb::new(backend).await);
    let mut config = dev_config();
    config.policy.on_unknown = numguard::domain::decision::Verdict::Block;
    let server = TestServer::start_in(db, config).await;
    let r = check_number(&server, N1).await;
    assert_eq!(r.verdict(), Verdict::Block);
    assert_eq!(reason_codes(&r), vec![ReasonCode::NoData]);
    server.stop().await;
}

/// Full-width ASCII to ASCII, as the importer folds MIC names.
fn fold_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

async fn a_stream_spanning_many_batches_commits_them_all(backend: Backend) {
    let db = std::sync::Arc::new(TestDb::new(backend).await);
    let config = EngineConfig {
        ingest_batch_size: 3,
        ..dev_config()
    };
    let server = TestServer::start_in(db, config).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let t = Utc::now() - Duration::hours(1);
    let mut events = Vec::new();
    for i in 0..20 {
        let number = format!("+81901000{i:04}");
        events.push(event(
            "feed",
            &format!("e{i}"),
            &number,
            EventKind::SimSwap,
            t,
        ));
        if i % 4 == 0 {
            events.push(event(
                "feed",
                &format!("e{i}"),
                &number,
                EventKind::SimSwap,
                t,
            ));
        }
        if i % 5 == 0 {
            events.push(event("feed", "bad", "nope", EventKind::SimSwap, t));
        }
    }
    let summary = ingest(&server, events).await;
    assert_eq!(
        (summary.accepted, summary.duplicates, summary.rejected),
        (20, 5, 4)
    );
    for i in [0, 7, 19] {
        let r = check_number(&server, &format!("+81901000{i:04}")).await;
        assert_eq!(r.sim_swap(), SimSwapStatus::Swapped, "number {i}");
    }
    server.stop().await;
}

/// What Japanese users type and paste, RFC 3966 URIs and a Russian toll-free number in
/// national form name the same number as E.164 does, in checks and in ingested events.
async fn full_width_and_tel_uri_numbers_are_read_alike_by_checks_and_ingest(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let swapped_at = Utc::now() - Duration::hours(1);
    add_source(&server, "ru-feed", at("2025-01-01T00:00:00Z"), &["7"]).await;
    let summary = ingest(
        &server,
        vec![
            event(
                "feed",
                "e1",
                "tel:+81-90-1234-5678",
                EventKind::SimSwap,
                swapped_at,
            ),
            event(
                "feed",
                "e2",
                "＋８１ ９０ １２３４ ５６７８",
                EventKind::DeviceSwap,
                swapped_at,
            ),
            event(
                "ru-feed",
                "r1",
                "+7 800 123-45-67",
                EventKind::Disconnect,
                swapped_at,
            ),
        ],
    )
    .await;
    assert_eq!(summary.accepted, 3, "{summary:?}");
    // A Russian toll-free number: the 8 after +7 is part of it, not a trunk prefix.
    for (phone_number, region) in [("+78001234567", ""), ("8 (800) 123-45-67", "RU")] {
        let answer = check_with(
            &server,
            pb::CheckNumberRequest {
                phone_number: phone_number.into(),
                region: region.into(),
                owner_since: Some(timestamp(swapped_at - Duration::days(1))),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{phone_number:?}: {e}"));
        assert_eq!(answer.phone_number, "+78001234567", "{phone_number:?}");
        assert_eq!(
            answer.ownership(),
            OwnershipStatus::Changed,
            "{phone_number:?}"
        );
    }
    for (phone_number, region) in [
        ("０９０-１２３４-５６７８", "JP"),
        ("＋８１ ９０ １２３４ ５６７８", ""),
        ("tel:+81-90-1234-5678", ""),
        ("tel:090-1234-5678;phone-context=+81", ""),
        ("+81901234-5678", ""),
    ] {
        let answer = check_with(
            &server,
            pb::CheckNumberRequest {
                phone_number: phone_number.into(),
                region: region.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{phone_number:?}: {e}"));
        assert_eq!(answer.phone_number, N1, "{phone_number:?}");
        assert_eq!(
            answer.sim_swap(),
            SimSwapStatus::Swapped,
            "{phone_number:?}"
        );
    }
    let err = check_number_err(&server, "tel:+81-90-1234-5678;ext=7").await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("extension"), "{}", err.message());
    server.stop().await;
}

async fn check_number_err(server: &TestServer, number: &str) -> tonic::Status {
    check_with(
        server,
        pb::CheckNumberRequest {
            phone_number: number.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
}

/// The same E.164 text gets the same answer cold and after another format of the number
/// was read and cached (issue 16: `+37080012345` was refused cold and accepted warm).
async fn validity_comes_from_the_input_never_from_the_cache(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ask = |phone_number: &str, region: &str| {
        check_with(
            &server,
            pb::CheckNumberRequest {
                phone_number: phone_number.into(),
                region: region.into(),
                ..Default::default()
            },
        )
    };
    let outcome = |r: Result<pb::CheckNumberResponse, tonic::Status>| match r {
        Ok(answer) => Ok(answer.phone_number),
        Err(status) => Err((status.code(), status.message().to_string())),
    };
    for (e164, national, region) in [
        ("+37080012345", "8 800 12345", "LT"),
        ("+78001234567", "8 (800) 123-45-67", "RU"),
        ("+819012345678", "090-1234-5678", "JP"),
    ] {
        let cold = outcome(ask(e164, "").await);
        let other_format = ask(national, region).await;
        let warm = outcome(ask(e164, "").await);
        assert_eq!(
            warm,
            cold,
            "{e164} after {national:?} ({region}) was read as {:?}",
            other_format.map(|a| a.phone_number)
        );
    }
    server.stop().await;
}

async fn a_cached_number_answers_exactly_like_a_parsed_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let first = check_number(&server, N1).await; // parsed, then cached
    let cached = check_number(&server, N1).await; // answered from the cache by its text
    let national = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: "090-1234-5678".into(),
            region: "jp".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for r in [&cached, &national] {
        assert_eq!(r.phone_number, first.phone_number);
        assert_eq!(r.sim_swap, first.sim_swap);
        assert_eq!(r.original_carrier, first.original_carrier);
        assert_eq!(r.covered_since, first.covered_since);
    }
    // A bad region is refused on the cached path too.
    let err = check_with(
        &server,
        pb::CheckNumberRequest {
            phone_number: N1.into(),
            region: "ZZ".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("region"), "{}", err.message());
    // A non-mobile number keeps its NOT_MOBILE reason when answered from the cache.
    for _ in 0..2 {
        let fixed = check_number(&server, "+81312345678").await;
        assert!(reason_codes(&fixed).contains(&ReasonCode::NotMobile));
    }
    server.stop().await;
}

/// Two ports at the same instant, sent in both orders to two numbers: the current carrier
/// is the one the later (source, id) ported to, whatever arrived last (SPEC §2).
async fn equal_times_are_ordered_by_kind_source_and_id_never_by_arrival(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let when = Utc::now() - Duration::days(3);
    let ports = |number: &str| {
        (
            port(
                "feed",
                &format!("{number}-a"),
                number,
                when,
                "NTT Docomo",
                "KDDI",
            ),
            port(
                "feed",
                &format!("{number}-b"),
                number,
                when,
                "NTT Docomo",
                "SoftBank",
            ),
        )
    };
    let (a1, b1) = ports(N1);
    let (a2, b2) = ports(N2);
    ingest(&server, vec![a1, b1]).await;
    ingest(&server, vec![b2]).await;
    ingest(&server, vec![a2]).await;
    for number in [N1, N2] {
        let r = check_number(&server, number).await;
        assert_eq!(r.current_carrier, "SoftBank", "{number}");
        assert_eq!(r.port_count, 2);
    }
    server.stop().await;
}

/// NUL (which PostgreSQL cannot store) and other control characters in stored text are
/// refused with the field named, on both backends alike; the rest of a batch is kept
/// (issue 17: one NUL failed a whole batch on PostgreSQL with the database's error text).
async fn control_characters_are_refused_by_field_and_the_rest_of_a_batch_kept(backend: Backend) {
    let server = TestServer::start(backend).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let t = Utc::now() - Duration::hours(1);
    let summary = ingest(
        &server,
        vec![
            event("feed", "good-1", N1, EventKind::SimSwap, t),
            event("feed", "bad\0id", N1, EventKind::SimSwap, t),
            event("feed", "good-2", N2, EventKind::SimSwap, t),
            port("feed", "bad-carrier", N2, t, "NTT docomo", "Soft\0Bank"),
            event("feed", "good-3", N2, EventKind::DeviceSwap, t),
        ],
    )
    .await;
    assert_eq!((summary.accepted, summary.rejected), (3, 2), "{summary:?}");
    let reasons: Vec<(u64, &str)> = summary
        .errors
        .iter()
        .map(|e| (e.index, e.reason.as_str()))
        .collect();
    assert!(
        reasons[0].0 == 1
            && reasons[0]
                .1
                .starts_with("source_event_id contains the control character U+0000"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3
            && reasons[1]
                .1
                .starts_with("to_carrier contains the control character U+0000"),
        "{reasons:?}"
    );

    let mut alerts = pb::alerts_client::AlertsClient::new(server.channel().await);
    let entry = |customer_ref: &str| pb::WatchEntry {
        customer_ref: customer_ref.into(),
        phone_number: N1.into(),
        owner_since_date: "2026-01-01".into(),
        ..Default::default()
    };
    let upserted = alerts
        .upsert_watch(pb::UpsertWatchRequest {
            entries: vec![entry("c-1"), entry("c\0-2"), entry("c\u{1b}3")],
        })
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(upserted.upserted, 1, "{upserted:?}");
    assert_eq!(upserted.errors.len(), 2, "{upserted:?}");
    assert!(
        upserted
            .errors
            .iter()
            .all(|e| e.reason.starts_with("customer_ref contains")),
        "{upserted:?}"
    );
    let err = alerts
        .remove_watch(pb::RemoveWatchRequest {
            customer_refs: vec!["c-1".into(), "c\0".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("customer_refs contains"),
        "{}",
        err.message()
    );
    // A ListWatch page token is the last customer_ref of a page: garbage is refused.
    for garbage in ["\0".to_string(), " padded".to_string(), "x".repeat(201)] {
        let err = alerts
            .list_watch(pb::ListWatchRequest {
                page_token: garbage,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("page_token"), "{}", err.message());
    }
    let err = alerts
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: "http://127.0.0.1:9/hook".into(),
            sink_token: "tok\0en".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("sink_token contains"),
        "{}",
        err.message()
    );
    server.stop().await;
}
