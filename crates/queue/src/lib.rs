//! The enqueue side: after the product creates a job, a task must reach the worker.
//!
//! [`Enqueuer`] is what the jobs API calls; [`cloud_tasks`] creates an HTTP task in Google
//! Cloud Tasks (named by a hashed prefix of the job id, with a dispatch deadline and an OIDC
//! token for the worker); [`loopback`] is the in-process queue of the demo and the tests,
//! which pushes to a URL itself with Cloud Tasks' headers and retry rules. Both answer
//! [`Enqueuer::task_state`]: whether the task of one delivery generation still exists.
//!
//! The two ends of a delivery that are not the worker's own live here too: [`push_headers`]
//! reads what Cloud Tasks says about a push as it arrives, and [`sweep`] is the backstop that
//! asks the queue about stranded jobs and delivers them again.

pub mod cloud_tasks;
pub mod loopback;
pub mod push_headers;
pub mod sweep;

pub use push_headers::TaskHeaders;
pub use sweep::{SweepReport, SweepSettings, Sweeper, sweep_once};

use async_trait::async_trait;
use domain::JobId;

/// How an enqueue ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new task was created.
    Created,
    /// The task existed already (a retried enqueue): just as good.
    AlreadyExists,
}

/// How an enqueue failed.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue answered and refused: the task certainly does not exist. The job should be
    /// marked failed (`enqueue_failed`).
    #[error("the queue refused the task: {0}")]
    Rejected(String),
    /// No clear answer (timeout, connection lost, 5xx): the task may or may not exist. The
    /// job stays queued; the sweeper re-enqueues it if no delivery comes.
    #[error("the queue did not answer clearly: {0}")]
    Unknown(String),
}

/// Whether the queue still holds the task of one delivery generation of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// The task exists: waiting, in backoff, or being dispatched. It will deliver the job;
    /// enqueueing another would only duplicate it.
    Pending,
    /// The queue has no such task (delivered, dropped after its last attempt, never
    /// created): nothing will deliver this generation.
    Gone,
}

/// Puts a job on the queue that delivers it to the worker.
#[async_trait]
pub trait Enqueuer: Send + Sync + std::fmt::Debug {
    /// Enqueues a delivery of `job_id`. The task's name is derived from `(job_id,
    /// generation)`, so a retried enqueue of one generation is deduplicated by the queue,
    /// and a new generation (the sweeper's re-enqueue) gets a name of its own.
    async fn enqueue(&self, job_id: JobId, generation: u32) -> Result<Enqueued, EnqueueError>;

    /// Whether the task of delivery `generation` of `job_id` still exists. The sweeper asks
    /// before re-enqueueing, so a job waiting in a backlog never gains a second task.
    async fn task_state(&self, job_id: JobId, generation: u32) -> Result<TaskState, EnqueueError>;
}
