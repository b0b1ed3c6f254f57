//! The runner against `repo-mem` with paused tokio time and scripted pipelines.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::{Clock, InstanceId, JobId, JobRepository, JobStatus, ManualClock, NewJob, Stage};
use pipeline::testing::{Fail, Publish, Segments, Stubborn};
use pipeline::{Pipeline, StageError};
use repo_mem::MemRepository;
use runner::{CancelHub, RunOutcome, Runner, RunnerConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::common::{self, BEAT, TTL, TokioClock};

fn config(instance: &str) -> RunnerConfig {
    common::config(instance, work_root())
}

fn work_root() -> PathBuf {
    common::work_root("runner-test")
}

fn stages(list: Vec<Arc<dyn pipeline::Stage>>) -> Pipeline {
    Pipeline::new(list)
}

fn segments(stage: Stage, count: u32, each_s: u64) -> Arc<dyn pipeline::Stage> {
    Arc::new(Segments {
        stage,
        count,
        each: Duration::from_secs(each_s),
    })
}

struct World {
    repo: Arc<MemRepository>,
    hub: CancelHub,
    shutdown: CancellationToken,
}

impl World {
    async fn new(clock: Arc<dyn Clock>) -> Self {
        let repo = Arc::new(MemRepository::with_clock(clock));
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

    async fn tokio_time() -> Self {
        Self::new(Arc::new(TokioClock {
            base: chrono::Utc::now(),
            start: tokio::time::Instant::now(),
        }))
        .await
    }

    fn runner(&self, instance: &str, pipeline: Pipeline) -> Runner {
        Runner::new(
            self.repo.clone(),
            pipeline,
            self.hub.clone(),
            config(instance),
        )
    }

    async fn job(&self) -> JobId {
        let id = JobId::new();
        self.repo
            .create(NewJob {
                id,
                input: serde_json::json!({"title": "t"}),
            })
            .await
            .unwrap();
        id
    }

    async fn row(&self, id: JobId) -> domain::Job {
        self.repo.get(id).await.unwrap().unwrap()
    }

    fn spawn(&self, runner: &Runner, id: JobId) -> tokio::task::JoinHandle<RunOutcome> {
        let (runner, shutdown) = (runner.clone(), self.shutdown.clone());
        tokio::spawn(async move { runner.run(id, &shutdown).await })
    }
}

fn tts_then_publish() -> Pipeline {
    stages(vec![
        segments(Stage::Tts, 4, 1),
        Arc::new(Publish::default()),
    ])
}

#[tokio::test(start_paused = true)]
async fn job_runs_to_succeeded_with_its_artifact_and_a_full_bar() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let outcome = w.runner("a", tts_then_publish()).run(id, &w.shutdown).await;
    let RunOutcome::Succeeded { artifact_key } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        artifact_key,
        format!("video-jobs/{id}/attempts/1/final.mp4")
    );
    let job = w.row(id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.artifact_key.as_deref(), Some(artifact_key.as_str()));
    assert_eq!(job.percent().get(), 100);
    assert_eq!(job.lease, None);
    assert!(
        !work_root()
            .join("attempts")
            .join(format!("{id}-1"))
            .exists(),
        "a finished attempt's scratch is removed"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_the_lease_for_a_job_longer_than_the_ttl() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let runner = w.runner(
        "a",
        stages(vec![
            segments(Stage::Render, 10, 30),
            Arc::new(Publish::default()),
        ]),
    );
    let handle = w.spawn(&runner, id);
    for _ in 0..8 {
        tokio::time::sleep(TTL / 2).await;
        let other = w.runner("b", tts_then_publish()).run(id, &w.shutdown).await;
        assert!(
            matches!(&other, RunOutcome::Busy { holder, retry_after } if holder.as_str() == "a" && *retry_after <= TTL),
            "{other:?}"
        );
    }
    assert!(matches!(
        handle.await.unwrap(),
        RunOutcome::Succeeded { .. }
    ));
    assert_eq!(w.row(id).await.attempts, 1, "never taken over");
}

#[tokio::test(start_paused = true)]
async fn progress_is_written_per_segment_and_never_backwards() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let runner = w.runner(
        "a",
        stages(vec![
            segments(Stage::Tts, 4, 2),
            segments(Stage::Render, 4, 2),
            Arc::new(Publish::default()),
        ]),
    );
    let handle = w.spawn(&runner, id);
    let mut seen = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if let Some(p) = w.row(id).await.progress {
            seen.push((p.stage, p.percent.get()));
        }
    }
    assert!(matches!(
        handle.await.unwrap(),
        RunOutcome::Succeeded { .. }
    ));
    assert!(
        seen.windows(2).all(|p| p[0].1 <= p[1].1),
        "monotonic: {seen:?}"
    );
    assert!(
        seen.iter().any(|(s, _)| *s == Stage::Tts) && seen.iter().any(|(s, _)| *s == Stage::Render),
        "{seen:?}"
    );
    let distinct: std::collections::BTreeSet<_> = seen.iter().map(|(_, p)| *p).collect();
    assert!(
        distinct.len() >= 5,
        "segment progress shows up as it happens: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn takeover_makes_the_old_runner_stop_and_write_nothing() {
    let clock = Arc::new(ManualClock::default());
    let w = World::new(clock.clone()).await;
    let id = w.job().await;
    let started = Arc::new(Notify::new());
    let publish = Publish {
        started: Some(started.clone()),
        go: Some(Arc::new(Notify::new())), // never released: the old runner hangs here
    };
    let old = w.runner("old", stages(vec![Arc::new(publish)]));
    let handle = w.spawn(&old, id);
    started.notified().await;
    // The old worker stalls past its TTL (no heartbeat moved the repository clock) …
    clock.advance(TTL + Duration::from_secs(1));
    let AcquireNew { epoch } = acquire_new(&w, id).await;
    assert_eq!(epoch, 2);
    let after_takeover = w.row(id).await;
    // … and learns it at its next heartbeat.
    let outcome = handle.await.unwrap();
    assert_eq!(outcome, RunOutcome::Superseded);
    assert_eq!(
        w.row(id).await,
        after_takeover,
        "the old runner wrote nothing after the takeover"
    );
}

struct AcquireNew {
    epoch: i64,
}

async fn acquire_new(w: &World, id: JobId) -> AcquireNew {
    let request = domain::AcquireRequest {
        job_id: id,
        holder: InstanceId::new("new").unwrap(),
        ttl: TTL,
        max_attempts: 5,
        session: None,
    };
    match w.repo.acquire(&request).await.unwrap() {
        domain::AcquireOutcome::Acquired { lease, .. } => AcquireNew {
            epoch: lease.epoch.get(),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_mid_stage_stops_within_a_segment_not_a_heartbeat() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let runner = w.runner(
        "a",
        stages(vec![
            segments(Stage::Render, 100, 1),
            Arc::new(Publish::default()),
        ]),
    );
    let handle = w.spawn(&runner, id);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let asked = tokio::time::Instant::now();
    w.repo.request_cancel(id).await.unwrap();
    assert_eq!(handle.await.unwrap(), RunOutcome::Canceled);
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "the notification stops it at once, took {waited:?}"
    );
    let job = w.row(id).await;
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.artifact_key, None);
}

#[tokio::test(start_paused = true)]
async fn cancel_without_notifications_is_caught_by_the_next_heartbeat() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock {
        base: chrono::Utc::now(),
        start: tokio::time::Instant::now(),
    });
    let repo = Arc::new(MemRepository::with_clock(clock));
    // A hub that never listens: the LISTEN-disabled case.
    let runner = Runner::new(
        repo.clone(),
        stages(vec![
            segments(Stage::Render, 1000, 1),
            Arc::new(Publish::default()),
        ]),
        CancelHub::new(),
        config("a"),
    );
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: serde_json::json!({}),
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let runner = runner.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { runner.run(id, &shutdown).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = tokio::time::Instant::now();
    repo.request_cancel(id).await.unwrap();
    assert_eq!(task.await.unwrap(), RunOutcome::Canceled);
    assert!(
        asked.elapsed() <= BEAT + Duration::from_secs(1),
        "within one heartbeat: {:?}",
        asked.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_during_the_last_stage_ends_canceled_not_succeeded() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let (started, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let publish = Publish {
        started: Some(started.clone()),
        go: Some(go.clone()),
    };
    let handle = w.spawn(
        &w.runner(
            "a",
            stages(vec![segments(Stage::Tts, 2, 1), Arc::new(publish)]),
        ),
        id,
    );
    started.notified().await;
    w.repo.request_cancel(id).await.unwrap();
    go.notify_one();
    assert_eq!(handle.await.unwrap(), RunOutcome::Canceled);
    let job = w.row(id).await;
    assert_eq!((job.status, job.artifact_key), (JobStatus::Canceled, None));
}

#[tokio::test(start_paused = true)]
async fn execution_limit_fails_the_job_with_a_timeout_code() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let mut cfg = config("a");
    cfg.max_runtime = Duration::from_secs(90);
    let runner = Runner::new(
        w.repo.clone(),
        stages(vec![segments(Stage::Render, 100, 1)]),
        w.hub.clone(),
        cfg,
    );
    let outcome = runner.run(id, &w.shutdown).await;
    let RunOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.code.as_str(), "execution_timeout");
    let job = w.row(id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code.as_str(), "execution_timeout");
}

#[tokio::test(start_paused = true)]
async fn retryable_failure_requeues_and_permanent_failure_fails() {
    let w = World::tokio_time().await;
    let retry = w.job().await;
    let runner = w.runner(
        "a",
        stages(vec![Arc::new(Fail(StageError::retryable(
            "tts_unavailable",
            "503",
        )))]),
    );
    let outcome = runner.run(retry, &w.shutdown).await;
    assert!(
        matches!(&outcome, RunOutcome::Retry { error } if error.code.as_str() == "tts_unavailable"),
        "{outcome:?}"
    );
    let job = w.row(retry).await;
    assert_eq!((job.status, job.lease.is_none()), (JobStatus::Queued, true));
    assert!(
        !work_root()
            .join("attempts")
            .join(format!("{retry}-1"))
            .exists(),
        "a retried attempt's scratch is gone (resume comes from the segment cache)"
    );

    let permanent = w.job().await;
    let runner = w.runner(
        "a",
        stages(vec![Arc::new(Fail(StageError::permanent(
            "invalid_input",
            "segments: empty",
        )))]),
    );
    let outcome = runner.run(permanent, &w.shutdown).await;
    assert!(
        matches!(&outcome, RunOutcome::Failed { error } if error.code.as_str() == "invalid_input"),
        "{outcome:?}"
    );
    let job = w.row(permanent).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().message, "segments: empty");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_at_the_next_checkpoint_and_requeues_at_once() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let handle = w.spawn(
        &w.runner("a", stages(vec![segments(Stage::Render, 100, 1)])),
        id,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.shutdown.cancel();
    assert_eq!(handle.await.unwrap(), RunOutcome::ShuttingDown);
    let job = w.row(id).await;
    assert_eq!(
        job.status,
        JobStatus::Queued,
        "released, not left to expire"
    );
    assert_eq!(job.error.unwrap().code.as_str(), "worker_shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_that_ignores_the_token_is_aborted_after_the_grace() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let handle = w.spawn(&w.runner("a", stages(vec![Arc::new(Stubborn)])), id);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let asked = tokio::time::Instant::now();
    w.shutdown.cancel();
    assert_eq!(handle.await.unwrap(), RunOutcome::ShuttingDown);
    let took = asked.elapsed();
    // The drain keeps 1.5 s of the 8 s grace for the release, so the whole stop fits in it.
    assert!(
        took >= Duration::from_millis(6500) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(w.row(id).await.status, JobStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn deliveries_of_unknown_finished_or_running_jobs_do_not_run() {
    let w = World::tokio_time().await;
    let runner = w.runner("a", tts_then_publish());
    assert_eq!(
        runner.run(JobId::new(), &w.shutdown).await,
        RunOutcome::NotFound
    );

    let done = w.job().await;
    assert!(matches!(
        runner.run(done, &w.shutdown).await,
        RunOutcome::Succeeded { .. }
    ));
    assert_eq!(
        runner.run(done, &w.shutdown).await,
        RunOutcome::Skipped(JobStatus::Succeeded)
    );

    let running = w.job().await;
    let handle = w.spawn(
        &w.runner(
            "a",
            stages(vec![
                segments(Stage::Render, 20, 1),
                Arc::new(Publish::default()),
            ]),
        ),
        running,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dup = runner.run(running, &w.shutdown).await;
    assert!(
        matches!(dup, RunOutcome::Busy { .. }),
        "a duplicate delivery does not start a second run: {dup:?}"
    );
    assert!(matches!(
        handle.await.unwrap(),
        RunOutcome::Succeeded { .. }
    ));

    let queued_then_canceled = w.job().await;
    w.repo.request_cancel(queued_then_canceled).await.unwrap();
    assert_eq!(
        runner.run(queued_then_canceled, &w.shutdown).await,
        RunOutcome::Skipped(JobStatus::Canceled)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_leaves_its_last_progress_on_the_job() {
    let w = World::tokio_time().await;
    let id = w.job().await;
    let failing = stages(vec![
        segments(Stage::Tts, 3, 1),
        Arc::new(Fail(StageError::retryable("tts_unavailable", "503"))),
    ]);
    let outcome = w.runner("a", failing).run(id, &w.shutdown).await;
    assert!(matches!(outcome, RunOutcome::Retry { .. }), "{outcome:?}");
    // "render started" came right after "tts done" (within the 100 ms boundary gap) and was
    // held back when the stage failed; it is written before the release.
    let progress = w.row(id).await.progress.unwrap();
    assert_eq!(progress.stage, Stage::Render, "{progress:?}");
}

/// A runner holding `id` in a publish stage that waits for `go`; returns once it holds it.
async fn holding(w: &World, id: JobId) -> (tokio::task::JoinHandle<RunOutcome>, Arc<Notify>) {
    let started = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let publish = Publish {
        started: Some(started.clone()),
        go: Some(go.clone()),
    };
    let old = w.runner("old", stages(vec![Arc::new(publish)]));
    let handle = w.spawn(&old, id);
    started.notified().await;
    (handle, go)
}

/// The session the runner's cancel subscription holds, as recorded on the job's lease.
async fn recorded_session(w: &World, id: JobId) -> domain::HolderSession {
    let listening = w.repo.listener_sessions();
    assert_eq!(listening.len(), 1, "one cancel subscription");
    let recorded = w.row(id).await.lease.unwrap().session;
    assert_eq!(
        recorded,
        Some(listening[0]),
        "the lease names the listener's session"
    );
    listening[0]
}

#[tokio::test(start_paused = true)]
async fn a_live_runner_whose_session_dropped_is_taken_over_and_answers_superseded() {
    // The repository clock stands still: the lease never expires.
    let clock = Arc::new(ManualClock::default());
    let w = World::new(clock).await;
    let id = w.job().await;
    let (handle, _go) = holding(&w, id).await;
    let session = recorded_session(&w, id).await;
    // The cancel connection drops and stays down; the process lives on.
    w.repo.end_session(session);
    let AcquireNew { epoch } = acquire_new(&w, id).await;
    assert_eq!(epoch, 2, "taken over before the lease expired");
    let after_takeover = w.row(id).await;
    // The old runner learns at its next heartbeat, and writes nothing.
    let outcome = handle.await.unwrap();
    assert_eq!(outcome, RunOutcome::Superseded);
    assert_eq!(w.row(id).await, after_takeover);
}

#[tokio::test(start_paused = true)]
async fn a_runner_whose_session_dropped_and_whose_job_the_sweeper_requeued_asks_for_a_retry() {
    let clock = Arc::new(ManualClock::default());
    let w = World::new(clock).await;
    let id = w.job().await;
    let (handle, _go) = holding(&w, id).await;
    let session = recorded_session(&w, id).await;
    w.repo.end_session(session);
    let policy = domain::SweepPolicy {
        expired_for: Duration::from_secs(300),
        max_attempts: 5,
        queued_for: None,
        queued_limit: u32::MAX,
    };
    let swept = w.repo.sweep(&policy).await.unwrap();
    assert_eq!(swept.len(), 1, "requeued at once, not 300 s after expiry");
    assert_eq!(w.row(id).await.status, JobStatus::Queued);
    // Nobody holds the job and this delivery may be its only task: not a 2xx.
    let outcome = handle.await.unwrap();
    assert!(matches!(outcome, RunOutcome::Retry { .. }), "{outcome:?}");
    assert_eq!(w.row(id).await.status, JobStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_runner_re_registers_its_new_session_after_the_listener_reconnects() {
    let clock = Arc::new(ManualClock::default());
    let w = World::new(clock).await;
    let id = w.job().await;
    let (handle, go) = holding(&w, id).await;
    let first = recorded_session(&w, id).await;
    let reconnected = w.repo.reconnect_listeners();
    assert_eq!(reconnected.len(), 1);
    let second = reconnected[0];
    assert!(!w.repo.session_alive(&first));
    // Re-registered as soon as the hub hears of it, well before the next heartbeat.
    let before = tokio::time::Instant::now();
    while w.row(id).await.lease.unwrap().session != Some(second) {
        assert!(
            before.elapsed() < BEAT,
            "not re-registered before the next heartbeat"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let request = domain::AcquireRequest {
        job_id: id,
        holder: InstanceId::new("new").unwrap(),
        ttl: TTL,
        max_attempts: 5,
        session: None,
    };
    let outcome = w.repo.acquire(&request).await.unwrap();
    assert!(
        matches!(outcome, domain::AcquireOutcome::Busy { .. }),
        "the re-registered holder is alive: {outcome:?}"
    );
    go.notify_one();
    let outcome = handle.await.unwrap();
    assert!(
        matches!(outcome, RunOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
}
