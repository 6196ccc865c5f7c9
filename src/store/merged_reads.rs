//! History reads on PostgreSQL, with concurrent checks' reads merged. A check reads one
//! number; under load, one query per check spends most of its time (in numguard and in
//! PostgreSQL) on the query rather than on its rows. So checks hand their number to one
//! task, which keeps a few reads in flight: a number asked for while they are all busy
//! waits for the next one, together with every other number asked for meanwhile, in one
//! `number = ANY($1)` query. A read that finds room goes out at once, so an idle server
//! answers as soon as before.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, sql};
use crate::domain::event::EventFact;
use crate::domain::number::E164;

/// Numbers per merged query at most.
const MOST_NUMBERS: usize = 256;

/// A number's history, or `None` if the merged read failed (the check then reads alone,
/// so that it gets its own error).
type Answer = oneshot::Sender<Option<Vec<EventFact>>>;

/// The history reads of one pool.
pub struct HistoryReads {
    pool: PgPool,
    merge: mpsc::UnboundedSender<(E164, Answer)>,
}

impl HistoryReads {
    /// Reads through `pool` of `pool_size` connections, half of which at most read
    /// merged histories at once: enough to keep PostgreSQL busy (four connections serve
    /// cold checks as fast as sixteen on two cores), and the rest stays free for writes
    /// and listings.
    pub fn new(pool: PgPool, pool_size: u32) -> HistoryReads {
        let (merge, asked) = mpsc::unbounded_channel();
        let in_flight = (pool_size as usize / 2).max(1);
        tokio::spawn(merge_reads(pool.clone(), asked, in_flight));
        HistoryReads { pool, merge }
    }

    /// One history per number, in the order of `numbers`; a single number's read is
    /// merged with concurrent ones.
    pub async fn histories(&self, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
        match numbers {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.history(one).await?]),
            _ => read_many(&self.pool, numbers).await,
        }
    }

    async fn history(&self, number: &E164) -> Result<Vec<EventFact>, StoreError> {
        let (answer, answered) = oneshot::channel();
        if self.merge.send((number.clone(), answer)).is_ok()
            && let Ok(Some(history)) = answered.await
        {
            return Ok(history);
        }
        read_one(&self.pool, number).await
    }
}

/// Keeps up to `in_flight` reads going, each with every number asked for since the last
/// one started.
async fn merge_reads(
    pool: PgPool,
    mut asked: mpsc::UnboundedReceiver<(E164, Answer)>,
    in_flight: usize,
) {
    let mut reads = FuturesUnordered::new();
    let mut waiting: Vec<(E164, Answer)> = Vec::new();
    let mut open = true;
    while open || !reads.is_empty() {
        tokio::select! {
            next = asked.recv(), if open => match next {
                Some(first) => {
                    waiting.push(first);
                    while let Ok(more) = asked.try_recv() {
                        waiting.push(more);
                    }
                }
                None => open = false,
            },
            Some(()) = reads.next(), if !reads.is_empty() => {}
        }
        while reads.len() < in_flight && !waiting.is_empty() {
            let take = waiting.len().min(MOST_NUMBERS);
            reads.push(answer(pool.clone(), waiting.drain(..take).collect()));
        }
    }
}

/// Reads the histories of `asked` in one query and answers each.
async fn answer(pool: PgPool, asked: Vec<(E164, Answer)>) {
    let histories = match asked.as_slice() {
        [(one, _)] => read_one(&pool, one).await.map(|history| vec![history]),
        // The same number asked by two checks at once gets its history at both places.
        _ => {
            let numbers: Vec<E164> = asked.iter().map(|(n, _)| n.clone()).collect();
            read_many(&pool, &numbers).await
        }
    };
    match histories {
        Ok(histories) => {
            for ((_, answer), history) in asked.into_iter().zip(histories) {
                let _ = answer.send(Some(history));
            }
        }
        Err(_) => {
            for (_, answer) in asked {
                let _ = answer.send(None);
            }
        }
    }
}

/// One number's history, without the array, the number column and the grouping that a
/// batch needs (through them, a check's own CPU was a fifth higher).
async fn read_one(pool: &PgPool, number: &E164) -> Result<Vec<EventFact>, StoreError> {
    let rows = sqlx::query(
        "SELECT source, source_event_id, kind, occurred_at, from_carrier, to_carrier \
         FROM events WHERE number = $1",
    )
    .bind(number.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter().map(sql::fact_from).collect()
}

/// The histories of `numbers`, in their order.
async fn read_many(pool: &PgPool, numbers: &[E164]) -> Result<Vec<Vec<EventFact>>, StoreError> {
    let list: Vec<&str> = numbers.iter().map(E164::as_str).collect();
    let rows = sqlx::query(
        "SELECT number, source, source_event_id, kind, occurred_at, from_carrier, \
         to_carrier FROM events WHERE number = ANY($1)",
    )
    .bind(list)
    .fetch_all(pool)
    .await?;
    sql::group_histories(numbers, &rows)
}
