//! How a stage fails: retryable and permanent are types, not strings to match.

use domain::{ErrorCode, JobError};

/// A stage's failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StageError {
    /// The job's token was cancelled (cancel, lease loss, deadline or shutdown); the runner
    /// knows which.
    #[error("stopped at a checkpoint")]
    Canceled,
    /// A failure a later attempt may not hit (a TTS 5xx, an object-store timeout): the job
    /// goes back to the queue.
    #[error("retryable: {0:?}")]
    Retryable(JobError),
    /// A failure no retry fixes (invalid input): the job fails.
    #[error("permanent: {0:?}")]
    Permanent(JobError),
}

fn error(code: &str, message: impl Into<String>) -> JobError {
    // Codes are written by our own stages; a malformed one is still reported, as `internal`.
    let code = ErrorCode::new(code).unwrap_or_else(|_| {
        ErrorCode::new("internal").unwrap_or_else(|_| unreachable!("`internal` is a valid code"))
    });
    JobError::new(code, message)
}

impl StageError {
    /// A retryable failure with `code` (`a-z0-9_`) and a message for people.
    pub fn retryable(code: &str, message: impl Into<String>) -> Self {
        Self::Retryable(error(code, message))
    }

    /// A permanent failure with `code` (`a-z0-9_`) and a message for people.
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        Self::Permanent(error(code, message))
    }
}
