//! Shared helpers of the worker's integration tests: the application on port 0, a
//! `video-worker` child process (`serve`), the jobs API with a worker behind it, a fresh
//! Postgres database, scripted stages, a repository that counts its calls.

mod serve;

use std::net::{Ipv4Addr, SocketAddr};
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
use jobs_api::ApiParts;
use jobs_api::testing::TestApi;
use pipeline::Pipeline;
pub use pipeline::testing::{Fail, Gate, Publish, Segments};
use queue::loopback::LoopbackQueue;
use runner::RunnerConfig;
use tokio_util::sync::CancellationToken;
use worker_http::{AppParts, Application, Readiness};

pub use serve::{Launch, ServeProcess, TOKEN, free_port};

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

/// How [`TestApp::spawn_with`] builds the application beside its repository and pipeline.
pub struct AppOptions {
    pub runner: RunnerConfig,
    pub readiness: Readiness,
    pub listen_for_cancels: bool,
    pub auth: push_auth::Authenticator,
}

impl AppOptions {
    /// The defaults with `runner`.
    pub fn with_runner(runner: RunnerConfig) -> Self {
        Self {
            runner,
            ..Self::default()
        }
    }
}

impl Default for AppOptions {
    /// Instance `worker-1`, always ready, listening for cancels, the shared [`TOKEN`].
    fn default() -> Self {
        Self {
            runner: runner_config("worker-1"),
            readiness: Readiness::Always,
            listen_for_cancels: true,
            auth: token_auth(),
        }
    }
}

impl TestApp {
    /// `pipeline` over `repo`, with [`AppOptions::default`].
    pub async fn spawn(repo: Arc<dyn JobRepository>, pipeline: Pipeline) -> Self {
        Self::spawn_with(repo, pipeline, AppOptions::default()).await
    }

    pub async fn spawn_with(
        repo: Arc<dyn JobRepository>,
        pipeline: Pipeline,
        options: AppOptions,
    ) -> Self {
        let parts = AppParts {
            repo,
            pipeline,
            auth: options.auth,
            runner: options.runner,
            readiness: options.readiness,
            max_body_bytes: 4096,
            listen_for_cancels: options.listen_for_cancels,
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

/// The jobs API and a worker on one fresh database: the API's tasks reach the worker through
/// a loopback queue, and the API serves films from `store`, where a real pipeline publishes.
pub struct ApiWithWorker {
    /// Held for its drop: the database lives as long as the rig.
    _db: test_pg::TestDb,
    pub repo: Arc<repo_pg::PgRepository>,
    /// The API: `api.base`, `api.client`, `api.artifacts`.
    pub api: TestApi,
    /// Held: the worker serves as long as the rig.
    _worker: TestApp,
    /// The artifact store's directory.
    pub store: tempfile::TempDir,
}

impl ApiWithWorker {
    /// The worker runs `pipeline`; the API accepts `key` and reads films from `store`.
    pub async fn start(pipeline: Pipeline, key: &str, store: tempfile::TempDir) -> Self {
        let (db, repo) = pg_database().await;
        let worker = TestApp::spawn_with(
            repo.clone(),
            pipeline,
            AppOptions::with_runner(runner_config("w")),
        )
        .await;
        let mut queue = LoopbackQueue::new(format!("{}/jobs/run", worker.base));
        queue.bearer = Some(TOKEN.into());
        let api = TestApi::start_with(
            ApiParts {
                repo: repo.clone(),
                queue: Arc::new(queue),
                artifacts: video::publish::store_from_url(store.path().to_str().unwrap()).unwrap(),
            },
            &[key],
        )
        .await;
        Self {
            _db: db,
            repo,
            api,
            _worker: worker,
            store,
        }
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
