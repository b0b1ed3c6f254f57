//! The liveness rule end to end, with real worker processes on Postgres: a worker killed
//! with SIGKILL is taken over before its lease expires (its `LISTEN` session is gone), and
//! the sweeper requeues such a job at once; a worker paused with SIGSTOP keeps its session,
//! so it loses its lease only by expiry — and nothing it writes after SIGCONT is accepted; a
//! worker whose `LISTEN` connection is cut re-registers the new session on its lease.

use std::time::Duration;

use domain::{
    AcquireOutcome, AcquireRequest, InstanceId, Job, JobId, JobRepository, JobStatus, NewJob,
    SweepPolicy,
};
use repo_pg::PgRepository;
use serde_json::json;

use crate::common::{Launch, ServeProcess};

/// A `serve` process with lease TTL `ttl_s`, its stderr discarded.
async fn start_worker(url: &str, name: &str, ttl_s: u64) -> ServeProcess {
    Launch::serve(url, name)
        .env("VIDEO_JOB_LEASE_TTL_SECONDS", ttl_s.to_string())
        .env("RUST_LOG", "error")
        .quiet()
        .start()
        .await
}

/// Pushes `id` and returns the answer's status and body (the push runs the job).
fn push_in_background(
    worker: &ServeProcess,
    id: JobId,
) -> tokio::task::JoinHandle<Result<(u16, String), reqwest::Error>> {
    let request = worker.push(id);
    tokio::spawn(async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    })
}

async fn running_job(repo: &PgRepository, worker: &ServeProcess) -> (JobId, Job) {
    let id = JobId::new();
    repo.create(NewJob {
        id,
        // 100 segments of 100 ms: ten seconds of work, progress every segment.
        input: json!({"noop": {"segments": 100, "segment_ms": 100}}),
    })
    .await
    .unwrap();
    // Detached: the worker is killed before it could answer.
    drop(push_in_background(worker, id));
    loop {
        let job = repo.get(id).await.unwrap().unwrap();
        if job.progress.is_some() {
            return (id, job);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn request(id: JobId, holder: &str) -> AcquireRequest {
    AcquireRequest {
        job_id: id,
        holder: InstanceId::new(holder).unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session: None,
    }
}

async fn session_exists(pool: &sqlx::PgPool, job: &Job) -> bool {
    let session = job.lease.as_ref().unwrap().session.unwrap();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2)",
    )
    .bind(session.pid)
    .bind(session.backend_start)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_taken_over_before_its_lease_expires_and_swept_at_once() {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = PgRepository::new(db.pool.clone());
    let worker = start_worker(&db.url, "doomed", 60).await;
    let (taken, held) = running_job(&repo, &worker).await;
    let (swept, _) = running_job(&repo, &worker).await;
    assert!(
        held.lease.as_ref().unwrap().session.is_some(),
        "the worker records its LISTEN session on the lease"
    );
    assert!(session_exists(&db.pool, &held).await);
    let expires_at = held.lease.as_ref().unwrap().expires_at;

    drop(worker); // SIGKILL, then reaped
    let mut waited = 0;
    while session_exists(&db.pool, &held).await {
        waited += 1;
        assert!(
            waited < 500,
            "the killed worker's session outlived it by 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = repo.acquire(&request(taken, "successor")).await.unwrap();
    let AcquireOutcome::Acquired { lease, job } = outcome else {
        panic!("a dead holder's job is taken over: {outcome:?}");
    };
    assert_eq!(lease.epoch.get(), 2);
    let acquired_at = job.lease.unwrap().heartbeat_at;
    assert!(
        acquired_at < expires_at,
        "taken over at {acquired_at}, before the old lease's expiry {expires_at}"
    );

    let policy = SweepPolicy {
        expired_for: Duration::from_secs(300),
        max_attempts: 5,
        queued_for: None,
        queued_limit: u32::MAX,
    };
    let moved = repo.sweep(&policy).await.unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!((moved[0].id, moved[0].status), (swept, JobStatus::Queued));
    let requeued = repo.get(swept).await.unwrap().unwrap();
    assert_eq!(requeued.error.unwrap().code.as_str(), "worker_gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_lease_only_by_expiry_and_writes_nothing_after_resuming() {
    const TTL_S: u64 = 3;
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = PgRepository::new(db.pool.clone());
    let worker = start_worker(&db.url, "paused", TTL_S).await;
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: json!({"noop": {"segments": 100, "segment_ms": 100}}),
    })
    .await
    .unwrap();
    let push = push_in_background(&worker, id);
    while repo.get(id).await.unwrap().unwrap().progress.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    worker.signal("-STOP");
    // A heartbeat already on the wire still commits: let it, then read the lease it left.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = repo.get(id).await.unwrap().unwrap();
    assert!(
        session_exists(&db.pool, &paused).await,
        "a paused process keeps its session"
    );
    // The queue's retries every 100 ms: refused while the lease lives, however long the
    // pause, because the session lives.
    let taken = loop {
        match repo.acquire(&request(id, "successor")).await.unwrap() {
            AcquireOutcome::Busy { .. } => tokio::time::sleep(Duration::from_millis(100)).await,
            AcquireOutcome::Acquired { lease, job } => break (lease, job),
            other => panic!("{other:?}"),
        }
    };
    let row_expiry = paused.lease.as_ref().unwrap().expires_at;
    let acquired_at = taken.1.lease.as_ref().unwrap().heartbeat_at;
    assert!(
        acquired_at >= row_expiry,
        "taken over at {acquired_at}: only once the lease (expiring {row_expiry}, as last \
         heartbeated) had expired"
    );
    assert!(
        session_exists(&db.pool, &paused).await,
        "still alive: it was the TTL"
    );
    let after_takeover = repo.get(id).await.unwrap().unwrap();

    worker.signal("-CONT");
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), push)
        .await
        .expect("the resumed worker answers its push")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"superseded\""), "{body}");
    assert_eq!(
        repo.get(id).await.unwrap().unwrap(),
        after_takeover,
        "nothing the resumed worker wrote was accepted"
    );
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_listen_connection_is_cut_re_registers_its_new_session() {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = PgRepository::new(db.pool.clone());
    let worker = start_worker(&db.url, "cut", 60).await;
    let (id, held) = running_job(&repo, &worker).await;
    let first = held.lease.as_ref().unwrap().session.unwrap();
    // The server ends the LISTEN backend; the process lives on and reconnects.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first.pid)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut tries = 0;
    let second = loop {
        let job = repo.get(id).await.unwrap().unwrap();
        let session = job.lease.as_ref().and_then(|l| l.session);
        if let Some(session) = session.filter(|s| *s != first) {
            assert_eq!(job.lease_epoch.get(), 1, "the same lease, re-registered");
            break session;
        }
        tries += 1;
        assert!(
            tries < 1000,
            "the new session was not registered within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let job = repo.get(id).await.unwrap().unwrap();
    assert!(
        session_exists(&db.pool, &job).await,
        "{second:?} is the live one"
    );
    // A live, re-registered holder is not taken over …
    let outcome = repo.acquire(&request(id, "successor")).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "{outcome:?}"
    );
    // … until its process dies, when its new session goes with it.
    drop(worker);
    let mut tries = 0;
    loop {
        match repo.acquire(&request(id, "successor")).await.unwrap() {
            AcquireOutcome::Acquired { lease, .. } => {
                assert_eq!(lease.epoch.get(), 2);
                break;
            }
            AcquireOutcome::Busy { .. } => {
                tries += 1;
                assert!(tries < 500, "not taken over within 5 s of the kill");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}
