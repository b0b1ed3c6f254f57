//! The job and lease model of video-worker, with no I/O.
//!
//! Everything the service guarantees — one worker per job, no write from a worker that lost
//! its lease, no job stuck in `running`, a cancel that cannot be lost — is decided here, by
//! pure functions on a [`Job`] record ([`transition`]). The repositories (`repo-mem`,
//! `repo-pg`) store what these functions decide; `repo-pg` states the same rules in SQL and
//! the shared conformance suite proves the two agree.
//!
//! Architecture invariant: this crate knows nothing about sqlx, axum, tokio runtimes,
//! HTTP clients or ffmpeg. CI checks it with `cargo tree`.

pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod job;
pub mod repository;
pub mod transition;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{FencedError, RepoError, ValidationError};
pub use idempotency::{IdempotencyKey, IdempotentOutcome, IdempotentRequest};
pub use ids::{InstanceId, JobId, LeaseEpoch, Percent};
pub use job::{
    ErrorCode, FinalOutcome, HolderSession, Job, JobError, JobStatus, Lease, LeaseState,
    ProgressReport, Segment, Stage,
};
pub use repository::{
    AcquireOutcome, AcquireRequest, CancelEvent, CancelOutcome, CancelStream, CancelSubscription,
    HeartbeatAck, JobIdStream, JobPage, JobRepository, ListCursor, ListQuery, NewJob,
    ProgressOutcome, SweepPolicy, SweptJob,
};
pub use transition::Decision;
