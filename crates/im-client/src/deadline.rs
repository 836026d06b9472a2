//! A point in time to give up at, remembering the timeout it came from so
//! that the error can say how long was waited.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ClientError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) after: Duration,
}

impl Deadline {
    /// `after` from now. A timeout too large to represent waits "forever"
    /// (about 30 years), which is still a bound.
    pub(crate) fn after(after: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(after)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600));
        Self { at, after }
    }

    /// The error for having waited until this deadline for `what`.
    pub(crate) fn expired(self, what: &'static str) -> ClientError {
        ClientError::Timeout {
            what,
            after: self.after,
        }
    }
}
