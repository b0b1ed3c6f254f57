//! The job record and the values it is made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{InstanceId, JobId, LeaseEpoch, Percent, Timestamp, ValidationError};

/// Where a job is in its life.
///
/// ```text
/// queued ──acquire──▶ running ──finalize──▶ succeeded | failed | canceled
///   ▲  │                │  │
///   │  └─cancel──▶ canceled  └─release / sweep──▶ queued (or canceled, failed)
///   └────────────────────────┘
/// ```
/// `succeeded`, `failed` and `canceled` are terminal: nothing leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker to take a lease.
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Finished; the artifact key is on the job.
    Succeeded,
    /// Finished with a permanent error; the error code and message are on the job.
    Failed,
    /// Finished because somebody asked to cancel it.
    Canceled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
    ];

    /// Whether nothing can change this job any more.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    /// The stored and logged name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!(
                        "unknown status {s:?}; one of queued, running, succeeded, failed, canceled"
                    ),
                )
            })
    }
}

/// A pipeline stage, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading and checking the storyboard, planning the work.
    Plan,
    /// Speech audio per segment.
    Tts,
    /// Slide video per segment.
    Render,
    /// One MP4 out of the segments.
    Compose,
    /// Upload to the object store.
    Publish,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Self; 5] = [
        Self::Plan,
        Self::Tts,
        Self::Render,
        Self::Compose,
        Self::Publish,
    ];

    /// The position in pipeline order, from 0.
    pub const fn rank(self) -> u8 {
        match self {
            Self::Plan => 0,
            Self::Tts => 1,
            Self::Render => 2,
            Self::Compose => 3,
            Self::Publish => 4,
        }
    }

    /// The stored and logged name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Tts => "tts",
            Self::Render => "render",
            Self::Compose => "compose",
            Self::Publish => "publish",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| ValidationError::new("stage", format!("unknown stage {s:?}")))
    }
}

/// Which segment of how many a progress report is about; `index` counts from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    index: u32,
    total: u32,
}

impl Segment {
    /// Validates `index < total`.
    pub fn new(index: u32, total: u32) -> Result<Self, ValidationError> {
        if index >= total {
            return Err(ValidationError::new(
                "segment_index",
                format!("must be below segment_total ({total}), got {index}"),
            ));
        }
        Ok(Self { index, total })
    }

    /// The segment, counted from 0.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// How many segments the stage has.
    pub const fn total(self) -> u32 {
        self.total
    }
}

/// One user-facing progress report: what a progress bar shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The stage the job is in.
    pub stage: Stage,
    /// How much of the whole job is done.
    pub percent: Percent,
    /// The segment just finished, for per-segment stages.
    pub segment: Option<Segment>,
    /// A short line for the user.
    pub message: Option<String>,
}

impl ProgressReport {
    /// The longest message kept, in bytes.
    pub const MAX_MESSAGE_LEN: usize = 500;

    /// A report, refusing an over-long message.
    pub fn new(
        stage: Stage,
        percent: Percent,
        segment: Option<Segment>,
        message: Option<String>,
    ) -> Result<Self, ValidationError> {
        if message
            .as_ref()
            .is_some_and(|m| m.len() > Self::MAX_MESSAGE_LEN)
        {
            return Err(ValidationError::new(
                "progress_message",
                format!("must be at most {} bytes", Self::MAX_MESSAGE_LEN),
            ));
        }
        Ok(Self {
            stage,
            percent,
            segment,
            message,
        })
    }

    /// Checks a report built field by field (the fields are public) against the same
    /// limits as [`ProgressReport::new`]; repositories call it before writing, so a stored
    /// report always reads back.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(segment) = self.segment {
            Segment::new(segment.index, segment.total)?;
        }
        Self::new(self.stage, self.percent, self.segment, self.message.clone()).map(|_| ())
    }
}

/// A machine-readable error code: 1–64 of `a-z`, `0-9`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ErrorCode(String);

impl ErrorCode {
    /// The job was acquired more often than allowed.
    pub const ATTEMPTS_EXHAUSTED: &'static str = "attempts_exhausted";
    /// The job's lease expired long ago and no worker came back for it.
    pub const LEASE_EXPIRED: &'static str = "lease_expired";
    /// The worker's database session ended (its process died) and the sweeper requeued
    /// the job before its lease expired.
    pub const WORKER_GONE: &'static str = "worker_gone";
    /// The stored job does not decode; no attempt can run it.
    pub const INVALID_STORED_JOB: &'static str = "invalid_stored_job";

    /// Validates a code.
    pub fn new(code: impl Into<String>) -> Result<Self, ValidationError> {
        let code = code.into();
        let ok = !code.is_empty()
            && code.len() <= 64
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ValidationError::new(
                "error_code",
                "must be 1 to 64 characters of a-z, 0-9 and _",
            ));
        }
        Ok(Self(code))
    }

    /// A code from a constant of this crate, known to be valid.
    pub(crate) fn known(code: &'static str) -> Self {
        Self(code.to_owned())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ErrorCode {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a job failed (or, while it is queued again, why its last attempt did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// For machines: what kind of failure.
    pub code: ErrorCode,
    /// For people: what happened, without secrets.
    pub message: String,
}

impl JobError {
    /// The longest message kept, in bytes; longer ones are cut at a character boundary.
    pub const MAX_MESSAGE_LEN: usize = 2000;

    /// An error, cutting an over-long message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > Self::MAX_MESSAGE_LEN {
            let mut cut = Self::MAX_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self { code, message }
    }

    pub(crate) fn known(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::known(code), message)
    }
}

/// A lease holder's liveness handle: the database session of the worker's long-lived
/// connection (its `LISTEN` connection), as the database names it.
///
/// Both parts together: a backend pid is reused once its session ends, so a session is the
/// same only if its start time is the same too. When the database no longer has this
/// session, the holder's process is gone (its sockets were closed), and its lease may be
/// taken over before it expires. Safety never depends on it: a takeover bumps the epoch,
/// which fences everything the old holder might still write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HolderSession {
    /// The backend process id (`pg_backend_pid()`).
    pub pid: i32,
    /// When that backend started (`pg_stat_activity.backend_start`).
    pub backend_start: Timestamp,
}

/// The live lease of a running job, as stored on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The instance that holds it.
    pub holder: InstanceId,
    /// The holder's liveness handle, if it gave one; without it the lease ends only by
    /// expiry (or release).
    #[serde(default)]
    pub session: Option<HolderSession>,
    /// The last time the holder proved it is alive. Only heartbeats and acquisition write
    /// it: progress writes and cancel requests never do (the seed's bug).
    pub heartbeat_at: Timestamp,
    /// When the lease goes stale and another worker may take the job over.
    pub expires_at: Timestamp,
}

/// What a worker holds after a successful acquire: the fence every write of it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leased job.
    pub job_id: JobId,
    /// Who holds it.
    pub holder: InstanceId,
    /// The fencing token.
    pub epoch: LeaseEpoch,
    /// When it goes stale unless heartbeated.
    pub expires_at: Timestamp,
    /// Which acquisition of the job this is, counted from 1.
    pub attempt: u32,
}

/// How a worker ends a job it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalOutcome {
    /// The artifact is published under this key.
    Succeeded {
        /// The object-store key of the MP4.
        artifact_key: String,
    },
    /// A permanent failure.
    Failed(JobError),
    /// The worker stopped because cancel was requested.
    Canceled,
}

impl FinalOutcome {
    /// The status this outcome asks for (a pending cancel request still wins over it).
    pub const fn status(&self) -> JobStatus {
        match self {
            Self::Succeeded { .. } => JobStatus::Succeeded,
            Self::Failed(_) => JobStatus::Failed,
            Self::Canceled => JobStatus::Canceled,
        }
    }
}

/// A video job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The storyboard; the pipeline validates it.
    pub input: serde_json::Value,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The last progress report applied, if any.
    pub progress: Option<ProgressReport>,
    /// When that report was applied. Not lease liveness: see [`LeaseState::heartbeat_at`].
    pub progress_updated_at: Option<Timestamp>,
    /// The epoch of the latest acquisition; [`LeaseEpoch::NEVER`] before the first.
    pub lease_epoch: LeaseEpoch,
    /// The live lease; present exactly while the job is `running`.
    pub lease: Option<LeaseState>,
    /// When cancel was first requested.
    pub cancel_requested_at: Option<Timestamp>,
    /// How many times a worker acquired it.
    pub attempts: u32,
    /// Which delivery the queue should hold a task for: the task's name is derived from
    /// the job id and this number. 0 for the first enqueue; the sweeper advances it when the
    /// queue no longer has the task, and enqueues the next one under a fresh name.
    #[serde(default)]
    pub delivery_generation: u32,
    /// Where the published MP4 is, once succeeded.
    pub artifact_key: Option<String>,
    /// Why it failed, or why its last attempt did.
    pub error: Option<JobError>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a worker first acquired it.
    pub started_at: Option<Timestamp>,
    /// When it became terminal.
    pub finished_at: Option<Timestamp>,
    /// When anything on it last changed.
    pub updated_at: Timestamp,
}

impl Job {
    /// A new queued job.
    pub fn new(id: JobId, input: serde_json::Value, now: Timestamp) -> Self {
        Self {
            id,
            input,
            status: JobStatus::Queued,
            progress: None,
            progress_updated_at: None,
            lease_epoch: LeaseEpoch::NEVER,
            lease: None,
            cancel_requested_at: None,
            attempts: 0,
            delivery_generation: 0,
            artifact_key: None,
            error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
        }
    }

    /// The user-facing percentage (0 before the first report).
    pub fn percent(&self) -> Percent {
        self.progress.as_ref().map_or(Percent::ZERO, |p| p.percent)
    }

    /// Whether the job is running under a lease that has not expired at `now`.
    pub fn has_live_lease(&self, now: Timestamp) -> bool {
        self.status == JobStatus::Running && self.lease.as_ref().is_some_and(|l| l.expires_at > now)
    }
}
