//! `numguard carriers list|show|add|alias`.

use clap::builder::BoolishValueParser;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::client::{ServerArgs, status_message};
use crate::api::pb;

#[derive(Debug, Args)]
pub struct CarriersArgs {
    #[command(subcommand)]
    command: CarriersCommand,
}

#[derive(Debug, Subcommand)]
enum CarriersCommand {
    /// List the carriers.
    List {
        /// Only carriers the server registered from unknown names, for review.
        #[arg(long)]
        unreviewed: bool,
        /// Only carriers of this country calling code (e.g. 81).
        #[arg(long, env = "NUMGUARD_COUNTRY_CODE")]
        country_code: Option<u32>,
        /// Print JSON.
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one carrier.
    Show {
        id: String,
        /// Print JSON.
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register (or replace) a carrier.
    Add {
        /// Stable id: lower-case letters, digits and '-', e.g. jp-docomo.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Country calling code, e.g. 81.
        #[arg(long)]
        country_code: u32,
        /// Mobile network codes, MCC then MNC (e.g. 44010); comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        mcc_mnc: Vec<String>,
        /// Other spellings (legal names, brands, a feed's spelling); repeated.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add spellings to a carrier (and mark it reviewed).
    Alias {
        id: String,
        /// The spellings to add.
        #[arg(required = true)]
        aliases: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: CarriersArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CarriersCommand::List {
            unreviewed,
            country_code,
            json,
            server,
        } => {
            let carriers = server
                .admin()
                .await?
                .list_carriers(pb::ListCarriersRequest {
                    unreviewed_only: unreviewed,
                    country_code: country_code.unwrap_or(0),
                })
                .await
                .map_err(status_message)?
                .into_inner()
                .carriers;
            if json {
                let list: Vec<_> = carriers.iter().map(as_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if carriers.is_empty() {
                println!("no carriers");
            } else {
                for c in &carriers {
                    println!("{}", describe(c));
                }
            }
        }
        CarriersCommand::Show { id, json, server } => {
            let carrier = server
                .admin()
                .await?
                .get_carrier(pb::GetCarrierRequest { id })
                .await
                .map_err(status_message)?
                .into_inner();
            print(&carrier, json)?;
        }
        CarriersCommand::Add {
            id,
            name,
            country_code,
            mcc_mnc,
            aliases,
            server,
        } => {
            let carrier = server
                .admin()
                .await?
                .upsert_carrier(pb::Carrier {
                    id,
                    name,
                    country_code,
                    mcc_mnc,
                    aliases,
                    reviewed: true,
                })
                .await
                .map_err(status_message)?
                .into_inner();
            println!("carrier saved: {}", describe(&carrier));
        }
        CarriersCommand::Alias {
            id,
            aliases,
            server,
        } => {
            let carrier = server
                .admin()
                .await?
                .add_carrier_aliases(pb::AddCarrierAliasesRequest { id, aliases })
                .await
                .map_err(status_message)?
                .into_inner();
            println!("carrier saved: {}", describe(&carrier));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(c: &pb::Carrier, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&as_json(c))?);
    } else {
        println!("{}", describe(c));
    }
    Ok(())
}

fn describe(c: &pb::Carrier) -> String {
    let mut text = format!("{}: {} (+{})", c.id, c.name, c.country_code);
    if !c.mcc_mnc.is_empty() {
        text.push_str(&format!(", MCC-MNC {}", c.mcc_mnc.join(",")));
    }
    if !c.aliases.is_empty() {
        text.push_str(&format!(", also {}", c.aliases.join(" | ")));
    }
    if !c.reviewed {
        text.push_str(" [unreviewed: registered from an unknown name]");
    }
    text
}

fn as_json(c: &pb::Carrier) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.name,
        "country_code": c.country_code,
        "mcc_mnc": c.mcc_mnc,
        "aliases": c.aliases,
        "reviewed": c.reviewed,
    })
}
