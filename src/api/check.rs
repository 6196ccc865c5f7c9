//! `numguard.v1.NumberCheck`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, stream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::admitted;
use super::convert::{check_response, optional_datetime};
use super::pb;
use crate::domain::Field;
use crate::domain::FieldError;
use crate::engine::audit_memo::AuditMemo;
use crate::engine::auth::Principal;
use crate::engine::{CheckRequest, Engine};

/// Rows answered per store read. Big enough that per-chunk costs vanish, small enough
/// that a slow client holds little memory.
pub const AUDIT_CHUNK_ROWS: usize = 1024;
/// Chunks being answered at once, each on a task of its own so that they use every core:
/// the next chunks are read, parsed and answered while the one before waits for the store
/// or for the client.
const AUDIT_CHUNKS_AHEAD: usize = 4;

type AuditStream = Pin<Box<dyn Stream<Item = Result<pb::AuditResult, Status>> + Send>>;

pub struct NumberCheckApi {
    engine: Arc<Engine>,
}

impl NumberCheckApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        NumberCheckApi { engine }
    }
}

#[tonic::async_trait]
impl pb::number_check_server::NumberCheck for NumberCheckApi {
    async fn check_number(
        &self,
        request: Request<pb::CheckNumberRequest>,
    ) -> Result<Response<pb::CheckNumberResponse>, Status> {
        self.check(request).await
    }

    type AuditNumbersStream = AuditStream;

    /// Rows are taken in chunks of what has arrived (up to [`AUDIT_CHUNK_ROWS`]); results
    /// go out through a small bounded channel, so a client that stops reading stops the
    /// server reading its rows, and memory stays bounded whatever the list's length.
    async fn audit_numbers(
        &self,
        request: Request<Streaming<pb::AuditRow>>,
    ) -> Result<Response<Self::AuditNumbersStream>, Status> {
        let (caller, rows) = admitted(request)?;
        let engine = self.engine.clone();
        let (results, outgoing) = mpsc::channel(AUDIT_CHUNKS_AHEAD);
        let chunks = rows.ready_chunks(AUDIT_CHUNK_ROWS);
        tokio::spawn(async move {
            let caller = Arc::new(caller);
            let memo = Arc::new(Mutex::new(AuditMemo::default()));
            let mut first_index = 0u64;
            let mut answered = chunks
                .map(|chunk| {
                    let first = first_index;
                    first_index += chunk.len() as u64;
                    let (engine, caller, memo) = (engine.clone(), caller.clone(), memo.clone());
                    tokio::spawn(
                        async move { audit_chunk(&engine, &caller, &memo, first, chunk).await },
                    )
                })
                .buffered(AUDIT_CHUNKS_AHEAD);
            while let Some(chunk) = answered.next().await {
                let chunk =
                    chunk.unwrap_or_else(|_| vec![Err(Status::internal("an audit chunk failed"))]);
                let failed = chunk.last().is_some_and(Result::is_err);
                if results.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        let stream = ReceiverStream::new(outgoing).flat_map(stream::iter);
        Ok(Response::new(Box::pin(stream)))
    }
}

impl NumberCheckApi {
    async fn check(
        &self,
        request: Request<pb::CheckNumberRequest>,
    ) -> Result<Response<pb::CheckNumberResponse>, Status> {
        let (caller, req) = admitted(request)?;
        let (number, decision) = self
            .engine
            .checks
            .check(
                &caller.tenant,
                &CheckRequest {
                    phone_number: &req.phone_number,
                    region: &req.region,
                    max_age_hours: req.max_age_hours,
                    owner_since: optional_datetime(Field::OwnerSince, req.owner_since.as_ref())?,
                    owner_since_date: &req.owner_since_date,
                },
            )
            .await?;
        Ok(Response::new(check_response(
            &number,
            decision,
            caller.precision,
        )))
    }
}

/// Answers one chunk of rows, the first of which has index `first`: one result per row,
/// or an error that ends the stream as the last item. A transport error (a message that
/// is malformed or too large) comes after the results of the rows before it.
async fn audit_chunk(
    engine: &Engine,
    caller: &Principal,
    memo: &Mutex<AuditMemo>,
    first: u64,
    chunk: Vec<Result<pb::AuditRow, Status>>,
) -> Vec<Result<pb::AuditResult, Status>> {
    let mut rows = Vec::with_capacity(chunk.len());
    let mut failure = None;
    for row in chunk {
        match row {
            Ok(row) => rows.push(row),
            Err(status) => {
                failure = Some(status);
                break;
            }
        }
    }
    match answer_rows(engine, caller, memo, first, rows).await {
        Ok(results) => results
            .into_iter()
            .map(Ok)
            .chain(failure.map(Err))
            .collect(),
        Err(status) => vec![Err(status)],
    }
}

async fn answer_rows(
    engine: &Engine,
    caller: &Principal,
    memo: &Mutex<AuditMemo>,
    first: u64,
    rows: Vec<pb::AuditRow>,
) -> Result<Vec<pb::AuditResult>, Status> {
    let requests: Vec<Result<CheckRequest<'_>, FieldError>> =
        rows.iter().map(check_request).collect();
    let valid: Vec<CheckRequest<'_>> = requests.iter().flatten().copied().collect();
    let mut answers = engine
        .checks
        .check_many(&caller.tenant, &valid, memo)
        .await?
        .into_iter();
    let outcomes: Vec<Result<pb::audit_result::Outcome, Status>> = requests
        .iter()
        .map(|request| {
            let answer = match request {
                Err(e) => Err(e.clone()),
                Ok(_) => answers
                    .next()
                    .ok_or_else(|| Status::internal("an audit chunk lost an answer"))?,
            };
            Ok(match answer {
                Ok((number, decision)) => pb::audit_result::Outcome::Check(check_response(
                    &number,
                    decision,
                    caller.precision,
                )),
                Err(e) => pb::audit_result::Outcome::Error(pb::RowError {
                    field: e.field.to_string(),
                    message: e.to_string(),
                }),
            })
        })
        .collect();
    drop(requests);
    let mut results = Vec::with_capacity(rows.len());
    for ((offset, row), outcome) in rows.into_iter().enumerate().zip(outcomes) {
        results.push(pb::AuditResult {
            customer_ref: row.customer_ref,
            index: first + offset as u64,
            outcome: Some(outcome?),
        });
    }
    Ok(results)
}

fn check_request(row: &pb::AuditRow) -> Result<CheckRequest<'_>, FieldError> {
    Ok(CheckRequest {
        phone_number: &row.phone_number,
        region: &row.region,
        max_age_hours: row.max_age_hours,
        owner_since: optional_datetime(Field::OwnerSince, row.owner_since.as_ref())?,
        owner_since_date: &row.owner_since_date,
    })
}
