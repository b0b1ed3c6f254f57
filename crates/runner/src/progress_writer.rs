//! Coalescing of progress writes.
//!
//! Segment updates go out at most once per `period`, the latest winning. Stage boundaries
//! are never dropped: one goes out at once unless a write happened in the last
//! [`BOUNDARY_GAP`], and then it is held back only until that gap has passed (a later report
//! replaces it, as it is newer). A burst of boundaries — a stage that takes no time — thus
//! costs one write, which keeps a no-op job at three statements; any stage that lasts longer
//! than the gap is seen by the user.

use domain::ProgressReport;
use pipeline::TrackedReport;
use tokio::time::{Duration, Instant};

/// The shortest spacing of boundary writes.
pub(crate) const BOUNDARY_GAP: Duration = Duration::from_millis(100);

/// What to write and when.
#[derive(Debug)]
pub(crate) struct ProgressWriter {
    period: Duration,
    last_write: Option<Instant>,
    /// A report held back, and when it is due.
    pending: Option<(ProgressReport, Instant)>,
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
        let spacing = if tracked.boundary {
            BOUNDARY_GAP
        } else {
            self.period
        };
        let due = self.last_write.map_or(now, |t| t + spacing);
        if due <= now {
            self.pending = None;
            self.last_write = Some(now);
            return Some(tracked.report);
        }
        // Newest report, earliest due time of what it replaces.
        let due = self.pending.as_ref().map_or(due, |(_, d)| due.min(*d));
        self.pending = Some((tracked.report, due));
        None
    }

    /// When the held-back report is due.
    pub(crate) fn flush_at(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, due)| *due)
    }

    /// The held-back report, now due.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<ProgressReport> {
        let (report, _) = self.pending.take()?;
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
    fn segment_bursts_coalesce_to_the_latest_once_per_period() {
        let t0 = Instant::now();
        let mut w = ProgressWriter::new(Duration::from_secs(1));
        assert!(
            w.offer(tracked(1, false), t0).is_some(),
            "the first goes at once"
        );
        assert!(w.offer(tracked(2, false), t0).is_none());
        assert!(w.offer(tracked(3, false), t0).is_none());
        assert_eq!(w.flush_at(), Some(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(w.flush(later).unwrap().percent.get(), 3);
        assert_eq!(w.flush(later), None);
    }

    #[test]
    fn a_boundary_waits_only_for_the_short_gap_and_is_never_dropped() {
        let t0 = Instant::now();
        let mut w = ProgressWriter::new(Duration::from_secs(1));
        assert!(w.offer(tracked(1, false), t0).is_some());
        assert!(w.offer(tracked(2, false), t0).is_none());
        assert!(
            w.offer(tracked(4, true), t0).is_none(),
            "right after a write: held"
        );
        assert_eq!(
            w.flush_at(),
            Some(t0 + BOUNDARY_GAP),
            "due after the gap, not the period"
        );
        assert!(w.offer(tracked(5, false), t0).is_none());
        assert_eq!(
            w.flush_at(),
            Some(t0 + BOUNDARY_GAP),
            "a newer report keeps the early due time"
        );
        assert_eq!(w.flush(t0 + BOUNDARY_GAP).unwrap().percent.get(), 5);
        let later = t0 + BOUNDARY_GAP * 2;
        assert_eq!(
            w.offer(tracked(6, true), later).unwrap().percent.get(),
            6,
            "past the gap: at once"
        );
    }
}
