//! What a stage is given: the job, a working directory, a progress sink, a cancel token.

use std::path::PathBuf;
use std::sync::Arc;

use domain::{JobId, LeaseEpoch, Stage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ProgressEvent, StageError};

/// The sending half of a job's progress channel. Sending never blocks and never fails the
/// stage: if the runner stopped listening, the event is dropped.
#[derive(Debug, Clone)]
pub struct ProgressSink(mpsc::UnboundedSender<ProgressEvent>);

/// The receiving half, read by the runner.
pub type ProgressReceiver = mpsc::UnboundedReceiver<ProgressEvent>;

impl ProgressSink {
    /// A new channel. Unbounded because events are few (a handful per segment) and a stage
    /// must never wait on the database to report.
    pub fn channel() -> (Self, ProgressReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Sends `event`.
    pub fn emit(&self, event: ProgressEvent) {
        let _ = self.0.send(event);
    }
}

/// Everything a stage may use.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The job.
    pub job_id: JobId,
    /// The lease epoch of this attempt (artifact keys are per attempt).
    pub epoch: LeaseEpoch,
    /// The storyboard.
    pub input: Arc<serde_json::Value>,
    /// This attempt's scratch directory, removed when the attempt ends however it ends.
    /// Results worth keeping across attempts go to the segment cache, not here.
    pub work_dir: PathBuf,
    progress: ProgressSink,
    cancel: CancellationToken,
}

/// What one attempt works on: the job, its lease epoch, its input and its scratch directory.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The job.
    pub job_id: JobId,
    /// The lease epoch of this attempt.
    pub epoch: LeaseEpoch,
    /// The storyboard.
    pub input: Arc<serde_json::Value>,
    /// This attempt's scratch directory.
    pub work_dir: PathBuf,
}

impl StageContext {
    /// A context for one attempt, reporting to `progress` and stopping on `cancel`.
    pub fn new(attempt: Attempt, progress: ProgressSink, cancel: CancellationToken) -> Self {
        let Attempt {
            job_id,
            epoch,
            input,
            work_dir,
        } = attempt;
        Self {
            job_id,
            epoch,
            input,
            work_dir,
            progress,
            cancel,
        }
    }

    /// Reports a progress event.
    pub fn emit(&self, event: ProgressEvent) {
        self.progress.emit(event);
    }

    /// `Err(Canceled)` once the job must stop.
    pub fn checkpoint(&self) -> Result<(), StageError> {
        if self.cancel.is_cancelled() {
            Err(StageError::Canceled)
        } else {
            Ok(())
        }
    }

    /// Reports segment `index` of `total` done, then checks the token: a segment boundary.
    pub fn segment_done(&self, stage: Stage, index: u32, total: u32) -> Result<(), StageError> {
        self.emit(ProgressEvent::SegmentDone {
            stage,
            index,
            total,
        });
        self.checkpoint()
    }

    /// The token, for stages that wait on something (a child process) and must stop early.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}
