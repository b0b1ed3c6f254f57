//! Test support (feature `testing`): the API started the way `video-worker api` starts it,
//! on a loopback port, and a queue that records what it is asked. Every HTTP test of the API
//! — here and in the worker's end-to-end tests — starts it through [`TestApi`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed test

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::{JobId, JobRepository};
use object_store::ObjectStore;
use queue::{EnqueueError, Enqueued, Enqueuer, TaskState};

use crate::{ApiApplication, ApiParts, ApiSettings, JobView};

/// The jobs API on a port of its own, serving until the test ends.
#[derive(Debug)]
pub struct TestApi {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The repository it serves.
    pub repo: Arc<dyn JobRepository>,
    /// The artifact store it reads films from.
    pub artifacts: Arc<dyn ObjectStore>,
    /// The first of its keys, the one [`TestApi::create`] sends.
    pub key: String,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    /// The artifact store's directory, when the API made its own.
    _store: Option<tempfile::TempDir>,
}

impl TestApi {
    /// Starts the API over `repo` and `queue`, with an empty artifact store of its own and
    /// `keys` (the first is [`TestApi::key`]).
    pub async fn start(
        repo: Arc<dyn JobRepository>,
        queue: Arc<dyn Enqueuer>,
        keys: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = video::publish::store_from_url(dir.path().to_str().unwrap()).unwrap();
        let parts = ApiParts {
            repo,
            queue,
            artifacts,
        };
        Self::serve(parts, keys, Some(dir)).await
    }

    /// Starts the API from `parts` (e.g. an artifact store a worker publishes into).
    pub async fn start_with(parts: ApiParts, keys: &[&str]) -> Self {
        Self::serve(parts, keys, None).await
    }

    async fn serve(parts: ApiParts, keys: &[&str], store: Option<tempfile::TempDir>) -> Self {
        let (repo, artifacts) = (parts.repo.clone(), parts.artifacts.clone());
        let settings = ApiSettings {
            addr: std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            api_keys: keys
                .iter()
                .map(|k| secrecy::SecretString::from(*k))
                .collect(),
        };
        let app = ApiApplication::build(settings, parts).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until(std::future::pending()));
        Self {
            base,
            repo,
            artifacts,
            key: keys.first().map(|k| (*k).to_owned()).unwrap_or_default(),
            client: reqwest::Client::new(),
            _store: store,
        }
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a job from `storyboard` with [`TestApi::key`]; panics unless it is created
    /// (201) or accepted (202).
    pub async fn create(&self, storyboard: &serde_json::Value) -> JobView {
        let response = self
            .client
            .post(self.url("/v1/jobs"))
            .bearer_auth(&self.key)
            .json(&serde_json::json!({ "storyboard": storyboard }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            matches!(status, 201 | 202),
            "create answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.unwrap()
    }
}

/// How [`RecordingQueue`] answers an enqueue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueAnswer {
    /// Takes the task.
    #[default]
    Accept,
    /// Refuses it for good (`EnqueueError::Rejected`).
    Refuse,
    /// Answers nothing clear (`EnqueueError::Unknown`).
    Unclear,
}

/// A queue that answers as told and records every enqueue it was asked for; no task is ever
/// delivered, and every task is reported gone.
#[derive(Debug, Default)]
pub struct RecordingQueue {
    /// The answer to the next enqueue.
    pub answer: Mutex<QueueAnswer>,
    /// Every enqueue asked for: (job, delivery generation).
    pub asked: Mutex<Vec<(JobId, u32)>>,
}

#[async_trait]
impl Enqueuer for RecordingQueue {
    async fn enqueue(&self, job_id: JobId, generation: u32) -> Result<Enqueued, EnqueueError> {
        self.asked.lock().unwrap().push((job_id, generation));
        match *self.answer.lock().unwrap() {
            QueueAnswer::Accept => Ok(Enqueued::Created),
            QueueAnswer::Refuse => Err(EnqueueError::Rejected("400 bad queue".into())),
            QueueAnswer::Unclear => Err(EnqueueError::Unknown("timeout".into())),
        }
    }

    async fn task_state(
        &self,
        _job_id: JobId,
        _generation: u32,
    ) -> Result<TaskState, EnqueueError> {
        Ok(TaskState::Gone)
    }
}
