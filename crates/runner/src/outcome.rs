//! How an attempt ended, as the push handler needs to know it.

use std::time::Duration;

use domain::{InstanceId, JobError, JobStatus};

/// The end of one [`crate::Runner::run`].
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The job succeeded; its artifact is under this key.
    Succeeded {
        /// Object-store key of the MP4.
        artifact_key: String,
    },
    /// The job failed permanently.
    Failed {
        /// Why.
        error: JobError,
    },
    /// The job was canceled.
    Canceled,
    /// The job had finished before this delivery.
    Skipped(JobStatus),
    /// No such job.
    NotFound,
    /// A live lease is held elsewhere (or by this instance: a duplicate delivery).
    Busy {
        /// Who holds it.
        holder: InstanceId,
        /// When a retry may find it free.
        retry_after: Duration,
    },
    /// Another worker took the job over; it will finish it. This one wrote nothing more.
    Superseded,
    /// A retryable failure; the job is queued again.
    Retry {
        /// Why this attempt failed.
        error: JobError,
    },
    /// This instance is shutting down; the job is queued again.
    ShuttingDown,
    /// The database could not be reached; nothing is known to have changed.
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The store refused the acquire for a reason other than unavailability (a row that does
    /// not decode before any lease was taken): no lease, so nothing could be written. A
    /// retry may get the lease and end the job; the job is not known to be terminal.
    Broken {
        /// What is wrong.
        reason: String,
    },
}

impl RunOutcome {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Canceled => "canceled",
            Self::Skipped(_) => "skipped",
            Self::NotFound => "not_found",
            Self::Busy { .. } => "busy",
            Self::Superseded => "superseded",
            Self::Retry { .. } => "retry",
            Self::ShuttingDown => "shutting_down",
            Self::Unavailable { .. } => "unavailable",
            Self::Broken { .. } => "broken",
        }
    }
}
