//! Client streams fed from a reader thread, a batch at a time. Items that are ready
//! together are encoded into one HTTP/2 DATA frame, which costs less per item than a frame
//! each (the server accepts either; see `client_streams` in BENCHMARKS.md for the rates).

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Items handed over together.
pub const PER_BATCH: usize = 256;

/// The sending side, for a blocking reader thread.
pub struct Batcher<'a, T> {
    to: &'a mpsc::Sender<Vec<T>>,
    batch: Vec<T>,
}

impl<'a, T> Batcher<'a, T> {
    pub fn new(to: &'a mpsc::Sender<Vec<T>>) -> Self {
        Batcher {
            to,
            batch: Vec::with_capacity(PER_BATCH),
        }
    }

    /// `false` once the receiving side has gone.
    pub fn push(&mut self, item: T) -> bool {
        self.batch.push(item);
        self.batch.len() < PER_BATCH || self.flush()
    }

    /// Sends what is batched; call it when the input ends.
    pub fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(PER_BATCH));
        self.to.blocking_send(full).is_ok()
    }
}

/// The items of the batches, in order, as a client stream.
pub fn stream<T: Send + 'static>(batches: mpsc::Receiver<Vec<T>>) -> impl Stream<Item = T> {
    ReceiverStream::new(batches).flat_map(futures::stream::iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_in_full_batches_and_the_rest_on_flush() {
        let (tx, mut rx) = mpsc::channel(10);
        let mut batcher = Batcher::new(&tx);
        for i in 0..PER_BATCH + 3 {
            assert!(batcher.push(i));
        }
        assert_eq!(rx.try_recv().unwrap().len(), PER_BATCH);
        assert!(rx.try_recv().is_err(), "the rest waits for more");
        assert!(batcher.flush());
        assert_eq!(
            rx.try_recv().unwrap(),
            vec![PER_BATCH, PER_BATCH + 1, PER_BATCH + 2]
        );
        assert!(batcher.flush(), "nothing left is fine");
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(batcher.push(0), "a partial batch is kept");
        assert!(!batcher.flush(), "the receiver has gone");
    }
}
