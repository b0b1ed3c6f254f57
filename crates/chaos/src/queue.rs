//! A queue with Cloud Tasks' push semantics, outside the workers so it survives them.
//!
//! Every task is delivered as `POST /jobs/run` with the shared token to one of the live
//! workers (as Cloud Run's front end picks an instance) until an answer is 2xx; any other
//! answer, a refused or reset connection and a missed dispatch deadline are retried after
//! `Retry-After` if given, else with exponential backoff (both capped by `max_backoff`). A 2xx
//! makes it forget the task. The workers' sweeper re-enqueues through the same queue: its
//! `VIDEO_QUEUE=loopback` pushes to [`Queue::ingress`], which accepts a new task, as
//! `tasks.create` does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stop::Stop;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// Where deliveries go: the port of each worker slot, `None` while it is down.
pub type Targets = Arc<Mutex<Vec<Option<u16>>>>;

/// What the queue saw.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Tasks created (the harness's pushes and the sweeper's re-enqueues).
    pub tasks: u64,
    /// Of which re-enqueued by a worker's sweeper.
    pub reenqueued: u64,
    /// Deliveries by outcome: HTTP status, or `refused` / `timeout` / `reset`.
    pub answers: BTreeMap<String, u64>,
    /// Tasks still undelivered when the queue stopped.
    pub undelivered: u64,
}

/// The queue.
#[derive(Debug, Clone)]
pub struct Queue {
    client: reqwest::Client,
    targets: Targets,
    token: String,
    stats: Arc<Mutex<Stats>>,
    stop: Stop,
    /// First retry delay; doubles per failed delivery.
    pub min_backoff: Duration,
    /// Longest wait between deliveries of one task, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Queue {
    /// A queue delivering to `targets` with the shared `token`; the dispatch deadline is
    /// `deadline`.
    pub fn new(targets: Targets, token: String, deadline: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(deadline)
                .pool_max_idle_per_host(0)
                .build()?,
            targets,
            token,
            stats: Arc::new(Mutex::new(Stats::default())),
            stop: Stop::default(),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        })
    }

    /// Creates a task for `job_id` and delivers it in the background.
    pub fn push(&self, job_id: uuid::Uuid, reenqueue: bool) {
        self.count(|s| {
            s.tasks += 1;
            s.reenqueued += u64::from(reenqueue);
        });
        let queue = self.clone();
        tokio::spawn(async move { queue.deliver(job_id).await });
    }

    async fn deliver(&self, job_id: uuid::Uuid) {
        let body = serde_json::json!({ "job_id": job_id }).to_string();
        let mut backoff = self.min_backoff;
        let mut attempt = 0u32;
        while !self.stop.is_stopped() {
            let wait = match self.pick() {
                None => backoff, // no instance up: Cloud Run would answer 503/429
                Some(port) => {
                    let answer = self
                        .client
                        .post(format!("http://127.0.0.1:{port}/jobs/run"))
                        .bearer_auth(&self.token)
                        .header("content-type", "application/json")
                        .header("X-CloudTasks-QueueName", "chaos")
                        .header(
                            "X-CloudTasks-TaskName",
                            format!("chaos-{}", job_id.simple()),
                        )
                        .header("X-CloudTasks-TaskRetryCount", attempt.to_string())
                        .body(body.clone())
                        .send()
                        .await;
                    attempt += 1;
                    match answer {
                        Ok(response) => {
                            let status = response.status();
                            self.count(|s| {
                                *s.answers.entry(status.as_u16().to_string()).or_default() += 1
                            });
                            if status.is_success() {
                                return;
                            }
                            response
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map_or(backoff, Duration::from_secs)
                        }
                        Err(e) => {
                            let kind = if e.is_timeout() {
                                "timeout"
                            } else if e.is_connect() {
                                "refused"
                            } else {
                                "reset"
                            };
                            self.count(|s| *s.answers.entry(kind.into()).or_default() += 1);
                            backoff
                        }
                    }
                }
            };
            self.stop.sleep(wait.min(self.max_backoff)).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
        self.count(|s| s.undelivered += 1);
    }

    /// A live worker at random, as a load balancer would pick one.
    fn pick(&self) -> Option<u16> {
        let targets = self.targets.lock().ok()?;
        let live: Vec<u16> = targets.iter().flatten().copied().collect();
        (!live.is_empty()).then(|| live[fastrand::usize(..live.len())])
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }

    /// What the queue saw so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops every delivery loop (they end within one wait).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Serves `POST /jobs/run` on 127.0.0.1 for the workers' sweeper: each push is a new
    /// task. Returns the port.
    pub async fn ingress(&self) -> anyhow::Result<u16> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = axum::Router::new()
            .route("/jobs/run", post(enqueue))
            .with_state(self.clone());
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.stopped().await })
                .await;
        });
        Ok(port)
    }
}

async fn enqueue(State(queue): State<Queue>, headers: HeaderMap, body: String) -> StatusCode {
    let expected = format!("Bearer {}", queue.token);
    if headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v != expected)
    {
        return StatusCode::UNAUTHORIZED;
    }
    let job_id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("job_id")?.as_str()?.parse::<uuid::Uuid>().ok());
    match job_id {
        Some(id) => {
            queue.push(id, true);
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}
