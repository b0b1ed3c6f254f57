//! Progress events from stages, and their translation into one user-facing percentage.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use domain::{Percent, ProgressReport, Segment, Stage};

/// What a stage reports. A closed set: the runner handles each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A stage began.
    StageStarted {
        /// Which.
        stage: Stage,
    },
    /// One segment of a per-segment stage is done (segments may finish out of order).
    SegmentDone {
        /// Which stage.
        stage: Stage,
        /// The segment, from 0.
        index: u32,
        /// How many the stage has.
        total: u32,
    },
    /// A stage ended successfully.
    StageFinished {
        /// Which.
        stage: Stage,
        /// How long it took.
        duration: Duration,
    },
}

impl ProgressEvent {
    /// The stage the event belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Self::StageStarted { stage }
            | Self::SegmentDone { stage, .. }
            | Self::StageFinished { stage, .. } => *stage,
        }
    }

    /// Stage starts and ends are boundaries: always written, never coalesced away.
    pub fn is_boundary(&self) -> bool {
        !matches!(self, Self::SegmentDone { .. })
    }
}

/// A progress report and whether it marks a stage boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedReport {
    /// What to write.
    pub report: ProgressReport,
    /// Stage start or end.
    pub boundary: bool,
}

/// Turns events into percentages by stage weight; the result never goes backwards.
///
/// 100 % is left to the finalize that publishes the result: until then the bar stops at 99.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    /// Each stage's share, in pipeline order.
    weights: Vec<(Stage, u32)>,
    total_weight: u64,
    /// Distinct segments done per stage (segments may finish out of order, or twice on a
    /// resumed attempt).
    done: HashMap<Stage, HashSet<u32>>,
    last: Percent,
}

impl ProgressTracker {
    /// A tracker for stages with these weights.
    pub fn new(weights: Vec<(Stage, u32)>) -> Self {
        let total_weight = weights
            .iter()
            .map(|(_, w)| u64::from(*w))
            .sum::<u64>()
            .max(1);
        Self {
            weights,
            total_weight,
            done: HashMap::new(),
            last: Percent::ZERO,
        }
    }

    /// The sum of the weights of the stages before `stage`, and `stage`'s own.
    fn span(&self, stage: Stage) -> (u64, u64) {
        let mut before = 0u64;
        for (s, w) in &self.weights {
            if *s == stage {
                return (before, u64::from(*w));
            }
            before += u64::from(*w);
        }
        // A stage the tracker was not told of counts for nothing.
        (before, 0)
    }

    /// The report for `event`.
    pub fn track(&mut self, event: &ProgressEvent) -> TrackedReport {
        let stage = event.stage();
        let (before, weight) = self.span(stage);
        let (fraction_of_stage, segment, message) = match event {
            ProgressEvent::StageStarted { .. } => (0.0, None, format!("{stage}: started")),
            ProgressEvent::SegmentDone { index, total, .. } => {
                let done = self.done.entry(stage).or_default();
                done.insert(*index);
                let count = done.len();
                let fraction = count as f64 / f64::from((*total).max(1));
                (
                    fraction.min(1.0),
                    Segment::new(*index, *total).ok(),
                    format!("{stage}: {count} of {total} segments"),
                )
            }
            ProgressEvent::StageFinished { .. } => (1.0, None, format!("{stage}: done")),
        };
        let whole = (before as f64 + weight as f64 * fraction_of_stage) / self.total_weight as f64;
        let percent = Percent::from_fraction(whole).min(Percent::new(99).unwrap_or(Percent::FULL));
        self.last = self.last.max(percent);
        let report = ProgressReport {
            stage,
            percent: self.last,
            segment,
            message: Some(message),
        };
        TrackedReport {
            report,
            boundary: event.is_boundary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> ProgressTracker {
        ProgressTracker::new(vec![(Stage::Tts, 1), (Stage::Render, 3)])
    }

    #[test]
    fn segments_fill_their_stage_by_weight() {
        let mut t = tracker();
        let seg = |index| ProgressEvent::SegmentDone {
            stage: Stage::Render,
            index,
            total: 4,
        };
        assert_eq!(
            t.track(&ProgressEvent::StageStarted {
                stage: Stage::Render
            })
            .report
            .percent
            .get(),
            25
        );
        assert_eq!(t.track(&seg(0)).report.percent.get(), 44);
        assert_eq!(t.track(&seg(3)).report.percent.get(), 63);
        let r = t.track(&seg(3));
        assert_eq!(r.report.percent.get(), 63, "a repeated segment counts once");
        assert!(!r.boundary);
        assert_eq!(r.report.segment, Some(Segment::new(3, 4).unwrap()));
    }

    #[test]
    fn percent_never_goes_back_and_stops_at_99() {
        let mut t = tracker();
        let fin = ProgressEvent::StageFinished {
            stage: Stage::Render,
            duration: Duration::ZERO,
        };
        assert_eq!(t.track(&fin).report.percent.get(), 99);
        let r = t.track(&ProgressEvent::StageStarted { stage: Stage::Tts });
        assert_eq!(r.report.percent.get(), 99);
        assert!(r.boundary);
    }
}
