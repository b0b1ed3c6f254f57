//! An in-process stand-in for a Cloud Tasks queue: it delivers each task to a URL until it
//! gets a 2xx — on a task of its own, as a queue does — with Cloud Tasks' headers
//! (`X-CloudTasks-QueueName`, `-TaskName`, `-TaskRetryCount`, `-TaskExecutionCount`,
//! `-TaskETA`, `-TaskPreviousResponse`) and its retry rule: any non-2xx is retried, after
//! `Retry-After` if given, else with exponential backoff.
//!
//! It knows its own pending tasks: a task of `(job, generation)` is pending from its enqueue
//! until its delivery ends (a 2xx, or the attempts ran out), which is what
//! [`Enqueuer::task_state`] answers. Tasks live in this process only, so another process's
//! loopback queue (the API's, in a local setup) is not seen: its sweeper may add a duplicate
//! delivery there, which the lease protocol turns into a 409 or `skipped`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use domain::JobId;
use secrecy::{ExposeSecret, SecretString};

use crate::{EnqueueError, Enqueued, Enqueuer, TaskState};

/// An in-process stand-in for a Cloud Tasks queue: it delivers one task to a URL until it
/// gets a 2xx, as Cloud Tasks does, sending its headers.
#[derive(Debug, Clone)]
pub struct LoopbackQueue {
    client: reqwest::Client,
    url: String,
    /// The queue name sent in `X-CloudTasks-QueueName`.
    pub queue: String,
    /// Sent as `Authorization: Bearer` (the worker's shared token), if set.
    pub bearer: Option<SecretString>,
    /// Deliveries before giving up.
    pub max_attempts: u32,
    /// First retry delay (doubles each time) when the answer has no `Retry-After`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Tasks enqueued and not yet done with, shared by every clone.
    pending: Arc<Mutex<HashSet<(JobId, u32)>>>,
}

/// The answer that ended a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// Final HTTP status.
    pub status: u16,
    /// Final body.
    pub body: serde_json::Value,
    /// Deliveries made.
    pub attempts: u32,
}

impl LoopbackQueue {
    /// A queue pushing to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: url.into(),
            queue: "loopback".into(),
            bearer: None,
            max_attempts: 20,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            pending: Arc::default(),
        }
    }

    /// The tasks enqueued through [`Enqueuer::enqueue`] whose delivery has not ended, as
    /// `(job, generation)`, sorted.
    pub fn live_tasks(&self) -> Vec<(JobId, u32)> {
        let mut tasks: Vec<_> = self.pending().iter().copied().collect();
        tasks.sort();
        tasks
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<(JobId, u32)>> {
        // The set is only inserted into and removed from whole; a poisoned lock holds no
        // half-done change.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers `{"job_id": id}` until a 2xx or the attempts run out.
    pub async fn deliver(&self, job_id: JobId) -> Result<Delivered, EnqueueError> {
        self.deliver_generation(job_id, 0).await
    }

    /// Delivers generation `generation` of `job_id`: the same, with the generation in the
    /// task name.
    async fn deliver_generation(
        &self,
        job_id: JobId,
        generation: u32,
    ) -> Result<Delivered, EnqueueError> {
        let task = format!("{}-{}-{generation}", self.queue, job_id.as_uuid().simple());
        let eta = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut previous: Option<u16> = None;
        let mut responses = 0u32;
        let mut backoff = self.min_backoff;
        for attempt in 0..self.max_attempts {
            let mut request = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("X-CloudTasks-QueueName", &self.queue)
                .header("X-CloudTasks-TaskName", &task)
                .header("X-CloudTasks-TaskRetryCount", attempt.to_string())
                .header("X-CloudTasks-TaskExecutionCount", responses.to_string())
                .header("X-CloudTasks-TaskETA", format!("{eta:.6}"))
                .body(serde_json::json!({ "job_id": job_id }).to_string());
            if let Some(token) = &self.bearer {
                request = request.bearer_auth(token.expose_secret());
            }
            if let Some(code) = previous {
                request = request.header("X-CloudTasks-TaskPreviousResponse", code.to_string());
            }
            let wait = match request.send().await {
                Ok(response) => {
                    responses += 1;
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.json().await.unwrap_or(serde_json::Value::Null);
                    if (200..300).contains(&status) {
                        return Ok(Delivered {
                            status,
                            body,
                            attempts: attempt + 1,
                        });
                    }
                    previous = Some(status);
                    retry_after.unwrap_or(backoff)
                }
                Err(_) => backoff,
            };
            tokio::time::sleep(wait.min(self.max_backoff)).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
        Err(EnqueueError::Unknown(format!(
            "the task was not accepted after {} deliveries",
            self.max_attempts
        )))
    }
}

#[async_trait]
impl Enqueuer for LoopbackQueue {
    /// Starts delivering in the background and returns at once, as a queue accepts a task.
    async fn enqueue(&self, job_id: JobId, generation: u32) -> Result<Enqueued, EnqueueError> {
        // A name already pending is deduplicated, as Cloud Tasks does.
        if !self.pending().insert((job_id, generation)) {
            return Ok(Enqueued::AlreadyExists);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            let result = queue.deliver_generation(job_id, generation).await;
            queue.pending().remove(&(job_id, generation));
            match result {
                Ok(d) => {
                    tracing::debug!(job.id = %job_id, status = d.status, attempts = d.attempts, "delivered")
                }
                Err(e) => tracing::warn!(job.id = %job_id, error = %e, "delivery gave up"),
            }
        });
        Ok(Enqueued::Created)
    }

    async fn task_state(&self, job_id: JobId, generation: u32) -> Result<TaskState, EnqueueError> {
        Ok(if self.pending().contains(&(job_id, generation)) {
            TaskState::Pending
        } else {
            TaskState::Gone
        })
    }
}
