//! `numguard upstreams add|list|remove`: edits the providers file that `serve` reads at
//! start and on SIGHUP.

use clap::builder::BoolishValueParser;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::settings::DEFAULT_UPSTREAMS_FILE;
use crate::upstream::config::{Auth, DEFAULT_MAX_CONCURRENCY, Provider, ProvidersFile};

#[derive(Debug, Args)]
pub struct UpstreamsArgs {
    /// The providers file (TOML, written readable by its owner only).
    #[arg(long, env = "NUMGUARD_UPSTREAMS_FILE", default_value = DEFAULT_UPSTREAMS_FILE, global = true)]
    file: PathBuf,
    #[command(subcommand)]
    command: UpstreamsCommand,
}

#[derive(Debug, Subcommand)]
enum UpstreamsCommand {
    /// Add (or replace) a provider: the operator API that answers for some carriers.
    Add {
        name: String,
        /// Carriers it serves: ids (e.g. jp-kddi) or any spelling the server's carrier
        /// registry knows (`numguard carriers list`); comma-separated or repeated. The
        /// server resolves them at start and refuses a name it cannot resolve.
        #[arg(long = "carrier", value_delimiter = ',', required = true)]
        carriers: Vec<String>,
        /// API root: numguard calls {base-url}/sim-swap/v2/check and
        /// {base-url}/number-recycling/v0.2/check. https (http only to loopback).
        #[arg(long)]
        base_url: String,
        /// A static bearer token.
        #[arg(long, conflicts_with_all = ["token_url", "client_id", "client_secret"], required_unless_present = "token_url")]
        token: Option<String>,
        /// OAuth2 client-credentials token endpoint.
        #[arg(long, requires_all = ["client_id", "client_secret"])]
        token_url: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long, env = "NUMGUARD_UPSTREAM_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// OAuth2 scope to ask for.
        #[arg(long)]
        scope: Option<String>,
        /// Calls in flight to this provider at most.
        #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENCY)]
        max_concurrency: usize,
    },
    /// List the providers (secrets are not shown).
    List {
        /// Print JSON.
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
    },
    /// Remove a provider.
    Remove { name: String },
}

pub async fn run(args: UpstreamsArgs) -> anyhow::Result<ExitCode> {
    let mut file = ProvidersFile::load(&args.file)?;
    match args.command {
        UpstreamsCommand::Add {
            name,
            carriers,
            base_url,
            token,
            token_url,
            client_id,
            client_secret,
            scope,
            max_concurrency,
        } => {
            let auth = match (token, token_url, client_id, client_secret) {
                (Some(token), None, None, None) => Auth::Bearer { token },
                (None, Some(token_url), Some(client_id), Some(client_secret)) => Auth::Oauth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                },
                _ => anyhow::bail!(
                    "give --token, or --token-url with --client-id and --client-secret"
                ),
            };
            file.upsert(Provider {
                name: name.clone(),
                carriers,
                base_url,
                auth,
                max_concurrency,
            })?;
            file.save(&args.file)?;
            println!(
                "provider {name:?} saved in {}; send the server SIGHUP (or restart it) to use it",
                args.file.display()
            );
        }
        UpstreamsCommand::List { json } => {
            for p in &file.providers {
                let auth = match &p.auth {
                    Auth::Bearer { .. } => "bearer token".to_string(),
                    Auth::Oauth2 { token_url, .. } => format!("oauth2 via {token_url}"),
                };
                if json {
                    let line = json!({
                        "name": p.name,
                        "carriers": p.carriers,
                        "base_url": p.base_url,
                        "auth": auth,
                        "max_concurrency": p.max_concurrency,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}\t{}\t{}\t{auth}\tmax {} in flight",
                        p.name,
                        p.carriers.join(","),
                        p.base_url,
                        p.max_concurrency
                    );
                }
            }
        }
        UpstreamsCommand::Remove { name } => {
            if !file.remove(&name) {
                eprintln!("no provider {name:?} in {}", args.file.display());
                return Ok(ExitCode::FAILURE);
            }
            file.save(&args.file)?;
            println!("provider {name:?} removed; send the server SIGHUP (or restart it) to apply");
        }
    }
    Ok(ExitCode::SUCCESS)
}
