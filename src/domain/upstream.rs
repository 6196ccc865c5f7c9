//! What an operator's CAMARA API answered about a number that no local source covers
//! (SPEC §5). The decision rules use these only where local data cannot answer.

use chrono::{DateTime, Utc};

/// Which CAMARA question was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Question {
    /// SIM Swap v2 `/check` for the request's window.
    SimSwap,
    /// Number Recycling v0.2 `/check` for `owner_since`'s date.
    NumberRecycling,
}

impl Question {
    /// The question's name in answers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Question::SimSwap => "SIM_SWAP",
            Question::NumberRecycling => "NUMBER_RECYCLING",
        }
    }
}

/// One answer, or why none came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    /// The provider asked, by its name in the providers file.
    pub provider: String,
    /// What it was asked.
    pub question: Question,
    /// `Ok(true)`: swapped / recycled. `Err`: why the provider gave no answer (timeout,
    /// error, circuit open, rate limited).
    pub outcome: Result<bool, String>,
    /// When the provider answered (or failed); earlier than now when from the cache.
    pub at: DateTime<Utc>,
    /// Whether this answer was reused from the answer cache.
    pub cached: bool,
}
