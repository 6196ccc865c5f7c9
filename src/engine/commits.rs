//! The commit signal: a counter bumped after every commit of events, here or (through the
//! change feed) on another replica. Live alert streams and the webhook dispatcher wait on
//! it instead of polling the store.

use std::sync::Arc;

use tokio::sync::watch;

/// A shared handle on the commit counter.
#[derive(Clone)]
pub struct Commits(Arc<watch::Sender<u64>>);

impl Default for Commits {
    fn default() -> Self {
        Commits(Arc::new(watch::channel(0).0))
    }
}

impl Commits {
    /// Signals that events were committed.
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The counter now: a store read that starts after this call sees every commit it
    /// counts.
    pub fn current(&self) -> u64 {
        *self.0.borrow()
    }

    /// Wakes on every commit after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
