//! One attempt at one job: acquire, run beside heartbeat and watchers, end with one write.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use domain::{
    AcquireOutcome, AcquireRequest, ErrorCode, FencedError, FinalOutcome, HeartbeatAck,
    HolderSession, Job, JobError, JobId, JobRepository, JobStatus, Lease, ProgressOutcome,
    ProgressReport, RepoError,
};
use pipeline::{
    Pipeline, ProgressEvent, ProgressSink, ProgressTracker, Published, StageContext, StageError,
};
use tokio::sync::watch;
use tokio::task::JoinError;
use tokio::time::{Duration, Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::progress_writer::ProgressWriter;
use crate::scratch::AttemptDir;
use crate::{CancelHub, CancelWatch, RunOutcome, RunnerConfig};

/// Why the pipeline was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Cancel was requested (notification or heartbeat).
    Cancel,
    /// The execution limit passed.
    Deadline,
    /// This process is shutting down.
    Shutdown,
    /// Another worker holds the job now: write nothing more.
    LeaseLost,
    /// The database did not answer heartbeats for so long that the lease may be gone:
    /// write nothing more, as if lost.
    Unreachable,
}

impl Stop {
    /// Lease loss and unreachability override any earlier reason: they forbid all writes.
    fn overrides(self, current: Option<Self>) -> bool {
        match current {
            None => true,
            Some(Self::LeaseLost | Self::Unreachable) => false,
            Some(_) => matches!(self, Self::LeaseLost | Self::Unreachable),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Deadline => "deadline",
            Self::Shutdown => "shutdown",
            Self::LeaseLost => "lease_lost",
            Self::Unreachable => "database_unreachable",
        }
    }
}

type PipelineResult = Result<Result<Published, StageError>, JoinError>;

/// One heartbeat call in flight: when it was sent, and its answer (a call past its bound
/// answers `Unavailable`). Polled beside everything else, so a hanging call never keeps the
/// loop from serving cancel, shutdown or the deadline.
type Beat<'a> =
    Pin<Box<dyn Future<Output = (Instant, Result<HeartbeatAck, FencedError>)> + Send + 'a>>;

/// The outstanding heartbeat's answer; pending forever when none is in flight (the select
/// arm is disabled then anyway).
async fn beat_answer(beat: &mut Option<Beat<'_>>) -> (Instant, Result<HeartbeatAck, FencedError>) {
    match beat {
        Some(call) => call.as_mut().await,
        None => std::future::pending().await,
    }
}

/// What an attempt knows of its liveness handle: the cancel connection's session as it
/// changes, and the one last recorded on the lease.
struct Liveness {
    sessions: watch::Receiver<Option<HolderSession>>,
    registered: Option<HolderSession>,
}

/// A lease just taken: what the attempt runs under.
struct Held<'a> {
    lease: &'a Lease,
    /// The job as the acquire returned it.
    job: Job,
    /// When the acquire was sent: the lease is reckoned to end a TTL after this, never later.
    asked_at: Instant,
    liveness: Liveness,
}

/// Time for the closing write, retries included.
const CLOSING_BUDGET: Duration = Duration::from_secs(5);
/// The same on shutdown, kept out of the drain so the whole stop fits the grace period.
const CLOSING_BUDGET_ON_SHUTDOWN: Duration = Duration::from_millis(1500);

/// Runs jobs: one [`Runner::run`] per delivery.
#[derive(Debug, Clone)]
pub struct Runner {
    repo: Arc<dyn JobRepository>,
    pipeline: Pipeline,
    hub: CancelHub,
    config: Arc<RunnerConfig>,
}

fn code(code: &'static str) -> ErrorCode {
    ErrorCode::new(code).unwrap_or_else(|_| unreachable!("{code} is a valid error code"))
}

impl Runner {
    /// A runner over `repo`, running `pipeline`, fed cancels by `hub`.
    pub fn new(
        repo: Arc<dyn JobRepository>,
        pipeline: Pipeline,
        hub: CancelHub,
        config: RunnerConfig,
    ) -> Self {
        Self {
            repo,
            pipeline,
            hub,
            config: Arc::new(config),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs one delivery of `job_id` to its end. `shutdown` asks a running job to stop at
    /// its next checkpoint and give the job back.
    pub async fn run(&self, job_id: JobId, shutdown: &CancellationToken) -> RunOutcome {
        let outcome = self.acquire_and_run(job_id, shutdown).await;
        metrics::counter!("video_worker_jobs_total", "outcome" => outcome.label()).increment(1);
        outcome
    }

    async fn acquire_and_run(&self, job_id: JobId, shutdown: &CancellationToken) -> RunOutcome {
        if shutdown.is_cancelled() {
            return RunOutcome::ShuttingDown;
        }
        // Before acquire: a cancel from here on reaches this attempt.
        let watch = self.hub.watch(job_id);
        // Likewise a new session of the cancel connection: re-registered on the lease.
        let mut sessions = self.hub.sessions();
        let session = *sessions.borrow_and_update();
        let request = AcquireRequest {
            job_id,
            holder: self.config.instance_id.clone(),
            ttl: self.config.lease_ttl,
            max_attempts: self.config.max_attempts,
            session,
        };
        // Before the call: the lease's expiry is at most TTL after this instant.
        let asked_at = Instant::now();
        let (lease, job) = match self.repo.acquire(&request).await {
            Ok(AcquireOutcome::Acquired { lease, job }) => (lease, job),
            Ok(AcquireOutcome::AcquiredUndecodable { lease, reason }) => {
                return self.end_undecodable(&lease, reason).await;
            }
            Ok(AcquireOutcome::NotFound) => return RunOutcome::NotFound,
            Ok(AcquireOutcome::Terminal(status)) => return RunOutcome::Skipped(status),
            Ok(AcquireOutcome::Busy {
                holder,
                retry_after,
            }) => {
                return RunOutcome::Busy {
                    holder,
                    retry_after,
                };
            }
            Ok(AcquireOutcome::Canceled) => return RunOutcome::Canceled,
            Ok(AcquireOutcome::AttemptsExhausted) => {
                let error = self
                    .repo
                    .get(job_id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|j| j.error);
                return RunOutcome::Failed {
                    error: error.unwrap_or_else(|| {
                        JobError::new(code(ErrorCode::ATTEMPTS_EXHAUSTED), "attempts exhausted")
                    }),
                };
            }
            Err(error) if error.is_retryable() => {
                return RunOutcome::Unavailable {
                    reason: error.to_string(),
                };
            }
            Err(error) => {
                return RunOutcome::Broken {
                    reason: error.to_string(),
                };
            }
        };
        let span = tracing::info_span!(
            "attempt",
            job.id = %job_id,
            lease.epoch = lease.epoch.get(),
            attempt = lease.attempt,
        );
        async move {
            tracing::info!("lease acquired");
            let liveness = Liveness {
                sessions,
                registered: session,
            };
            let held = Held {
                lease: &lease,
                job: *job,
                asked_at,
                liveness,
            };
            let outcome = self.attempt(held, &watch, shutdown).await;
            tracing::info!(outcome = outcome.label(), "attempt ended");
            outcome
        }
        .instrument(span)
        .await
    }

    /// The lease is ours but the job's row does not decode: no attempt can run it, so it
    /// ends `failed` (`invalid_stored_job`) through the fenced finalize, never left `running`
    /// behind a 2xx. If that write does not go through, the outcome says so (a retry).
    async fn end_undecodable(&self, lease: &Lease, reason: String) -> RunOutcome {
        tracing::error!(job.id = %lease.job_id, %reason, "acquired a job whose row does not decode; failing it");
        metrics::counter!("video_worker_broken_jobs_total").increment(1);
        let error = JobError::new(
            code(ErrorCode::INVALID_STORED_JOB),
            format!("the stored job is invalid: {reason}"),
        );
        self.finalize(lease, FinalOutcome::Failed(error)).await
    }

    /// Starts a heartbeat call, bounded by [`RunnerConfig::heartbeat_call_timeout`].
    fn start_beat<'a>(&'a self, lease: &'a Lease) -> Beat<'a> {
        let sent = Instant::now();
        let bound = self.config.heartbeat_call_timeout();
        let call = self.repo.heartbeat(lease, self.config.lease_ttl);
        Box::pin(async move {
            let result = match tokio::time::timeout(bound, call).await {
                Ok(result) => result,
                Err(_) => Err(FencedError::Repo(RepoError::Unavailable(
                    format!(
                        "the heartbeat got no answer within {} ms",
                        bound.as_millis()
                    )
                    .into(),
                ))),
            };
            (sent, result)
        })
    }

    async fn attempt(
        &self,
        held: Held<'_>,
        watch: &CancelWatch,
        shutdown: &CancellationToken,
    ) -> RunOutcome {
        let Held {
            lease,
            job,
            asked_at,
            mut liveness,
        } = held;
        let cfg = &self.config;
        // Removed at the end of this attempt whatever its outcome, and by its drop guard if
        // this future is dropped first.
        let scratch = match AttemptDir::create(&cfg.work_root, job.id, lease.epoch).await {
            Ok(dir) => dir,
            Err(e) => {
                let error = JobError::new(
                    code("work_dir_unavailable"),
                    format!("{}: {e}", cfg.work_root.display()),
                );
                return self.release(lease, error).await;
            }
        };
        let work_dir: PathBuf = scratch.path().to_owned();
        let token = CancellationToken::new();
        let (sink, mut events) = ProgressSink::channel();
        let ctx = StageContext::new(
            pipeline::Attempt {
                job_id: job.id,
                epoch: lease.epoch,
                input: Arc::new(job.input),
                work_dir: work_dir.clone(),
            },
            sink,
            token.clone(),
        );
        let pipeline = self.pipeline.clone();
        // Aborted if this attempt is dropped: no pipeline may outlive its scratch.
        let mut task = AbortOnDropHandle::new(tokio::spawn(
            async move { pipeline.run(&ctx).await }.in_current_span(),
        ));

        let mut tracker = ProgressTracker::new(self.pipeline.weights());
        let mut writer = ProgressWriter::new(cfg.progress_interval);
        let started = Instant::now();
        let deadline = started + cfg.max_runtime;
        let mut next_beat = started + cfg.jittered_heartbeat();
        let mut last_beat = started;
        // Until when this worker may trust it holds the lease: TTL after the last heartbeat
        // was *sent* (the database's expiry is later), less a margin. Past it, another worker
        // may hold the job: one fenced heartbeat decides, and without an answer within its
        // bound this one stops writing — even while a database call hangs.
        let margin = cfg.lease_ttl / 10;
        let mut held_until = asked_at + cfg.lease_ttl - margin;
        // Past `held_until` with no confirmation: the next heartbeat's answer decides
        // (a process paused past its TTL learns here whether it was taken over).
        let mut overdue = false;
        let mut beat: Option<Beat<'_>> = None;
        let mut stop: Option<Stop> = None;
        let mut stopped_at: Option<Instant> = None;

        let result: Option<PipelineResult> = loop {
            let writable = stop.is_none();
            let beating = !matches!(stop, Some(Stop::LeaseLost | Stop::Unreachable));
            let flush_at = writer.flush_at().filter(|_| writable);
            let drain_until = stopped_at.map(|t| t + self.drain_for(stop));
            let mut reason: Option<Stop> = None;
            tokio::select! {
                biased;
                joined = &mut task => break Some(joined),
                () = watch.cancelled(), if stop.is_none() => reason = Some(Stop::Cancel),
                () = shutdown.cancelled(), if stop.is_none() => reason = Some(Stop::Shutdown),
                () = sleep_until(deadline), if stop.is_none() => reason = Some(Stop::Deadline),
                () = sleep_until(drain_until.unwrap_or(deadline)), if drain_until.is_some() => {
                    tracing::warn!(grace_ms = self.drain_for(stop).as_millis(), "pipeline did not stop in time; aborting it");
                    task.abort();
                    break None;
                }
                () = sleep_until(held_until), if beating && !overdue => {
                    // The lease can no longer be trusted locally; the database decides:
                    // taken → superseded, still ours → go on, no answer → unreachable.
                    tracing::warn!("no heartbeat confirmed for a lease period; asking the database");
                    overdue = true;
                    if beat.is_none() {
                        beat = Some(self.start_beat(lease));
                    }
                }
                (sent, answer) = beat_answer(&mut beat), if beating && beat.is_some() => {
                    beat = None;
                    match answer {
                        Ok(ack) => {
                            metrics::histogram!("video_worker_heartbeat_gap_seconds")
                                .record((sent - last_beat).as_secs_f64());
                            last_beat = sent;
                            held_until = sent + cfg.lease_ttl - margin;
                            overdue = false;
                            if ack.cancel_requested {
                                reason = Some(Stop::Cancel);
                            }
                            next_beat = Instant::now() + cfg.jittered_heartbeat();
                        }
                        Err(FencedError::LeaseLost) => reason = Some(Stop::LeaseLost),
                        Err(FencedError::Repo(error)) if overdue => {
                            tracing::error!(%error, "the database did not confirm the lease in time; abandoning it");
                            reason = Some(Stop::Unreachable);
                        }
                        Err(FencedError::Repo(error)) => {
                            // Likely one dead connection: the retry gets a fresh one.
                            tracing::warn!(%error, "heartbeat failed; retrying");
                            next_beat = Instant::now() + cfg.heartbeat_retry_delay();
                        }
                    }
                }
                Ok(()) = liveness.sessions.changed(), if beating => {
                    // The cancel connection came back under a new session: the lease must
                    // name it, or this live worker looks dead and may be taken over.
                    reason = self.register_session(lease, &mut liveness).await;
                }
                () = sleep_until(next_beat), if beating && beat.is_none() => {
                    // A re-registration that failed is tried again before the heartbeat.
                    reason = self.register_session(lease, &mut liveness).await;
                    if reason.is_none() {
                        beat = Some(self.start_beat(lease));
                    }
                }
                Some(event) = events.recv() => {
                    record_stage_duration(&event);
                    if writable {
                        let tracked = tracker.track(&event);
                        if let Some(report) = writer.offer(tracked, Instant::now()) {
                            reason = self.write_progress(lease, &report, held_until).await;
                        }
                    }
                }
                () = sleep_until(flush_at.unwrap_or(deadline)), if flush_at.is_some() => {
                    if let Some(report) = writer.flush(Instant::now()) {
                        reason = self.write_progress(lease, &report, held_until).await;
                    }
                }
            }
            if let Some(new) = reason
                && new.overrides(stop)
            {
                tracing::info!(reason = new.label(), "stopping the pipeline");
                if matches!(new, Stop::LeaseLost) {
                    metrics::counter!("video_worker_lease_losses_total").increment(1);
                }
                stop = Some(new);
                stopped_at.get_or_insert_with(Instant::now);
                token.cancel();
            }
        };
        // The pipeline may end before its last events were read: their stage timings count.
        // On success their progress is moot (finalize fills the bar); otherwise the last
        // report still held back goes out, so a failed or retried job shows where it stopped.
        let succeeded = matches!(result, Some(Ok(Ok(_))));
        while let Ok(event) = events.try_recv() {
            record_stage_duration(&event);
            if !succeeded && stop.is_none() {
                writer.offer(tracker.track(&event), Instant::now());
            }
        }
        // Not on shutdown: the grace period belongs to the release, which lets the job run
        // again at once; a hanging progress write could use it up.
        if !succeeded
            && !matches!(
                stop,
                Some(Stop::LeaseLost | Stop::Unreachable | Stop::Shutdown)
            )
            && let Some(report) = writer.flush(Instant::now())
        {
            let _ = self.write_progress(lease, &report, held_until).await;
        }
        if let (Some(Stop::Cancel), Some(at)) = (stop, stopped_at) {
            metrics::histogram!("video_worker_cancel_stop_seconds")
                .record(at.elapsed().as_secs_f64());
        }
        let outcome = self.conclude(lease, stop, result).await;
        // Scratch goes whatever the outcome; a retry resumes from the segment cache, which
        // is held to its budget here.
        drop(task);
        scratch.remove().await;
        if let Some(cache) = self.pipeline.cache()
            && let Err(e) = cache.enforce().await
        {
            tracing::warn!(error = %e, "segment cache not trimmed");
        }
        outcome
    }

    /// How long a stopped pipeline may take to reach its checkpoint. On shutdown part of
    /// the grace is kept for the release, so the whole drain fits the platform's grace.
    fn drain_for(&self, stop: Option<Stop>) -> Duration {
        let grace = self.config.drain_grace;
        if stop == Some(Stop::Shutdown) {
            grace.saturating_sub(CLOSING_BUDGET_ON_SHUTDOWN)
        } else {
            grace
        }
    }

    /// Records the cancel connection's current session on the lease if it is not the one
    /// registered; `Some(Stop::LeaseLost)` if the lease is gone (another worker took the job
    /// over, possibly because the old session looked dead). Bounded like a heartbeat call;
    /// a failure leaves it for the next heartbeat to try again.
    async fn register_session(&self, lease: &Lease, liveness: &mut Liveness) -> Option<Stop> {
        let current = *liveness.sessions.borrow_and_update();
        let session = current.filter(|s| Some(*s) != liveness.registered)?;
        let bound = self.config.heartbeat_call_timeout();
        match tokio::time::timeout(bound, self.repo.register_session(lease, session)).await {
            Ok(Ok(())) => {
                tracing::info!(
                    pid = session.pid,
                    "re-registered the lease under the new session"
                );
                liveness.registered = Some(session);
                None
            }
            Ok(Err(FencedError::LeaseLost)) => Some(Stop::LeaseLost),
            Ok(Err(FencedError::Repo(error))) => {
                tracing::warn!(%error, "re-registering the session failed; retrying before the next heartbeat");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "re-registering the session timed out; retrying before the next heartbeat"
                );
                None
            }
        }
    }

    /// Writes a progress report; `Some(Stop::LeaseLost)` if the lease is gone. Bounded by
    /// the time the lease is still trusted and by one heartbeat call's bound: a hanging write
    /// must not hold up the loop (cancel, SIGTERM, the deadline) for long.
    async fn write_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
        held_until: Instant,
    ) -> Option<Stop> {
        let bound = held_until
            .saturating_duration_since(Instant::now())
            .min(self.config.heartbeat_call_timeout());
        let Ok(result) =
            tokio::time::timeout(bound, self.repo.report_progress(lease, report)).await
        else {
            tracing::warn!("progress write timed out");
            return None;
        };
        match result {
            Ok(ProgressOutcome::Applied) => None,
            Ok(ProgressOutcome::Regressed { current }) => {
                tracing::debug!(%current, wrote = %report.percent, "progress behind the stored value; skipped");
                None
            }
            Err(FencedError::LeaseLost) => Some(Stop::LeaseLost),
            Err(FencedError::Repo(error)) => {
                // Progress is for people; the lease is kept by heartbeats. Go on.
                tracing::warn!(%error, "progress write failed");
                None
            }
        }
    }

    /// The answer once the lease is gone. Another worker holds the job, or it ended: 200
    /// `superseded`. But the sweeper may have requeued it after this worker's lease expired
    /// (a long pause): then nobody holds it, and this delivery may be the job's only task —
    /// a 2xx would make the queue forget it — so the queue is told to retry.
    async fn lease_lost(&self, lease: &Lease) -> RunOutcome {
        match self.repo.get(lease.job_id).await {
            // The sweeper's own reason (`lease_expired` or `worker_gone`) when it left one.
            Ok(Some(job)) if job.status == JobStatus::Queued => RunOutcome::Retry {
                error: job.error.unwrap_or_else(|| {
                    JobError::new(
                        code(ErrorCode::LEASE_EXPIRED),
                        "the lease expired and the sweeper requeued the job; the queue delivers it again",
                    )
                }),
            },
            Ok(_) => RunOutcome::Superseded,
            Err(error) => RunOutcome::Unavailable {
                reason: format!("the lease is gone and the job could not be read: {error}"),
            },
        }
    }

    /// The one closing write of the attempt (none after a lost lease).
    async fn conclude(
        &self,
        lease: &Lease,
        stop: Option<Stop>,
        result: Option<PipelineResult>,
    ) -> RunOutcome {
        match (stop, result) {
            (Some(Stop::LeaseLost), _) => self.lease_lost(lease).await,
            (Some(Stop::Unreachable), _) => RunOutcome::Unavailable {
                reason: "the database did not answer heartbeats; the lease was abandoned".into(),
            },
            // Cancel wins over a result that arrived at the same time.
            (Some(Stop::Cancel), _) => self.finalize(lease, FinalOutcome::Canceled).await,
            (_, Some(Ok(Ok(published)))) => {
                let outcome = FinalOutcome::Succeeded {
                    artifact_key: published.artifact_key,
                };
                self.finalize(lease, outcome).await
            }
            (Some(Stop::Deadline), _) => {
                let error = JobError::new(
                    code("execution_timeout"),
                    format!(
                        "the attempt ran past the {} s execution limit",
                        self.config.max_runtime.as_secs()
                    ),
                );
                self.finalize(lease, FinalOutcome::Failed(error)).await
            }
            (Some(Stop::Shutdown), _) => {
                let error = JobError::new(code("worker_shutdown"), "the worker shut down mid-job");
                match self
                    .release_within(lease, error, CLOSING_BUDGET_ON_SHUTDOWN)
                    .await
                {
                    RunOutcome::Retry { .. } => RunOutcome::ShuttingDown,
                    other => other,
                }
            }
            (None, Some(Ok(Err(StageError::Permanent(error))))) => {
                self.finalize(lease, FinalOutcome::Failed(error)).await
            }
            (None, Some(Ok(Err(StageError::Retryable(error))))) => self.release(lease, error).await,
            (None, Some(Ok(Err(StageError::Canceled)))) => {
                let error = JobError::new(
                    code("internal"),
                    "the pipeline stopped without being asked to",
                );
                self.release(lease, error).await
            }
            (None, Some(Err(join))) => {
                tracing::error!(error = %join, "the pipeline task panicked");
                let error = JobError::new(code("internal"), "the pipeline crashed");
                self.release(lease, error).await
            }
            (None, None) => unreachable!("the loop only ends without a result after a stop"),
        }
    }

    async fn finalize(&self, lease: &Lease, outcome: FinalOutcome) -> RunOutcome {
        let result = self
            .closing_write(lease, CLOSING_BUDGET, || {
                self.repo.finalize(lease, &outcome)
            })
            .await;
        match (result, outcome) {
            (Ok(JobStatus::Succeeded), FinalOutcome::Succeeded { artifact_key }) => {
                RunOutcome::Succeeded { artifact_key }
            }
            (Ok(JobStatus::Failed), FinalOutcome::Failed(error)) => RunOutcome::Failed { error },
            (Ok(JobStatus::Canceled), _) => RunOutcome::Canceled,
            // The row read back after a lost reply ended otherwise: by another's hand.
            (Ok(_), _) | (Err(FencedError::LeaseLost), _) => self.lease_lost(lease).await,
            (Err(FencedError::Repo(error)), _) => RunOutcome::Unavailable {
                reason: format!("finalize failed: {error}"),
            },
        }
    }

    async fn release(&self, lease: &Lease, error: JobError) -> RunOutcome {
        self.release_within(lease, error, CLOSING_BUDGET).await
    }

    async fn release_within(&self, lease: &Lease, error: JobError, budget: Duration) -> RunOutcome {
        let result = self
            .closing_write(lease, budget, || {
                self.repo.release(lease, Some(error.clone()))
            })
            .await;
        match result {
            Ok(JobStatus::Canceled) => RunOutcome::Canceled,
            Ok(JobStatus::Queued) => RunOutcome::Retry { error },
            Ok(_) | Err(FencedError::LeaseLost) => self.lease_lost(lease).await,
            Err(FencedError::Repo(e)) => RunOutcome::Unavailable {
                reason: format!("release failed: {e}"),
            },
        }
    }

    /// The closing write (finalize or release), tried up to three times within `budget`
    /// while the store is unavailable, never after a refusal. When a retry is refused with
    /// `LeaseLost`, an earlier try may have committed and lost its reply: the row tells, and
    /// its status is returned as if the write had answered.
    async fn closing_write<F, Fut>(
        &self,
        lease: &Lease,
        budget: Duration,
        mut write: F,
    ) -> Result<JobStatus, FencedError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<JobStatus, FencedError>>,
    {
        let until = Instant::now() + budget;
        let mut delay = Duration::from_millis(250);
        let mut tries = 0;
        loop {
            tries += 1;
            let left = until.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(left, write()).await {
                Ok(result) => result,
                Err(_) => Err(FencedError::Repo(RepoError::Unavailable(
                    "the closing write timed out".into(),
                ))),
            };
            match result {
                Err(FencedError::Repo(e)) if e.is_retryable() && tries < 3 => {
                    if until.saturating_duration_since(Instant::now()) <= delay {
                        return Err(FencedError::Repo(e));
                    }
                    tracing::warn!(error = %e, "closing write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(FencedError::LeaseLost) if tries > 1 => {
                    return match self.repo.get(lease.job_id).await {
                        Ok(Some(job))
                            if job.lease_epoch == lease.epoch
                                && job.status != JobStatus::Running =>
                        {
                            tracing::info!(status = %job.status, "an earlier try of the closing write had committed");
                            Ok(job.status)
                        }
                        Ok(_) => Err(FencedError::LeaseLost),
                        // Unknown whether our write or another's ended the lease (the job
                        // may be queued with no task): the queue must retry, not forget it.
                        Err(e) => {
                            tracing::warn!(error = %e, "closing write refused and the row could not be read back");
                            Err(FencedError::Repo(e))
                        }
                    };
                }
                other => return other,
            }
        }
    }
}

fn record_stage_duration(event: &ProgressEvent) {
    if let ProgressEvent::StageFinished { stage, duration } = event {
        metrics::histogram!("video_worker_stage_duration_seconds", "stage" => stage.as_str())
            .record(duration.as_secs_f64());
    }
}
