//! Connections as an attacker holds them: silent or trickling clients are closed after the
//! first-request deadline, idle ones after the idle deadline, the server holds at most its
//! cap, and a peer that keeps failing to authenticate stops costing key look-ups, while
//! other peers are served.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use numguard::connections::ConnectionLimits;
use numguard::engine::EngineConfig;
use numguard::engine::auth::AuthMode;
use numguard::server::TransportConfig;
use numguard_testkit::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_backends!(a_peer_that_keeps_failing_to_authenticate_is_held_back_alone);

fn transport(max_connections: usize, first_request_secs: u64, idle_secs: u64) -> TransportConfig {
    TransportConfig {
        connections: ConnectionLimits {
            max_connections,
            first_request_timeout: Duration::from_secs(first_request_secs),
            idle_timeout: Duration::from_secs(idle_secs),
        },
        ..TransportConfig::default()
    }
}

/// How long until the server closes `stream` (reads end or fail), reading and discarding
/// what it sends; panics past `limit`. While waiting, `trickle` (if any) is sent a byte at
/// a time every 200 ms, as a slow-loris client does.
async fn closed_after(stream: &mut TcpStream, trickle: &[u8], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut pending = trickle.iter();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < limit, "still open after {limit:?}");
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(b) = pending.next()
                    && stream.write_all(&[*b]).await.is_err()
                {
                    return started.elapsed();
                }
            }
        }
    }
}

/// Waits until `addr` answers an HTTP/1.1 request on a new connection; returns the
/// connection, kept alive, with the answer read.
async fn answered_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /sim-swap/v2/openapi.yaml HTTP/1.1\r\nHost: numguard\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    // Until the whole body (its length from Content-Length) has arrived.
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .expect("a content length")
                .trim()
                .parse()
                .unwrap();
            if body.len() >= length {
                return stream;
            }
        }
    }
}

/// A client that connects and sends nothing (gRPC port), one that trickles half a header
/// (REST port), and one that asks once and then stays idle are each closed near their
/// deadline; a request in flight keeps its connection open past the idle deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_idle_connections_are_closed_and_busy_ones_kept() {
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let server = TestServer::start_rest_in_with(db, dev_config(), transport(64, 1, 2)).await;
    let rest = server.rest_addr.unwrap();
    let limit = Duration::from_secs(20);

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_after(&mut silent, b"", limit).await;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    let mut trickling = TcpStream::connect(rest).await.unwrap();
    trickling
        .write_all(b"POST /sim-swap/v2/check HTTP/1.1\r\nHost: numguard\r\n")
        .await
        .unwrap();
    let trickle = [b'X'; 100];
    let waited = closed_after(&mut trickling, &trickle, limit).await;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    let mut idle = answered_keep_alive(rest).await;
    let waited = closed_after(&mut idle, b"", limit).await;
    assert!(waited >= Duration::from_millis(1_900), "{waited:?}");

    // An audit whose rows come 3 s apart: longer than the idle deadline, but a request is in
    // flight all along.
    let (rows, rows_in) = tokio::sync::mpsc::channel(1);
    let mut check = server.check().await;
    let answers = tokio::spawn(async move {
        let mut results = check
            .audit_numbers(tokio_stream::wrappers::ReceiverStream::new(rows_in))
            .await?
            .into_inner();
        let mut n = 0;
        while results.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, tonic::Status>(n)
    });
    for i in 0..3 {
        rows.send(numguard::api::pb::AuditRow {
            customer_ref: format!("c{i}"),
            phone_number: "+819012345678".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    drop(rows);
    let answered = tokio::time::timeout(limit, answers)
        .await
        .expect("the audit ends")
        .unwrap()
        .expect("the audit's connection stayed open");
    assert_eq!(answered, 3);
}

/// With a cap of 4, a fifth connection is closed at once while four are held; once one of
/// them goes, a gRPC client is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_at_most_its_cap_of_connections() {
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let server = TestServer::start_rest_in_with(db, dev_config(), transport(4, 60, 60)).await;
    // The testkit's readiness probe may still hold a connection for a moment: connections
    // are opened until one is closed at once.
    let mut held = Vec::new();
    let mut opened = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let waited = loop {
        assert!(Instant::now() < deadline, "no connection was refused");
        let addr = match held.len() % 2 {
            0 => server.addr,
            _ => server.rest_addr.unwrap(),
        };
        let mut next = TcpStream::connect(addr).await.unwrap();
        // An admitted gRPC connection is sent the server's HTTP/2 settings, then nothing.
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), next.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => {
                    held.push(next);
                    break;
                }
            }
        }
        if held.len() < opened + 1 {
            break held.len();
        }
        opened += 1;
    };
    assert!(waited <= 4, "{waited} connections were held");
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answered = async {
            let mut health = server.health().await;
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
        };
        if tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            break;
        }
        assert!(Instant::now() < deadline, "not served again under the cap");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A REST client from 127.0.0.1 guessing keys is told 401 until its failures run out, then
/// 429 naming the address's failures (and a gRPC client from there RESOURCE_EXHAUSTED);
/// a client from 127.0.0.2 is still answered, right key or wrong.
async fn a_peer_that_keeps_failing_to_authenticate_is_held_back_alone(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let good = new_key(&db, "acme", "check").await;
    let engine = EngineConfig {
        auth: AuthMode::Keys,
        ..dev_config()
    };
    let server = TestServer::start_rest_in_with(db, engine, TransportConfig::default()).await;
    let rest = server.rest_addr.unwrap();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let check = |client: &reqwest::Client, key: &str| {
        client
            .post(format!("http://{rest}/sim-swap/v2/check"))
            .bearer_auth(key)
            .json(&serde_json::json!({"phoneNumber": "+819012345678"}))
            .send()
    };
    let guesser = from([127, 0, 0, 1]);
    let mut unauthorized = 0;
    let throttled = loop {
        assert!(unauthorized <= 40, "never held back");
        let guess = format!("ng_{:016x}_{}", unauthorized + 1, "0".repeat(64));
        let answer = check(&guesser, &guess).await.unwrap();
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap();
        let path = "/sim-swap/v2/check";
        numguard_testkit::camara::assert_camara_answer("POST", path, status.as_u16(), &body);
        match status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => break body.to_string(),
            other => panic!("{other}: {body}"),
        }
    };
    assert!(unauthorized >= 18, "held back after {unauthorized}");
    assert!(
        throttled.contains("too many failed authentications from this address"),
        "{throttled}"
    );
    let mut grpc = server.check().await;
    let mut request = tonic::Request::new(numguard::api::pb::CheckNumberRequest {
        phone_number: "+819012345678".into(),
        ..Default::default()
    });
    let guess = format!("Bearer ng_{:016x}_{}", 99_999, "0".repeat(64));
    request
        .metadata_mut()
        .insert("authorization", guess.parse().unwrap());
    let e = grpc.check_number(request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{}", e.message());

    let other = from([127, 0, 0, 2]);
    let answer = check(&other, &good).await.unwrap();
    assert!(
        ![StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&answer.status()),
        "{}",
        answer.status()
    );
    let guess = format!("ng_{:016x}_{}", 77, "0".repeat(64));
    let answer = check(&other, &guess).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}
