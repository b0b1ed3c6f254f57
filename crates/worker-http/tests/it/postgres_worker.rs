//! The worker on a real Postgres: concurrent deliveries, a SIGKILLed worker taken over, and
//! cancel latency with and without LISTEN/NOTIFY.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    AppOptions, Publish, Segments, ServeProcess, TestApp, free_port, new_job, pg_database, read,
    runner_config,
};
use domain::{JobRepository, JobStatus};
use pipeline::Pipeline;
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_pushes_of_one_job_run_it_exactly_once() {
    let (_db, repo) = pg_database().await;
    let app = TestApp::spawn_with(
        repo.clone(),
        slow(20, 100),
        AppOptions::with_runner(runner_config("w")),
    )
    .await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let pushes: Vec<_> = (0..20)
        .map(|_| {
            let request = app.push_request(json!({ "job_id": id }).to_string());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                read(request.send().await.unwrap()).await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for p in pushes {
        let (code, body, retry_after) = p.await.unwrap();
        if code == 409 {
            assert!(retry_after.is_some(), "409 carries Retry-After");
        }
        codes.push((code, body["status"].as_str().unwrap_or_default().to_owned()));
    }
    let ran = codes
        .iter()
        .filter(|(c, s)| *c == 200 && s == "succeeded")
        .count();
    let busy = codes.iter().filter(|(c, _)| *c == 409).count();
    assert_eq!((ran, busy), (1, 19), "{codes:?}");
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.attempts, job.lease_epoch.get()),
        (JobStatus::Succeeded, 1, 1)
    );
}

async fn cancel_latency(listen: bool, heartbeat: Duration, ttl: Duration) -> Duration {
    let (_db, repo) = pg_database().await;
    let mut config = runner_config("w");
    config.heartbeat_interval = heartbeat;
    config.lease_ttl = ttl;
    let app = TestApp::spawn_with(
        repo.clone(),
        slow(1000, 50),
        AppOptions {
            runner: config,
            listen_for_cancels: listen,
            ..AppOptions::default()
        },
    )
    .await;
    let id = new_job(repo.as_ref(), json!({})).await;
    let push = tokio::spawn({
        let request = app.push_request(json!({ "job_id": id }).to_string());
        async move { read(request.send().await.unwrap()).await }
    });
    while repo.get(id).await.unwrap().unwrap().progress.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    repo.request_cancel(id).await.unwrap();
    let (code, body, _) = push.await.unwrap();
    let took = asked.elapsed();
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("canceled")),
        "{body}"
    );
    assert_eq!(
        repo.get(id).await.unwrap().unwrap().status,
        JobStatus::Canceled
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_job_well_under_a_second_through_notify() {
    // A 20 s heartbeat: only the notification can explain a fast stop.
    let took = cancel_latency(true, Duration::from_secs(20), Duration::from_secs(60)).await;
    assert!(took < Duration::from_millis(900), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_job_within_one_heartbeat_without_listen() {
    let took = cancel_latency(false, Duration::from_secs(1), Duration::from_secs(6)).await;
    assert!(
        took < Duration::from_millis(1600),
        "one 1 s heartbeat plus slack, took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_is_taken_over_at_once_by_its_gone_session_and_finishes_at_epoch_2() {
    let (db, repo) = pg_database().await;
    let id = new_job(
        repo.as_ref(),
        json!({"noop": {"segments": 30, "segment_ms": 100}}),
    )
    .await;
    let mut first = ServeProcess::start(&db.url, "first", free_port(), &[]).await;
    let doomed = tokio::spawn(first.push(id).send());
    let session = loop {
        let job = repo.get(id).await.unwrap().unwrap();
        if job.progress.as_ref().is_some_and(|p| p.percent.get() > 0) {
            assert_eq!((job.status, job.lease_epoch.get()), (JobStatus::Running, 1));
            break job
                .lease
                .unwrap()
                .session
                .expect("the lease names the LISTEN session");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.child.kill().unwrap(); // SIGKILL: no release, no finalize
    first.child.wait().unwrap();
    let killed_at = Instant::now();
    assert!(
        doomed.await.unwrap().is_err(),
        "the killed worker never answered"
    );

    // The server ends the killed worker's backend (the kernel closed its socket).
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
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the session outlived its process"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let second = ServeProcess::start(&db.url, "second", free_port(), &[]).await;
    let mut busy = 0;
    let (code, body) = loop {
        let (code, body, retry_after) = read(second.push(id).send().await.unwrap()).await;
        if code != 409 {
            break (code, body);
        }
        busy += 1;
        let wait: u64 = retry_after.unwrap().parse().unwrap();
        assert!(wait <= 3, "Retry-After within the 3 s TTL, got {wait}");
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "not taken over in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    assert_eq!(
        busy, 0,
        "the dead worker's lease (3 s TTL) was not waited for: its session was gone"
    );
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.lease_epoch.get(), job.attempts),
        (JobStatus::Succeeded, 2, 2)
    );
    assert_eq!(
        job.artifact_key.unwrap(),
        format!("video-jobs/{id}/attempts/2/noop")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_real_pipeline_and_publishes_a_playable_film() {
    let (db, repo) = pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("artifacts");
    let input = json!({
        "version": 1,
        "title": "Served",
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": [{"narration": "Served by the worker.", "slide": {"heading": "Hello"}}]
    });
    let id = new_job(repo.as_ref(), input).await;
    let worker = ServeProcess::start(
        &db.url,
        "video",
        free_port(),
        &[
            ("VIDEO_WORKER_PIPELINE", "video"),
            ("VIDEO_ARTIFACT_STORE_URL", store.to_str().unwrap()),
            (
                "VIDEO_WORKER_WORK_DIR",
                dir.path().join("work").to_str().unwrap(),
            ),
        ],
    )
    .await;
    let (code, body, _) = read(worker.push(id).send().await.unwrap()).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    let key = body["artifact_key"].as_str().unwrap();
    assert_eq!(key, format!("video-jobs/{id}/attempts/1/final.mp4"));
    let film = store.join(key);
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&film)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["h264", "aac", "mov_text"]
    );
    assert!(
        film.with_file_name("captions.vtt").is_file(),
        "the captions are published beside the film"
    );
    let job = repo.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.artifact_key.as_deref()),
        (JobStatus::Succeeded, Some(key))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_storyboard_fails_the_job_permanently_with_a_200() {
    let (db, repo) = pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let id = new_job(
        repo.as_ref(),
        json!({"version": 1, "title": "x", "segments": []}),
    )
    .await;
    let worker = ServeProcess::start(
        &db.url,
        "video",
        free_port(),
        &[
            ("VIDEO_WORKER_PIPELINE", "video"),
            ("VIDEO_ARTIFACT_STORE_URL", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let (code, body, _) = read(worker.push(id).send().await.unwrap()).await;
    assert_eq!(
        (code, body["status"].as_str(), body["error_code"].as_str()),
        (200, Some("failed"), Some("invalid_input")),
        "{body}"
    );
    assert!(body["error_message"].as_str().unwrap().contains("segments"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_on_the_same_work_dir_refuses_to_start_and_names_the_holder() {
    let (db, _repo) = pg_database().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap();
    let first = ServeProcess::start(
        &db.url,
        "first",
        free_port(),
        &[("VIDEO_WORKER_WORK_DIR", dir)],
    )
    .await;
    let mut second = Command::new(env!("CARGO_BIN_EXE_video-worker"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("PORT", free_port().to_string())
        .env("VIDEO_WORKER_AUTH_TOKEN", crate::common::TOKEN)
        .env("VIDEO_WORKER_PIPELINE", "noop")
        .env("VIDEO_WORKER_WORK_DIR", dir)
        .env("VIDEO_WORKER_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second worker serves instead of exiting");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another running process")
            && stderr.contains(&format!("(pid {})", first.child.id())),
        "{stderr}"
    );
    // The first one still serves.
    let ready = reqwest::get(format!("{}/ready", first.base)).await.unwrap();
    assert!(ready.status().is_success());
}
