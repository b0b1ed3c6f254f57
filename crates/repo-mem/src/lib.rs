//! An in-memory [`JobRepository`] for unit tests and the `demo` command.
//!
//! Plain state behind a `std::sync::Mutex`: every operation locks, applies one pure
//! transition from `domain::transition` and unlocks, so each is atomic. Time comes from an
//! injectable [`Clock`], so tests can step it across lease expiries.
//!
//! Database sessions are modelled too, so the liveness rule (a lease whose holder's session
//! is gone may be taken over before it expires) runs here as it does on Postgres: each
//! cancel subscription opens a session, and a test can open more, end one (the holder's
//! process "died" or its connection dropped) or make every subscription reconnect under a
//! new session ([`MemRepository::reconnect_listeners`]).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelEvent, CancelOutcome, CancelSubscription, Clock,
    Decision, FencedError, FinalOutcome, HeartbeatAck, HolderSession, IdempotentOutcome,
    IdempotentRequest, Job, JobError, JobId, JobIdStream, JobPage, JobRepository, JobStatus, Lease,
    ListCursor, ListQuery, NewJob, ProgressOutcome, ProgressReport, RepoError, SweepPolicy,
    SweptJob, SystemClock, Timestamp,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};

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
    /// The sessions that exist, and the cancel subscriptions holding one. Locked after
    /// `jobs` when both are needed (acquire and sweep ask it inside a transition).
    sessions: Arc<Mutex<Sessions>>,
}

/// The modelled database sessions.
#[derive(Debug, Default)]
struct Sessions {
    /// The last pid handed out.
    last_pid: i32,
    /// Sessions that exist.
    live: HashSet<HolderSession>,
    /// Open cancel subscriptions by key: their session (`None` while disconnected) and
    /// where to report a new one.
    listeners: HashMap<u64, (Option<HolderSession>, mpsc::UnboundedSender<HolderSession>)>,
    /// The last listener key handed out.
    last_listener: u64,
}

impl Sessions {
    fn open(&mut self, now: Timestamp) -> HolderSession {
        self.last_pid = self.last_pid.wrapping_add(1);
        let session = HolderSession {
            pid: self.last_pid,
            backend_start: now,
        };
        self.live.insert(session);
        session
    }
}

fn lock_sessions(sessions: &Mutex<Sessions>) -> MutexGuard<'_, Sessions> {
    // Every change is a single insert or remove: a panic cannot leave it half made.
    sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cancel subscription's events; dropping it closes its "connection", which ends its
/// session.
struct Subscription {
    events: Pin<Box<dyn Stream<Item = CancelEvent> + Send>>,
    sessions: Arc<Mutex<Sessions>>,
    key: u64,
}

impl Stream for Subscription {
    type Item = CancelEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CancelEvent>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut sessions = lock_sessions(&self.sessions);
        if let Some((Some(session), _)) = sessions.listeners.remove(&self.key) {
            sessions.live.remove(&session);
        }
    }
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
            sessions: Arc::default(),
        }
    }

    /// Opens a database session, as a connection would.
    pub fn open_session(&self) -> HolderSession {
        lock_sessions(&self.sessions).open(self.clock.now())
    }

    /// Ends `session`, as when its process dies or its connection drops. A cancel
    /// subscription that held it stays disconnected until [`Self::reconnect_listeners`].
    pub fn end_session(&self, session: HolderSession) {
        let mut sessions = lock_sessions(&self.sessions);
        sessions.live.remove(&session);
        for (held, _) in sessions.listeners.values_mut() {
            if *held == Some(session) {
                *held = None;
            }
        }
    }

    /// Whether `session` exists.
    pub fn session_alive(&self, session: &HolderSession) -> bool {
        lock_sessions(&self.sessions).live.contains(session)
    }

    /// The sessions of the open cancel subscriptions that are connected.
    pub fn listener_sessions(&self) -> Vec<HolderSession> {
        lock_sessions(&self.sessions)
            .listeners
            .values()
            .filter_map(|(session, _)| *session)
            .collect()
    }

    /// Every open cancel subscription drops its connection (ending its session, if it
    /// still had one) and reconnects under a new session, which it reports as
    /// [`CancelEvent::Session`]. Returns the new sessions.
    pub fn reconnect_listeners(&self) -> Vec<HolderSession> {
        let now = self.clock.now();
        let mut guard = lock_sessions(&self.sessions);
        let sessions = &mut *guard;
        let mut opened = Vec::new();
        for (held, tx) in sessions.listeners.values_mut() {
            if let Some(old) = held.take() {
                sessions.live.remove(&old);
            }
            sessions.last_pid = sessions.last_pid.wrapping_add(1);
            let session = HolderSession {
                pid: sessions.last_pid,
                backend_start: now,
            };
            sessions.live.insert(session);
            *held = Some(session);
            // A receiver gone is a subscription being dropped; its drop cleans up.
            let _ = tx.send(session);
            opened.push(session);
        }
        opened
    }

    /// Whether the holder of `job`'s running lease is known gone, in this store's view.
    fn holder_gone(&self, job: &Job) -> bool {
        job.holder_gone(|session| self.session_alive(session))
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
            .apply(request.job_id, |job, now| {
                job.acquire(request, now, self.holder_gone(job))
            })
            .unwrap_or(AcquireOutcome::NotFound))
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError> {
        self.fenced(lease, |job, now| job.heartbeat(lease, ttl, now))
    }

    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError> {
        self.fenced(lease, |job, now| job.register_session(lease, session, now))
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

    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError> {
        // A lagged receiver skips what it missed; the heartbeat still reports the cancel.
        let cancels = BroadcastStream::new(self.cancels.subscribe())
            .filter_map(Result::ok)
            .map(CancelEvent::Cancel);
        let (tx, rx) = mpsc::unbounded_channel();
        let (session, key) = {
            let mut sessions = lock_sessions(&self.sessions);
            let session = sessions.open(self.clock.now());
            sessions.last_listener += 1;
            let key = sessions.last_listener;
            sessions.listeners.insert(key, (Some(session), tx));
            (session, key)
        };
        let reconnects = UnboundedReceiverStream::new(rx).map(CancelEvent::Session);
        let events = Subscription {
            events: Box::pin(cancels.merge(reconnects)),
            sessions: self.sessions.clone(),
            key,
        };
        Ok(CancelSubscription {
            session: Some(session),
            events: Box::pin(events),
        })
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
        let mut jobs = self.jobs();
        // Decide for every job first: queued reports are limited to the longest untouched.
        let mut decided: Vec<(JobId, Job, JobStatus)> = Vec::new();
        for job in jobs.values() {
            let gone = self.holder_gone(job);
            if let Decision {
                next: Some(next),
                answer: Some(status),
            } = job.sweep(policy, now, gone)
            {
                decided.push((job.id, next, status));
            }
        }
        let limit = usize::try_from(policy.queued_limit).unwrap_or(usize::MAX);
        let mut waiting: Vec<(domain::Timestamp, JobId)> = decided
            .iter()
            .filter_map(|(id, _, _)| {
                let job = jobs.get(id)?;
                (job.status == JobStatus::Queued).then_some((job.updated_at, *id))
            })
            .collect();
        waiting.sort();
        let skipped: HashSet<JobId> = waiting.into_iter().skip(limit).map(|(_, id)| id).collect();
        let mut swept = Vec::new();
        for (id, next, status) in decided {
            if skipped.contains(&id) {
                continue;
            }
            let Some(job) = jobs.get_mut(&id) else {
                continue;
            };
            if job.visibly_differs(&next) {
                let _ = self.updates.send(job.id);
            }
            let from = job.status;
            *job = next;
            swept.push(SweptJob { id, status, from });
        }
        Ok(swept)
    }
}
