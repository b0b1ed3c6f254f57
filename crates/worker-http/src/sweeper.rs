//! The sweeper, run by `serve`: every interval it moves running jobs whose lease expired
//! long ago (the queue's retries gave up on them) back to `queued`, or to `failed` past the
//! attempt limit, or `canceled`; and it re-enqueues those and any queued job untouched for a
//! long while (its task may have been lost). One instance sweeps at a time — the repository
//! takes an advisory lock in the sweep statement itself — so running it in every instance
//! is safe.

use std::sync::Arc;
use std::time::Duration;

use domain::{JobRepository, JobStatus, SweepPolicy};
use queue::Enqueuer;
use tokio_util::sync::CancellationToken;

use crate::config::SweepSettings;

/// One sweep: returns how many jobs it moved or reported.
pub async fn sweep_once(
    repo: &dyn JobRepository,
    queue: Option<&dyn Enqueuer>,
    policy: &SweepPolicy,
) -> Result<usize, domain::RepoError> {
    let swept = repo.sweep(policy).await?;
    // A generation per minute: a re-enqueue must not collide with the first task's name
    // (Cloud Tasks refuses a recently used name).
    let generation = u32::try_from(chrono::Utc::now().timestamp() / 60).unwrap_or(u32::MAX);
    for job in &swept {
        tracing::info!(job.id = %job.id, status = %job.status, "swept");
        metrics::counter!("video_worker_swept_total", "status" => job.status.as_str()).increment(1);
        if job.status != JobStatus::Queued {
            continue;
        }
        match queue {
            Some(queue) => {
                if let Err(e) = queue.enqueue(job.id, generation).await {
                    tracing::warn!(job.id = %job.id, error = %e, "re-enqueue failed; the next sweep tries again");
                }
            }
            None => {
                tracing::warn!(job.id = %job.id, "queued job needs a delivery but VIDEO_QUEUE is not set")
            }
        }
    }
    Ok(swept.len())
}

/// Sweeps every `settings.interval` until `shutdown`.
pub fn spawn(
    repo: Arc<dyn JobRepository>,
    queue: Option<Arc<dyn Enqueuer>>,
    settings: SweepSettings,
    max_attempts: u32,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.interval.is_zero() {
        return None;
    }
    let policy = SweepPolicy {
        expired_for: settings.expired_for,
        max_attempts,
        queued_for: Some(settings.queued_for),
    };
    Some(tokio::spawn(async move {
        // Instances started together should not sweep in lockstep.
        let jitter = settings.interval.mul_f64(fastrand::f64());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(jitter) => {}
        }
        loop {
            match sweep_once(repo.as_ref(), queue.as_deref(), &policy).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "sweep done"),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(settings.interval.max(Duration::from_secs(1))) => {}
            }
        }
    }))
}
