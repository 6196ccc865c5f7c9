//! The CAMARA-compatible REST facade, through a real HTTP client against a real server:
//! each endpoint's answer, each CAMARA error code, `x-correlator`, and a SIM-swap
//! subscription delivered to a local receiver.

use std::sync::Arc;

use chrono::{Duration, Utc};
use numguard::api::pb::{self, EventKind};
use numguard::domain::auth::TimePrecision;
use numguard::engine::EngineConfig;
use numguard::engine::auth::{AuthMode, Limits};
use numguard_testkit::camara;
use numguard_testkit::receiver::{Received, Receiver};
use numguard_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

// Every REST test runs on both backends, each answer checked against its CAMARA schema.
on_both_backends!(
    a_subscription_sends_swapped_then_ends_after_its_max_events,
    subscriptions_are_listed_read_and_deleted,
    a_subscription_whose_sink_keeps_failing_is_inactive,
    sim_swap_check_answers_from_the_events_and_the_window,
    sim_swap_retrieve_date_gives_the_change_or_the_monitored_period,
    device_swap_check_and_retrieve_date_read_device_swaps,
    number_recycling_uses_the_date_only_rules,
    request_errors_get_camara_codes,
    max_age_above_the_server_limit_names_the_limit,
    keys_scopes_and_rate_limits_apply,
    the_correlator_is_echoed_and_a_malformed_one_refused,
    each_api_serves_its_openapi_document_listing_exactly_what_is_served,
    bad_subscriptions_get_camara_codes,
    retrieve_date_tells_times_only_as_precisely_as_the_tenant_may_see_them,
    kyc_tenure_is_the_ownership_question_refused_where_unknown,
    an_unknown_is_refused_naming_the_gap_never_answered_false,
);

/// A mobile number with a SIM swap 5 hours ago.
const SWAPPED: &str = "+819012345678";
/// A mobile number with no events, covered since 2025.
const QUIET: &str = "+819011112222";
/// A mobile number whose SIM moved to a new device 30 hours ago.
const NEW_DEVICE: &str = "+818012345678";
/// A mobile number disconnected on 2026-05-10 and reassigned on 2026-06-01.
const RECYCLED: &str = "+817012345678";
/// A Tokyo fixed line.
const FIXED: &str = "+81312345678";
/// A UK mobile no source covers.
const UNCOVERED: &str = "+447700900123";
/// A UK mobile covered only for the last 10 hours.
const LATE: &str = "+447911123456";

struct Rest {
    server: Arc<TestServer>,
    http: reqwest::Client,
    key: Option<String>,
}

impl Rest {
    async fn start(backend: Backend, config: EngineConfig) -> Rest {
        Rest::on(TestServer::start_rest(backend, config).await)
    }

    fn on(server: TestServer) -> Rest {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Rest {
            server: Arc::new(server),
            http: reqwest::Client::new(),
            key: None,
        }
    }

    fn with_key(&self, key: &str) -> Rest {
        Rest {
            server: self.server.clone(),
            http: self.http.clone(),
            key: Some(key.to_string()),
        }
    }

    fn url(&self, path: &str) -> String {
        let addr = self.server.rest_addr.expect("started with REST");
        format!("http://{addr}{path}")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// POSTs `body` (a JSON value, or raw text) and returns the status and JSON answer.
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = match body {
            Value::String(raw) => self
                .request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(raw),
            body => self.request(reqwest::Method::POST, path).json(&body),
        };
        answer(&reqwest::Method::POST, request.send().await.expect("send")).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path).await
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let response = self.request(method.clone(), path).send().await;
        answer(&method, response.expect("send")).await
    }
}

/// The status and JSON body (`Null` for none), after checking them against the served
/// CAMARA document of the operation that answered.
async fn answer(method: &reqwest::Method, response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let path = response.url().path().to_string();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    camara::assert_camara_answer(method.as_str(), &path, status.as_u16(), &body);
    (status, body)
}

/// What a sink received, each checked against its CloudEvent schema.
fn camara_events(seen: Vec<Received>) -> Vec<Received> {
    for received in &seen {
        camara::assert_camara_event(&received.body);
    }
    seen
}

/// Asserts a CAMARA error body: `{status, code, message}` with a message.
#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// The data every check test reads.
async fn seed(server: &TestServer) {
    add_source(server, "jp", at("2025-01-01T00:00:00Z"), &["81"]).await;
    add_source(
        server,
        "uk-late",
        Utc::now() - Duration::hours(10),
        &["447911"],
    )
    .await;
    let now = Utc::now();
    let summary = ingest(
        server,
        vec![
            event(
                "jp",
                "s1",
                SWAPPED,
                EventKind::SimSwap,
                now - Duration::hours(5),
            ),
            event(
                "jp",
                "d1",
                NEW_DEVICE,
                EventKind::DeviceSwap,
                now - Duration::hours(30),
            ),
            event(
                "jp",
                "r1",
                RECYCLED,
                EventKind::Disconnect,
                at("2026-05-10T03:00:00Z"),
            ),
            event(
                "jp",
                "r2",
                RECYCLED,
                EventKind::Reassign,
                at("2026-06-01T09:00:00Z"),
            ),
        ],
    )
    .await;
    assert_eq!(summary.accepted, 4, "{summary:?}");
}

async fn seeded(backend: Backend) -> Rest {
    let rest = Rest::start(backend, dev_config()).await;
    seed(&rest.server).await;
    rest
}

async fn sim_swap_check_answers_from_the_events_and_the_window(backend: Backend) {
    let rest = seeded(backend).await;
    let check = |number: &str, max_age: Option<u32>| {
        let mut body = json!({ "phoneNumber": number });
        if let Some(h) = max_age {
            body["maxAge"] = json!(h);
        }
        rest.post("/sim-swap/v2/check", body)
    };
    let (status, body) = check(SWAPPED, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "swapped": true }));
    assert_eq!(check(SWAPPED, Some(4)).await.1, json!({ "swapped": false }));
    assert_eq!(
        check(QUIET, Some(2400)).await.1,
        json!({ "swapped": false })
    );
    // Swapped is known without coverage; "not swapped" is not.
    assert_eq!(check(LATE, Some(5)).await.1, json!({ "swapped": false }));
    let before_data = check(LATE, None).await;
    assert_error(&before_data, 400, "OUT_OF_RANGE");
    assert!(
        before_data.1["message"]
            .as_str()
            .unwrap()
            .contains("10 hours")
            || before_data.1["message"]
                .as_str()
                .unwrap()
                .contains("9 hours"),
        "{}",
        before_data.1
    );
}

async fn sim_swap_retrieve_date_gives_the_change_or_the_monitored_period(backend: Backend) {
    let rest = seeded(backend).await;
    let (status, body) = rest
        .post(
            "/sim-swap/v2/retrieve-date",
            json!({ "phoneNumber": SWAPPED }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let latest = body["latestSimChange"].as_str().expect("a date");
    let latest = chrono::DateTime::parse_from_rfc3339(latest).expect("RFC 3339");
    let age = Utc::now() - latest.with_timezone(&Utc);
    assert!(
        age > Duration::hours(4) && age < Duration::hours(6),
        "{age}"
    );
    assert!(body.get("monitoredPeriod").is_none(), "{body}");

    let (_, body) = rest
        .post(
            "/sim-swap/v2/retrieve-date",
            json!({ "phoneNumber": QUIET }),
        )
        .await;
    assert_eq!(body["latestSimChange"], Value::Null, "{body}");
    let covered_days = (Utc::now() - at("2025-01-01T00:00:00Z")).num_days();
    assert_eq!(body["monitoredPeriod"], covered_days, "{body}");

    // A device change is not a SIM change.
    let (_, body) = rest
        .post(
            "/sim-swap/v2/retrieve-date",
            json!({ "phoneNumber": NEW_DEVICE }),
        )
        .await;
    assert_eq!(body["latestSimChange"], Value::Null, "{body}");
}

async fn device_swap_check_and_retrieve_date_read_device_swaps(backend: Backend) {
    let rest = seeded(backend).await;
    let (status, body) = rest
        .post(
            "/device-swap/v1/check",
            json!({ "phoneNumber": NEW_DEVICE, "maxAge": 48 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "swapped": true }));
    let (_, body) = rest
        .post(
            "/device-swap/v1/check",
            json!({ "phoneNumber": NEW_DEVICE, "maxAge": 24 }),
        )
        .await;
    assert_eq!(body, json!({ "swapped": false }));
    let (_, body) = rest
        .post("/device-swap/v1/check", json!({ "phoneNumber": SWAPPED }))
        .await;
    assert_eq!(
        body,
        json!({ "swapped": false }),
        "a SIM swap is not a device swap"
    );

    let (status, body) = rest
        .post(
            "/device-swap/v1/retrieve-date",
            json!({ "phoneNumber": NEW_DEVICE }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["latestDeviceChange"].is_string(), "{body}");
    let (_, body) = rest
        .post(
            "/device-swap/v1/retrieve-date",
            json!({ "phoneNumber": QUIET }),
        )
        .await;
    assert_eq!(body["latestDeviceChange"], Value::Null);
    assert!(body["monitoredPeriod"].as_i64().unwrap() > 300, "{body}");
}

async fn number_recycling_uses_the_date_only_rules(backend: Backend) {
    let rest = seeded(backend).await;
    let recycled = |number: &str, date: &str| {
        rest.post(
            "/number-recycling/v0.2/check",
            json!({ "phoneNumber": number, "specifiedDate": date }),
        )
    };
    let (status, body) = recycled(RECYCLED, "2026-03-01").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "phoneNumberRecycled": true }));
    // The reassignment on the date is the new owner's own contract start.
    assert_eq!(
        recycled(RECYCLED, "2026-06-01").await.1,
        json!({ "phoneNumberRecycled": false })
    );
    // A disconnect on the date counts.
    assert_eq!(
        recycled(RECYCLED, "2026-05-10").await.1,
        json!({ "phoneNumberRecycled": true })
    );
    assert_eq!(
        recycled(QUIET, "2025-06-01").await.1,
        json!({ "phoneNumberRecycled": false })
    );
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive().to_string();
    assert_error(&recycled(QUIET, &tomorrow).await, 400, "OUT_OF_RANGE");
    assert_error(&recycled(QUIET, "2024-12-31").await, 400, "OUT_OF_RANGE");
    assert_error(
        &recycled(QUIET, "31/12/2025").await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &rest
            .post(
                "/number-recycling/v0.2/check",
                json!({ "phoneNumber": QUIET }),
            )
            .await,
        400,
        "INVALID_ARGUMENT",
    );
}

async fn request_errors_get_camara_codes(backend: Backend) {
    let rest = seeded(backend).await;
    let check = |body: Value| rest.post("/sim-swap/v2/check", body);
    // Malformed body, unknown property, wrong type, bad phone number pattern.
    assert_error(&check(json!("{not json")).await, 400, "INVALID_ARGUMENT");
    let unknown = check(json!({ "phoneNumber": SWAPPED, "color": "blue" })).await;
    assert_error(&unknown, 400, "INVALID_ARGUMENT");
    assert!(unknown.1["message"].as_str().unwrap().contains("color"));
    assert_error(
        &check(json!({ "phoneNumber": SWAPPED, "maxAge": "24" })).await,
        400,
        "INVALID_ARGUMENT",
    );
    // The schema's maxAge is an integer: null is not "absent".
    let null = check(json!({ "phoneNumber": SWAPPED, "maxAge": null })).await;
    assert_error(&null, 400, "INVALID_ARGUMENT");
    assert!(null.1["message"].as_str().unwrap().contains("maxAge"));
    let device_null = rest
        .post(
            "/device-swap/v1/check",
            json!({ "phoneNumber": SWAPPED, "maxAge": null }),
        )
        .await;
    assert_error(&device_null, 400, "INVALID_ARGUMENT");
    for bad in ["819012345678", "+0901234567", "+8190 1234 5678", "+1234"] {
        assert_error(
            &check(json!({ "phoneNumber": bad })).await,
            400,
            "INVALID_ARGUMENT",
        );
    }
    // maxAge outside CAMARA's range.
    for outside in [0, -1, 2401, 100_000] {
        assert_error(
            &check(json!({ "phoneNumber": SWAPPED, "maxAge": outside })).await,
            400,
            "OUT_OF_RANGE",
        );
    }
    // Numbers numguard cannot answer for.
    assert_error(
        &check(json!({ "phoneNumber": UNCOVERED })).await,
        404,
        "IDENTIFIER_NOT_FOUND",
    );
    assert_error(
        &check(json!({ "phoneNumber": "+99912345678" })).await,
        404,
        "IDENTIFIER_NOT_FOUND",
    );
    assert_error(
        &check(json!({ "phoneNumber": FIXED })).await,
        422,
        "SERVICE_NOT_APPLICABLE",
    );
    // Russian toll free, read as libphonenumber reads it (valid, not mobile; issue 16).
    assert_error(
        &check(json!({ "phoneNumber": "+78001234567" })).await,
        422,
        "SERVICE_NOT_APPLICABLE",
    );
    assert_error(
        &check(json!({ "maxAge": 24 })).await,
        422,
        "MISSING_IDENTIFIER",
    );
    assert_error(
        &rest.post("/sim-swap/v2/retrieve-date", json!({})).await,
        422,
        "MISSING_IDENTIFIER",
    );
    // Unknown resources and methods.
    assert_error(
        &rest.post("/sim-swap/v9/check", json!({})).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &rest.get("/sim-swap/v2/check").await,
        405,
        "METHOD_NOT_ALLOWED",
    );
}

async fn max_age_above_the_server_limit_names_the_limit(backend: Backend) {
    let rest = Rest::start(
        backend,
        EngineConfig {
            max_lookback_hours: 720,
            ..dev_config()
        },
    )
    .await;
    seed(&rest.server).await;
    let over = rest
        .post(
            "/sim-swap/v2/check",
            json!({ "phoneNumber": SWAPPED, "maxAge": 721 }),
        )
        .await;
    assert_error(&over, 400, "OUT_OF_RANGE");
    assert!(
        over.1["message"].as_str().unwrap().contains("720"),
        "{}",
        over.1
    );
    let (status, _) = rest
        .post(
            "/sim-swap/v2/check",
            json!({ "phoneNumber": SWAPPED, "maxAge": 720 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn keys_scopes_and_rate_limits_apply(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let checker = new_key(&db, "acme", "check").await;
    let watcher = new_key(&db, "acme", "watch").await;
    let config = EngineConfig {
        auth: AuthMode::Keys,
        limits: Limits {
            // One request a minute after a burst of three.
            rate_per_second: 1.0 / 60.0,
            burst: 3.0,
            ..Limits::default()
        },
        ..EngineConfig::default()
    };
    let server = TestServer::start_rest_in(db, config).await;
    let anonymous = Rest::on(server);
    let body = json!({ "phoneNumber": SWAPPED });
    let missing = anonymous.post("/sim-swap/v2/check", body.clone()).await;
    assert_error(&missing, 401, "UNAUTHENTICATED");
    assert!(
        missing.1["message"]
            .as_str()
            .unwrap()
            .contains("Authorization")
    );
    assert_error(
        &anonymous
            .with_key("ng_not_a_real_key")
            .post("/sim-swap/v2/check", body.clone())
            .await,
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        &anonymous
            .with_key(&watcher)
            .post("/sim-swap/v2/check", body.clone())
            .await,
        403,
        "PERMISSION_DENIED",
    );
    assert_error(
        &anonymous
            .with_key(&checker)
            .get("/sim-swap-subscriptions/v0.3/subscriptions")
            .await,
        403,
        "PERMISSION_DENIED",
    );
    let client = anonymous.with_key(&checker);
    for _ in 0..3 {
        // Within the burst (a refused scope spends no token).
        let (status, _) = client.post("/sim-swap/v2/check", body.clone()).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let response = client
        .request(reqwest::Method::POST, "/sim-swap/v2/check")
        .json(&body)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_error(
        &answer(&reqwest::Method::POST, response).await,
        429,
        "TOO_MANY_REQUESTS",
    );
}

async fn the_correlator_is_echoed_and_a_malformed_one_refused(backend: Backend) {
    let rest = seeded(backend).await;
    let send = |correlator: &str| {
        rest.request(reqwest::Method::POST, "/sim-swap/v2/check")
            .header("x-correlator", correlator)
            .json(&json!({ "phoneNumber": SWAPPED }))
            .send()
    };
    let ok = send("b4333c46-49c0-4f62-80d7-f0ef930f1c46").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["x-correlator"],
        "b4333c46-49c0-4f62-80d7-f0ef930f1c46"
    );
    assert_eq!(ok.headers()["content-type"], "application/json");
    // Errors carry it too.
    let refused = rest
        .request(reqwest::Method::POST, "/sim-swap/v2/check")
        .header("x-correlator", "req:1;a/b")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.headers()["x-correlator"], "req:1;a/b");
    let bad = send("has spaces").await.unwrap();
    assert!(bad.headers().get("x-correlator").is_none());
    let post = reqwest::Method::POST;
    assert_error(&answer(&post, bad).await, 400, "INVALID_ARGUMENT");
    let long = "a".repeat(257);
    assert_error(
        &answer(&post, send(&long).await.unwrap()).await,
        400,
        "INVALID_ARGUMENT",
    );
}

async fn each_api_serves_its_openapi_document_listing_exactly_what_is_served(backend: Backend) {
    let rest = seeded(backend).await;
    let mut documented: Vec<String> = Vec::new();
    for doc in numguard::rest::openapi::documents().unwrap() {
        let response = rest.http.get(rest.url(&doc.path())).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", doc.path());
        assert_eq!(response.headers()["content-type"], "application/yaml");
        let served: Value = serde_norway::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(served, doc.served, "{}", doc.path());
        for (path, item) in served["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let path = format!("{}{path}", doc.base_path);
                documented.push(format!("{} {path}", method.to_uppercase()));
                let concrete = path.replace("{subscriptionId}", "0000");
                let method: reqwest::Method = method.to_uppercase().parse().unwrap();
                let sent = rest.request(method.clone(), &concrete);
                let sent = if method == reqwest::Method::POST {
                    sent.json(&json!({}))
                } else {
                    sent
                };
                let (status, body) = answer(&method, sent.send().await.unwrap()).await;
                // Routed: answered by the operation (an id may be unknown), never by the
                // fallbacks for unknown resources and methods.
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(body["message"], "no such resource", "{method} {path}");
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /sim-swap-subscriptions/v0.3/subscriptions/{subscriptionId}",
            "GET /sim-swap-subscriptions/v0.3/subscriptions",
            "GET /sim-swap-subscriptions/v0.3/subscriptions/{subscriptionId}",
            "POST /device-swap/v1/check",
            "POST /device-swap/v1/retrieve-date",
            "POST /kyc-tenure/v0.2/check-tenure",
            "POST /number-recycling/v0.2/check",
            "POST /sim-swap-subscriptions/v0.3/subscriptions",
            "POST /sim-swap/v2/check",
            "POST /sim-swap/v2/retrieve-date",
        ]
    );
    // The combined hand-written document is gone.
    assert_error(&rest.get("/openapi.json").await, 404, "NOT_FOUND");
}

const SWAPPED_TYPE: &str = "org.camaraproject.sim-swap-subscriptions.v0.swapped";

fn subscription(sink: &str, number: &str) -> Value {
    json!({
        "protocol": "HTTP",
        "sink": sink,
        "types": [SWAPPED_TYPE],
        "config": { "subscriptionDetail": { "phoneNumber": number } },
    })
}

async fn bad_subscriptions_get_camara_codes(backend: Backend) {
    let rest = seeded(backend).await;
    let path = "/sim-swap-subscriptions/v0.3/subscriptions";
    let good = subscription("https://hooks.example.com/camara", QUIET);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        f(&mut body);
        rest.post(path, body)
    };
    assert_error(
        &with(&|b| b["protocol"] = json!("MQTT3")).await,
        400,
        "INVALID_PROTOCOL",
    );
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339();
    assert_error(
        &with(&|b| {
            b["sinkCredential"] = json!({
                "credentialType": "PLAIN", "identifier": "u", "secret": "p"
            })
        })
        .await,
        400,
        "INVALID_CREDENTIAL",
    );
    assert_error(
        &with(&|b| {
            b["sinkCredential"] = json!({
                "credentialType": "ACCESSTOKEN", "accessToken": "t",
                "accessTokenExpiresUtc": future, "accessTokenType": "mac"
            })
        })
        .await,
        400,
        "INVALID_TOKEN",
    );
    let expired = with(&|b| {
        b["sinkCredential"] = json!({
            "credentialType": "ACCESSTOKEN", "accessToken": "t",
            "accessTokenExpiresUtc": "2020-01-01T00:00:00Z", "accessTokenType": "bearer"
        })
    })
    .await;
    assert_error(&expired, 400, "INVALID_CREDENTIAL");
    assert_eq!(
        expired.1["message"],
        "sinkCredential.accessTokenExpiresUtc is in the past"
    );
    // Not https: the schema's pattern refuses it.
    assert_error(
        &with(&|b| b["sink"] = json!("http://hooks.example.com/plain")).await,
        400,
        "INVALID_ARGUMENT",
    );
    // https, but to an address the egress policy keeps numguard from reaching.
    let private = with(&|b| b["sink"] = json!("https://10.1.2.3/hook")).await;
    assert_error(&private, 400, "INVALID_SINK");
    assert!(
        private.1["message"].as_str().unwrap().starts_with("sink "),
        "{}",
        private.1
    );
    assert_error(
        &with(&|b| b["types"] = json!(["org.camaraproject.roaming.v0.on"])).await,
        400,
        "INVALID_ARGUMENT",
    );
    // maxItems 1: a duplicate is malformed (0.3.0 has no MULTIEVENT code).
    assert_error(
        &with(&|b| b["types"] = json!([SWAPPED_TYPE, SWAPPED_TYPE])).await,
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &with(&|b| b["config"]["subscriptionMaxEvents"] = json!(0)).await,
        400,
        "INVALID_ARGUMENT",
    );
    let ended =
        with(&|b| b["config"]["subscriptionExpireTime"] = json!("2020-01-01T00:00:00Z")).await;
    assert_error(&ended, 400, "INVALID_ARGUMENT");
    assert_eq!(
        ended.1["message"],
        "config.subscriptionExpireTime is in the past"
    );
    assert_error(
        &with(&|b| b["config"]["subscriptionDetail"] = json!({})).await,
        422,
        "MISSING_IDENTIFIER",
    );
    assert_error(
        &with(&|b| b["config"]["subscriptionDetail"]["phoneNumber"] = json!(FIXED)).await,
        422,
        "SERVICE_NOT_APPLICABLE",
    );
    // Valid in no numbering plan: creation declares no 404, so it is not applicable
    // (found by Schemathesis, tests/it/camara_fuzz.rs).
    assert_error(
        &with(&|b| b["config"]["subscriptionDetail"]["phoneNumber"] = json!("+123456789")).await,
        422,
        "SERVICE_NOT_APPLICABLE",
    );
    assert_error(
        &with(&|b| b["config"]["extra"] = json!(true)).await,
        400,
        "INVALID_ARGUMENT",
    );
    let (status, _) = rest.post(path, good).await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn a_subscription_sends_swapped_then_ends_after_its_max_events(backend: Backend) {
    let rest = Rest::on(TestServer::start_rest(backend, dev_config()).await);
    seed(&rest.server).await;
    let receiver = Receiver::start(vec![]).await;
    let expires = Utc::now() + Duration::days(1);
    let mut body = subscription(&receiver.url, QUIET);
    body["sinkCredential"] = json!({
        "credentialType": "ACCESSTOKEN",
        "accessToken": "sink-secret",
        "accessTokenExpiresUtc": expires.to_rfc3339(),
        "accessTokenType": "bearer",
    });
    body["config"]["subscriptionMaxEvents"] = json!(1);
    let (status, created) = rest
        .post("/sim-swap-subscriptions/v0.3/subscriptions", body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("an id").to_string();
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["protocol"], "HTTP");
    assert_eq!(created["types"], json!([SWAPPED_TYPE]));
    assert_eq!(
        created["config"]["subscriptionDetail"]["phoneNumber"],
        QUIET
    );
    assert_eq!(created["config"]["subscriptionMaxEvents"], 1);
    assert!(created["startsAt"].is_string());
    assert!(created.get("sinkCredential").is_none(), "never echoed");
    let expires_at = chrono::DateTime::parse_from_rfc3339(created["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert!(
        (expires_at - expires).num_milliseconds().abs() < 1,
        "the token's expiry"
    );

    // Another number's swap and this number's disconnect are not its events.
    let now = Utc::now();
    ingest(
        &rest.server,
        vec![
            event("jp", "x1", NEW_DEVICE, EventKind::SimSwap, now),
            event("jp", "x2", QUIET, EventKind::Disconnect, now),
        ],
    )
    .await;
    ingest(
        &rest.server,
        vec![
            event("jp", "x3", QUIET, EventKind::SimSwap, now),
            event(
                "jp",
                "x4",
                QUIET,
                EventKind::SimSwap,
                now + Duration::seconds(1),
            ),
        ],
    )
    .await;
    let seen = camara_events(
        receiver
            .wait_for("swapped, then subscription-ended", |s| s.len() >= 2)
            .await,
    );
    let swapped = &seen[0].body;
    assert_eq!(swapped["type"], SWAPPED_TYPE);
    assert_eq!(swapped["specversion"], "1.0");
    assert_eq!(swapped["datacontenttype"], "application/json");
    assert_eq!(swapped["data"]["subscriptionId"], id.as_str());
    assert_eq!(swapped["data"]["phoneNumber"], QUIET);
    assert!(swapped["time"].is_string() && swapped["id"].is_string());
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sink-secret"));
    let ended = &seen[1].body;
    assert_eq!(
        ended["type"],
        "org.camaraproject.sim-swap-subscriptions.v0.subscription-ended"
    );
    assert_eq!(ended["data"]["subscriptionId"], id.as_str());
    assert_eq!(ended["data"]["terminationReason"], "MAX_EVENTS_REACHED");
    // Nothing after the end.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(receiver.seen().len(), 2, "{:?}", receiver.seen());
    let (_, got) = rest
        .get(&format!("/sim-swap-subscriptions/v0.3/subscriptions/{id}"))
        .await;
    assert_eq!(got["status"], "EXPIRED", "{got}");
}

async fn a_subscription_whose_sink_keeps_failing_is_inactive(backend: Backend) {
    let config = EngineConfig {
        webhook_failing_after: std::time::Duration::from_secs(1),
        ..dev_config()
    };
    let rest = Rest::start(backend, config).await;
    seed(&rest.server).await;
    let failing = Receiver::start(vec![503; 10_000]).await;
    let path = "/sim-swap-subscriptions/v0.3/subscriptions";
    let (status, created) = rest.post(path, subscription(&failing.url, QUIET)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "ACTIVE");
    let one = format!("{path}/{}", created["id"].as_str().unwrap());
    ingest(
        &rest.server,
        vec![event("jp", "f1", QUIET, EventKind::SimSwap, Utc::now())],
    )
    .await;
    failing
        .wait_for("a failed delivery", |s| !s.is_empty())
        .await;
    // Its events wait in the queue; the status says nothing arrives for now.
    eventually(
        std::time::Duration::from_secs(30),
        "the subscription shows INACTIVE",
        || async { rest.get(&one).await.1["status"] == "INACTIVE" },
    )
    .await;
    let (_, list) = rest.get(path).await;
    assert_eq!(list[0]["status"], "INACTIVE", "{list}");
}

async fn subscriptions_are_listed_read_and_deleted(backend: Backend) {
    let rest = Rest::on(TestServer::start_rest(backend, dev_config()).await);
    seed(&rest.server).await;
    let receiver = Receiver::start(vec![]).await;
    let path = "/sim-swap-subscriptions/v0.3/subscriptions";
    let (_, first) = rest.post(path, subscription(&receiver.url, QUIET)).await;
    let (_, second) = rest.post(path, subscription(&receiver.url, SWAPPED)).await;
    // The same number to the same sink twice would send every event twice.
    assert_error(
        &rest.post(path, subscription(&receiver.url, QUIET)).await,
        409,
        "ALREADY_EXISTS",
    );
    let (status, list) = rest.get(path).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap()
        ]
    );
    let one = format!("{path}/{}", first["id"].as_str().unwrap());
    let (status, got) = rest.get(&one).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, first);

    // A gRPC (watchlist) subscription of the same tenant is not a CAMARA one.
    let grpc = numguard::api::pb::alerts_client::AlertsClient::new(rest.server.channel().await)
        .create_subscription(pb::CreateSubscriptionRequest {
            sink: receiver.url.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.format, "numguard");
    assert_eq!(rest.get(path).await.1.as_array().unwrap().len(), 2);
    assert_error(
        &rest.get(&format!("{path}/{}", grpc.id)).await,
        404,
        "NOT_FOUND",
    );

    let (status, body) = rest.delete(&one).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let seen = receiver
        .wait_for("subscription-ended", |s| {
            s.iter().any(|r| {
                r.body["data"]["terminationReason"] == "SUBSCRIPTION_DELETED"
                    && r.body["data"]["subscriptionId"] == first["id"]
                    // As the official test definitions expect: the subscribed number.
                    && r.body["data"]["phoneNumber"] == QUIET
            })
        })
        .await;
    camara_events(seen);
    // Kept, as DELETED; deleting it again finds nothing to delete.
    let (status, deleted) = rest.get(&one).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["status"], "DELETED", "{deleted}");
    assert_error(&rest.delete(&one).await, 404, "NOT_FOUND");
    assert_error(
        &rest.delete(&format!("{path}/nope")).await,
        404,
        "NOT_FOUND",
    );
    let statuses: Vec<Value> = rest
        .get(path)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("DELETED"), json!("ACTIVE")]);
    // Once deleted, the same sink may follow the number again.
    let (status, again) = rest.post(path, subscription(&receiver.url, QUIET)).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");

    // RFC 7240's `Prefer: respond-async` gets CAMARA's 202 forms, the work already done.
    let post = reqwest::Method::POST;
    let sent = rest
        .request(post.clone(), path)
        .header("prefer", "respond-async")
        .json(&subscription(&receiver.url, NEW_DEVICE))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["preference-applied"], "respond-async");
    let (status, accepted) = answer(&post, sent).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(accepted, json!({ "id": id }));
    let third = format!("{path}/{id}");
    assert_eq!(rest.get(&third).await.1["status"], "ACTIVE");
    let delete = reqwest::Method::DELETE;
    let sent = rest
        .request(delete.clone(), &third)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let (status, accepted) = answer(&delete, sent).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted, json!({ "id": id }));
    assert_eq!(rest.get(&third).await.1["status"], "DELETED");
}

async fn retrieve_date_tells_times_only_as_precisely_as_the_tenant_may_see_them(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let exact = new_key(&db, "exact-co", "check").await;
    let daily = new_key(&db, "daily-co", "check").await;
    let blind = new_key(&db, "blind-co", "check").await;
    let s = store(&db).await;
    for (tenant, precision) in [
        ("daily-co", TimePrecision::Day),
        ("blind-co", TimePrecision::None),
    ] {
        s.set_time_precision(&tenant.parse().unwrap(), precision)
            .await
            .unwrap();
    }
    let dev = TestServer::start_in(db.clone(), dev_config()).await;
    seed(&dev).await;
    dev.stop().await;
    let config = EngineConfig {
        auth: AuthMode::Keys,
        ..EngineConfig::default()
    };
    let rest = Rest::on(TestServer::start_rest_in(db, config).await);
    let body = json!({ "phoneNumber": SWAPPED });
    let path = "/sim-swap/v2/retrieve-date";
    let (_, e) = rest.with_key(&exact).post(path, body.clone()).await;
    let (_, d) = rest.with_key(&daily).post(path, body.clone()).await;
    let exact_time = e["latestSimChange"].as_str().unwrap();
    let daily_time = d["latestSimChange"].as_str().unwrap();
    assert_eq!(&exact_time[..10], &daily_time[..10]);
    assert!(daily_time.ends_with("T00:00:00.000Z"), "{daily_time}");
    assert_error(
        &rest.with_key(&blind).post(path, body.clone()).await,
        403,
        "PERMISSION_DENIED",
    );
    // "No change known" is no secret.
    let (status, quiet) = rest
        .with_key(&blind)
        .post(path, json!({ "phoneNumber": QUIET }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(quiet["latestSimChange"], Value::Null);
    // KYC Tenure answers with a boolean for a date the caller chose: every precision gets
    // the same answer, and none is told more than that boolean.
    for key in [&exact, &daily, &blind] {
        for (date, held) in [("2026-05-01", false), ("2026-06-01", true)] {
            let body = json!({ "phoneNumber": RECYCLED, "tenureDate": date });
            let (status, answer) = rest
                .with_key(key)
                .post("/kyc-tenure/v0.2/check-tenure", body)
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer, json!({ "tenureDateCheck": held }), "{date}");
        }
    }
}

async fn kyc_tenure_is_the_ownership_question_refused_where_unknown(backend: Backend) {
    let rest = seeded(backend).await;
    let path = "/kyc-tenure/v0.2/check-tenure";
    let tenure = |number: &str, date: &str| {
        rest.post(path, json!({ "phoneNumber": number, "tenureDate": date }))
    };
    // RECYCLED: disconnected 2026-05-10, reassigned 2026-06-01 (the current subscriber's
    // start; a REASSIGN on the date itself is the subscriber's own).
    for (date, held) in [
        ("2026-03-01", false),
        ("2026-05-10", false),
        ("2026-05-11", false),
        ("2026-06-01", true),
        ("2026-06-02", true),
    ] {
        let (status, answer) = tenure(RECYCLED, date).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        // No source reports contract types, so none is given.
        assert_eq!(answer, json!({ "tenureDateCheck": held }), "{date}");
    }
    // A SIM swap is not a new subscriber.
    assert_eq!(
        tenure(SWAPPED, "2025-06-01").await.1,
        json!({ "tenureDateCheck": true })
    );
    // Unknown: refused, never a guessed false.
    // A valid UK mobile no source covers.
    let uncovered = tenure("+447400123456", "2026-01-01").await;
    assert_error(&uncovered, 404, "IDENTIFIER_NOT_FOUND");
    assert!(
        uncovered.1["message"]
            .as_str()
            .unwrap()
            .contains("cannot tell"),
        "{}",
        uncovered.1
    );
    let before = tenure(QUIET, "2020-01-01").await;
    assert_error(&before, 400, "OUT_OF_RANGE");
    assert!(
        before.1["message"]
            .as_str()
            .unwrap()
            .starts_with("tenureDate is before the data"),
        "{}",
        before.1
    );
    let tomorrow = (Utc::now() + Duration::days(2)).date_naive().to_string();
    let future = tenure(QUIET, &tomorrow).await;
    assert_error(&future, 400, "OUT_OF_RANGE");
    assert_eq!(future.1["message"], "tenureDate is in the future");
    // Invalid input.
    assert_error(&tenure(QUIET, "01/03/2026").await, 400, "INVALID_ARGUMENT");
    assert_error(
        &tenure("819011112222", "2026-01-01").await,
        400,
        "INVALID_ARGUMENT",
    );
    for body in [
        json!({ "phoneNumber": QUIET }),
        json!({ "phoneNumber": QUIET, "tenureDate": null }),
        json!({ "phoneNumber": QUIET, "tenureDate": "2026-01-01", "contractType": "PAYM" }),
        json!("not an object"),
    ] {
        assert_error(&rest.post(path, body).await, 400, "INVALID_ARGUMENT");
    }
    assert_error(
        &rest.post(path, json!({ "tenureDate": "2026-01-01" })).await,
        422,
        "MISSING_IDENTIFIER",
    );
    assert_error(
        &tenure(FIXED, "2026-01-01").await,
        422,
        "SERVICE_NOT_APPLICABLE",
    );
}

async fn an_unknown_is_refused_naming_the_gap_never_answered_false(backend: Backend) {
    let rest = Rest::start(backend, dev_config()).await;
    let admin = || async { rest.server.admin().await };
    // docomo's feed: docomo's subscribers only.
    admin()
        .await
        .upsert_source(pb::Source {
            name: "docomo-feed".into(),
            tracking_since: Some(numguard::api::convert::timestamp(at(
                "2025-01-01T00:00:00Z",
            ))),
            scopes: vec![pb::SourceScope {
                prefix: "81".into(),
                carriers: vec!["docomo".into()],
                kinds: vec![],
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    heartbeat(&rest.server, "docomo-feed").await;
    let docomo = "+817010012345";
    let softbank = "+817011012345";
    let (status, body) = rest
        .post(
            "/sim-swap/v2/check",
            json!({ "phoneNumber": docomo, "maxAge": 24 }),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body),
        (200, &json!({ "swapped": false }))
    );
    for (path, body) in [
        (
            "/sim-swap/v2/check",
            json!({ "phoneNumber": softbank, "maxAge": 24 }),
        ),
        (
            "/sim-swap/v2/retrieve-date",
            json!({ "phoneNumber": softbank }),
        ),
        ("/device-swap/v1/check", json!({ "phoneNumber": softbank })),
        (
            "/number-recycling/v0.2/check",
            json!({ "phoneNumber": softbank, "specifiedDate": "2026-03-01" }),
        ),
    ] {
        let got = rest.post(path, body).await;
        assert_error(&got, 404, "IDENTIFIER_NOT_FOUND");
        let message = got.1["message"].as_str().unwrap();
        assert!(
            message.contains("for subscribers of SoftBank (jp-softbank)"),
            "{path}: {message}"
        );
    }
}
