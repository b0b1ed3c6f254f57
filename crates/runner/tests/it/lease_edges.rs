//! The runner at the edges of its lease, against `repo-mem` behind a wrapper that injects
//! faults, with paused tokio time: a heartbeat call that hangs, a process paused past its TTL,
//! a row that does not decode after the acquire committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelOutcome, CancelSubscription, Clock, ErrorCode,
    FencedError, FinalOutcome, HeartbeatAck, HolderSession, IdempotentOutcome, IdempotentRequest,
    InstanceId, Job, JobError, JobId, JobIdStream, JobPage, JobRepository, JobStatus, Lease,
    ListQuery, ManualClock, NewJob, ProgressOutcome, ProgressReport, RepoError, Stage, SweepPolicy,
    SweptJob,
};
use pipeline::Pipeline;
use pipeline::testing::{Publish, Segments};
use repo_mem::MemRepository;
use runner::{CancelHub, RunOutcome, Runner, RunnerConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::{self, TTL, TokioClock};

/// What the wrapper breaks.
#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    /// The first heartbeat call never answers (a half-open pooled connection).
    hang_first_heartbeat: bool,
    /// An acquire that committed answers as if the row did not decode.
    undecodable: bool,
    /// Every finalize fails as unavailable.
    finalize_down: bool,
}

/// `repo-mem` with [`Faults`].
#[derive(Debug)]
struct Faulty {
    inner: MemRepository,
    faults: Faults,
    heartbeats: AtomicUsize,
}

impl Faulty {
    fn new(clock: Arc<dyn Clock>, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            inner: MemRepository::with_clock(clock),
            faults,
            heartbeats: AtomicUsize::new(0),
        })
    }
}

fn down() -> RepoError {
    RepoError::Unavailable("connection reset".into())
}

#[async_trait]
impl JobRepository for Faulty {
    async fn create(&self, job: NewJob) -> Result<Job, RepoError> {
        self.inner.create(job).await
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError> {
        self.inner.list(query).await
    }
    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError> {
        match self.inner.acquire(request).await? {
            // What repo-pg answers when the columns besides the lease refuse to decode; the
            // in-memory store holds domain values, so it cannot hold such a row itself.
            AcquireOutcome::Acquired { lease, .. } if self.faults.undecodable => {
                Ok(AcquireOutcome::AcquiredUndecodable {
                    lease,
                    reason: "stage: unknown stage \"bogus\"".into(),
                })
            }
            other => Ok(other),
        }
    }
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError> {
        let n = self.heartbeats.fetch_add(1, Ordering::SeqCst);
        if n == 0 && self.faults.hang_first_heartbeat {
            std::future::pending::<()>().await;
        }
        self.inner.heartbeat(lease, ttl).await
    }
    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError> {
        self.inner.register_session(lease, session).await
    }
    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError> {
        self.inner.report_progress(lease, report).await
    }
    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError> {
        self.inner.release(lease, error).await
    }
    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError> {
        if self.faults.finalize_down {
            return Err(FencedError::Repo(down()));
        }
        self.inner.finalize(lease, outcome).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError> {
        self.inner.request_cancel(id).await
    }
    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError> {
        self.inner.cancel_notifications().await
    }
    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError> {
        self.inner.sweep(policy).await
    }
    async fn job_updates(&self) -> Result<JobIdStream, RepoError> {
        self.inner.job_updates().await
    }
    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError> {
        self.inner.fail_unstarted(id, error).await
    }
    async fn create_idempotent(
        &self,
        job: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError> {
        self.inner.create_idempotent(job, request).await
    }
    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError> {
        self.inner.advance_delivery_generation(id, from).await
    }
}

fn config(instance: &str) -> RunnerConfig {
    common::config(instance, common::work_root("runner-edges"))
}

/// `count` one-second render segments, then publish.
fn seconds(count: u32) -> Pipeline {
    Pipeline::new(vec![
        Arc::new(Segments {
            stage: Stage::Render,
            count,
            each: Duration::from_secs(1),
        }),
        Arc::new(Publish::default()),
    ])
}

struct World {
    repo: Arc<Faulty>,
    hub: CancelHub,
    shutdown: CancellationToken,
}

impl World {
    async fn new(clock: Arc<dyn Clock>, faults: Faults) -> Self {
        let repo = Faulty::new(clock, faults);
        let hub = CancelHub::new();
        let shutdown = CancellationToken::new();
        let dyn_repo: Arc<dyn JobRepository> = repo.clone();
        drop(hub.listen(dyn_repo, shutdown.child_token()).await);
        Self {
            repo,
            hub,
            shutdown,
        }
    }

    async fn tokio_time(faults: Faults) -> Self {
        let clock = TokioClock {
            base: chrono::Utc::now(),
            start: Instant::now(),
        };
        Self::new(Arc::new(clock), faults).await
    }

    fn runner(&self, config: RunnerConfig, pipeline: Pipeline) -> Runner {
        Runner::new(self.repo.clone(), pipeline, self.hub.clone(), config)
    }

    async fn job(&self) -> JobId {
        let id = JobId::new();
        let input = serde_json::json!({"title": "t"});
        self.repo.create(NewJob { id, input }).await.unwrap();
        id
    }

    async fn row(&self, id: JobId) -> Job {
        self.repo.get(id).await.unwrap().unwrap()
    }

    fn spawn(&self, runner: &Runner, id: JobId) -> tokio::task::JoinHandle<RunOutcome> {
        let (runner, shutdown) = (runner.clone(), self.shutdown.clone());
        tokio::spawn(async move { runner.run(id, &shutdown).await })
    }

    /// Sleeps (virtual time) until the first heartbeat call is in flight.
    async fn until_first_heartbeat(&self) {
        while self.repo.heartbeats.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hanging() -> Faults {
    Faults {
        hang_first_heartbeat: true,
        ..Faults::default()
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_is_served_while_a_heartbeat_call_hangs() {
    let w = World::tokio_time(hanging()).await;
    let id = w.job().await;
    let cfg = config("a");
    let bound = cfg.heartbeat_call_timeout();
    let handle = w.spawn(&w.runner(cfg, seconds(600)), id);
    w.until_first_heartbeat().await;
    let asked = Instant::now();
    w.repo.request_cancel(id).await.unwrap();
    assert_eq!(handle.await.unwrap(), RunOutcome::Canceled);
    let took = asked.elapsed();
    // The stop waits for the next segment (1 s), not for the hanging call to give up.
    assert!(
        took < bound,
        "served after {took:?}, the call's bound is {bound:?}"
    );
    assert_eq!(w.row(id).await.status, JobStatus::Canceled);
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_served_while_a_heartbeat_call_hangs() {
    let w = World::tokio_time(hanging()).await;
    let id = w.job().await;
    let cfg = config("a");
    let bound = cfg.heartbeat_call_timeout();
    let handle = w.spawn(&w.runner(cfg, seconds(600)), id);
    w.until_first_heartbeat().await;
    let asked = Instant::now();
    w.shutdown.cancel();
    assert_eq!(handle.await.unwrap(), RunOutcome::ShuttingDown);
    let took = asked.elapsed();
    assert!(
        took < bound,
        "served after {took:?}, the call's bound is {bound:?}"
    );
    assert_eq!(w.row(id).await.status, JobStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn the_execution_limit_is_served_while_a_heartbeat_call_hangs() {
    let w = World::tokio_time(hanging()).await;
    let id = w.job().await;
    let mut cfg = config("a");
    // The first heartbeat goes out before 15 s and hangs; the limit passes during the hang.
    cfg.max_runtime = Duration::from_secs(16);
    let bound = cfg.heartbeat_call_timeout();
    let started = Instant::now();
    let outcome = w.runner(cfg, seconds(600)).run(id, &w.shutdown).await;
    let took = started.elapsed();
    let RunOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(error.code.as_str(), "execution_timeout");
    // The limit, plus at most one segment to reach the checkpoint.
    assert!(
        took <= Duration::from_secs(17) + Duration::from_millis(100),
        "served after {took:?} (a call's bound is {bound:?})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_after_a_hung_one_keeps_the_lease_and_the_job_succeeds() {
    let w = World::tokio_time(hanging()).await;
    let id = w.job().await;
    // Twice the TTL of work: only heartbeats that got through can explain the success.
    let outcome = w
        .runner(config("a"), seconds(120))
        .run(id, &w.shutdown)
        .await;
    assert!(
        matches!(outcome, RunOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert!(w.repo.heartbeats.load(Ordering::SeqCst) >= 3);
    let row = w.row(id).await;
    assert_eq!(
        (row.status, row.lease_epoch.get()),
        (JobStatus::Succeeded, 1)
    );
}

/// Runs a job, then freezes it past its TTL (tokio time jumps in one step, so every timer of
/// the runner fires at once on resume, as after SIGSTOP or a long GC pause); `take_over`
/// decides whether another worker acquires the job meanwhile.
async fn paused_past_the_ttl(take_over: bool) -> (RunOutcome, Job) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let w = World::new(clock.clone(), Faults::default()).await;
    let id = w.job().await;
    let handle = w.spawn(&w.runner(config("a"), seconds(120)), id);
    // Let it acquire without letting time move: yields keep the runtime busy.
    while w.row(id).await.status != JobStatus::Running {
        tokio::task::yield_now().await;
    }
    let frozen = TTL + Duration::from_secs(5);
    clock.advance(frozen);
    if take_over {
        let request = AcquireRequest {
            job_id: id,
            holder: InstanceId::new("b").unwrap(),
            ttl: TTL,
            max_attempts: 5,
            session: None,
        };
        let got = w.repo.acquire(&request).await.unwrap();
        assert!(matches!(got, AcquireOutcome::Acquired { .. }), "{got:?}");
    }
    tokio::time::advance(frozen).await;
    let outcome = handle.await.unwrap();
    (outcome, w.row(id).await)
}

#[tokio::test(start_paused = true)]
async fn a_worker_paused_past_its_ttl_and_taken_over_answers_superseded() {
    let (outcome, row) = paused_past_the_ttl(true).await;
    assert_eq!(outcome, RunOutcome::Superseded);
    // It wrote nothing: the job is the new holder's.
    assert_eq!(row.status, JobStatus::Running);
    assert_eq!(row.lease.unwrap().holder.as_str(), "b");
}

#[tokio::test(start_paused = true)]
async fn a_worker_paused_past_its_ttl_that_nobody_took_over_goes_on() {
    let (outcome, row) = paused_past_the_ttl(false).await;
    assert!(
        matches!(outcome, RunOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        (row.status, row.lease_epoch.get()),
        (JobStatus::Succeeded, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_row_that_does_not_decode_after_acquire_ends_failed_invalid_stored_job() {
    let faults = Faults {
        undecodable: true,
        ..Faults::default()
    };
    let w = World::tokio_time(faults).await;
    let id = w.job().await;
    let outcome = w.runner(config("a"), seconds(1)).run(id, &w.shutdown).await;
    let RunOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(error.code.as_str(), ErrorCode::INVALID_STORED_JOB);
    let row = w.row(id).await;
    assert_eq!(row.status, JobStatus::Failed);
    assert_eq!(
        row.error.map(|e| e.code.as_str().to_owned()).as_deref(),
        Some(ErrorCode::INVALID_STORED_JOB)
    );
}

#[tokio::test(start_paused = true)]
async fn a_row_that_does_not_decode_and_cannot_be_finalized_is_unavailable_not_done() {
    let faults = Faults {
        undecodable: true,
        finalize_down: true,
        ..Faults::default()
    };
    let w = World::tokio_time(faults).await;
    let id = w.job().await;
    let outcome = w.runner(config("a"), seconds(1)).run(id, &w.shutdown).await;
    assert!(
        matches!(outcome, RunOutcome::Unavailable { .. }),
        "the queue must retry: {outcome:?}"
    );
    assert_eq!(w.row(id).await.status, JobStatus::Running);
}
