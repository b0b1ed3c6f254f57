//! Errors of the domain and of repositories.
//!
//! Policy: libraries return typed errors (`thiserror`); `anyhow` appears only at the binary's
//! edge. A storage failure says whether retrying can help ([`RepoError::is_retryable`]); a
//! fenced write that lost its lease is its own variant, never a string to match.

/// A value from outside (a request, a config, a row) that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field or argument that was refused.
    pub field: &'static str,
    /// Why, in words a caller can act on.
    pub reason: String,
}

impl ValidationError {
    /// A refusal of `field` because of `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A repository operation that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The store could not be reached or timed out; the same call may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A job with this id exists already.
    #[error("job {0} already exists")]
    AlreadyExists(crate::JobId),
    /// A stored row does not fit the domain types; retrying will not fix it.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// An argument was refused before touching the store.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl RepoError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The error of a worker's fenced write (heartbeat, progress, release, finalize).
#[derive(Debug, thiserror::Error)]
pub enum FencedError {
    /// The lease this write was fenced by is no longer the job's: another worker took the job
    /// over, or it was finalized or swept. The writer must stop and write nothing more.
    #[error("lease lost: the job is no longer held at this epoch")]
    LeaseLost,
    /// The store failed; whether the lease is still held is unknown.
    #[error(transparent)]
    Repo(#[from] RepoError),
}
