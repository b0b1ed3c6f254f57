//! `POST /sweep` on a real Postgres, through the real router, with the loopback queue: the
//! backstop that runs when Cloud Scheduler calls it, not on a timer — so it works with the
//! service scaled to zero. A lost delivery is delivered, a SIGKILLed holder's job requeued
//! (at once: its session is gone), a backlog never gains a second task per job, and nobody
//! but an allowed caller sweeps.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    Launch, ServeProcess, TOKEN, free_port, new_job, pg_database, quick, read, runner_config,
    token_auth,
};
use domain::{JobId, JobRepository, JobStatus};
use queue::Enqueuer;
use queue::SweepSettings;
use queue::loopback::LoopbackQueue;
use repo_pg::PgRepository;
use serde_json::{Value, json};
use worker_http::{AppParts, Application, Readiness, SweepParts};

/// The in-process loop is off in every test here: only `POST /sweep` sweeps.
fn no_loop() -> SweepSettings {
    SweepSettings {
        interval: Duration::ZERO,
        expired_for: Duration::from_secs(900),
        queued_for: Duration::from_secs(300),
        queued_batch: 500,
    }
}

/// The worker application on `port`, with `queue` for the sweep's re-enqueues.
async fn worker(
    repo: Arc<dyn JobRepository>,
    queue: Option<Arc<dyn Enqueuer>>,
    port: u16,
) -> String {
    let auth = token_auth();
    let parts = AppParts {
        repo,
        pipeline: quick(),
        auth,
        runner: runner_config("sweeper-test"),
        readiness: Readiness::Always,
        max_body_bytes: 4096,
        listen_for_cancels: true,
    };
    let sweep = SweepParts {
        queue,
        settings: no_loop(),
    };
    let app =
        Application::build_with_sweep(parts, sweep, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// A loopback queue pushing to the worker at `base`, with the worker's token.
fn loopback(base: &str) -> LoopbackQueue {
    let mut queue = LoopbackQueue::new(format!("{base}/jobs/run"));
    queue.bearer = Some(TOKEN.into());
    queue.min_backoff = Duration::from_millis(50);
    queue.max_backoff = Duration::from_millis(500);
    queue
}

async fn sweep(base: &str, token: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().post(format!("{base}/sweep"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read(request.send().await.unwrap()).await
}

/// Makes every queued job look untouched for an hour: the sweep's `queued_for` is met
/// without waiting.
async fn age_queued(db: &test_pg::TestDb) {
    sqlx::query(
        "UPDATE video_jobs SET updated_at = now() - interval '1 hour' WHERE status = 'queued'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

/// Makes every running lease look expired an hour ago: the sweep's `expired_for` is met.
async fn age_leases(db: &test_pg::TestDb) {
    sqlx::query(
        "UPDATE video_jobs SET lease_heartbeat_at = now() - interval '2 hours',
                lease_expires_at = now() - interval '1 hour'
         WHERE status = 'running'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn wait_for(repo: &dyn JobRepository, id: JobId, status: JobStatus) -> domain::Job {
    for _ in 0..600 {
        let job = repo.get(id).await.unwrap().unwrap();
        if job.status == status {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} never became {status}: {:?}",
        repo.get(id).await.unwrap()
    );
}

fn counts(body: &Value) -> [u64; 6] {
    [
        "requeued",
        "failed",
        "canceled",
        "reenqueued",
        "pending",
        "deferred",
    ]
    .map(|k| {
        body[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {body}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_whose_task_was_lost_is_delivered_after_one_post_sweep() {
    let (db, repo) = pg_database().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let queue = loopback(&base);
    let base = worker(repo.clone(), Some(Arc::new(queue.clone())), port).await;
    // Stored, but its task never made it (the enqueue's answer was lost): no push comes.
    let id = new_job(repo.as_ref(), json!({})).await;
    age_queued(&db).await;
    assert_eq!(
        repo.get(id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );

    let (code, body, _) = sweep(&base, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counts(&body), [0, 0, 0, 1, 0, 0], "{body}");

    let job = wait_for(repo.as_ref(), id, JobStatus::Succeeded).await;
    assert_eq!(
        (job.delivery_generation, job.attempts),
        (1, 1),
        "delivered once, by the next generation's task"
    );
}

/// `serve` as instance `name` with the in-process sweep loop off: only `POST /sweep` sweeps.
fn serve(database_url: &str, name: &str) -> Launch {
    Launch::serve(database_url, name)
        .env("VIDEO_SWEEP_INTERVAL_SECONDS", "0")
        .env("VIDEO_SWEEP_EXPIRED_FOR_SECONDS", "1")
}

/// A job three seconds long, running on a `serve` process (lease TTL `ttl_s`) that is
/// SIGKILLed once the job has made progress: no release, no finalize, no answer to the push.
/// Returns the job as the dead holder left it.
async fn job_of_a_sigkilled_holder(
    database_url: &str,
    repo: &dyn JobRepository,
    ttl_s: u64,
) -> domain::Job {
    let id = new_job(repo, json!({"noop": {"segments": 30, "segment_ms": 100}})).await;
    let mut first = serve(database_url, "first")
        .env("VIDEO_JOB_LEASE_TTL_SECONDS", ttl_s.to_string())
        .start()
        .await;
    let doomed = tokio::spawn(first.push(id).send());
    let held = loop {
        let job = repo.get(id).await.unwrap().unwrap();
        if job.progress.as_ref().is_some_and(|p| p.percent.get() > 0) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        doomed.await.unwrap().is_err(),
        "the killed worker never answered"
    );
    held
}

/// A second `serve` process whose queue is the loopback, pushing to itself: what its
/// `POST /sweep` re-enqueues, it runs.
async fn self_delivering_worker(database_url: &str) -> ServeProcess {
    let port = free_port();
    serve(database_url, "second")
        .port(port)
        .env("VIDEO_QUEUE", "loopback")
        .env("VIDEO_WORKER_URL", format!("http://127.0.0.1:{port}"))
        .start()
        .await
}

/// A job acquired by instance `dead`, which never heartbeats, releases or finishes it.
async fn job_of_a_silent_holder(repo: &dyn JobRepository) -> JobId {
    let id = new_job(repo, json!({})).await;
    let request = domain::AcquireRequest {
        job_id: id,
        holder: domain::InstanceId::new("dead").unwrap(),
        ttl: Duration::from_secs(3),
        max_attempts: 5,
        session: None,
    };
    repo.acquire(&request).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_holders_job_is_requeued_and_redelivered_by_one_post_sweep() {
    let (db, repo) = pg_database().await;
    let id = job_of_a_sigkilled_holder(&db.url, repo.as_ref(), 3)
        .await
        .id;
    // No retry of the push comes (the queue gave up, or lost it); the lease has run out.
    age_leases(&db).await;

    // The second worker sweeps through its own queue.
    let second = self_delivering_worker(&db.url).await;
    let (code, body, _) = sweep(&second.base, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counts(&body), [1, 0, 0, 1, 0, 0], "{body}");
    let job = wait_for(repo.as_ref(), id, JobStatus::Succeeded).await;
    assert_eq!(
        (job.attempts, job.lease_epoch.get(), job.delivery_generation),
        (2, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_holders_job_is_requeued_by_one_post_sweep_long_before_its_lease_expires() {
    let (db, repo) = pg_database().await;
    // The default TTL: without the session rule, the sweep would wait a minute and more.
    let held = job_of_a_sigkilled_holder(&db.url, repo.as_ref(), 60).await;
    let id = held.id;
    let session = held
        .lease
        .unwrap()
        .session
        .expect("the lease names a session");
    // No push retry comes; the lease has ~60 s left, but its holder's session is gone.
    loop {
        let there: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2)",
        )
        .bind(session.pid)
        .bind(session.backend_start)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if !there {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let expires_at = repo
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap()
        .expires_at;

    let second = self_delivering_worker(&db.url).await;
    let (code, body, _) = sweep(&second.base, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counts(&body), [1, 0, 0, 1, 0, 0], "{body}");
    let job = wait_for(repo.as_ref(), id, JobStatus::Succeeded).await;
    assert_eq!(
        (job.attempts, job.lease_epoch.get(), job.delivery_generation),
        (2, 2, 1)
    );
    assert!(
        job.finished_at.unwrap() < expires_at,
        "requeued and finished before the dead holder's lease would have expired"
    );
}

/// Answers every push with 409 and `Retry-After: 1`, as a worker whose instances are all
/// busy: the queue's tasks stay pending, a backlog.
async fn busy_worker() -> String {
    let app = axum::Router::new().route(
        "/jobs/run",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::CONFLICT,
                [("retry-after", "1")],
                "{}",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_backlog_three_sweeps_leave_every_job_exactly_one_live_task() {
    let (db, repo) = pg_database().await;
    let mut queue = loopback(&busy_worker().await);
    queue.max_attempts = u32::MAX;
    queue.max_backoff = Duration::from_secs(1);
    let base = worker(repo.clone(), Some(Arc::new(queue.clone())), 0).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let id = new_job(repo.as_ref(), json!({})).await;
        // Half were enqueued by the API as usual; the other half's tasks were lost.
        if i % 2 == 0 {
            queue.enqueue(id, 0).await.unwrap();
        }
        ids.push(id);
    }
    let mut reports = Vec::new();
    for _ in 0..3 {
        // Each pass finds every job queued "too long": the backlog is not moving.
        age_queued(&db).await;
        let (code, body, _) = sweep(&base, Some(TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        reports.push(counts(&body));
    }
    assert_eq!(
        reports,
        [
            [0, 0, 0, 50, 50, 0],
            [0, 0, 0, 0, 100, 0],
            [0, 0, 0, 0, 100, 0]
        ],
        "only the lost half is re-enqueued, once"
    );
    let mut live: BTreeMap<JobId, Vec<u32>> = BTreeMap::new();
    for (job, generation) in queue.live_tasks() {
        live.entry(job).or_default().push(generation);
    }
    for (i, id) in ids.iter().enumerate() {
        let generation = repo.get(*id).await.unwrap().unwrap().delivery_generation;
        assert_eq!(
            live.get(id).map(Vec::as_slice),
            Some(&[generation][..]),
            "job {i}: exactly one live task, of the row's generation"
        );
    }
    assert_eq!(live.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_without_valid_credentials_is_refused_and_changes_nothing() {
    let (db, repo) = pg_database().await;
    let queue = loopback(&busy_worker().await);
    let base = worker(repo.clone(), Some(Arc::new(queue.clone())), 0).await;
    let stuck = job_of_a_silent_holder(repo.as_ref()).await;
    let lost = new_job(repo.as_ref(), json!({})).await;
    age_leases(&db).await;
    age_queued(&db).await;
    let before = [
        repo.get(stuck).await.unwrap(),
        repo.get(lost).await.unwrap(),
    ];

    for token in [None, Some("not-the-token-0123456789")] {
        let (code, body, _) = sweep(&base, token).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(body["status"], "unauthorized");
    }
    let after = [
        repo.get(stuck).await.unwrap(),
        repo.get(lost).await.unwrap(),
    ];
    assert_eq!(after, before, "nothing touched");
    assert!(queue.live_tasks().is_empty(), "nothing enqueued");

    // The same call with the token does the work, so the refusal above was the check's.
    let (code, body, _) = sweep(&base, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counts(&body), [1, 0, 0, 2, 0, 0], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_without_a_queue_still_requeues_and_defers_the_delivery() {
    let (db, repo) = pg_database().await;
    let base = worker(repo.clone(), None, 0).await;
    let stuck = job_of_a_silent_holder(repo.as_ref()).await;
    age_leases(&db).await;
    let (code, body, _) = sweep(&base, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(counts(&body), [1, 0, 0, 0, 0, 1], "{body}");
    let job = repo.get(stuck).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.delivery_generation),
        (JobStatus::Queued, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_with_the_database_down_answers_503_with_retry_after() {
    let config = repo_pg::PoolConfig {
        acquire_timeout: Duration::from_millis(300),
        ..repo_pg::PoolConfig::default()
    };
    // Nothing listens on port 1.
    let pool = repo_pg::connect_lazy("postgres://postgres@127.0.0.1:1/none", &config).unwrap();
    let repo = Arc::new(PgRepository::new(pool));
    let base = worker(repo, None, 0).await;
    let (code, body, retry_after) = sweep(&base, Some(TOKEN)).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(retry_after.is_some(), "the scheduler is told when to retry");
}
