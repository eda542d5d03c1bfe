//! Time as the engine reads it. The scheduler never reads a clock: it is handed a [`Clock`].

use std::time::Instant;

/// Now, as the two clocks the policies use: breakers count in monotonic time, retry records
/// carry wall-clock due times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) now: Instant,
    pub(crate) wall_ms: i64,
}

impl Clock {
    /// Both clocks, now.
    pub(crate) fn read() -> Clock {
        Clock {
            now: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

/// Wall-clock time in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
