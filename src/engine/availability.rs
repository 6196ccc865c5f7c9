//! Whether the engine may answer: the database answers pings and, where replicas share it,
//! the change feed is listening (otherwise cached histories could be stale).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub struct Availability {
    database: AtomicBool,
    /// A damaged database file does not heal: once seen, nothing is answered until the
    /// operator restores the file and restarts the server.
    damaged: AtomicBool,
    feed: AtomicBool,
    up: watch::Sender<bool>,
}

impl Availability {
    /// `has_feed`: the store shares its database and announces changes; until the feed
    /// is listening the engine is not available.
    pub fn new(has_feed: bool) -> Self {
        Availability {
            database: AtomicBool::new(true),
            damaged: AtomicBool::new(false),
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

    /// The database file is damaged: down for good (see `damaged`).
    pub fn set_damaged(&self) {
        if !self.damaged.swap(true, Ordering::SeqCst) {
            tracing::error!(
                "the database file is damaged; numguard answers UNAVAILABLE until it is \
                 restored from a backup and the server restarted"
            );
        }
        self.publish();
    }

    pub fn set_feed(&self, up: bool) {
        self.feed.store(up, Ordering::SeqCst);
        self.publish();
    }

    fn publish(&self) {
        let up = self.database.load(Ordering::SeqCst)
            && self.feed.load(Ordering::SeqCst)
            && !self.damaged.load(Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_database_stays_down_when_pings_answer_again() {
        let availability = Availability::new(false);
        assert!(availability.is_up());
        availability.set_database(false);
        availability.set_database(true);
        assert!(
            availability.is_up(),
            "an outage ends when the database answers"
        );
        availability.set_damaged();
        availability.set_database(true);
        assert!(!availability.is_up(), "damage does not");
    }
}
