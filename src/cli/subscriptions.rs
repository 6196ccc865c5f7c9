//! `numguard subscriptions create|list|delete`: this tenant's webhook subscriptions on a
//! running server, with how each one's deliveries stand.

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::check::time;
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
            let listed = server
                .alerts()
                .await?
                .list_subscriptions(pb::ListSubscriptionsRequest {})
                .await
                .map_err(status_message)?
                .into_inner()
                .subscriptions;
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
    })
}

/// One line: id, sink, state, and the deliveries; the last error while one is pending.
fn describe(s: &pb::Subscription) -> String {
    let d = s.delivery.clone().unwrap_or_default();
    let state = if s.active {
        "active".to_string()
    } else {
        format!("ended ({})", s.ended_reason)
    };
    let mut line = format!(
        "{}  {}  {state}  delivered {}, pending {}, failed attempts {}",
        s.id, s.sink, d.delivered, d.pending, d.failed_attempts
    );
    if let Some(at) = time(d.last_success.as_ref()) {
        line.push_str(&format!(", last success {at}"));
    }
    if !d.last_error.is_empty() {
        line.push_str(&format!(", last error: {}", d.last_error));
    }
    line
}
