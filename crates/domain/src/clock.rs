//! The one clock a repository reads time from.
//!
//! Lease expiry compares timestamps written by different instances, so they must come from
//! one clock: in Postgres that is the database's `now()` (the worker's wall clock is never
//! used); in memory it is a [`Clock`] the tests can step.

use std::sync::Mutex;
use std::time::Duration;

/// A point in time, UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that only moves when told to; for tests that step time.
#[derive(Debug)]
pub struct ManualClock {
    /// Held only to read or replace the value, never across an `.await`.
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += to_delta(by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(chrono::Utc::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Converts a std duration into a chrono delta, capped at 100 years: far beyond any lease,
/// and far enough below chrono's limit that adding it to a timestamp cannot overflow.
pub fn to_delta(d: Duration) -> chrono::TimeDelta {
    let cap = chrono::TimeDelta::days(36_525);
    chrono::TimeDelta::from_std(d).map_or(cap, |delta| delta.min(cap))
}
