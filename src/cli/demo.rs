//! `numguard serve --demo`: shows a fresh server answering through a real gRPC client. It
//! seeds a small demo dataset (sources and events named `demo-*`, times relative to now),
//! checks one number of each case, prints what each one answers, and leaves the server
//! running with that data.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::check::{label, time};
use super::client::ServerArgs;
use crate::api::convert::timestamp;
use crate::api::pb;

/// The database `--demo` uses when none was chosen: recreated at each start, so the demo
/// never writes into a real database and its relative times are always fresh.
pub fn fresh_database() -> anyhow::Result<String> {
    let path: PathBuf = std::env::temp_dir().join("numguard-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot reset the demo database")),
        }
    }
    Ok(format!("sqlite://{}", path.display()))
}

/// One case of the demo: a number, what happened to it, and the owner's verification.
struct Case {
    what: &'static str,
    number: &'static str,
}

/// The owner of every demo number was verified this long ago.
const OWNER_VERIFIED_DAYS_AGO: i64 = 365;

const CASES: [Case; 6] = [
    Case {
        what: "fresh SIM swap (2 hours ago)",
        number: "+819087654321",
    },
    Case {
        what: "old SIM swap (30 days ago)",
        number: "+818012345678",
    },
    Case {
        what: "recent port, KDDI -> docomo (3 days ago)",
        number: "+819012345678",
    },
    Case {
        what: "recycled number (disconnected, reassigned)",
        number: "+817010012345",
    },
    Case {
        what: "stale feed (KDDI's, last heard 3 hours ago)",
        number: "+819012349999",
    },
    Case {
        what: "uncovered carrier (no SoftBank feed)",
        number: "+819099998888",
    },
];

pub async fn tour(addr: SocketAddr, api_key: Option<String>, seed: bool) {
    if let Err(e) = try_tour(addr, api_key, seed).await {
        tracing::warn!(error = %e, "demo tour failed; the server keeps running");
    }
}

async fn try_tour(addr: SocketAddr, api_key: Option<String>, seed: bool) -> anyhow::Result<()> {
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

    let sources = server
        .admin()
        .await?
        .list_sources(pb::ListSourcesRequest {})
        .await?
        .into_inner()
        .sources;
    if !seed || !sources.is_empty() {
        println!(
            "The demo dataset goes only into a fresh demo database, never into one you chose \
             (run `serve --dev --demo` without --database-url for that).\n\
             The server keeps running; Ctrl-C stops it."
        );
        return Ok(());
    }
    let now = Utc::now();
    seed_dataset(&server, now).await?;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nDemo dataset (sources and events named demo-*, times relative to now; every owner \
         verified {OWNER_VERIFIED_DAYS_AGO} days ago):\n"
    );
    let _ = writeln!(
        table,
        "{:<44} {:<14} {:<8} {:<12} {:<10} reasons",
        "case", "number", "verdict", "sim swap", "ownership"
    );
    let mut checks = server.check().await?;
    let owner_since = now - chrono::Duration::days(OWNER_VERIFIED_DAYS_AGO);
    for case in &CASES {
        let r = checks
            .check_number(pb::CheckNumberRequest {
                phone_number: case.number.into(),
                owner_since: Some(timestamp(owner_since)),
                ..Default::default()
            })
            .await?
            .into_inner();
        // Each code once: two events (or two questions) may give the same one.
        let mut reasons: Vec<String> = Vec::new();
        for reason in &r.reasons {
            let code = label(reason.code, pb::ReasonCode::as_str_name);
            if !reasons.contains(&code) {
                reasons.push(code);
            }
        }
        let _ = writeln!(
            table,
            "{:<44} {:<14} {:<8} {:<12} {:<10} {}",
            case.what,
            case.number,
            label(r.verdict, pb::Verdict::as_str_name),
            label(r.sim_swap, pb::SimSwapStatus::as_str_name),
            label(r.ownership, pb::OwnershipStatus::as_str_name),
            if reasons.is_empty() {
                "-".to_string()
            } else {
                reasons.join(", ")
            }
        );
    }
    let since = time(Some(&timestamp(owner_since))).unwrap_or_default();
    let _ = write!(
        table,
        "\nSee why: numguard check {} --owner-since {} (reasons, coverage and gaps).\n\
         The server keeps running with this data; Ctrl-C stops it.\n",
        CASES[3].number,
        &since[..10]
    );
    print!("{table}");
    Ok(())
}

/// The demo's sources and events, as a user would add them.
async fn seed_dataset(server: &ServerArgs, now: DateTime<Utc>) -> anyhow::Result<()> {
    let ago = |d: chrono::Duration| Some(timestamp(now - d));
    let tracking_since = ago(chrono::Duration::days(400));
    let scope = |carrier: &str, kinds: &[pb::EventKind]| pb::SourceScope {
        prefix: "81".into(),
        carriers: if carrier.is_empty() {
            vec![]
        } else {
            vec![carrier.into()]
        },
        kinds: kinds.iter().map(|k| i32::from(*k)).collect(),
    };
    let subscriber_kinds = [
        pb::EventKind::SimSwap,
        pb::EventKind::Disconnect,
        pb::EventKind::Reassign,
        pb::EventKind::DeviceSwap,
    ];
    let day = prost_types::Duration {
        seconds: 86_400,
        nanos: 0,
    };
    let mut admin = server.admin().await?;
    for (name, scope, max_lag) in [
        ("demo-mnp", scope("", &[pb::EventKind::Port]), Some(day)),
        (
            "demo-docomo",
            scope("jp-docomo", &subscriber_kinds),
            Some(day),
        ),
        (
            "demo-kddi",
            scope("jp-kddi", &subscriber_kinds),
            Some(prost_types::Duration {
                seconds: 15 * 60,
                nanos: 0,
            }),
        ),
    ] {
        admin
            .upsert_source(pb::Source {
                name: name.into(),
                tracking_since,
                scopes: vec![scope],
                max_lag,
                ..Default::default()
            })
            .await?;
    }
    let event = |source: &str, id: &str, number: &str, kind: pb::EventKind, days: f64| pb::Event {
        source: source.into(),
        source_event_id: id.into(),
        phone_number: number.into(),
        kind: kind.into(),
        occurred_at: ago(chrono::Duration::seconds((days * 86_400.0) as i64)),
        ..Default::default()
    };
    let events = vec![
        event(
            "demo-docomo",
            "demo-fresh-swap",
            CASES[0].number,
            pb::EventKind::SimSwap,
            2.0 / 24.0,
        ),
        event(
            "demo-docomo",
            "demo-old-swap",
            CASES[1].number,
            pb::EventKind::SimSwap,
            30.0,
        ),
        pb::Event {
            from_carrier: "jp-kddi".into(),
            to_carrier: "jp-docomo".into(),
            ..event(
                "demo-mnp",
                "demo-port",
                CASES[2].number,
                pb::EventKind::Port,
                3.0,
            )
        },
        event(
            "demo-docomo",
            "demo-disconnect",
            CASES[3].number,
            pb::EventKind::Disconnect,
            60.0,
        ),
        event(
            "demo-docomo",
            "demo-reassign",
            CASES[3].number,
            pb::EventKind::Reassign,
            45.0,
        ),
    ];
    let summary = server
        .events()
        .await?
        .ingest_events(tokio_stream::iter(events))
        .await?
        .into_inner();
    if summary.rejected > 0 {
        anyhow::bail!("the demo events were refused: {:?}", summary.errors);
    }
    // KDDI's feed was last heard from three hours ago: past its 15 minutes, it is stale.
    admin
        .heartbeat(pb::HeartbeatRequest {
            source: "demo-kddi".into(),
            complete_until: ago(chrono::Duration::hours(3)),
        })
        .await?;
    Ok(())
}
