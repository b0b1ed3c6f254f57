//! The `JobRepository` trait: the operations of SPEC §3 and their outcomes.
//!
//! Every worker write (heartbeat, progress, release, finalize) is *fenced* by the [`Lease`]
//! it carries: it applies only while the job is `running` at that lease's epoch, and
//! otherwise fails with [`FencedError::LeaseLost`] having changed nothing.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;

use crate::{
    FencedError, FinalOutcome, HolderSession, IdempotentOutcome, IdempotentRequest, InstanceId,
    Job, JobError, JobId, JobStatus, Lease, Percent, ProgressReport, RepoError, Timestamp,
    ValidationError,
};

/// A request to create a job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The id to give it (callers choose it, so a retried create is idempotent-safe).
    pub id: JobId,
    /// The storyboard.
    pub input: serde_json::Value,
}

/// A worker's request for a lease on a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    /// The job.
    pub job_id: JobId,
    /// Who asks.
    pub holder: InstanceId,
    /// How long the lease lives without a heartbeat.
    pub ttl: Duration,
    /// Acquisitions allowed before the job fails with `attempts_exhausted`.
    pub max_attempts: u32,
    /// The asker's liveness handle (its cancel subscription's session), recorded on the
    /// lease: once the database no longer has it, the lease may be taken over before it
    /// expires. `None`: the lease ends only by expiry.
    pub session: Option<HolderSession>,
}

/// The answer to an acquire.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireOutcome {
    /// The lease is ours; the job row as it is now (input, and progress to resume from).
    Acquired {
        /// The fence for every write of this attempt.
        lease: Lease,
        /// The job after acquisition.
        job: Box<Job>,
    },
    /// The lease is ours, but the rest of the row does not decode into a [`Job`] (a stored
    /// column no longer fits the domain types). The lease is returned anyway, so the worker
    /// can end the job through the fenced finalize instead of leaving it `running`.
    AcquiredUndecodable {
        /// The fence for the closing write.
        lease: Lease,
        /// What does not decode.
        reason: String,
    },
    /// No such job.
    NotFound,
    /// The job is finished already.
    Terminal(JobStatus),
    /// A live lease is held — by another instance, or by this one (a duplicate delivery).
    Busy {
        /// Who holds it.
        holder: InstanceId,
        /// When to try again: the time left on the lease, at least one second.
        retry_after: Duration,
    },
    /// Cancel was requested before this attempt could start; the job is now `canceled`.
    Canceled,
    /// The job was acquired `max_attempts` times already; it is now `failed`.
    AttemptsExhausted,
}

/// The answer to a heartbeat that kept the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// Whether cancel was requested: the cancel check rides on the heartbeat.
    pub cancel_requested: bool,
    /// The lease's new expiry.
    pub expires_at: Timestamp,
}

/// The answer to a progress write from the lease holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOutcome {
    /// Written.
    Applied,
    /// Refused, changing nothing: the job already shows more progress (a stale or
    /// reordered write, or a retried attempt still catching up).
    Regressed {
        /// What the job shows.
        current: Percent,
    },
}

/// The answer to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued and is now `canceled`.
    Canceled,
    /// The job is running; its worker will stop at the next checkpoint.
    Requested {
        /// False when cancel had been requested before (the call is idempotent).
        first: bool,
    },
    /// The job had finished already; nothing changed.
    AlreadyTerminal(JobStatus),
    /// No such job.
    NotFound,
}

/// Which jobs to list: newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Page size, 1 to [`ListQuery::MAX_LIMIT`].
    limit: u32,
    /// Continue after this position (from [`JobPage::next`]).
    pub after: Option<ListCursor>,
}

impl ListQuery {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    /// A first page of `limit` jobs.
    pub fn new(status: Option<JobStatus>, limit: u32) -> Result<Self, ValidationError> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        Ok(Self {
            status,
            limit,
            after: None,
        })
    }

    /// The same query, continuing after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: Option<ListCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// The page size.
    pub const fn limit(&self) -> u32 {
        self.limit
    }
}

/// A position in the newest-first order: `(created_at, id)`, both descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    /// Creation time of the last job of the previous page.
    pub created_at: Timestamp,
    /// Its id, breaking ties.
    pub id: JobId,
}

/// One page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListCursor>,
}

/// What the sweeper looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPolicy {
    /// A running job is stuck once its lease expired this long ago (the queue's own retries
    /// had their chance to take it over).
    pub expired_for: Duration,
    /// A stuck job that used up this many attempts fails instead of being requeued.
    pub max_attempts: u32,
    /// A queued job untouched this long is reported for re-enqueueing (its task may have
    /// been lost); reporting it touches it, so it comes back once per period. `None`: never.
    pub queued_for: Option<Duration>,
    /// At most this many queued jobs are reported per sweep, the longest untouched first,
    /// so a pass over a deep backlog stays short (each report costs the caller a question
    /// to the queue); the rest come in later passes. Stuck running jobs are never limited.
    pub queued_limit: u32,
}

/// A job the sweeper moved, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptJob {
    /// The job.
    pub id: JobId,
    /// `queued` (the caller re-enqueues it), `failed` or `canceled`.
    pub status: JobStatus,
    /// What it was before: `running` (a dead holder's job, moved) or `queued` (reported
    /// because it sat untouched for `queued_for`).
    pub from: JobStatus,
}

/// A stream of job ids, as events about them happen.
pub type JobIdStream = Pin<Box<dyn Stream<Item = JobId> + Send>>;

/// What a cancel subscription reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelEvent {
    /// Cancel was requested for this running job.
    Cancel(JobId),
    /// The subscription's connection was re-established after a drop: this is its new
    /// session, and the old one is gone. A worker re-registers it on every lease it holds
    /// ([`JobRepository::register_session`]) before its next heartbeat.
    Session(HolderSession),
    /// The subscription's connection was lost; a [`CancelEvent::Session`] follows when it
    /// is back. Until then the worker has no live session, and a lease it takes records
    /// none (the TTL alone decides when it has expired).
    SessionLost,
}

/// Cancel events, as they happen.
pub type CancelStream = Pin<Box<dyn Stream<Item = CancelEvent> + Send>>;

/// A subscription to cancel requests, and the liveness handle of the connection it holds.
pub struct CancelSubscription {
    /// The session of the subscription's connection when it was made; `None` where the
    /// store has no sessions to report.
    pub session: Option<HolderSession>,
    /// Cancel requests and session changes from now on.
    pub events: CancelStream,
}

impl std::fmt::Debug for CancelSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelSubscription")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Storage of video jobs, with the lease protocol.
///
/// Implementations read time from one clock (the database's in Postgres), make every
/// operation atomic, and apply exactly the transitions of [`crate::transition`].
#[async_trait]
pub trait JobRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new queued job.
    async fn create(&self, job: NewJob) -> Result<Job, RepoError>;

    /// Stores a new queued job unless `request`'s key already names one, in one atomic step:
    /// of any number of concurrent calls with the same scope and key, exactly one creates.
    /// A key older than `request.retention` counts as absent. Also purges a few expired keys,
    /// so the store of keys stays bounded without a process of its own.
    async fn create_idempotent(
        &self,
        job: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError>;

    /// One job, if it exists.
    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError>;

    /// Jobs newest first, a page at a time.
    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError>;

    /// Takes a lease: on a queued job, or a running one whose lease expired or whose
    /// holder's session no longer exists in the store (takeover). Whether that session
    /// exists is the store's view, decided in the same atomic step.
    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError>;

    /// Records `session` as the holder's liveness handle on the lease it holds (after its
    /// subscription reconnected), fenced like every write: `LeaseLost` and no change once
    /// the lease moved on. Touches neither the expiry nor anything a watcher sees.
    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError>;

    /// Extends the lease by `ttl` from now and tells whether cancel was requested.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError>;

    /// Writes user-facing progress; refused if it would go backwards.
    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError>;

    /// Gives the job back without finishing it: `queued` at once (or `canceled` if cancel
    /// was requested), so a retry need not wait for the lease to expire. `error` records why.
    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError>;

    /// Ends the job and clears the lease in one step. A cancel requested before this wins
    /// over the outcome. Returns the status the job ended with.
    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError>;

    /// Asks for a job to be canceled.
    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError>;

    /// Cancel requests of running jobs from now on, on a long-lived connection whose session
    /// is this process's liveness handle. Subscribe *before* reading the state you act on,
    /// so a request in between is not missed; the heartbeat is the fallback. Dropping the
    /// subscription closes its connection, which ends its session.
    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError>;

    /// Moves running jobs whose lease expired long ago, or whose holder's session no longer
    /// exists, back to `queued` (or to `failed` past
    /// the attempt limit, or `canceled` when cancel was requested), and reports queued jobs
    /// untouched for `policy.queued_for`. One sweeper at a time: a concurrent call finds
    /// nothing.
    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError>;

    /// Jobs whose status, progress or cancel flag changed, from now on (live progress).
    /// Subscribe before reading the job, so a change in between is not missed.
    async fn job_updates(&self) -> Result<JobIdStream, RepoError>;

    /// Moves a queued job's delivery generation from `from` to `from + 1` (compare-and-set:
    /// only if it is still `queued` at `from`). `Some(new generation)` if it moved — the
    /// caller then enqueues that generation's task — `None` if the job moved on (another
    /// sweeper advanced it, a worker took it, it ended).
    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError>;

    /// Fails a job no worker ever started (its enqueue was refused): `true` if it was queued
    /// with no attempt and is now `failed` with `error`; otherwise nothing changes.
    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError>;
}
