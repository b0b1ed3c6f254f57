//! Shared helpers of the worker's HTTP tests: a spawned application on port 0, a
//! `video-worker serve` child process, a fresh Postgres database, scripted stages, a
//! repository that counts its calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelOutcome, CancelSubscription, FencedError, FinalOutcome,
    HeartbeatAck, HolderSession, IdempotentOutcome, IdempotentRequest, InstanceId, Job, JobError,
    JobId, JobIdStream, JobPage, JobRepository, JobStatus, Lease, ListQuery, NewJob,
    ProgressOutcome, ProgressReport, RepoError, SweepPolicy, SweptJob,
};
use pipeline::Pipeline;
use runner::RunnerConfig;
use tokio_util::sync::CancellationToken;
use worker_http::{AppParts, Application, Readiness};

pub const TOKEN: &str = "test-shared-token-0123456789";

/// Push authentication by the shared [`TOKEN`].
pub fn token_auth() -> push_auth::Authenticator {
    push_auth::Authenticator::new(
        push_auth::AuthConfig {
            shared_token: Some(TOKEN.into()),
            oidc: None,
        },
        reqwest::Client::new(),
    )
    .unwrap()
}

/// A fresh, migrated database and the repository on it.
pub async fn pg_database() -> (test_pg::TestDb, Arc<repo_pg::PgRepository>) {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = Arc::new(repo_pg::PgRepository::new(db.pool.clone()));
    (db, repo)
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `video-worker serve` process: the `noop` pipeline, lease TTL 3 s, heartbeat 1 s, shared
/// token auth, a work dir of its own; `env` adds settings or overrides these. Killed and
/// reaped on drop.
pub struct ServeProcess {
    pub child: Child,
    pub base: String,
    _work: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts one on `port` and waits until `/ready` answers.
    pub async fn start(database_url: &str, name: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let work = tempfile::tempdir().unwrap();
        #[allow(clippy::zombie_processes)] // owned by a value whose Drop kills and reaps it
        let child = Command::new(env!("CARGO_BIN_EXE_video-worker"))
            .arg("serve")
            .env("VIDEO_WORKER_WORK_DIR", work.path())
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("VIDEO_WORKER_AUTH_TOKEN", TOKEN)
            .env("VIDEO_WORKER_INSTANCE_ID", name)
            .env("VIDEO_WORKER_PIPELINE", "noop")
            .env("VIDEO_JOB_LEASE_TTL_SECONDS", "3")
            .env("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "1")
            .env("VIDEO_WORKER_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{base}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    child,
                    base,
                    _work: work,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("worker {name} did not become ready");
    }

    /// A push of `id` to its `/jobs/run`.
    pub fn push(&self, id: JobId) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(format!("{}/jobs/run", self.base))
            .bearer_auth(TOKEN)
            .body(serde_json::json!({ "job_id": id }).to_string())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)] // each test binary uses a part
pub use pipeline::testing::{Fail, Gate, Publish, Segments};

pub fn quick() -> Pipeline {
    Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 2,
            each: Duration::from_millis(10),
        }),
        Arc::new(Publish::default()),
    ])
}

pub fn runner_config(instance: &str) -> RunnerConfig {
    RunnerConfig {
        instance_id: InstanceId::new(instance).unwrap(),
        lease_ttl: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(500),
        max_runtime: Duration::from_secs(60),
        max_attempts: 5,
        drain_grace: Duration::from_secs(2),
        progress_interval: Duration::from_millis(100),
        work_root: std::env::temp_dir().join(format!("worker-http-test-{}", std::process::id())),
    }
}

/// A running application and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn spawn(repo: Arc<dyn JobRepository>, pipeline: Pipeline) -> Self {
        Self::spawn_with(
            repo,
            pipeline,
            runner_config("worker-1"),
            Readiness::Always,
            true,
        )
        .await
    }

    pub async fn spawn_with(
        repo: Arc<dyn JobRepository>,
        pipeline: Pipeline,
        runner: RunnerConfig,
        readiness: Readiness,
        listen_for_cancels: bool,
    ) -> Self {
        Self::spawn_full(
            repo,
            pipeline,
            runner,
            readiness,
            listen_for_cancels,
            token_auth(),
        )
        .await
    }

    pub async fn spawn_full(
        repo: Arc<dyn JobRepository>,
        pipeline: Pipeline,
        runner: RunnerConfig,
        readiness: Readiness,
        listen_for_cancels: bool,
        auth: push_auth::Authenticator,
    ) -> Self {
        let parts = AppParts {
            repo,
            pipeline,
            auth,
            runner,
            readiness,
            max_body_bytes: 4096,
            listen_for_cancels,
        };
        let app = Application::build(parts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            shutdown,
            server,
        }
    }

    pub fn push_request(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/jobs/run", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("X-CloudTasks-QueueName", "video-jobs")
            .header("X-CloudTasks-TaskRetryCount", "0")
            .body(body)
    }

    pub async fn push(&self, id: JobId) -> (u16, serde_json::Value, Option<String>) {
        let response = self
            .push_request(serde_json::json!({ "job_id": id }).to_string())
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

pub async fn read(response: reqwest::Response) -> (u16, serde_json::Value, Option<String>) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, retry_after)
}

pub async fn new_job(repo: &dyn JobRepository, input: serde_json::Value) -> JobId {
    let id = JobId::new();
    repo.create(NewJob { id, input }).await.unwrap();
    id
}

/// Delegates to a repository and counts every call.
#[derive(Debug)]
pub struct Counting {
    pub inner: Arc<dyn JobRepository>,
    pub calls: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn JobRepository>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
        })
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl JobRepository for Counting {
    async fn create(&self, job: NewJob) -> Result<Job, RepoError> {
        self.tick();
        self.inner.create(job).await
    }
    async fn create_idempotent(
        &self,
        job: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError> {
        self.tick();
        self.inner.create_idempotent(job, request).await
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        self.tick();
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError> {
        self.tick();
        self.inner.list(query).await
    }
    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError> {
        self.tick();
        self.inner.acquire(request).await
    }
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError> {
        self.tick();
        self.inner.heartbeat(lease, ttl).await
    }
    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError> {
        self.tick();
        self.inner.register_session(lease, session).await
    }
    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError> {
        self.tick();
        self.inner.report_progress(lease, report).await
    }
    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError> {
        self.tick();
        self.inner.release(lease, error).await
    }
    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError> {
        self.tick();
        self.inner.finalize(lease, outcome).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError> {
        self.tick();
        self.inner.request_cancel(id).await
    }
    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError> {
        // The subscription made at start is not a request's doing; not counted.
        self.inner.cancel_notifications().await
    }
    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError> {
        self.tick();
        self.inner.sweep(policy).await
    }
    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError> {
        self.tick();
        self.inner.advance_delivery_generation(id, from).await
    }
    async fn job_updates(&self) -> Result<JobIdStream, RepoError> {
        self.inner.job_updates().await
    }
    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError> {
        self.tick();
        self.inner.fail_unstarted(id, error).await
    }
}
