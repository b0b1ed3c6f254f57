//! The sweeper: the backstop that keeps every non-terminal job owned by a live holder or a
//! pending task. One pass ([`sweep_once`]) moves running jobs whose lease expired long ago
//! (the queue's retries gave up on them), or whose holder's database session is gone (its
//! process died: no need to wait for the lease), back to `queued`, or to `failed` past the attempt
//! limit, or `canceled`; then, for each job it requeued and each queued job untouched for
//! `queued_for`, it asks the queue whether the task of the job's delivery generation still
//! exists. Pending → the job is left alone (a backlog must not gain duplicates); gone → the
//! generation advances by compare-and-set and the next generation's task is enqueued; no
//! clear answer → the job waits for the next pass.
//!
//! Two ways to run a pass, both calling [`sweep_once`]: `POST /sweep` (the worker's route,
//! called by Cloud Scheduler — on Cloud Run with request-based CPU nothing runs between
//! requests, so an in-process timer would not fire while the service sits at zero), and the
//! in-process loop ([`Sweeper::spawn`], `VIDEO_SWEEP_INTERVAL_SECONDS`) for compose and VM
//! deployments. One instance sweeps at a time — the repository takes an advisory lock in the
//! sweep statement — and the generation's compare-and-set makes the re-enqueue safe even when
//! two passes overlap.

use std::sync::Arc;
use std::time::Duration;

use domain::{JobId, JobRepository, JobStatus, SweepPolicy};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Enqueuer, TaskState};

/// Queued jobs whose task the pass asks about at once. Each question is one queue request
/// (plus two short statements), so a deep backlog is checked in a fraction of the
/// scheduler's attempt deadline; kept small so that a pass in a busy instance's loop leaves
/// the pool's connections to the running job's heartbeats.
const QUEUE_CHECKS_AT_ONCE: usize = 4;

/// How the sweeper runs: the loop's period and what counts as stranded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// `VIDEO_SWEEP_INTERVAL_SECONDS`; zero disables the in-process loop.
    pub interval: Duration,
    /// `VIDEO_SWEEP_EXPIRED_FOR_SECONDS`: how long past its expiry a lease is left to the
    /// queue's own retries before a pass takes the job back.
    pub expired_for: Duration,
    /// `VIDEO_SWEEP_QUEUED_FOR_SECONDS`: how long a queued job sits untouched before a pass
    /// asks the queue about its task.
    pub queued_for: Duration,
    /// `VIDEO_SWEEP_QUEUED_BATCH`: queued jobs checked per pass at most.
    pub queued_batch: u32,
}

impl Default for SweepSettings {
    /// The documented defaults (README, settings table).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            expired_for: Duration::from_secs(900),
            queued_for: Duration::from_secs(DEFAULT_QUEUED_FOR_SECONDS),
            queued_batch: DEFAULT_QUEUED_BATCH,
        }
    }
}

/// `VIDEO_SWEEP_QUEUED_FOR_SECONDS` by default. A pass asks the queue about each queued job
/// this old (one `tasks.get` each), so this is the trade between how soon a lost task is
/// noticed and how many questions a backlog costs per minute.
pub const DEFAULT_QUEUED_FOR_SECONDS: u64 = 300;

/// `VIDEO_SWEEP_QUEUED_BATCH` by default: 500 questions to the queue, four at a time, take a
/// few seconds — well inside the scheduler's 180 s deadline for `POST /sweep` — and, with
/// a check touching the job, a backlog of N jobs is covered in N / 500 passes.
pub const DEFAULT_QUEUED_BATCH: u32 = 500;

impl SweepSettings {
    /// The policy a pass runs with.
    pub fn policy(&self, max_attempts: u32) -> SweepPolicy {
        SweepPolicy {
            expired_for: self.expired_for,
            max_attempts,
            queued_for: Some(self.queued_for),
            queued_limit: self.queued_batch,
        }
    }
}

/// What one pass did; `POST /sweep` answers it as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Running jobs whose holder stopped heartbeating, moved back to `queued`.
    pub requeued: usize,
    /// Running jobs past the attempt limit, now `failed` (`attempts_exhausted`).
    pub failed: usize,
    /// Running jobs whose cancel was requested, now `canceled`.
    pub canceled: usize,
    /// Queued jobs whose task was gone: the next delivery generation was enqueued.
    pub reenqueued: usize,
    /// Queued jobs whose task still exists (waiting in a backlog, or in backoff): left alone.
    pub pending: usize,
    /// Queued jobs left for a later pass: the queue gave no clear answer, refused the task,
    /// or no queue is configured (`VIDEO_QUEUE`).
    pub deferred: usize,
}

impl SweepReport {
    /// Whether the pass changed or found anything worth a log line.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One sweep pass. An error means the sweep statement itself failed (the database); queue
/// failures only defer the jobs concerned.
pub async fn sweep_once(
    repo: &dyn JobRepository,
    queue: Option<&dyn Enqueuer>,
    policy: &SweepPolicy,
) -> Result<SweepReport, domain::RepoError> {
    let swept = repo.sweep(policy).await?;
    let mut report = SweepReport::default();
    let mut to_deliver = Vec::new();
    for job in &swept {
        tracing::info!(job.id = %job.id, status = %job.status, from = %job.from, "swept");
        metrics::counter!("video_worker_swept_total", "status" => job.status.as_str()).increment(1);
        match job.status {
            JobStatus::Failed => report.failed += 1,
            JobStatus::Canceled => report.canceled += 1,
            JobStatus::Queued => {
                if job.from == JobStatus::Running {
                    report.requeued += 1;
                }
                to_deliver.push(job.id);
            }
            JobStatus::Running | JobStatus::Succeeded => {}
        }
    }
    match queue {
        Some(queue) => {
            let mut outcomes = futures_util::stream::iter(to_deliver)
                .map(|id| redeliver(repo, queue, id))
                .buffer_unordered(QUEUE_CHECKS_AT_ONCE);
            while let Some(outcome) = outcomes.next().await {
                match outcome {
                    Redelivery::Enqueued => report.reenqueued += 1,
                    Redelivery::Pending => report.pending += 1,
                    Redelivery::Deferred => report.deferred += 1,
                    Redelivery::MovedOn => {}
                }
            }
        }
        None if !to_deliver.is_empty() => {
            tracing::warn!(
                jobs = to_deliver.len(),
                "queued jobs may need a delivery but VIDEO_QUEUE is not set"
            );
            report.deferred += to_deliver.len();
        }
        None => {}
    }
    for (outcome, n) in [
        ("reenqueued", report.reenqueued),
        ("pending", report.pending),
        ("deferred", report.deferred),
    ] {
        if n > 0 {
            metrics::counter!("video_worker_sweep_deliveries_total", "outcome" => outcome)
                .increment(n as u64);
        }
    }
    Ok(report)
}

/// What became of one queued job's delivery.
enum Redelivery {
    /// Its generation's task still exists.
    Pending,
    /// The next generation's task was enqueued.
    Enqueued,
    /// The job is no longer queued at the generation read (a worker took it, another
    /// sweeper advanced it): not ours to deliver.
    MovedOn,
    /// No clear answer; a later pass asks again.
    Deferred,
}

/// Gives a queued job a live task unless it has one: ask the queue about the row's
/// generation, and only if that task is gone advance the generation (compare-and-set) and
/// enqueue the new one. A job therefore never has two live tasks from the sweeper, however
/// long the backlog and however many passes run.
async fn redeliver(repo: &dyn JobRepository, queue: &dyn Enqueuer, id: JobId) -> Redelivery {
    let job = match repo.get(id).await {
        Ok(Some(job)) if job.status == JobStatus::Queued => job,
        Ok(_) => return Redelivery::MovedOn,
        Err(e) => {
            tracing::warn!(job.id = %id, error = %e, "cannot read the job; the next sweep tries again");
            return Redelivery::Deferred;
        }
    };
    let generation = job.delivery_generation;
    match queue.task_state(id, generation).await {
        Ok(TaskState::Pending) => {
            tracing::debug!(job.id = %id, generation, "task still pending; left alone");
            return Redelivery::Pending;
        }
        Ok(TaskState::Gone) => {}
        Err(e) => {
            tracing::warn!(job.id = %id, generation, error = %e, "cannot tell whether the task exists; the next sweep asks again");
            return Redelivery::Deferred;
        }
    }
    let next = match repo.advance_delivery_generation(id, generation).await {
        Ok(Some(next)) => next,
        Ok(None) => return Redelivery::MovedOn,
        Err(e) => {
            tracing::warn!(job.id = %id, error = %e, "cannot advance the delivery generation; the next sweep tries again");
            return Redelivery::Deferred;
        }
    };
    match queue.enqueue(id, next).await {
        Ok(_) => {
            tracing::info!(job.id = %id, generation = next, "task was gone; re-enqueued");
            Redelivery::Enqueued
        }
        Err(e) => {
            // The row is at `next` now: the next pass asks about `next`'s task, so an enqueue
            // that did land is found pending, and one that did not is found gone.
            tracing::warn!(job.id = %id, generation = next, error = %e, "re-enqueue failed; the next sweep tries again");
            Redelivery::Deferred
        }
    }
}

/// A sweep pass ready to run: the jobs, the queue to re-deliver on (none: stuck jobs are
/// still requeued and failed, and queued ones are reported as deferred), and the policy.
#[derive(Debug, Clone)]
pub struct Sweeper {
    /// The jobs.
    pub repo: Arc<dyn JobRepository>,
    /// Where re-deliveries go, and whom to ask whether a task still exists (`VIDEO_QUEUE`).
    pub queue: Option<Arc<dyn Enqueuer>>,
    /// What counts as stranded.
    pub policy: SweepPolicy,
}

impl Sweeper {
    /// One pass ([`sweep_once`]).
    pub async fn pass(&self) -> Result<SweepReport, domain::RepoError> {
        sweep_once(self.repo.as_ref(), self.queue.as_deref(), &self.policy).await
    }

    /// Sweeps every `interval` until `shutdown`; `None` when the interval is zero.
    pub fn spawn(
        self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if interval.is_zero() {
            return None;
        }
        Some(tokio::spawn(async move {
            // Instances started together should not sweep in lockstep.
            let jitter = interval.mul_f64(fastrand::f64());
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(jitter) => {}
            }
            loop {
                match self.pass().await {
                    Ok(report) if report.is_empty() => {}
                    Ok(report) => tracing::info!(?report, "sweep done"),
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
                }
            }
        }))
    }
}
