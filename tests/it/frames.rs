//! How answers are cut into HTTP/2 DATA frames on the wire, read with a bare h2 client: an
//! answer just over 1 KiB arrives in frames under 1 KiB (so the server's h2 batches it with
//! other answers), whole and in order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chrono::{Duration, Utc};
use numguard::api::pb;
use numguard_testkit::*;
use prost::Message;
use tokio::net::TcpStream;

/// The DATA frames of one CheckNumber answer, as received.
async fn answer_frames(server: &TestServer, request: &pb::CheckNumberRequest) -> Vec<Bytes> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let http = http::Request::post(format!(
        "http://{}/numguard.v1.NumberCheck/CheckNumber",
        server.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut send) = client.send_request(http, false).unwrap();
    let mut message = BytesMut::new();
    message.put_u8(0);
    message.put_u32(request.encoded_len() as u32);
    request.encode(&mut message).unwrap();
    send.send_data(message.freeze(), true).unwrap();

    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        frames.push(data);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    frames
}

#[tokio::test]
async fn an_answer_just_over_1_kib_arrives_in_frames_under_1_kib() {
    let server = TestServer::start(Backend::Sqlite).await;
    let now = Utc::now();
    add_source(&server, "feed", now - Duration::days(400), &["81"]).await;
    // Each change of owner since owner_since is a reason of its own in the answer.
    let changes = 16;
    let events = (0..changes)
        .map(|i| {
            event(
                "feed",
                &format!("ev-{i}"),
                "+818012345678",
                pb::EventKind::Disconnect,
                now - Duration::days(20 + i),
            )
        })
        .collect();
    assert_eq!(ingest(&server, events).await.accepted, changes as u64);
    let request = pb::CheckNumberRequest {
        phone_number: "+818012345678".into(),
        owner_since_date: (now - Duration::days(100)).format("%Y-%m-%d").to_string(),
        ..Default::default()
    };

    let frames = answer_frames(&server, &request).await;

    let lens: Vec<usize> = frames.iter().map(Bytes::len).collect();
    let total: usize = lens.iter().sum();
    assert!((1_024..4_000).contains(&total), "answer of {total} bytes");
    assert!(
        lens.len() >= 2 && lens.iter().all(|&l| l < 1_024),
        "{lens:?}"
    );
    let mut whole: Bytes = frames.concat().into();
    assert_eq!(whole.get_u8(), 0, "not compressed");
    assert_eq!(whole.get_u32() as usize, whole.len());
    let answer = pb::CheckNumberResponse::decode(whole).unwrap();
    assert_eq!(answer.verdict(), pb::Verdict::Block);
    assert_eq!(
        reason_codes(&answer),
        vec![pb::ReasonCode::OwnerChanged; changes as usize]
    );
}
