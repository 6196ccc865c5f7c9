//! `numguard keys ...` and `numguard access-log`: operator commands that work directly on
//! the database, so the first key can be made before any server runs.

use std::process::ExitCode;

use chrono::SecondsFormat;
use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::domain::auth::{Scopes, TenantName, TimePrecision};
use crate::domain::number::{E164, Region};
use crate::engine::access_log::{number_hash, pepper};
use crate::engine::keys::create_key;
use crate::server_key::ServerKey;
use crate::store::{KeyRecord, Store};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL, as for `serve`.
    #[arg(
        long,
        env = "NUMGUARD_DATABASE_URL",
        default_value = "sqlite://numguard.db"
    )]
    database_url: String,
}

impl DatabaseArgs {
    /// Opens an existing database and says which on stderr. A SQLite file is created by
    /// the server, never here: run in the wrong directory, an empty new file would only
    /// answer "no keys".
    async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn Store>> {
        let url = &self.database_url;
        if let Some(file) = sqlite_file(url) {
            anyhow::ensure!(
                file.exists(),
                "no database at {}: `numguard serve` creates it on first start (or `keys \
                 create --init`); run this where the server runs, or name the database with \
                 --database-url",
                file.display()
            );
        }
        self.open_or_create().await
    }

    /// Opens the database, creating and migrating it if needed.
    async fn open_or_create(&self) -> anyhow::Result<std::sync::Arc<dyn Store>> {
        if let Some(file) = sqlite_file(&self.database_url) {
            eprintln!("database: {}", file.display());
        }
        Ok(crate::store::open(&self.database_url).await?)
    }
}

/// The file a `sqlite:` URL names (`None` for other URLs and in-memory databases).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (url.starts_with("sqlite:") && file != std::path::Path::new(":memory:"))
        .then(|| file.to_path_buf())
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; the key itself is printed once, as the last line of stdout.
    Create {
        /// The tenant the key acts for (created if new).
        #[arg(long, env = "NUMGUARD_TENANT")]
        tenant: String,
        /// Comma-separated: check, audit, watch, ingest, admin.
        #[arg(long, env = "NUMGUARD_SCOPES")]
        scopes: String,
        /// Print JSON (the key in field "key").
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        /// Create the database if it does not exist yet, to make the first key before any
        /// server runs (other commands never create it).
        #[arg(long)]
        init: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a key by its id (the hex after `ng_`); servers stop accepting it within 5 s.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Set how precisely a tenant is told when a SIM change or port happened.
    Tenant {
        tenant: String,
        #[arg(long, env = "NUMGUARD_TIME_PRECISION", value_enum)]
        time_precision: TimePrecision,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Create {
            tenant,
            scopes,
            json,
            init,
            db,
        } => {
            let tenant: TenantName = tenant.parse()?;
            let scopes: Scopes = scopes.parse()?;
            if scopes.is_empty() {
                anyhow::bail!("--scopes names no scope; use e.g. check,audit");
            }
            let store = if init {
                db.open_or_create().await?
            } else {
                db.open().await?
            };
            let (key, record) = create_key(store.as_ref(), &tenant, scopes).await?;
            if json {
                println!(
                    "{}",
                    json!({"id": record.id, "tenant": tenant.as_str(), "scopes": scopes.to_string(), "key": key.secret_text})
                );
            } else {
                println!(
                    "created key {} for tenant {tenant} with scopes {scopes}",
                    record.id
                );
                println!("it is shown only now; store it safely:");
                println!("{}", key.secret_text);
            }
        }
        KeysCommand::List { json, db } => {
            let keys = db.open().await?.list_keys().await?;
            if json {
                let list: Vec<_> = keys.iter().map(key_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if keys.is_empty() {
                println!("no keys");
            } else {
                for k in &keys {
                    let state = k.revoked_at.map_or("active".to_string(), |t| {
                        format!("revoked {}", t.to_rfc3339_opts(SecondsFormat::Secs, true))
                    });
                    println!(
                        "{}  tenant {}  scopes {}  {state}",
                        k.id, k.tenant, k.scopes
                    );
                }
            }
        }
        KeysCommand::Revoke { id, db } => {
            if !db.open().await?.revoke_key(&id).await? {
                anyhow::bail!("no active key with id {id:?}");
            }
            println!("revoked key {id}");
        }
        KeysCommand::Tenant {
            tenant,
            time_precision,
            db,
        } => {
            let tenant: TenantName = tenant.parse()?;
            if !db
                .open()
                .await?
                .set_time_precision(&tenant, time_precision)
                .await?
            {
                anyhow::bail!("no tenant {tenant:?}; it is created with its first key");
            }
            println!(
                "tenant {tenant}: times returned with precision {}",
                time_precision.as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_json(k: &KeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "tenant": k.tenant.as_str(),
        "scopes": k.scopes.to_string(),
        "created_at": k.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
    })
}

#[derive(Debug, Args)]
pub struct AccessLogArgs {
    /// The customer's number: E.164, or national format with --region.
    number: String,
    #[arg(long, env = "NUMGUARD_REGION")]
    region: Option<Region>,
    #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    db: DatabaseArgs,
    /// The server's key file, as for `serve`.
    #[arg(long, env = "NUMGUARD_KEY_FILE", default_value = crate::settings::DEFAULT_KEY_FILE)]
    key_file: std::path::PathBuf,
}

/// Who looked up this customer, and when.
pub async fn access_log(args: AccessLogArgs) -> anyhow::Result<ExitCode> {
    let number =
        E164::parse(&args.number, args.region).map_err(|e| anyhow::anyhow!("the number {e}"))?;
    let store = args.db.open().await?;
    let key = ServerKey::open(&args.key_file, store.as_ref()).await?;
    let hash = number_hash(&pepper(store.as_ref(), &key).await?, &number);
    let records = store.access_log(&hash).await?;
    let when = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    if args.json {
        let list: Vec<_> = records
            .iter()
            .map(|r| json!({"tenant": r.tenant.as_str(), "first_at": when(r.first_at), "last_at": when(r.last_at), "checks": r.checks}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if records.is_empty() {
        println!("no tenant has checked {}", number.masked());
    } else {
        for r in &records {
            println!(
                "{}  {} .. {}  {} check(s)",
                r.tenant,
                when(r.first_at),
                when(r.last_at),
                r.checks
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
