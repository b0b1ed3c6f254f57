//! The push contract of SPEC §4, one test per row, through the real router on port 0.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    AppOptions, Counting, Fail, Gate, Publish, Segments, TestApp, new_job, quick, read,
    runner_config,
};
use domain::{
    AcquireOutcome, AcquireRequest, InstanceId, JobId, JobRepository, JobStatus, ManualClock,
};
use pipeline::{Pipeline, StageError};
use repo_mem::MemRepository;
use serde_json::json;
use worker_http::Readiness;

fn mem() -> Arc<MemRepository> {
    Arc::new(MemRepository::new())
}

async fn status_of(repo: &dyn JobRepository, id: JobId) -> JobStatus {
    repo.get(id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn job_that_runs_to_succeeded_is_200_with_the_artifact() {
    let repo = mem();
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let (code, body, _) = app.push(id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(
        body["artifact_key"],
        format!("video-jobs/{id}/attempts/1/final.mp4")
    );
    assert_eq!(status_of(repo.as_ref(), id).await, JobStatus::Succeeded);
}

#[tokio::test]
async fn permanent_failure_is_200_failed() {
    let repo = mem();
    let pipeline = Pipeline::new(vec![Arc::new(Fail(StageError::permanent(
        "invalid_input",
        "segments: empty",
    )))]);
    let app = TestApp::spawn(repo.clone(), pipeline).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let (code, body, _) = app.push(id).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("failed")),
        "{body}"
    );
    assert_eq!(body["error_code"], "invalid_input");
    assert_eq!(status_of(repo.as_ref(), id).await, JobStatus::Failed);
}

#[tokio::test]
async fn canceled_while_running_is_200_canceled() {
    let repo = mem();
    let gate = Gate::default();
    let started = gate.started.clone();
    let app = TestApp::spawn(
        repo.clone(),
        Pipeline::new(vec![Arc::new(gate), Arc::new(Publish::default())]),
    )
    .await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    started.notified().await;
    repo.request_cancel(id).await.unwrap();
    let (code, body, _) = push.await.unwrap();
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("canceled")),
        "{body}"
    );
    assert_eq!(status_of(repo.as_ref(), id).await, JobStatus::Canceled);
}

#[tokio::test]
async fn job_already_terminal_is_200_skipped() {
    let repo = mem();
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    assert_eq!(app.push(id).await.0, 200);
    let (code, body, _) = app.push(id).await;
    assert_eq!(
        (code, body["status"].as_str(), body["job_status"].as_str()),
        (200, Some("skipped"), Some("succeeded"))
    );
}

#[tokio::test]
async fn unknown_job_is_200_not_found_so_retries_are_not_burnt() {
    let app = TestApp::spawn(mem(), quick()).await;
    let (code, body, _) = app.push(JobId::new()).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("not_found")));
}

#[tokio::test]
async fn malformed_bodies_are_200_rejected_and_touch_nothing() {
    let repo = Counting::new(mem());
    let app = TestApp::spawn(repo.clone(), quick()).await;
    for body in [
        "",
        "not json",
        "{}",
        r#"{"job_id": 42}"#,
        r#"{"job_id": "not-a-uuid"}"#,
        r#"["job_id"]"#,
        "\u{0}\u{1}",
    ] {
        let (code, json, _) = read(app.push_request(body).send().await.unwrap()).await;
        assert_eq!(
            (code, json["status"].as_str()),
            (200, Some("rejected")),
            "body {body:?}: {json}"
        );
    }
    assert_eq!(
        repo.calls(),
        0,
        "a rejected push never reaches the database"
    );
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let repo = Counting::new(mem());
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let big = format!(
        r#"{{"job_id": "{}", "pad": "{}"}}"#,
        JobId::new(),
        "x".repeat(10_000)
    );
    let response = app.push_request(big).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(repo.calls(), 0);
}

#[tokio::test]
async fn live_lease_held_elsewhere_is_409_with_retry_after() {
    let repo = mem();
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let other = AcquireRequest {
        job_id: id,
        holder: InstanceId::new("other-worker").unwrap(),
        ttl: Duration::from_secs(40),
        max_attempts: 5,
        session: None,
    };
    assert!(matches!(
        repo.acquire(&other).await.unwrap(),
        AcquireOutcome::Acquired { .. }
    ));
    let (code, body, retry_after) = app.push(id).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (409, Some("busy")),
        "{body}"
    );
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((39..=40).contains(&secs), "{secs}");
}

#[tokio::test]
async fn duplicate_delivery_of_a_running_job_is_409_and_runs_once() {
    let repo = mem();
    let gate = Gate::default();
    let (started, release) = (gate.started.clone(), gate.release.clone());
    let app = TestApp::spawn(
        repo.clone(),
        Pipeline::new(vec![Arc::new(gate), Arc::new(Publish::default())]),
    )
    .await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let first = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    started.notified().await;
    let (code, body, retry_after) = app.push(id).await;
    assert_eq!(code, 409, "{body}");
    assert!(retry_after.is_some());
    release.notify_one();
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(repo.get(id).await.unwrap().unwrap().attempts, 1);
}

#[tokio::test]
async fn retryable_failure_is_500_and_the_job_is_queued_again() {
    let repo = mem();
    let pipeline = Pipeline::new(vec![Arc::new(Fail(StageError::retryable(
        "tts_unavailable",
        "TTS answered 503",
    )))]);
    let app = TestApp::spawn(repo.clone(), pipeline).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let (code, body, _) = app.push(id).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (500, Some("retry")),
        "{body}"
    );
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.lease),
        (JobStatus::Queued, None),
        "released at once"
    );
}

#[tokio::test]
async fn database_down_is_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = repo_pg::PoolConfig {
        acquire_timeout: Duration::from_millis(500),
        ..repo_pg::PoolConfig::default()
    };
    let pool =
        repo_pg::connect_lazy(&format!("postgres://x@127.0.0.1:{port}/db"), &config).unwrap();
    let repo = Arc::new(repo_pg::PgRepository::new(pool.clone()));
    let app = TestApp::spawn_with(
        repo,
        quick(),
        AppOptions {
            runner: runner_config("w"),
            readiness: Readiness::Postgres(pool),
            listen_for_cancels: false,
            ..AppOptions::default()
        },
    )
    .await;
    let (code, body, retry_after) = app.push(JobId::new()).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(retry_after.is_some());
    let ready = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "the process is up even if the database is not"
    );
}

#[tokio::test]
async fn lease_lost_mid_run_is_200_superseded_and_the_old_worker_writes_nothing() {
    let clock = Arc::new(ManualClock::default());
    let repo = Arc::new(MemRepository::with_clock(clock.clone()));
    let gate = Gate::default();
    let started = gate.started.clone();
    let app = TestApp::spawn(
        repo.clone(),
        Pipeline::new(vec![Arc::new(gate), Arc::new(Publish::default())]),
    )
    .await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    started.notified().await;
    clock.advance(Duration::from_secs(10)); // past the 3 s TTL: the worker looks dead
    let takeover = AcquireRequest {
        job_id: id,
        holder: InstanceId::new("new-worker").unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session: None,
    };
    assert!(matches!(
        repo.acquire(&takeover).await.unwrap(),
        AcquireOutcome::Acquired { .. }
    ));
    let snapshot = repo.get(id).await.unwrap().unwrap();
    let (code, body, _) = push.await.unwrap();
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("superseded")),
        "{body}"
    );
    assert_eq!(repo.get(id).await.unwrap().unwrap(), snapshot);
}

#[tokio::test]
async fn sigterm_during_a_run_releases_the_lease_and_answers_503() {
    let repo = mem();
    let pipeline = Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 1000,
            each: Duration::from_millis(20),
        }),
        Arc::new(Publish::default()),
    ]);
    let app = TestApp::spawn(repo.clone(), pipeline).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    while repo.get(id).await.unwrap().unwrap().progress.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown.cancel();
    let (code, body, _) = push.await.unwrap();
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.lease),
        (JobStatus::Queued, None),
        "released for the next instance"
    );
    app.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_push_after_shutdown_began_is_503_and_touches_nothing() {
    let repo = Counting::new(mem());
    let app = TestApp::spawn(repo.clone(), quick()).await;
    // Keep a connection open, then start the shutdown and push on it.
    let client = reqwest::Client::new();
    let _ = client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    app.shutdown.cancel();
    let response = client
        .post(format!("{}/jobs/run", app.base))
        .bearer_auth(crate::common::TOKEN)
        .body(json!({"job_id": JobId::new()}).to_string())
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status().as_u16(), 503);
    } // or the connection was closed: either way the queue retries elsewhere
    assert_eq!(repo.calls(), 0);
}

#[tokio::test]
async fn a_caller_that_hangs_up_does_not_kill_the_job() {
    let repo = mem();
    let pipeline = Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 10,
            each: Duration::from_millis(100),
        }),
        Arc::new(Publish::default()),
    ]);
    let app = TestApp::spawn(repo.clone(), pipeline).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let result = app
        .push_request(json!({ "job_id": id }).to_string())
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.is_err(), "the client gave up");
    for _ in 0..100 {
        if status_of(repo.as_ref(), id).await == JobStatus::Succeeded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job did not finish after its caller hung up");
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_and_touch_nothing() {
    let repo = Counting::new(mem());
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let body = json!({"job_id": JobId::new()}).to_string();
    let url = format!("{}/jobs/run", app.base);
    let cases = [
        app.client.post(&url).body(body.clone()),
        app.client
            .post(&url)
            .bearer_auth("wrong-token-wrong-token")
            .body(body.clone()),
        app.client
            .post(&url)
            .header("X-Proovy-Worker-Token", "nope")
            .body(body.clone()),
        app.client
            .post(&url)
            .bearer_auth("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
            .body(body.clone()),
        app.client
            .post(&url)
            .header("authorization", "Basic dXNlcjpwYXNz")
            .body(body.clone()),
    ];
    for request in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    assert_eq!(repo.calls(), 0, "refused requests never reach the database");
    // The other accepted header works.
    let ok = app
        .client
        .post(&url)
        .header("x-proovy-worker-token", crate::common::TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn health_ready_and_metrics_answer_on_paths_not_ending_in_z() {
    let repo = mem();
    let app = TestApp::spawn(repo.clone(), quick()).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    assert_eq!(app.push(id).await.0, 200);
    for (path, code) in [
        ("/health", 200),
        ("/ready", 200),
        ("/healthz", 404),
        ("/readyz", 404),
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("video_worker_jobs_total"), "{metrics}");
    assert!(metrics.contains("outcome=\"succeeded\""), "{metrics}");
    assert!(
        metrics.contains("video_worker_stage_duration_seconds"),
        "{metrics}"
    );
    app.shutdown.cancel();
    let r = app.client.get(format!("{}/ready", app.base)).send().await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 503, "draining is not ready");
    }
}

#[tokio::test]
async fn shutdown_waits_for_a_job_whose_caller_hung_up_and_releases_it() {
    let repo = mem();
    let pipeline = Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 1000,
            each: Duration::from_millis(20),
        }),
        Arc::new(Publish::default()),
    ]);
    let app = TestApp::spawn(repo.clone(), pipeline).await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let hung_up = app
        .push_request(json!({ "job_id": id }).to_string())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung_up.is_err());
    assert_eq!(status_of(repo.as_ref(), id).await, JobStatus::Running);
    app.shutdown.cancel();
    app.server.await.unwrap().unwrap();
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.lease),
        (JobStatus::Queued, None),
        "released before the process ended"
    );
}
