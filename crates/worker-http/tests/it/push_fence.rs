//! No 2xx to the queue unless the job is terminal, a task or a live holder owns it, or no
//! retry can help: pushes whose body is not an object, a row that does not decode after the
//! acquire committed, and a worker paused past its TTL — through the real router, on a real
//! Postgres where the case lives in the database.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    AppOptions, Publish, Segments, TestApp, new_job, pg_database, quick, read, runner_config,
};
use domain::{
    AcquireOutcome, AcquireRequest, InstanceId, JobId, JobRepository, JobStatus, ManualClock,
};
use pipeline::Pipeline;
use repo_pg::PgRepository;
use serde_json::json;

/// The job's status, attempts and error code, read with SQL (the row may not decode).
async fn raw(db: &test_pg::TestDb, id: JobId) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status::text, attempts, error_code FROM video_jobs WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn bodies_that_are_not_an_object_with_a_string_job_id_are_rejected_and_touch_nothing() {
    let repo = Arc::new(repo_mem::MemRepository::with_clock(Arc::new(
        ManualClock::new(chrono::Utc::now()),
    )));
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    for body in [
        // serde accepts a sequence for a struct: this one ran the job.
        json!([id.to_string()]),
        json!(id.to_string()),
        json!(5),
        json!({"job_id": 5}),
        json!({"job_id": [id.to_string()]}),
        json!({"job_id": {"job_id": id.to_string()}}),
        json!({"id": id.to_string()}),
        json!(null),
    ] {
        let (code, answer, _) =
            read(app.push_request(body.to_string()).send().await.unwrap()).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some("rejected")),
            "body {body}: {answer}"
        );
    }
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));
    // The well-formed push still runs it.
    let (code, answer, _) = app.push(id).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("succeeded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decode_after_acquire_is_failed_invalid_stored_job_then_200() {
    let (db, repo) = pg_database().await;
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    // A progress column the row decoder refuses (no stage is called that).
    sqlx::query("UPDATE video_jobs SET stage = 'bogus', progress_percent = 10 WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, answer, _) = app.push(id).await;
    assert_eq!(
        (
            code,
            answer["status"].as_str(),
            answer["error_code"].as_str()
        ),
        (200, Some("failed"), Some("invalid_stored_job")),
        "{answer}"
    );
    assert_eq!(
        raw(&db, id).await,
        ("failed".into(), 1, Some("invalid_stored_job".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decode_and_whose_finalize_fails_is_503_and_stays_running() {
    let (db, repo) = pg_database().await;
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    sqlx::query("UPDATE video_jobs SET stage = 'bogus', progress_percent = 10 WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&db.pool)
        .await
        .unwrap();
    // The database refuses to end any job, as a server going down would.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_ending() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'shutting down' USING ERRCODE = '57P01'; END $$;
         CREATE TRIGGER refuse_ending BEFORE UPDATE ON video_jobs
         FOR EACH ROW WHEN (NEW.status <> 'running') EXECUTE FUNCTION refuse_ending();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (code, answer, retry_after) = app.push(id).await;
    assert_eq!(code, 503, "{answer}");
    assert!(retry_after.is_some());
    assert_eq!(raw(&db, id).await.0, "running");
}

fn slow(count: u32, each_ms: u64) -> Pipeline {
    Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count,
            each: Duration::from_millis(each_ms),
        }),
        Arc::new(Publish::default()),
    ])
}

/// Runs a job through the worker on this (single-threaded) runtime, then freezes the whole
/// runtime past the lease TTL — the process is paused as by SIGSTOP or a long GC — while
/// another thread waits out the TTL and, if `take_over`, acquires the job as worker `b`.
async fn push_paused_past_the_ttl(take_over: bool) -> (u16, serde_json::Value, String) {
    let (db, repo) = pg_database().await;
    let config = runner_config("a");
    let ttl = config.lease_ttl;
    let app =
        TestApp::spawn_with(repo.clone(), slow(100, 50), AppOptions::with_runner(config)).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    while repo.get(id).await.unwrap().unwrap().progress.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = db.url.clone();
    let other = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::time::sleep(ttl + Duration::from_millis(500)).await;
            if take_over {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                let request = AcquireRequest {
                    job_id: id,
                    holder: InstanceId::new("b").unwrap(),
                    ttl: Duration::from_secs(60),
                    max_attempts: 5,
                    session: None,
                };
                let got = PgRepository::new(pool).acquire(&request).await.unwrap();
                assert!(matches!(got, AcquireOutcome::Acquired { .. }), "{got:?}");
            }
        });
    });
    // Blocking here blocks the runtime the worker runs on: nothing of it moves meanwhile.
    other.join().unwrap();
    let (code, answer, _) = push.await.unwrap();
    let (status, _, _) = raw(&db, id).await;
    (code, answer, status)
}

#[tokio::test(flavor = "current_thread")]
async fn a_worker_paused_past_its_ttl_and_taken_over_answers_200_superseded() {
    let (code, answer, status) = push_paused_past_the_ttl(true).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("superseded")),
        "{answer}"
    );
    // The new holder owns the job: the old one wrote nothing.
    assert_eq!(status, "running");
}

#[tokio::test(flavor = "current_thread")]
async fn a_worker_paused_past_its_ttl_that_nobody_took_over_finishes_the_job() {
    let (code, answer, status) = push_paused_past_the_ttl(false).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("succeeded")),
        "{answer}"
    );
    assert_eq!(status, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pooled_connections_do_not_abandon_a_healthy_job() {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    // The worker's own pool, as `serve` builds it (no ping before each statement).
    let pool = repo_pg::connect_lazy(&db.url, &repo_pg::PoolConfig::default()).unwrap();
    let repo = Arc::new(PgRepository::new(pool));
    let mut config = runner_config("a");
    config.lease_ttl = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(500);
    let app =
        TestApp::spawn_with(repo.clone(), slow(80, 50), AppOptions::with_runner(config)).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    while repo.get(id).await.unwrap().unwrap().progress.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every idle connection of the worker dies at once (a failover, an idle-connection
    // reaper): the next statements on them fail and are retried on fresh ones.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'video-worker'
           AND pid <> pg_backend_pid()) k",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(killed > 0);
    let (code, answer, _) = push.await.unwrap();
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("succeeded")),
        "{answer}"
    );
}
