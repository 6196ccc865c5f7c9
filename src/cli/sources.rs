//! `numguard sources add|update|heartbeat|list`.

use clap::builder::BoolishValueParser;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::check::time;
use super::client::{ServerArgs, status_message};
use crate::api::convert::{kind_from_pb, kind_to_pb, timestamp};
use crate::api::pb;
use crate::domain::event::EventKind;

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(subcommand)]
    command: SourcesCommand,
}

/// What a source sees and how fresh it must be, as `add` and `update` take it.
#[derive(Debug, Args)]
struct Definition {
    /// What it sees: PREFIX[:CARRIERS[:KINDS]], CARRIERS and KINDS comma-separated, e.g.
    /// 81:jp-docomo:SIM_SWAP,DISCONNECT,REASSIGN,DEVICE_SWAP (a carrier's own subscribers)
    /// or 81::PORT (a porting database). No carriers means any carrier; no kinds, all
    /// five. Repeat for several scopes.
    #[arg(long = "scope", env = "NUMGUARD_SCOPES", value_delimiter = ';')]
    scopes: Vec<String>,
    /// Legacy form: prefixes seen for every carrier and kind, comma-separated (e.g. 81).
    /// Do not use it for one carrier's feed: it would claim to see other carriers'
    /// subscribers.
    #[arg(long, env = "NUMGUARD_COVERS", value_delimiter = ',')]
    covers: Vec<String>,
    /// A live feed's longest allowed silence (e.g. 90s, 15m, 1h, 2d): heard from (by an
    /// ingest or a heartbeat) within it, its data counts as complete up to now. Default
    /// 1h.
    #[arg(long, env = "NUMGUARD_MAX_LAG", conflicts_with = "files")]
    max_lag: Option<String>,
    /// A source fed by files: complete only up to the cut-off each import declares
    /// (`import events --complete-until`).
    #[arg(long, env = "NUMGUARD_FILES", value_parser = BoolishValueParser::new())]
    files: bool,
}

#[derive(Debug, Subcommand)]
enum SourcesCommand {
    /// Register (or replace) an event source.
    Add {
        /// Source name: letters, digits, '-', '_', '.'.
        name: String,
        /// From when the source's data is complete: RFC 3339 or YYYY-MM-DD (UTC).
        #[arg(long, env = "NUMGUARD_TRACKING_SINCE")]
        tracking_since: String,
        #[command(flatten)]
        definition: Definition,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a registered source: what is given replaces what it had.
    Update {
        name: String,
        /// From when the source's data is complete: RFC 3339 or YYYY-MM-DD (UTC).
        #[arg(long, env = "NUMGUARD_TRACKING_SINCE")]
        tracking_since: Option<String>,
        #[command(flatten)]
        definition: Definition,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Tell the server a source's data is complete up to now (a live feed's heartbeat),
    /// or up to --complete-until (a file's cut-off).
    Heartbeat {
        name: String,
        /// RFC 3339 or YYYY-MM-DD (UTC); now if not given.
        #[arg(long, env = "NUMGUARD_COMPLETE_UNTIL")]
        complete_until: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the registered sources, with what each sees and how fresh it is.
    List {
        /// Print JSON.
        #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: SourcesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SourcesCommand::Add {
            name,
            tracking_since,
            definition,
            server,
        } => {
            if definition.scopes.is_empty() && definition.covers.is_empty() {
                anyhow::bail!("give what the source sees: --scope (or the legacy --covers)");
            }
            let mut source = pb::Source {
                name,
                tracking_since: Some(timestamp(parse_time(&tracking_since)?)),
                ..pb::Source::default()
            };
            definition.apply(&mut source)?;
            save(&server, source).await?;
        }
        SourcesCommand::Update {
            name,
            tracking_since,
            definition,
            server,
        } => {
            let mut source = list(&server)
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| anyhow::anyhow!("no source is named {name:?}"))?;
            if let Some(since) = tracking_since {
                source.tracking_since = Some(timestamp(parse_time(&since)?));
            }
            definition.apply(&mut source)?;
            save(&server, source).await?;
        }
        SourcesCommand::Heartbeat {
            name,
            complete_until,
            server,
        } => {
            let until = complete_until.as_deref().map(parse_time).transpose()?;
            let source = heartbeat(&server, name, until).await?;
            println!("{}", describe(&source));
        }
        SourcesCommand::List { json, server } => {
            let sources = list(&server).await?;
            if json {
                let list: Vec<_> = sources.iter().map(as_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if sources.is_empty() {
                println!("no sources registered");
            } else {
                for s in &sources {
                    println!("{}", describe(s));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Definition {
    /// Puts what was given into `source`: scopes replace all of its scopes, a lag its lag.
    fn apply(&self, source: &mut pb::Source) -> anyhow::Result<()> {
        if !self.scopes.is_empty() || !self.covers.is_empty() {
            source.scopes = self
                .scopes
                .iter()
                .map(|s| parse_scope(s))
                .collect::<anyhow::Result<_>>()?;
            source.covers = self.covers.clone();
        }
        if self.files {
            source.max_lag = Some(prost_types::Duration::default());
        } else if let Some(lag) = &self.max_lag {
            source.max_lag = Some(parse_duration(lag)?);
        }
        Ok(())
    }
}

async fn save(server: &ServerArgs, source: pb::Source) -> anyhow::Result<()> {
    let source = server
        .admin()
        .await?
        .upsert_source(source)
        .await
        .map_err(status_message)?
        .into_inner();
    println!("source saved: {}", describe(&source));
    Ok(())
}

async fn list(server: &ServerArgs) -> anyhow::Result<Vec<pb::Source>> {
    Ok(server
        .admin()
        .await?
        .list_sources(pb::ListSourcesRequest {})
        .await
        .map_err(status_message)?
        .into_inner()
        .sources)
}

/// Declares `name` complete up to `until` (now when `None`).
pub async fn heartbeat(
    server: &ServerArgs,
    name: String,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<pb::Source> {
    Ok(server
        .admin()
        .await?
        .heartbeat(pb::HeartbeatRequest {
            source: name,
            complete_until: until.map(timestamp),
        })
        .await
        .map_err(status_message)?
        .into_inner())
}

/// `PREFIX[:CARRIERS[:KINDS]]`.
fn parse_scope(text: &str) -> anyhow::Result<pb::SourceScope> {
    let mut parts = text.splitn(3, ':');
    let prefix = parts.next().unwrap_or_default().trim().to_string();
    let list = |part: Option<&str>| -> Vec<String> {
        part.unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let carriers = list(parts.next());
    let kinds = list(parts.next())
        .iter()
        .map(|k| {
            k.parse::<EventKind>()
                .map(|k| i32::from(kind_to_pb(k)))
                .map_err(|e| anyhow::anyhow!("--scope {text:?}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(pb::SourceScope {
        prefix,
        carriers,
        kinds,
    })
}

/// `90s`, `15m`, `1h`, `2d`, or a bare number of seconds.
fn parse_duration(text: &str) -> anyhow::Result<prost_types::Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let seconds_per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => anyhow::bail!("{text:?} is not a duration such as 90s, 15m, 1h or 2d"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration such as 90s, 15m, 1h or 2d"))?;
    Ok(prost_types::Duration {
        seconds: n.saturating_mul(seconds_per),
        nanos: 0,
    })
}

fn kinds_text(kinds: &[i32]) -> String {
    if kinds.is_empty() {
        return "every kind".to_string();
    }
    let names: Vec<&str> = kinds
        .iter()
        .filter_map(|&k| kind_from_pb(k))
        .map(EventKind::as_str)
        .collect();
    names.join(",")
}

fn scope_text(s: &pb::SourceScope) -> String {
    let carriers = if s.carriers.is_empty() {
        "any carrier".to_string()
    } else {
        s.carriers.join(",")
    };
    format!("{} ({carriers}; {})", s.prefix, kinds_text(&s.kinds))
}

fn lag_seconds(s: &pb::Source) -> i64 {
    s.max_lag.as_ref().map_or(0, |d| d.seconds)
}

fn freshness_text(s: &pb::Source) -> String {
    let until = time(s.complete_until.as_ref());
    match (lag_seconds(s), s.fresh, until) {
        (0, _, Some(until)) => format!("fed by files, complete until {until}"),
        (0, _, None) => "fed by files, no cut-off declared yet (sees nothing)".to_string(),
        (lag, true, Some(until)) => {
            format!("live, fresh (max lag {lag}s; last heard {until})")
        }
        (lag, _, Some(until)) => {
            format!("live, STALE (max lag {lag}s): complete only until {until}")
        }
        (lag, _, None) => {
            format!("live (max lag {lag}s), never heard from (sees nothing yet)")
        }
    }
}

/// One line on a source: what it sees and how fresh it is.
pub fn describe(s: &pb::Source) -> String {
    let scopes: Vec<String> = s.scopes.iter().map(scope_text).collect();
    format!(
        "{}: tracking since {}; sees {}; {}",
        s.name,
        time(s.tracking_since.as_ref()).unwrap_or_default(),
        scopes.join(", "),
        freshness_text(s)
    )
}

fn as_json(s: &pb::Source) -> serde_json::Value {
    let scopes: Vec<_> = s
        .scopes
        .iter()
        .map(|scope| {
            json!({
                "prefix": scope.prefix,
                "carriers": scope.carriers,
                "kinds": scope.kinds.iter().filter_map(|&k| kind_from_pb(k)).map(EventKind::as_str).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": s.name,
        "tracking_since": time(s.tracking_since.as_ref()),
        "scopes": scopes,
        "covers": s.covers,
        "max_lag_seconds": lag_seconds(s),
        "complete_until": time(s.complete_until.as_ref()),
        "fresh": s.fresh,
    })
}

/// RFC 3339, or a date meaning its start in UTC.
pub fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_durations_parse() {
        let s = parse_scope("81:jp-docomo, KDDI株式会社:sim_swap,DISCONNECT").unwrap();
        assert_eq!(s.prefix, "81");
        assert_eq!(s.carriers, ["jp-docomo", "KDDI株式会社"]);
        assert_eq!(s.kinds.len(), 2);
        let porting = parse_scope("81::PORT").unwrap();
        assert!(porting.carriers.is_empty());
        assert_eq!(porting.kinds, [i32::from(pb::EventKind::Port)]);
        assert!(parse_scope("81").unwrap().kinds.is_empty());
        assert!(parse_scope("81::SWAP").is_err());
        assert_eq!(parse_duration("15m").unwrap().seconds, 900);
        assert_eq!(parse_duration("2d").unwrap().seconds, 172_800);
        assert_eq!(parse_duration("90").unwrap().seconds, 90);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
