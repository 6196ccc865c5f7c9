//! Whether the engine may answer: the database answers pings and, where replicas share it,
//! the change feed is listening (otherwise cached histories could be stale).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub struct Availability {
    database: AtomicBool,
    feed: AtomicBool,
    up: watch::Sender<bool>,
}

impl Availability {
    /// `has_feed`: the store shares its database and announces changes; until the feed
    /// is listening the engine is not available.
    pub fn new(has_feed: bool) -> Self {
        Availability {
            database: AtomicBool::new(true),
            feed: AtomicBool::new(!has_feed),
            up: watch::channel(!has_feed).0,
        }
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    pub fn set_database(&self, up: bool) {
        self.database.store(up, Ordering::SeqCst);
        self.publish();
    }

    pub fn set_feed(&self, up: bool) {
        self.feed.store(up, Ordering::SeqCst);
        self.publish();
    }

    fn publish(&self) {
        let up = self.database.load(Ordering::SeqCst) && self.feed.load(Ordering::SeqCst);
        self.up.send_if_modified(|current| {
            if *current == up {
                return false;
            }
            if up {
                tracing::info!("database available again; answering checks");
            } else {
                tracing::warn!("database unavailable; checks answer UNAVAILABLE until it returns");
            }
            *current = up;
            true
        });
    }
}
