//! The runner against a mocked repository that fails: the database going away must end the
//! attempt without a write it cannot prove is fenced, and transient closing-write failures
//! are retried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelOutcome, CancelSubscription, FencedError, FinalOutcome,
    HeartbeatAck, HolderSession, IdempotentOutcome, IdempotentRequest, InstanceId, Job, JobError,
    JobId, JobIdStream, JobPage, JobRepository, JobStatus, Lease, LeaseEpoch, ListQuery, NewJob,
    ProgressOutcome, ProgressReport, RepoError, Stage, SweepPolicy, SweptJob,
};
use pipeline::{Pipeline, Published, StageContext, StageData, StageError};
use runner::{CancelHub, RunOutcome, Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;

use crate::common;

mockall::mock! {
    pub Repo {}
    impl std::fmt::Debug for Repo {
        fn fmt<'a>(&self, f: &mut std::fmt::Formatter<'a>) -> std::fmt::Result;
    }
    #[async_trait]
    impl JobRepository for Repo {
        async fn create(&self, job: NewJob) -> Result<Job, RepoError>;
        async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError>;
        async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError>;
        async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError>;
        async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError>;
        async fn register_session(&self, lease: &Lease, session: HolderSession) -> Result<(), FencedError>;
        async fn report_progress(&self, lease: &Lease, report: &ProgressReport) -> Result<ProgressOutcome, FencedError>;
        async fn release(&self, lease: &Lease, error: Option<JobError>) -> Result<JobStatus, FencedError>;
        async fn finalize(&self, lease: &Lease, outcome: &FinalOutcome) -> Result<JobStatus, FencedError>;
        async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError>;
        async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError>;
        async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError>;
        async fn job_updates(&self) -> Result<JobIdStream, RepoError>;
        async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError>;
        async fn create_idempotent(&self, job: NewJob, request: &IdempotentRequest) -> Result<IdempotentOutcome, RepoError>;
        async fn advance_delivery_generation(&self, id: JobId, from: u32) -> Result<Option<u32>, RepoError>;
    }
}

/// A repository that grants `id`'s lease once and applies every progress write; each test
/// adds what its closing write meets.
fn holding(id: JobId) -> MockRepo {
    let mut repo = MockRepo::new();
    repo.expect_acquire()
        .times(1)
        .returning(move |_| Ok(acquired(id)));
    repo.expect_report_progress()
        .returning(|_, _| Ok(ProgressOutcome::Applied));
    repo
}

fn down() -> RepoError {
    RepoError::Unavailable("connection refused".into())
}

fn config() -> RunnerConfig {
    common::config("a", common::work_root("runner-mock"))
}

fn acquired(id: JobId) -> AcquireOutcome {
    let now = chrono::Utc::now();
    let mut job = Job::new(id, serde_json::json!({}), now);
    job.status = JobStatus::Running;
    let lease = Lease {
        job_id: id,
        holder: InstanceId::new("a").unwrap(),
        epoch: LeaseEpoch::NEVER.next(),
        expires_at: now,
        attempt: 1,
    };
    AcquireOutcome::Acquired {
        lease,
        job: Box::new(job),
    }
}

#[derive(Debug)]
struct Slow;

#[async_trait]
impl pipeline::Stage for Slow {
    fn stage(&self) -> Stage {
        Stage::Render
    }
    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        for i in 0..600 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = ctx.cancel_token().cancelled() => return Err(StageError::Canceled),
            }
            ctx.segment_done(Stage::Render, i, 600)?;
        }
        data.insert(Published {
            artifact_key: "k".into(),
        });
        Ok(())
    }
}

#[derive(Debug)]
struct Quick;

#[async_trait]
impl pipeline::Stage for Quick {
    fn stage(&self) -> Stage {
        Stage::Publish
    }
    async fn run(&self, _: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        data.insert(Published {
            artifact_key: "k".into(),
        });
        Ok(())
    }
}

fn runner(repo: MockRepo, stage: Arc<dyn pipeline::Stage>) -> Runner {
    Runner::new(
        Arc::new(repo),
        Pipeline::new(vec![stage]),
        CancelHub::new(),
        config(),
    )
}

#[tokio::test(start_paused = true)]
async fn database_down_at_acquire_is_unavailable_and_nothing_runs() {
    let mut repo = MockRepo::new();
    repo.expect_acquire().times(1).returning(|_| Err(down()));
    let outcome = runner(repo, Arc::new(Quick))
        .run(JobId::new(), &CancellationToken::new())
        .await;
    assert!(
        matches!(outcome, RunOutcome::Unavailable { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_failing_until_the_lease_may_be_gone_abandon_it_without_writing() {
    let id = JobId::new();
    let mut repo = MockRepo::new();
    repo.expect_acquire()
        .times(1)
        .returning(move |_| Ok(acquired(id)));
    repo.expect_heartbeat()
        .returning(|_, _| Err(FencedError::Repo(down())));
    repo.expect_report_progress()
        .returning(|_, _| Err(FencedError::Repo(down())));
    // Neither closing write may happen: the lease may belong to someone else by now.
    repo.expect_finalize().times(0);
    repo.expect_release().times(0);
    let started = tokio::time::Instant::now();
    let outcome = runner(repo, Arc::new(Slow))
        .run(id, &CancellationToken::new())
        .await;
    assert!(
        matches!(outcome, RunOutcome::Unavailable { .. }),
        "{outcome:?}"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "gave up before the 60 s TTL, after {took:?}"
    );
    assert!(
        took >= Duration::from_secs(30),
        "not at the first failed heartbeat, after {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_finalize_is_retried() {
    let id = JobId::new();
    let mut repo = holding(id);
    let mut seq = mockall::Sequence::new();
    repo.expect_finalize()
        .times(2)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(FencedError::Repo(down())));
    repo.expect_finalize()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(JobStatus::Succeeded));
    let outcome = runner(repo, Arc::new(Quick))
        .run(id, &CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        RunOutcome::Succeeded {
            artifact_key: "k".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_finalize_is_not_retried_and_means_superseded() {
    let id = JobId::new();
    let mut repo = holding(id);
    repo.expect_finalize()
        .times(1)
        .returning(|_, _| Err(FencedError::LeaseLost));
    // Another worker holds it now.
    repo.expect_get()
        .times(1)
        .returning(move |_| Ok(Some(job_with(id, JobStatus::Running))));
    let outcome = runner(repo, Arc::new(Quick))
        .run(id, &CancellationToken::new())
        .await;
    assert_eq!(outcome, RunOutcome::Superseded);
}

fn job_with(id: JobId, status: JobStatus) -> Job {
    let mut job = Job::new(id, serde_json::json!({}), chrono::Utc::now());
    job.status = status;
    job
}

/// The lease is gone, but nobody holds the job: the sweeper requeued it after this worker's
/// lease expired (a long pause). This delivery may be its only task, so a 2xx would strand
/// it; the queue must retry.
#[tokio::test]
async fn a_lost_lease_on_a_job_the_sweeper_requeued_is_retried_not_superseded() {
    for (read_back, expected) in [
        (Ok(Some(JobStatus::Queued)), "retry"),
        (Ok(Some(JobStatus::Succeeded)), "superseded"),
        (Err(()), "unavailable"),
    ] {
        let id = JobId::new();
        let mut repo = holding(id);
        repo.expect_finalize()
            .times(1)
            .returning(|_, _| Err(FencedError::LeaseLost));
        repo.expect_get()
            .times(1)
            .returning(move |_| match read_back {
                Ok(status) => Ok(status.map(|s| job_with(id, s))),
                Err(()) => Err(down()),
            });
        let outcome = runner(repo, Arc::new(Quick))
            .run(id, &CancellationToken::new())
            .await;
        assert_eq!(outcome.label(), expected, "{read_back:?}: {outcome:?}");
    }
}

#[derive(Debug)]
struct FailWith(StageError);

#[async_trait]
impl pipeline::Stage for FailWith {
    fn stage(&self) -> Stage {
        Stage::Tts
    }
    async fn run(&self, _: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        Err(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_reply_was_lost_is_read_back_and_still_means_retry() {
    let id = JobId::new();
    let mut repo = holding(id);
    let mut seq = mockall::Sequence::new();
    // The first try committed but its reply was lost; the second finds the lease gone.
    repo.expect_release()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(FencedError::Repo(down())));
    repo.expect_release()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(FencedError::LeaseLost));
    repo.expect_get().times(1).returning(move |_| {
        let mut job = Job::new(id, serde_json::json!({}), chrono::Utc::now());
        job.lease_epoch = LeaseEpoch::NEVER.next();
        job.status = JobStatus::Queued;
        Ok(Some(job))
    });
    let stage = Arc::new(FailWith(StageError::retryable("tts_unavailable", "503")));
    let outcome = runner(repo, stage).run(id, &CancellationToken::new()).await;
    assert!(
        matches!(&outcome, RunOutcome::Retry { error } if error.code.as_str() == "tts_unavailable"),
        "the queue must retry, not drop the task: {outcome:?}"
    );
}

/// A repository whose heartbeats never answer (a half-open connection).
#[derive(Debug)]
struct HangingHeartbeats(repo_mem::MemRepository);

#[async_trait]
impl JobRepository for HangingHeartbeats {
    async fn create(&self, job: NewJob) -> Result<Job, RepoError> {
        self.0.create(job).await
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        self.0.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError> {
        self.0.list(query).await
    }
    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError> {
        self.0.acquire(request).await
    }
    async fn heartbeat(&self, _: &Lease, _: Duration) -> Result<HeartbeatAck, FencedError> {
        std::future::pending().await
    }
    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError> {
        self.0.register_session(lease, session).await
    }
    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError> {
        self.0.report_progress(lease, report).await
    }
    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError> {
        self.0.release(lease, error).await
    }
    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError> {
        self.0.finalize(lease, outcome).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError> {
        self.0.request_cancel(id).await
    }
    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError> {
        self.0.cancel_notifications().await
    }
    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError> {
        self.0.sweep(policy).await
    }
    async fn job_updates(&self) -> Result<JobIdStream, RepoError> {
        self.0.job_updates().await
    }
    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError> {
        self.0.fail_unstarted(id, error).await
    }
    async fn create_idempotent(
        &self,
        job: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError> {
        self.0.create_idempotent(job, request).await
    }
    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError> {
        self.0.advance_delivery_generation(id, from).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_heartbeat_cannot_keep_a_worker_past_its_lease() {
    let repo = Arc::new(HangingHeartbeats(repo_mem::MemRepository::new()));
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: serde_json::json!({}),
    })
    .await
    .unwrap();
    let runner = Runner::new(
        repo.clone(),
        Pipeline::new(vec![Arc::new(Slow)]),
        CancelHub::new(),
        config(),
    );
    let started = tokio::time::Instant::now();
    let outcome = runner.run(id, &CancellationToken::new()).await;
    assert!(
        matches!(outcome, RunOutcome::Unavailable { .. }),
        "{outcome:?}"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "stopped within the 60 s TTL: {took:?}"
    );
    // It wrote nothing after giving up: the job is still running under its (dead) lease.
    assert_eq!(
        repo.get(id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_retry_whose_read_back_fails_is_unavailable_never_superseded() {
    let id = JobId::new();
    let mut repo = holding(id);
    let mut seq = mockall::Sequence::new();
    // The first try may have committed (its reply was lost); the second finds the lease gone
    // and the row cannot be read: whose write ended the lease is unknown.
    repo.expect_release()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(FencedError::Repo(down())));
    repo.expect_release()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(FencedError::LeaseLost));
    repo.expect_get().times(1).returning(|_| Err(down()));
    let stage = Arc::new(FailWith(StageError::retryable("tts_unavailable", "503")));
    let outcome = runner(repo, stage).run(id, &CancellationToken::new()).await;
    assert!(
        matches!(outcome, RunOutcome::Unavailable { .. }),
        "the queue must retry, not forget a job that may be queued without a task: {outcome:?}"
    );
}
