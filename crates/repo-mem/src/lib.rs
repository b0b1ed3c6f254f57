//! An in-memory [`JobRepository`] for unit tests and the `demo` command.
//!
//! Plain state behind a `std::sync::Mutex`: every operation locks, applies one pure
//! transition from `domain::transition` and unlocks, so each is atomic. Time comes from an
//! injectable [`Clock`], so tests can step it across lease expiries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelOutcome, CancelStream, Clock, Decision, FencedError,
    FinalOutcome, HeartbeatAck, IdempotentOutcome, IdempotentRequest, Job, JobError, JobId,
    JobIdStream, JobPage, JobRepository, JobStatus, Lease, ListCursor, ListQuery, NewJob,
    ProgressOutcome, ProgressReport, RepoError, SweepPolicy, SweptJob, SystemClock, Timestamp,
};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// How many cancel notifications a slow subscriber may fall behind before it misses some
/// (it then still learns of the cancel from its next heartbeat).
const CANCEL_CHANNEL_CAPACITY: usize = 1024;

/// Jobs in memory.
#[derive(Debug)]
pub struct MemRepository {
    /// The jobs. Locked for one transition at a time and never held across an `.await`,
    /// which is what makes each operation atomic.
    jobs: Mutex<HashMap<JobId, Job>>,
    /// Idempotency keys by (scope, key): the request's fingerprint, the job, when stored.
    /// Locked *before* `jobs` by `create_idempotent` (the only place that takes both), so
    /// checking the key and inserting the job are one step; never held across an `.await`.
    idempotency: Mutex<HashMap<([u8; 32], String), StoredKey>>,
    /// Where every timestamp comes from.
    clock: Arc<dyn Clock>,
    /// Ids of running jobs whose cancel was just requested.
    cancels: broadcast::Sender<JobId>,
    /// Ids of jobs whose status, progress or cancel flag just changed.
    updates: broadcast::Sender<JobId>,
}

/// What an idempotency key remembers.
#[derive(Debug, Clone)]
struct StoredKey {
    fingerprint: [u8; 32],
    job_id: JobId,
    stored_at: Timestamp,
}

impl Default for MemRepository {
    fn default() -> Self {
        Self::new()
    }
}

impl MemRepository {
    /// A repository on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A repository reading time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let (cancels, _) = broadcast::channel(CANCEL_CHANNEL_CAPACITY);
        let (updates, _) = broadcast::channel(CANCEL_CHANNEL_CAPACITY);
        Self {
            jobs: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            clock,
            cancels,
            updates,
        }
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, Job>> {
        // A panic while holding the lock cannot leave a half-applied transition: a job is
        // replaced whole, after the pure function returned.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `transition` to job `id` atomically; `None` if there is no such job.
    fn apply<T>(
        &self,
        id: JobId,
        transition: impl FnOnce(&Job, Timestamp) -> Decision<T>,
    ) -> Option<T> {
        let now = self.clock.now();
        let mut jobs = self.jobs();
        let job = jobs.get_mut(&id)?;
        let Decision { next, answer } = transition(job, now);
        if let Some(next) = next {
            let visible = job.visibly_differs(&next);
            *job = next;
            if visible {
                // No receiver is not an error: nobody is watching.
                let _ = self.updates.send(id);
            }
        }
        Some(answer)
    }

    fn fenced<T>(
        &self,
        lease: &Lease,
        transition: impl FnOnce(&Job, Timestamp) -> Decision<Result<T, FencedError>>,
    ) -> Result<T, FencedError> {
        self.apply(lease.job_id, transition)
            .unwrap_or(Err(FencedError::LeaseLost))
    }
}

#[async_trait]
impl JobRepository for MemRepository {
    async fn create(&self, new: NewJob) -> Result<Job, RepoError> {
        let job = Job::new(new.id, new.input, self.clock.now());
        let mut jobs = self.jobs();
        if jobs.contains_key(&new.id) {
            return Err(RepoError::AlreadyExists(new.id));
        }
        jobs.insert(new.id, job.clone());
        Ok(job)
    }

    async fn create_idempotent(
        &self,
        new: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError> {
        let now = self.clock.now();
        // Forgotten once `retention` has passed (a clock that went back forgets nothing).
        let forgotten = |stored: &StoredKey| {
            (now - stored.stored_at)
                .to_std()
                .is_ok_and(|age| age >= request.retention)
        };
        let mut keys = self
            .idempotency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The purge: expired keys go (all of them; a map in memory is cheap to scan).
        keys.retain(|_, stored| !forgotten(stored));
        let slot = (request.scope, request.key.as_str().to_owned());
        let mut jobs = self.jobs();
        if let Some(stored) = keys.get(&slot) {
            if stored.fingerprint != request.fingerprint {
                return Ok(IdempotentOutcome::KeyReused {
                    job_id: stored.job_id,
                });
            }
            let job = jobs.get(&stored.job_id).cloned().ok_or_else(|| {
                RepoError::Corrupt(format!(
                    "idempotency key names missing job {}",
                    stored.job_id
                ))
            })?;
            return Ok(IdempotentOutcome::Existing(job));
        }
        if jobs.contains_key(&new.id) {
            return Err(RepoError::AlreadyExists(new.id));
        }
        let job = Job::new(new.id, new.input, now);
        jobs.insert(new.id, job.clone());
        keys.insert(
            slot,
            StoredKey {
                fingerprint: request.fingerprint,
                job_id: new.id,
                stored_at: now,
            },
        );
        Ok(IdempotentOutcome::Created(job))
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        Ok(self.jobs().get(&id).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError> {
        let key = |job: &Job| (job.created_at, job.id);
        let mut jobs: Vec<Job> = self
            .jobs()
            .values()
            .filter(|job| query.status.is_none_or(|s| job.status == s))
            .filter(|job| query.after.is_none_or(|c| key(job) < (c.created_at, c.id)))
            .cloned()
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(key(job)));
        let limit = usize::try_from(query.limit()).unwrap_or(usize::MAX);
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = more
            .then(|| {
                jobs.last().map(|j| ListCursor {
                    created_at: j.created_at,
                    id: j.id,
                })
            })
            .flatten();
        Ok(JobPage { jobs, next })
    }

    /// Never answers `AcquiredUndecodable`: jobs are held as domain values, so there is no
    /// row that could fail to decode (the runner's handling of it is tested with a wrapper).
    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError> {
        Ok(self
            .apply(request.job_id, |job, now| job.acquire(request, now))
            .unwrap_or(AcquireOutcome::NotFound))
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError> {
        self.fenced(lease, |job, now| job.heartbeat(lease, ttl, now))
    }

    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError> {
        report.validate().map_err(RepoError::from)?;
        self.fenced(lease, |job, now| job.report_progress(lease, report, now))
    }

    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError> {
        self.fenced(lease, |job, now| job.release(lease, error.as_ref(), now))
    }

    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError> {
        self.fenced(lease, |job, now| job.finalize(lease, outcome, now))
    }

    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError> {
        let outcome = self
            .apply(id, |job, now| job.request_cancel(now))
            .unwrap_or(CancelOutcome::NotFound);
        if outcome == (CancelOutcome::Requested { first: true }) {
            // No receiver is not an error: nobody is running a job in this process.
            let _ = self.cancels.send(id);
        }
        Ok(outcome)
    }

    async fn cancel_notifications(&self) -> Result<CancelStream, RepoError> {
        // A lagged receiver skips what it missed; the heartbeat still reports the cancel.
        let stream = BroadcastStream::new(self.cancels.subscribe()).filter_map(Result::ok);
        Ok(Box::pin(stream))
    }

    async fn job_updates(&self) -> Result<JobIdStream, RepoError> {
        let stream = BroadcastStream::new(self.updates.subscribe()).filter_map(Result::ok);
        Ok(Box::pin(stream))
    }

    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError> {
        Ok(self
            .apply(id, |job, now| job.fail_unstarted(&error, now))
            .unwrap_or(false))
    }

    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError> {
        Ok(self
            .apply(id, |job, now| job.advance_delivery(from, now))
            .flatten())
    }

    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError> {
        let now = self.clock.now();
        let mut swept = Vec::new();
        for job in self.jobs().values_mut() {
            let Decision { next, answer } = job.sweep(policy, now);
            if let (Some(next), Some(status)) = (next, answer) {
                if job.visibly_differs(&next) {
                    let _ = self.updates.send(job.id);
                }
                let from = job.status;
                *job = next;
                swept.push(SweptJob {
                    id: job.id,
                    status,
                    from,
                });
            }
        }
        Ok(swept)
    }
}
