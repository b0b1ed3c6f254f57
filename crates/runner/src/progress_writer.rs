//! Coalescing of progress writes: stage boundaries always, segment updates at most once per
//! period, the latest one winning.

use domain::ProgressReport;
use pipeline::TrackedReport;
use tokio::time::{Duration, Instant};

/// What to write and when.
#[derive(Debug)]
pub(crate) struct ProgressWriter {
    period: Duration,
    last_write: Option<Instant>,
    /// A segment report held back by the rate limit; the next one replaces it.
    pending: Option<ProgressReport>,
}

impl ProgressWriter {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            last_write: None,
            pending: None,
        }
    }

    /// Takes a report; returns the one to write now, if any.
    pub(crate) fn offer(&mut self, tracked: TrackedReport, now: Instant) -> Option<ProgressReport> {
        let due = self.last_write.is_none_or(|t| now >= t + self.period);
        if tracked.boundary || due {
            self.pending = None;
            self.last_write = Some(now);
            Some(tracked.report)
        } else {
            self.pending = Some(tracked.report);
            None
        }
    }

    /// When the held-back report is due.
    pub(crate) fn flush_at(&self) -> Option<Instant> {
        self.pending.as_ref()?;
        Some(
            self.last_write
                .map_or_else(Instant::now, |t| t + self.period),
        )
    }

    /// The held-back report, now due.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<ProgressReport> {
        let report = self.pending.take()?;
        self.last_write = Some(now);
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Percent, Stage};

    fn tracked(percent: u8, boundary: bool) -> TrackedReport {
        TrackedReport {
            report: ProgressReport::new(Stage::Tts, Percent::new(percent).unwrap(), None, None)
                .unwrap(),
            boundary,
        }
    }

    #[test]
    fn bursts_coalesce_to_the_latest_and_boundaries_always_pass() {
        let t0 = Instant::now();
        let mut w = ProgressWriter::new(Duration::from_secs(1));
        assert!(
            w.offer(tracked(1, false), t0).is_some(),
            "the first goes at once"
        );
        assert!(w.offer(tracked(2, false), t0).is_none());
        assert!(w.offer(tracked(3, false), t0).is_none());
        assert_eq!(w.flush_at(), Some(t0 + Duration::from_secs(1)));
        let boundary = w.offer(tracked(4, true), t0).unwrap();
        assert_eq!(boundary.percent.get(), 4);
        assert_eq!(
            w.flush_at(),
            None,
            "a boundary supersedes held-back segments"
        );
        assert!(w.offer(tracked(5, false), t0).is_none());
        let later = t0 + Duration::from_secs(1);
        assert_eq!(w.flush(later).unwrap().percent.get(), 5);
        assert_eq!(w.flush(later), None);
    }
}
