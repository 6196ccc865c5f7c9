//! `numguard subscriptions create|list|show|delete|retry`: this tenant's webhook
//! subscriptions on a running server, with how each one's deliveries stand.

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::check::{label, time};
use super::client::{ServerArgs, status_message};
use crate::api::pb;

#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    #[command(subcommand)]
    command: SubscriptionsCommand,
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCommand {
    /// Send this tenant's alerts to a webhook sink (CloudEvents over HTTPS).
    Create {
        /// The sink's URL.
        sink: String,
        /// A bearer token the sink expects.
        #[arg(long, env = "NUMGUARD_SINK_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List this tenant's subscriptions: active or why ended, and their deliveries
    /// (delivered, pending, failed attempts, last error, last success).
    List {
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One subscription in full, by its id.
    Show {
        id: String,
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send a subscription's waiting deliveries now, whatever their backoff (after its
    /// sink was fixed).
    Retry {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// End a subscription by its id.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: SubscriptionsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SubscriptionsCommand::Create {
            sink,
            token,
            json,
            server,
        } => {
            let made = server
                .alerts()
                .await?
                .create_subscription(pb::CreateSubscriptionRequest {
                    sink,
                    sink_token: token.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(status_message)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&made))?);
            } else {
                println!("created subscription {} to {}", made.id, made.sink);
            }
        }
        SubscriptionsCommand::List { json, server } => {
            let listed = list(&server).await?;
            if json {
                let list: Vec<Value> = listed.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if listed.is_empty() {
                println!("no subscriptions");
            } else {
                for s in &listed {
                    println!("{}", describe(s));
                }
            }
        }
        SubscriptionsCommand::Show { id, json, server } => {
            let found = list(&server)
                .await?
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| anyhow::anyhow!("no subscription {id:?}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&found))?);
            } else {
                print!("{}", details(&found));
            }
        }
        SubscriptionsCommand::Retry { id, server } => {
            let retried = server
                .alerts()
                .await?
                .retry_subscription(pb::RetrySubscriptionRequest { id: id.clone() })
                .await
                .map_err(status_message)?
                .into_inner()
                .retried;
            println!("subscription {id}: {retried} waiting deliveries sent now");
        }
        SubscriptionsCommand::Delete { id, server } => {
            server
                .alerts()
                .await?
                .delete_subscription(pb::DeleteSubscriptionRequest { id: id.clone() })
                .await
                .map_err(status_message)?;
            println!("deleted subscription {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(server: &ServerArgs) -> anyhow::Result<Vec<pb::Subscription>> {
    Ok(server
        .alerts()
        .await?
        .list_subscriptions(pb::ListSubscriptionsRequest {})
        .await
        .map_err(status_message)?
        .into_inner()
        .subscriptions)
}

fn to_json(s: &pb::Subscription) -> Value {
    let d = s.delivery.clone().unwrap_or_default();
    json!({
        "id": s.id,
        "sink": s.sink,
        "active": s.active,
        "ended_reason": (!s.ended_reason.is_empty()).then_some(&s.ended_reason),
        "sent": s.sent,
        "format": s.format,
        "delivered": d.delivered,
        "pending": d.pending,
        "failed_attempts": d.failed_attempts,
        "last_success": time(d.last_success.as_ref()),
        "last_error": (!d.last_error.is_empty()).then_some(&d.last_error),
        "next_attempt": time(d.next_attempt.as_ref()),
        "oldest_pending": time(d.oldest_pending.as_ref()),
        "failing_since": time(d.failing_since.as_ref()),
        "failing": d.failing,
        "kinds": s.kinds.iter().map(|k| label(*k, pb::EventKind::as_str_name)).collect::<Vec<_>>(),
        "expire_time": time(s.expire_time.as_ref()),
        "max_events": (s.max_events > 0).then_some(s.max_events),
        "phone_number": (!s.phone_number.is_empty()).then_some(&s.phone_number),
    })
}

/// Every field, one per line, for `show`.
fn details(s: &pb::Subscription) -> String {
    let d = s.delivery.clone().unwrap_or_default();
    let none = || "-".to_string();
    let kinds = if s.kinds.is_empty() {
        "every kind".to_string()
    } else {
        s.kinds
            .iter()
            .map(|k| label(*k, pb::EventKind::as_str_name))
            .collect::<Vec<_>>()
            .join(",")
    };
    let rows = [
        ("id", s.id.clone()),
        ("sink", s.sink.clone()),
        ("state", state(s)),
        ("format", s.format.clone()),
        ("kinds", kinds),
        ("expires", time(s.expire_time.as_ref()).unwrap_or_else(none)),
        ("sent", s.sent.to_string()),
        ("delivered", d.delivered.to_string()),
        ("pending", d.pending.to_string()),
        (
            "oldest pending",
            time(d.oldest_pending.as_ref()).unwrap_or_else(none),
        ),
        ("failed attempts", d.failed_attempts.to_string()),
        (
            "failing since",
            time(d.failing_since.as_ref()).unwrap_or_else(none),
        ),
        (
            "last success",
            time(d.last_success.as_ref()).unwrap_or_else(none),
        ),
        (
            "last error",
            if d.last_error.is_empty() {
                none()
            } else {
                d.last_error.clone()
            },
        ),
        (
            "next attempt",
            time(d.next_attempt.as_ref()).unwrap_or_else(none),
        ),
    ];
    rows.iter()
        .map(|(name, value)| format!("{:<16} {value}\n", format!("{name}:")))
        .collect()
}

/// active, FAILING (with since when), or why it ended.
fn state(s: &pb::Subscription) -> String {
    let d = s.delivery.clone().unwrap_or_default();
    if !s.active {
        format!("ended ({})", s.ended_reason)
    } else if d.failing {
        let since = time(d.failing_since.as_ref()).unwrap_or_default();
        format!("FAILING since {since}")
    } else {
        "active".to_string()
    }
}

/// One line: id, sink, state, and the deliveries; the last error while one is pending.
fn describe(s: &pb::Subscription) -> String {
    let d = s.delivery.clone().unwrap_or_default();
    let mut line = format!(
        "{}  {}  {}  delivered {}, pending {}, failed attempts {}",
        s.id,
        s.sink,
        state(s),
        d.delivered,
        d.pending,
        d.failed_attempts
    );
    if let Some(at) = time(d.oldest_pending.as_ref()) {
        line.push_str(&format!(", oldest pending since {at}"));
    }
    if let Some(at) = time(d.last_success.as_ref()) {
        line.push_str(&format!(", last success {at}"));
    }
    if !d.last_error.is_empty() {
        line.push_str(&format!(", last error: {}", d.last_error));
    }
    line
}
