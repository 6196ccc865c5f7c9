//! `numguard serve --demo`: shows a fresh server answering through a real gRPC client.

use std::net::SocketAddr;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::check::render;
use super::client::ServerArgs;
use crate::api::pb;

/// A Japanese mobile number; MIC designated its block 090-123 to KDDI.
const SAMPLE: &str = "+819012345678";

pub async fn tour(addr: SocketAddr, api_key: Option<String>) {
    if let Err(e) = try_tour(addr, api_key).await {
        tracing::warn!(error = %e, "demo tour failed; the server keeps running");
    }
}

async fn try_tour(addr: SocketAddr, api_key: Option<String>) -> anyhow::Result<()> {
    let server = ServerArgs::local(addr, api_key);
    // The engine loads its data before it serves; wait for the health service.
    let mut health = HealthClient::new(server.channel().await?);
    let mut status = None;
    for _ in 0..100 {
        match health.check(HealthCheckRequest::default()).await {
            Ok(r) => {
                status = Some(r.into_inner().status);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let status = status.ok_or_else(|| anyhow::anyhow!("the server did not become healthy"))?;
    let status = tonic_health::pb::health_check_response::ServingStatus::try_from(status)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| status.to_string());
    println!("numguard is up on {addr}: grpc.health.v1.Health/Check -> {status}");

    let range = server
        .admin()
        .await?
        .lookup_range(pb::LookupRangeRequest {
            phone_number: SAMPLE.into(),
            region: String::new(),
        })
        .await?
        .into_inner();
    println!(
        "Admin/LookupRange {SAMPLE} -> prefix {}, original carrier {}",
        range.prefix, range.carrier
    );

    let check = server
        .check()
        .await?
        .check_number(pb::CheckNumberRequest {
            phone_number: SAMPLE.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("NumberCheck/CheckNumber {SAMPLE} ->");
    print!("{}", render(&check));
    println!(
        "\nNo event source is registered yet, so the data cannot say whether the SIM was \
         swapped (NO_DATA).\nAdd a source and events (see README), then: \
         numguard check {SAMPLE}\nThe server keeps running; Ctrl-C stops it."
    );
    Ok(())
}
