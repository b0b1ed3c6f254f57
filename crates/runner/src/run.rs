//! One attempt at one job: acquire, run beside heartbeat and watchers, end with one write.

use std::path::PathBuf;
use std::sync::Arc;

use domain::{
    AcquireOutcome, AcquireRequest, ErrorCode, FencedError, FinalOutcome, Job, JobError, JobId,
    JobRepository, JobStatus, Lease, ProgressOutcome, ProgressReport,
};
use pipeline::{
    Pipeline, ProgressEvent, ProgressSink, ProgressTracker, Published, StageContext, StageError,
};
use tokio::task::JoinError;
use tokio::time::{Duration, Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::progress_writer::ProgressWriter;
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
        let request = AcquireRequest {
            job_id,
            holder: self.config.instance_id.clone(),
            ttl: self.config.lease_ttl,
            max_attempts: self.config.max_attempts,
        };
        let (lease, job) = match self.repo.acquire(&request).await {
            Ok(AcquireOutcome::Acquired { lease, job }) => (lease, job),
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
            Err(error) => {
                return RunOutcome::Unavailable {
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
            let outcome = self.attempt(&lease, *job, &watch, shutdown).await;
            tracing::info!(outcome = outcome.label(), "attempt ended");
            outcome
        }
        .instrument(span)
        .await
    }

    async fn attempt(
        &self,
        lease: &Lease,
        job: Job,
        watch: &CancelWatch,
        shutdown: &CancellationToken,
    ) -> RunOutcome {
        let cfg = &self.config;
        let work_dir: PathBuf = cfg.work_root.join(job.id.to_string());
        if let Err(e) = tokio::fs::create_dir_all(&work_dir).await {
            let error = JobError::new(
                code("work_dir_unavailable"),
                format!("{}: {e}", work_dir.display()),
            );
            return self.release(lease, error).await;
        }
        let token = CancellationToken::new();
        let (sink, mut events) = ProgressSink::channel();
        let ctx = StageContext::new(
            job.id,
            lease.epoch,
            Arc::new(job.input),
            work_dir.clone(),
            sink,
            token.clone(),
        );
        let pipeline = self.pipeline.clone();
        let mut task = tokio::spawn(async move { pipeline.run(&ctx).await }.in_current_span());

        let mut tracker = ProgressTracker::new(self.pipeline.weights());
        let mut writer = ProgressWriter::new(cfg.progress_interval);
        let started = Instant::now();
        let deadline = started + cfg.max_runtime;
        let mut next_beat = started + cfg.jittered_heartbeat();
        let mut last_beat = started;
        let mut stop: Option<Stop> = None;
        let mut stopped_at: Option<Instant> = None;

        let result: Option<PipelineResult> = loop {
            let writable = stop.is_none();
            let beating = !matches!(stop, Some(Stop::LeaseLost | Stop::Unreachable));
            let flush_at = writer.flush_at().filter(|_| writable);
            let drain_until = stopped_at.map(|t| t + cfg.drain_grace);
            let mut reason: Option<Stop> = None;
            tokio::select! {
                biased;
                joined = &mut task => break Some(joined),
                () = watch.cancelled(), if stop.is_none() => reason = Some(Stop::Cancel),
                () = shutdown.cancelled(), if stop.is_none() => reason = Some(Stop::Shutdown),
                () = sleep_until(deadline), if stop.is_none() => reason = Some(Stop::Deadline),
                () = sleep_until(drain_until.unwrap_or(deadline)), if drain_until.is_some() => {
                    tracing::warn!(grace_ms = cfg.drain_grace.as_millis(), "pipeline did not stop in time; aborting it");
                    task.abort();
                    break None;
                }
                () = sleep_until(next_beat), if beating => {
                    let now = Instant::now();
                    match self.repo.heartbeat(lease, cfg.lease_ttl).await {
                        Ok(ack) => {
                            metrics::histogram!("video_worker_heartbeat_gap_seconds")
                                .record((now - last_beat).as_secs_f64());
                            last_beat = now;
                            if ack.cancel_requested {
                                reason = Some(Stop::Cancel);
                            }
                        }
                        Err(FencedError::LeaseLost) => reason = Some(Stop::LeaseLost),
                        Err(FencedError::Repo(error)) => {
                            tracing::warn!(%error, "heartbeat failed");
                            // Give up before the lease can have expired: past that point
                            // another worker may hold the job.
                            if now.duration_since(last_beat) + cfg.heartbeat_period() >= cfg.lease_ttl {
                                reason = Some(Stop::Unreachable);
                            }
                        }
                    }
                    next_beat = Instant::now() + cfg.jittered_heartbeat();
                }
                Some(event) = events.recv() => {
                    record_stage_duration(&event);
                    if writable {
                        let tracked = tracker.track(&event);
                        if let Some(report) = writer.offer(tracked, Instant::now()) {
                            reason = self.write_progress(lease, &report).await;
                        }
                    }
                }
                () = sleep_until(flush_at.unwrap_or(deadline)), if flush_at.is_some() => {
                    if let Some(report) = writer.flush(Instant::now()) {
                        reason = self.write_progress(lease, &report).await;
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
        // The pipeline may end before its last events were read: their progress is moot
        // (the closing write follows), their stage timings are not.
        while let Ok(event) = events.try_recv() {
            record_stage_duration(&event);
        }
        if let (Some(Stop::Cancel), Some(at)) = (stop, stopped_at) {
            metrics::histogram!("video_worker_cancel_stop_seconds")
                .record(at.elapsed().as_secs_f64());
        }
        let outcome = self.conclude(lease, stop, result).await;
        if matches!(
            outcome,
            RunOutcome::Succeeded { .. } | RunOutcome::Failed { .. } | RunOutcome::Canceled
        ) {
            // Terminal: the cached segments can go. A retried job keeps them to resume.
            if let Err(e) = tokio::fs::remove_dir_all(&work_dir).await {
                tracing::debug!(error = %e, "work dir not removed");
            }
        }
        outcome
    }

    /// Writes a progress report; `Some(Stop::LeaseLost)` if the lease is gone.
    async fn write_progress(&self, lease: &Lease, report: &ProgressReport) -> Option<Stop> {
        match self.repo.report_progress(lease, report).await {
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

    /// The one closing write of the attempt (none after a lost lease).
    async fn conclude(
        &self,
        lease: &Lease,
        stop: Option<Stop>,
        result: Option<PipelineResult>,
    ) -> RunOutcome {
        match (stop, result) {
            (Some(Stop::LeaseLost), _) => RunOutcome::Superseded,
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
                match self.release(lease, error).await {
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
        let result = with_retries(|| self.repo.finalize(lease, &outcome)).await;
        match result {
            Ok(JobStatus::Succeeded) => match outcome {
                FinalOutcome::Succeeded { artifact_key } => RunOutcome::Succeeded { artifact_key },
                _ => unreachable!("only a succeeded outcome finalizes as succeeded"),
            },
            Ok(JobStatus::Failed) => match outcome {
                FinalOutcome::Failed(error) => RunOutcome::Failed { error },
                _ => unreachable!("only a failed outcome finalizes as failed"),
            },
            Ok(_) => RunOutcome::Canceled,
            Err(FencedError::LeaseLost) => RunOutcome::Superseded,
            Err(FencedError::Repo(error)) => RunOutcome::Unavailable {
                reason: format!("finalize failed: {error}"),
            },
        }
    }

    async fn release(&self, lease: &Lease, error: JobError) -> RunOutcome {
        match with_retries(|| self.repo.release(lease, Some(error.clone()))).await {
            Ok(JobStatus::Canceled) => RunOutcome::Canceled,
            Ok(_) => RunOutcome::Retry { error },
            Err(FencedError::LeaseLost) => RunOutcome::Superseded,
            Err(FencedError::Repo(e)) => RunOutcome::Unavailable {
                reason: format!("release failed: {e}"),
            },
        }
    }
}

fn record_stage_duration(event: &ProgressEvent) {
    if let ProgressEvent::StageFinished { stage, duration } = event {
        metrics::histogram!("video_worker_stage_duration_seconds", "stage" => stage.as_str())
            .record(duration.as_secs_f64());
    }
}

/// The closing write matters: try it three times over about 1.5 s while the store is
/// unavailable (the lease outlives that), but never retry a refusal.
async fn with_retries<T, F, Fut>(mut write: F) -> Result<T, FencedError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FencedError>>,
{
    let mut delay = Duration::from_millis(250);
    for _ in 0..2 {
        match write().await {
            Err(FencedError::Repo(e)) if e.is_retryable() => {
                tracing::warn!(error = %e, "closing write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            other => return other,
        }
    }
    write().await
}
