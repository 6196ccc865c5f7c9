//! Keys, scopes, limits, privacy settings and TLS, through a real server and client, on
//! both backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use numguard::api::convert::timestamp;
use numguard::api::pb::admin_client::AdminClient;
use numguard::api::pb::events_client::EventsClient;
use numguard::api::pb::number_check_client::NumberCheckClient;
use numguard::api::pb::{self, EventKind};
use numguard::domain::auth::TimePrecision;
use numguard::engine::EngineConfig;
use numguard::engine::auth::{AuthMode, Limits};
use numguard::server::TransportConfig;
use numguard::store::Store;
use numguard_testkit::*;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;

on_both_backends!(
    keys_and_scopes_decide_who_may_call_what,
    rate_limit_and_load_shedding_answer_resource_exhausted,
    a_tenant_sees_times_only_as_precisely_as_allowed,
    the_access_log_says_who_checked_a_number,
    retention_purges_old_events,
    oversized_messages_are_refused_cleanly,
    tenants_never_see_each_others_watchlists_or_alerts,
    audits_need_the_audit_scope_and_answer_as_their_tenant_sees,
    one_tenants_idle_streams_neither_starve_another_nor_stay_open,
);

const N: &str = "+819012345678";

fn keys_config() -> EngineConfig {
    EngineConfig {
        auth: AuthMode::Keys,
        ..dev_config()
    }
}

type Intercepted = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
            r.metadata_mut().insert("authorization", value);
        }
        Ok(r)
    }
}

async fn checker(server: &TestServer, key: Option<&str>) -> NumberCheckClient<Intercepted> {
    NumberCheckClient::with_interceptor(server.channel().await, Bearer(key.map(str::to_string)))
}

async fn admin(server: &TestServer, key: Option<&str>) -> AdminClient<Intercepted> {
    AdminClient::with_interceptor(server.channel().await, Bearer(key.map(str::to_string)))
}

async fn events(server: &TestServer, key: Option<&str>) -> EventsClient<Intercepted> {
    EventsClient::with_interceptor(server.channel().await, Bearer(key.map(str::to_string)))
}

fn request(number: &str) -> pb::CheckNumberRequest {
    pb::CheckNumberRequest {
        phone_number: number.into(),
        ..Default::default()
    }
}

/// The access log's answer to "who looked up this number?": (tenant, checks), by tenant.
async fn who_looked_up(s: &dyn Store, number: &str) -> Vec<(String, u64)> {
    let key = numguard::server_key::ServerKey::open(&test_key_file(), s)
        .await
        .unwrap();
    let pepper = numguard::engine::access_log::pepper(s, &key).await.unwrap();
    let number = numguard::domain::number::E164::parse(number, None).unwrap();
    let hash = numguard::engine::access_log::number_hash(&pepper, &number);
    assert!(
        !hash.contains(&number.digits()[2..]),
        "the log holds no number"
    );
    // A tenant's checks may be folded into one row or spread over several.
    let mut who = std::collections::BTreeMap::<String, u64>::new();
    for r in s.access_log(&hash).await.unwrap() {
        *who.entry(r.tenant.to_string()).or_default() += r.checks;
    }
    who.into_iter().collect()
}

async fn keys_and_scopes_decide_who_may_call_what(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let admin_key = new_key(&db, "acme", "check,admin,ingest").await;
    let check_key = new_key(&db, "acme", "check").await;
    let server = TestServer::start_in(db.clone(), keys_config()).await;

    // Health and reflection stay open.
    server
        .health()
        .await
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no key");
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(server.channel().await)
            .server_reflection_info(tokio_stream::iter(vec![ask]))
            .await
            .expect("reflection needs no key")
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected reflection answer");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"numguard.v1.NumberCheck"), "{names:?}");
    }

    let no_key = checker(&server, None).await.check_number(request(N)).await;
    assert_eq!(no_key.unwrap_err().code(), Code::Unauthenticated);
    for bad in [
        "nonsense",
        "ng_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
        &check_key[..check_key.len() - 1],
    ] {
        let err = checker(&server, Some(bad))
            .await
            .check_number(request(N))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
    }

    checker(&server, Some(&check_key))
        .await
        .check_number(request(N))
        .await
        .expect("a check key may check");
    let err = admin(&server, Some(&check_key))
        .await
        .list_sources(pb::ListSourcesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("`admin`"), "{}", err.message());
    let err = events(&server, Some(&check_key))
        .await
        .ingest_events(tokio_stream::iter(Vec::<pb::Event>::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    admin(&server, Some(&admin_key))
        .await
        .upsert_source(pb::Source {
            name: "feed".into(),
            tracking_since: Some(numguard::api::convert::timestamp(at(
                "2025-01-01T00:00:00Z",
            ))),
            covers: vec!["81".into()],
            ..Default::default()
        })
        .await
        .expect("an admin key may add sources");
    // `admin` allows every Admin RPC, those other scopes also allow among them.
    let admin_only = new_key(&db, "acme", "admin").await;
    let lookup = pb::LookupRangeRequest {
        phone_number: N.into(),
        ..Default::default()
    };
    admin(&server, Some(&admin_only))
        .await
        .lookup_range(lookup.clone())
        .await
        .expect("an admin key may look up ranges");
    admin(&server, Some(&admin_only))
        .await
        .heartbeat(pb::HeartbeatRequest {
            source: "feed".into(),
            ..Default::default()
        })
        .await
        .expect("an admin key may send heartbeats");
    let watch_only = new_key(&db, "acme", "watch").await;
    let err = admin(&server, Some(&watch_only))
        .await
        .lookup_range(lookup)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("check"), "{}", err.message());

    // Revocation (straight in the database, as `numguard keys revoke` does) takes effect
    // within the key cache's 5 s.
    let id = numguard::domain::auth::key_id(&check_key)
        .unwrap()
        .to_string();
    assert!(store(&db).await.revoke_key(&id).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = checker(&server, Some(&check_key))
            .await
            .check_number(request(N))
            .await;
        match r {
            Err(e) if e.code() == Code::Unauthenticated => break,
            _ if Instant::now() > deadline => panic!("a revoked key still works"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    server.stop().await;
}

async fn rate_limit_and_load_shedding_answer_resource_exhausted(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let key = new_key(&db, "acme", "check,ingest").await;
    let other = new_key(&db, "other", "check").await;
    let streamer = new_key(&db, "feeds", "ingest").await;
    let afterwards = new_key(&db, "later", "check").await;
    let config = EngineConfig {
        limits: Limits {
            // One token a second: the burst of five is spent long before one refills.
            rate_per_second: 1.0,
            burst: 5.0,
            max_in_flight: 1,
            ..Limits::default()
        },
        ..keys_config()
    };
    let server = TestServer::start_in(db, config).await;
    let mut client = checker(&server, Some(&key)).await;
    for _ in 0..5 {
        client
            .check_number(request(N))
            .await
            .expect("within the burst");
    }
    let err = client.check_number(request(N)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("retry in"), "{}", err.message());
    // Other keys have their own bucket.
    checker(&server, Some(&other))
        .await
        .check_number(request(N))
        .await
        .expect("another key is not limited by this one");

    // One request in flight at most: an open ingest stream holds the only place.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::Event>(1);
    let mut ingest_client = events(&server, Some(&streamer)).await;
    let open_stream = tokio::spawn(async move {
        ingest_client
            .ingest_events(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        match checker(&server, Some(&other))
            .await
            .check_number(request(N))
            .await
        {
            // Polls before the stream is admitted may also spend this key's tokens.
            Err(e) if e.message().contains("in flight") => break e,
            _ if Instant::now() > deadline => panic!("the server never shed load"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(shed.code(), Code::ResourceExhausted);
    drop(tx);
    open_stream.await.unwrap().expect("the stream completes");
    checker(&server, Some(&afterwards))
        .await
        .check_number(request(N))
        .await
        .expect("the place is free again");
    server.stop().await;
}

async fn a_tenant_sees_times_only_as_precisely_as_allowed(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let exact = new_key(&db, "exact-co", "check").await;
    let daily = new_key(&db, "daily-co", "check").await;
    let blind = new_key(&db, "blind-co", "check").await;
    let s = store(&db).await;
    s.set_time_precision(&"daily-co".parse().unwrap(), TimePrecision::Day)
        .await
        .unwrap();
    s.set_time_precision(&"blind-co".parse().unwrap(), TimePrecision::None)
        .await
        .unwrap();
    let server = TestServer::start_in(db.clone(), keys_config()).await;
    let dev = TestServer::start_in(db.clone(), dev_config()).await;
    add_source(&dev, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let swapped = Utc::now() - chrono::Duration::hours(30);
    ingest(
        &dev,
        vec![port("feed", "p", N, swapped, "KDDI", "Softbank")],
    )
    .await;
    dev.stop().await;

    let ask = |key: String| {
        let server = &server;
        async move {
            checker(server, Some(&key))
                .await
                .check_number(request(N))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let e = ask(exact).await;
    let d = ask(daily).await;
    let b = ask(blind).await;
    let secs = |t: Option<prost_types::Timestamp>| t.map(|t| t.seconds);
    assert_eq!(secs(e.latest_sim_change), Some(swapped.timestamp()));
    let midnight = swapped.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    for t in [
        d.latest_sim_change,
        d.last_port_at,
        d.reasons[0].occurred_at,
    ] {
        assert_eq!(secs(t), Some(midnight.timestamp()));
    }
    assert_eq!(b.latest_sim_change, None);
    assert_eq!(b.last_port_at, None);
    assert!(b.reasons.iter().all(|r| r.occurred_at.is_none()));
    // The verdict itself does not change with precision.
    assert_eq!(e.verdict, b.verdict);
    assert_eq!(e.sim_swap, d.sim_swap);
    server.stop().await;
}

async fn the_access_log_says_who_checked_a_number(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let a = new_key(&db, "bank-a", "check").await;
    let b = new_key(&db, "bank-b", "check").await;
    let server = TestServer::start_in(db.clone(), keys_config()).await;
    for key in [&a, &a, &b] {
        checker(&server, Some(key))
            .await
            .check_number(request(N))
            .await
            .unwrap();
    }
    checker(&server, Some(&b))
        .await
        .check_number(request("+818012345678"))
        .await
        .unwrap();
    server.stop().await; // flushes the log

    let s = store(&db).await;
    assert_eq!(
        who_looked_up(s.as_ref(), N).await,
        vec![("bank-a".to_string(), 2), ("bank-b".to_string(), 1)]
    );
}

async fn retention_purges_old_events(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let config = EngineConfig {
        retention: Some(chrono::Duration::days(30)),
        retention_interval: Duration::from_millis(100),
        ..dev_config()
    };
    let server = TestServer::start_in(db, config).await;
    add_source(&server, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let days_ago = |d: i64| Utc::now() - chrono::Duration::days(d);
    ingest(
        &server,
        vec![
            port(
                "feed",
                "first-port",
                N,
                days_ago(50),
                "jp-docomo",
                "jp-softbank",
            ),
            port(
                "feed",
                "last-port",
                N,
                days_ago(45),
                "jp-softbank",
                "jp-kddi",
            ),
            event("feed", "old", N, EventKind::Disconnect, days_ago(40)),
            event("feed", "new", N, EventKind::DeviceSwap, days_ago(3)),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = server
            .events()
            .await
            .list_events(pb::ListEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .events;
        let ids: Vec<_> = listed.iter().map(|e| e.source_event_id.clone()).collect();
        // The newest port stays: it says who serves the number.
        if ids == ["new", "last-port"] {
            break;
        }
        assert!(Instant::now() < deadline, "old events not purged: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = |owner_days: i64| pb::CheckNumberRequest {
        phone_number: N.into(),
        owner_since: Some(timestamp(days_ago(owner_days))),
        ..Default::default()
    };
    let mut client = server.check().await;
    // Before the kept 30 days the purged DISCONNECT is gone: not "unchanged" but unknown,
    // the reason naming the retention period.
    let answer = client.check_number(check(60)).await.unwrap().into_inner();
    assert_eq!(answer.ownership(), pb::OwnershipStatus::Unknown);
    let reason = &answer.reasons[0];
    assert_eq!(reason.code(), pb::ReasonCode::NoData);
    assert!(
        reason.detail.contains("no longer kept (retention period)"),
        "{}",
        reason.detail
    );
    assert_eq!(
        answer.current_carrier_ref.as_ref().map(|c| c.id.as_str()),
        Some("jp-kddi")
    );
    let answer = client.check_number(check(10)).await.unwrap().into_inner();
    assert_eq!(answer.ownership(), pb::OwnershipStatus::Unchanged);
    server.stop().await;
}

async fn oversized_messages_are_refused_cleanly(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let transport = TransportConfig {
        max_message_bytes: 64 * 1024,
        ..TransportConfig::default()
    };
    let server = TestServer::start_in_with(db, dev_config(), transport).await;
    let huge = pb::ImportRangesRequest {
        ranges: (0..20_000)
            .map(|i| pb::CarrierRange {
                prefix: format!("8190{i:05}"),
                carrier: "Carrier".into(),
            })
            .collect(),
    };
    let err = server.admin().await.import_ranges(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("too large"), "{}", err.message());
    // The server is fine afterwards.
    check_number(&server, N).await;
    server.stop().await;
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_certificate_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = generated.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_port = rest.local_addr().unwrap().port();
    let config = numguard::server::ServerConfig {
        database_url: format!("sqlite://{}", dir.path().join("ng.db").display()),
        engine: dev_config(),
        transport: Default::default(),
        tls: Some(numguard::server::TlsFiles { cert, key }),
        store: Default::default(),
        upstreams_file: None,
        key_file: test_key_file(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = numguard::server::Listeners {
        grpc: listener,
        rest: Some(rest),
        metrics: None,
    };
    let server = tokio::spawn(numguard::server::run_with(config, listeners, async {
        let _ = stopped.await;
    }));

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await
            && let Ok(r) = NumberCheckClient::new(channel)
                .check_number(request(N))
                .await
        {
            answered = Some(r.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered.expect("a TLS client is answered").phone_number, N);

    // A plaintext client gets no answer from the TLS port.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            NumberCheckClient::new(channel).check_number(request(N)),
        )
        .await;
        assert!(!matches!(r, Ok(Ok(_))), "plaintext must not be answered");
    }

    // The REST facade serves TLS with the same certificate, and nothing in plaintext.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = serde_json::json!({ "phoneNumber": N });
    let answer = trusting
        .post(format!("https://localhost:{rest_port}/sim-swap/v2/check"))
        .json(&body)
        .send()
        .await
        .expect("a TLS client is answered over REST");
    let status = answer.status().as_u16();
    let answer: serde_json::Value = answer.json().await.unwrap();
    numguard_testkit::camara::assert_camara_answer("POST", "/sim-swap/v2/check", status, &answer);
    assert_eq!(answer["code"], "IDENTIFIER_NOT_FOUND", "{answer}");
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{rest_port}/sim-swap/v2/check"))
        .timeout(Duration::from_secs(5))
        .json(&body)
        .send()
        .await;
    assert!(plain.is_err(), "plaintext must not be answered over REST");
    let untrusting = reqwest::Client::new()
        .post(format!("https://localhost:{rest_port}/sim-swap/v2/check"))
        .json(&body)
        .send()
        .await;
    assert!(untrusting.is_err(), "an unknown certificate is not trusted");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A message whose field 1 is a number where CheckNumberRequest has a string.
#[derive(Clone, PartialEq, prost::Message)]
struct Malformed {
    #[prost(int64, tag = "1")]
    phone_number: i64,
}

#[tokio::test]
async fn malformed_protobuf_gets_a_grpc_error_and_the_server_carries_on() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/numguard.v1.NumberCheck/CheckNumber",
    );
    let err = grpc
        .unary::<Malformed, pb::CheckNumberResponse, _>(
            tonic::Request::new(Malformed { phone_number: 42 }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Internal | Code::InvalidArgument),
        "{:?}: {}",
        err.code(),
        err.message()
    );
    check_number(&server, N).await;
    server.stop().await;
}

async fn tenants_never_see_each_others_watchlists_or_alerts(backend: Backend) {
    use numguard::api::pb::alerts_client::AlertsClient;
    let db = Arc::new(TestDb::new(backend).await);
    let a = new_key(&db, "bank-a", "watch").await;
    let b = new_key(&db, "bank-b", "watch").await;
    let server = TestServer::start_in(db.clone(), keys_config()).await;
    let alerts = |key: String| {
        let server = &server;
        async move { AlertsClient::with_interceptor(server.channel().await, Bearer(Some(key))) }
    };
    let entry = |r: &str, n: &str| pb::WatchEntry {
        customer_ref: r.into(),
        phone_number: n.into(),
        owner_since: Some(numguard::api::convert::timestamp(at(
            "2026-01-01T00:00:00Z",
        ))),
        ..Default::default()
    };
    alerts(a.clone())
        .await
        .upsert_watch(pb::UpsertWatchRequest {
            entries: vec![entry("shared-ref", N)],
        })
        .await
        .unwrap();
    alerts(b.clone())
        .await
        .upsert_watch(pb::UpsertWatchRequest {
            entries: vec![entry("b-only", "+818012345678")],
        })
        .await
        .unwrap();

    // B can neither list, read nor delete A's entry.
    let listed = alerts(b.clone())
        .await
        .list_watch(pb::ListWatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let refs: Vec<_> = listed
        .entries
        .iter()
        .map(|e| e.customer_ref.as_str())
        .collect();
    assert_eq!(refs, vec!["b-only"]);
    let removed = alerts(b.clone())
        .await
        .remove_watch(pb::RemoveWatchRequest {
            customer_refs: vec!["shared-ref".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 0);

    // Nor receive A's alerts.
    let mut stream_a = alerts(a.clone())
        .await
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut stream_b = alerts(b.clone())
        .await
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let dev = TestServer::start_in(db.clone(), dev_config()).await;
    add_source(&dev, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    ingest(
        &dev,
        vec![event("feed", "e1", N, EventKind::SimSwap, Utc::now())],
    )
    .await;
    dev.stop().await;
    let got = tokio::time::timeout(Duration::from_secs(10), stream_a.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.customer_refs, vec!["shared-ref"]);
    let leaked = tokio::time::timeout(Duration::from_millis(2500), stream_b.message()).await;
    assert!(leaked.is_err(), "tenant B received {leaked:?}");

    // Nor list or delete A's webhook subscriptions.
    let sub = alerts(a.clone())
        .await
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: "https://hooks.example.com/a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let theirs = alerts(b.clone())
        .await
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.subscriptions.is_empty());
    let err = alerts(b.clone())
        .await
        .delete_subscription(pb::DeleteSubscriptionRequest { id: sub.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mine = alerts(a.clone())
        .await
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(mine.subscriptions[0].active, "B's attempt left it alone");

    // A key without the watch scope gets nothing at all.
    let checker_key = new_key(&db, "bank-a", "check").await;
    let err = alerts(checker_key)
        .await
        .list_watch(pb::ListWatchRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}

async fn audit(
    server: &TestServer,
    key: Option<&str>,
    numbers: &[&str],
) -> Result<Vec<pb::AuditResult>, tonic::Status> {
    let rows: Vec<pb::AuditRow> = numbers
        .iter()
        .map(|n| pb::AuditRow {
            customer_ref: format!("ref-{n}"),
            phone_number: n.to_string(),
            ..Default::default()
        })
        .collect();
    let mut stream = checker(server, key)
        .await
        .audit_numbers(tokio_stream::iter(rows))
        .await?
        .into_inner();
    let mut results = Vec::new();
    while let Some(r) = stream.message().await? {
        results.push(r);
    }
    Ok(results)
}

/// Audits are streams, not stored jobs: what a tenant audited reaches only its own stream,
/// with its own time precision, and the access log files each lookup under that tenant.
async fn audits_need_the_audit_scope_and_answer_as_their_tenant_sees(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let a = new_key(&db, "bank-a", "audit").await;
    let a_check_only = new_key(&db, "bank-a", "check").await;
    let b = new_key(&db, "bank-b", "audit").await;
    let s = store(&db).await;
    s.set_time_precision(&"bank-b".parse().unwrap(), TimePrecision::None)
        .await
        .unwrap();
    let dev = TestServer::start_in(db.clone(), dev_config()).await;
    add_source(&dev, "feed", at("2025-01-01T00:00:00Z"), &["81"]).await;
    let swapped = Utc::now() - chrono::Duration::hours(5);
    ingest(
        &dev,
        vec![event("feed", "s", N, EventKind::SimSwap, swapped)],
    )
    .await;
    dev.stop().await;
    let server = TestServer::start_in(db.clone(), keys_config()).await;

    let none = audit(&server, None, &[N]).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    let wrong = audit(&server, Some("ng_0000000000000000_00"), &[N])
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let check_only = audit(&server, Some(&a_check_only), &[N]).await.unwrap_err();
    assert_eq!(check_only.code(), Code::PermissionDenied);

    let from_a = audit(&server, Some(&a), &[N, N]).await.unwrap();
    let from_b = audit(&server, Some(&b), &[N]).await.unwrap();
    let answer = |r: &pb::AuditResult| match &r.outcome {
        Some(pb::audit_result::Outcome::Check(c)) => c.clone(),
        other => panic!("not answered: {other:?}"),
    };
    assert_eq!(from_a.len(), 2);
    assert_eq!(
        answer(&from_a[0]).latest_sim_change.map(|t| t.seconds),
        Some(swapped.timestamp())
    );
    assert_eq!(
        answer(&from_b[0]).latest_sim_change,
        None,
        "bank-b sees no times"
    );
    assert_eq!(answer(&from_b[0]).verdict(), pb::Verdict::StepUp);
    server.stop().await; // flushes the access log

    assert_eq!(
        who_looked_up(s.as_ref(), N).await,
        vec![("bank-a".to_string(), 2), ("bank-b".to_string(), 1)]
    );
}

type Senders = Arc<tokio::sync::Mutex<Vec<tokio::sync::mpsc::Sender<pb::Event>>>>;

/// Opens an IngestEvents stream with `key` whose events are what is sent on the sender it
/// adds to `senders`; the call runs on its own task.
async fn open_ingest(
    server: &TestServer,
    key: &str,
    senders: &Senders,
) -> tokio::task::JoinHandle<Result<tonic::Response<pb::IngestSummary>, tonic::Status>> {
    let (send, events_in) = tokio::sync::mpsc::channel(1);
    senders.lock().await.push(send);
    let mut client = events(server, Some(key)).await;
    tokio::spawn(async move {
        client
            .ingest_events(tokio_stream::wrappers::ReceiverStream::new(events_in))
            .await
    })
}

/// Tenant A fills its share of in-flight places with ingest streams that then send
/// nothing: tenant B's checks are still answered, A's next stream is refused naming the
/// tenant's limit, and A's streams are closed after the idle limit, which frees A's places.
async fn one_tenants_idle_streams_neither_starve_another_nor_stay_open(backend: Backend) {
    const SHARE: usize = 8;
    let db = Arc::new(TestDb::new(backend).await);
    let hog = new_key(&db, "tenant-a", "ingest,check").await;
    let other = new_key(&db, "tenant-b", "check").await;
    let config = EngineConfig {
        limits: Limits {
            max_in_flight: 4 * SHARE,
            max_in_flight_per_tenant: SHARE,
            ..Limits::default()
        },
        ..keys_config()
    };
    let transport = TransportConfig {
        stream_idle_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    };
    let server = TestServer::start_in_with(db, config, transport).await;
    // Every open stream is sent an event every 300 ms until A is held back (on a loaded
    // machine opening them can take longer than the idle limit), then nothing.
    let senders = Senders::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let feeder = tokio::spawn({
        let senders = senders.clone();
        async move {
            tokio::pin!(stopped);
            for round in 0.. {
                for (i, send) in senders.lock().await.iter().enumerate() {
                    let e = event(
                        "feed",
                        &format!("s{i}-{round}"),
                        N,
                        EventKind::SimSwap,
                        Utc::now(),
                    );
                    let _ = tokio::sync::mpsc::Sender::try_send(send, e);
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        }
    });
    let mut streams = Vec::new();
    for _ in 0..SHARE {
        streams.push(open_ingest(&server, &hog, &senders).await);
    }
    // Probes until one is refused: a probe admitted instead took the place of a stream
    // that was refused while another request briefly held it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "A was never held back");
        let probe = open_ingest(&server, &hog, &senders).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if probe.is_finished() {
            let e = probe.await.unwrap().expect_err("a probe is refused");
            assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
            assert!(
                e.message().contains("this tenant is at its limit of 8"),
                "{}",
                e.message()
            );
            break;
        }
        streams.push(probe);
    }
    let mut b = checker(&server, Some(&other)).await;
    for _ in 0..20 {
        b.check_number(request(N)).await.expect("B is answered");
    }
    stop.send(()).unwrap();
    feeder.await.unwrap();
    // Exactly A's share of streams was held, and each is closed once idle, though its
    // sender is still open; the others were refused.
    let mut closed = 0;
    for stream in streams {
        let ended = tokio::time::timeout(Duration::from_secs(30), stream)
            .await
            .expect("an idle stream was closed")
            .unwrap();
        let e = ended.expect_err("no stream here is acknowledged");
        match e.code() {
            Code::DeadlineExceeded => {
                assert!(
                    e.message().contains("sent nothing for 2 s"),
                    "{}",
                    e.message()
                );
                closed += 1;
            }
            Code::ResourceExhausted => {}
            other => panic!("{other:?}: {}", e.message()),
        }
    }
    assert_eq!(closed, SHARE);
    drop(senders);
    let mut a = checker(&server, Some(&hog)).await;
    a.check_number(request(N))
        .await
        .expect("A's places were given back");
    server.stop().await;
}
