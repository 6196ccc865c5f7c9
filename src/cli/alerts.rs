//! `numguard alerts tail`: prints a tenant's alerts as they come, and never loses one. It
//! reconnects by itself after the stream breaks (a server restart, a network fault),
//! resuming after the last cursor it printed, and can keep that cursor in a file so that
//! a restart of the tail itself resumes there too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde_json::json;
use tonic::Code;

use super::check::{label, time, to_json};
use super::client::{ServerArgs, status_message};
use crate::api::START_CURSOR_HEADER;
use crate::api::convert::kind_to_pb;
use crate::api::pb;
use crate::domain::event::EventKind;

/// First wait before reconnecting; it doubles on each failed attempt up to the limit.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Print alerts as they come, one per line; reconnects by itself when the stream
    /// breaks. Without --from-start, --resume-after or a cursor file it starts with the
    /// alerts from now on.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
struct TailArgs {
    /// Replay every alert from the first, then continue live.
    #[arg(long, env = "NUMGUARD_FROM_START", value_parser = BoolishValueParser::new(), conflicts_with = "resume_after")]
    from_start: bool,
    /// Start after this cursor (the last one you saw).
    #[arg(long, env = "NUMGUARD_RESUME_AFTER")]
    resume_after: Option<u64>,
    /// Keep the cursor of the last printed alert in this file, and start after it when the
    /// file exists (it then wins over --from-start and --resume-after). Written after each
    /// alert is printed, so a restart repeats at most the last alert and loses none.
    #[arg(long, env = "NUMGUARD_CURSOR_FILE")]
    cursor_file: Option<PathBuf>,
    /// Only these kinds, comma-separated (e.g. PORT,REASSIGN).
    #[arg(long, env = "NUMGUARD_KINDS", value_delimiter = ',')]
    kinds: Vec<EventKind>,
    /// One JSON object per line, with the full check of each alert.
    #[arg(long, env = "NUMGUARD_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn alerts(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let AlertsCommand::Tail(args) = args.command;
    let saved = match &args.cursor_file {
        Some(path) => read_cursor(path)?,
        None => None,
    };
    if let (Some(cursor), Some(path)) = (saved, &args.cursor_file) {
        eprintln!("resuming after cursor {cursor} from {}", path.display());
    }
    // The cursor to resume after; None until a stream has told where it starts.
    let mut last = saved.or(args.resume_after).or(args.from_start.then_some(0));
    let kinds: Vec<i32> = args.kinds.iter().map(|k| kind_to_pb(*k).into()).collect();
    let mut connected_once = false;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let request = pb::WatchAlertsRequest {
            resume_after: last.unwrap_or(0),
            kinds: kinds.clone(),
            start: match last {
                Some(_) => pb::AlertsStart::AfterCursor,
                None => pb::AlertsStart::Now,
            }
            .into(),
        };
        let broke = match open(&args.server, request).await {
            Ok((start, mut stream)) => {
                connected_once = true;
                backoff = FIRST_BACKOFF;
                last = Some(start);
                loop {
                    match stream.message().await {
                        Ok(Some(alert)) => {
                            let cursor = alert.cursor;
                            print_alert(alert, args.json)?;
                            last = Some(cursor);
                            if let Some(path) = &args.cursor_file {
                                write_cursor(path, cursor)?;
                            }
                        }
                        Ok(None) => break "the server ended the stream".to_string(),
                        Err(status) if retryable(status.code()) => {
                            break status_message(status).to_string();
                        }
                        Err(status) => return Err(status_message(status)),
                    }
                }
            }
            // Until a first stream opens, a fault is the caller's to see at once (a wrong
            // address should not hang a script).
            Err(Opening::Refused(e)) => return Err(e),
            Err(Opening::Failed(e)) if !connected_once => return Err(e),
            Err(Opening::Failed(e)) => format!("{e:#}"),
        };
        eprintln!(
            "alert stream broke ({broke}); reconnecting in {:.2}s after cursor {}",
            backoff.as_secs_f64(),
            last.unwrap_or(0)
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a stream could not be opened: worth retrying, or not.
enum Opening {
    Failed(anyhow::Error),
    Refused(anyhow::Error),
}

async fn open(
    server: &ServerArgs,
    request: pb::WatchAlertsRequest,
) -> Result<(u64, tonic::Streaming<pb::Alert>), Opening> {
    let mut client = server.alerts().await.map_err(Opening::Failed)?;
    let response = client.watch_alerts(request).await.map_err(|status| {
        if retryable(status.code()) {
            Opening::Failed(status_message(status))
        } else {
            Opening::Refused(status_message(status))
        }
    })?;
    let start = response
        .metadata()
        .get(START_CURSOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Opening::Refused(anyhow::anyhow!(
                "the server did not say where the alert stream starts (header \
                 {START_CURSOR_HEADER}); is it an older numguard?"
            ))
        })?;
    Ok((start, response.into_inner()))
}

/// Faults of the connection or the server's state, as opposed to a refusal of this
/// request (a wrong key, a bad cursor), which no retry changes.
fn retryable(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
    )
}

fn print_alert(alert: pb::Alert, as_json: bool) -> anyhow::Result<()> {
    let event = alert.event.unwrap_or_default();
    let check = alert.check.unwrap_or_default();
    let kind = label(event.kind, pb::EventKind::as_str_name);
    let verdict = label(check.verdict, pb::Verdict::as_str_name);
    let mut out = std::io::stdout().lock();
    if as_json {
        let line = json!({
            "cursor": alert.cursor,
            "customer_refs": alert.customer_refs,
            "phone_number": alert.phone_number,
            "kind": kind,
            "occurred_at": time(event.occurred_at.as_ref()),
            "source": event.source,
            "source_event_id": event.source_event_id,
            "verdict": verdict,
            "check": to_json(&check),
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{}  {}  {kind} at {}  customers {}  verdict {verdict}",
            alert.cursor,
            alert.phone_number,
            time(event.occurred_at.as_ref()).unwrap_or_default(),
            alert.customer_refs.join(","),
        )?;
    }
    // Printed before the cursor file moves past it: a crash repeats, never skips.
    out.flush()?;
    Ok(())
}

fn read_cursor(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).with_context(|| {
            format!(
                "{} does not hold a cursor (one whole number)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the file whole (write, then rename), so a crash leaves the old cursor or the
/// new one, never a torn line.
fn write_cursor(path: &Path, cursor: u64) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{cursor}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the cursor to {}", path.display()))
}
