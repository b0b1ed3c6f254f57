//! The jobs API through its real router, on Postgres, with the worker behind a loopback
//! queue: create → delivered → succeeded with a downloadable film; cancel; live progress over
//! server-sent events; the operator commands. (What the API does without a worker — bad
//! requests, list paging, enqueue failures, idempotency — is tested in `crates/jobs-api`.)

use std::sync::Arc;
use std::time::Duration;

use crate::common::{ApiWithWorker, Publish, Segments};
use jobs_api::JobView;
use jobs_api::client::ApiClient;
use pipeline::Pipeline;
use serde_json::{Value, json};

const KEY: &str = "product-side-api-key-0001";

/// The worker runs `pipeline`; the API reads films from an empty store of its own.
async fn rig_with(pipeline: Pipeline) -> Rig {
    rig_full(pipeline, tempfile::tempdir().unwrap()).await
}

/// The worker runs `pipeline`; the API reads films from `store`.
async fn rig_full(pipeline: Pipeline, store: tempfile::TempDir) -> Rig {
    Rig(ApiWithWorker::start(pipeline, KEY, store).await)
}

/// The API with a worker behind it, driven with [`KEY`].
struct Rig(ApiWithWorker);

fn board() -> Value {
    json!({"version": 1, "title": "API film", "frame": {"width": 640, "height": 360, "fps": 25},
           "segments": [{"narration": "Made through the API.", "slide": {"heading": "API"}}]})
}

fn slow() -> Pipeline {
    Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 10,
            each: Duration::from_millis(150),
        }),
        Arc::new(Publish::default()),
    ])
}

impl Rig {
    fn base(&self) -> &str {
        &self.0.api.base
    }

    fn client(&self) -> &reqwest::Client {
        &self.0.api.client
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(self.base(), KEY)
    }

    async fn wait_for(&self, id: &str, status: &str) -> JobView {
        for _ in 0..200 {
            let job = self.api().status(id).await.unwrap();
            if job.status == status {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} never became {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_created_through_the_api_is_delivered_rendered_and_downloadable() {
    let dir = tempfile::tempdir().unwrap();
    // The real pipeline, publishing where the API reads.
    let settings = worker_http::config::MediaSettings {
        artifact_store_url: dir.path().to_str().unwrap().into(),
        tts_backend: "espeak".into(),
        tts_url: String::new(),
        tts_api_key: None,
        tts_voice: None,
        tts_model: None,
        piper_bin: Default::default(),
        piper_model: Default::default(),
    };
    let work = runner::scratch::WorkDirClaim::acquire(&dir.path().join("work")).unwrap();
    let video = worker_http::media::video_pipeline(
        &settings,
        &work,
        worker_http::config::DEFAULT_SCRATCH_MAX_BYTES,
        Arc::default(),
    )
    .unwrap();
    let rig = rig_full(video, dir).await;
    let created = rig
        .client()
        .post(format!("{}/v1/jobs", rig.base()))
        .bearer_auth(KEY)
        .json(&json!({"storyboard": board()}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let job: JobView = created.json().await.unwrap();
    assert_eq!(
        (job.status.as_str(), location),
        ("queued", format!("/v1/jobs/{}", job.id))
    );
    let done = rig.wait_for(&job.id, "succeeded").await;
    assert_eq!(done.percent, 100);
    let url = done.artifact_url.unwrap();
    let film = rig
        .client()
        .get(format!("{}{url}", rig.base()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(film.status().as_u16(), 200);
    assert_eq!(film.headers()["content-type"], "video/mp4");
    let bytes = film.bytes().await.unwrap();
    let path = rig.0.store.path().join("download.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let probe = video::media::probe(std::path::Path::new("ffprobe"), &path)
        .await
        .unwrap();
    assert_eq!(
        probe.streams.len(),
        3,
        "video, audio and captions: {probe:?}"
    );
    // The captions the film carries are served beside it.
    let captions = rig
        .client()
        .get(format!("{}/v1/jobs/{}/captions", rig.base(), job.id))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(captions.status().as_u16(), 200);
    assert_eq!(
        captions.headers()["content-type"],
        "text/vtt; charset=utf-8"
    );
    let vtt = captions.text().await.unwrap();
    assert!(
        vtt.starts_with("WEBVTT\n") && vtt.contains(" --> "),
        "{vtt}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_through_the_api_stops_a_running_job() {
    let rig = rig_with(Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 1000,
            each: Duration::from_millis(20),
        }),
        Arc::new(Publish::default()),
    ]))
    .await;
    let job = rig.api().submit(board()).await.unwrap();
    rig.wait_for(&job.id, "running").await;
    let answer = rig.api().cancel(&job.id).await.unwrap();
    assert_eq!(answer.outcome, "cancel_requested");
    let done = rig.wait_for(&job.id, "canceled").await;
    assert!(done.cancel_requested);
    let again = rig.api().cancel(&job.id).await.unwrap();
    assert_eq!(again.outcome, "already_finished", "cancel is idempotent");
    let not_ready = rig
        .client()
        .get(format!("{}/v1/jobs/{}/artifact", rig.base(), job.id))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status().as_u16(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_ordered_progress_and_end_with_the_terminal_state() {
    let rig = rig_with(slow()).await;
    let job = rig.api().submit(board()).await.unwrap();
    let mut seen = Vec::new();
    let last = rig
        .api()
        .follow(&job.id, |v| seen.push((v.status.clone(), v.percent)))
        .await
        .unwrap();
    assert_eq!(last.status, "succeeded");
    assert_eq!(seen.last().unwrap(), &("succeeded".to_owned(), 100));
    assert!(
        seen.windows(2).all(|w| w[0].1 <= w[1].1),
        "never backwards: {seen:?}"
    );
    let running = seen.iter().filter(|(s, _)| s == "running").count();
    assert!(
        running >= 3,
        "progress arrives live, not just the end: {seen:?}"
    );
    // A stream opened on a finished job sends the end at once.
    let again = rig.api().follow(&job.id, |_| {}).await.unwrap();
    assert_eq!(again.status, "succeeded");
}

async fn operator(rig: &Rig, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_video-worker"))
        .args(args)
        .env("VIDEO_API_URL", rig.base())
        .env("VIDEO_API_KEY", KEY)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_submit_follow_list_status_and_cancel() {
    let rig = rig_with(slow()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("board.json");
    std::fs::write(&file, board().to_string()).unwrap();
    let (ok, out, err) = operator(&rig, &["submit", file.to_str().unwrap(), "--follow"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        // The terminal state, not the last stage's label at 100 %.
        out.contains("status    succeeded") && !out.contains("progress"),
        "{out}"
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("job       "))
        .unwrap()
        .trim()
        .to_owned();

    let (ok, out, _) = operator(&rig, &["list", "--status", "succeeded"]).await;
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out, _) = operator(&rig, &["status", &id]).await;
    assert!(ok && out.contains("succeeded"), "{out}");
    let (ok, out, _) = operator(&rig, &["cancel", &id]).await;
    assert!(ok && out.starts_with("already_finished"), "{out}");

    let (ok, _, err) = operator(&rig, &["status", "not-a-uuid"]).await;
    assert!(!ok && err.contains("not a job id"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"version": 1, "title": "", "segments": []}"#).unwrap();
    let (ok, _, err) = operator(&rig, &["submit", bad.to_str().unwrap()]).await;
    assert!(
        !ok && err.contains("segments") && err.contains("title"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_command_line_stops_a_running_job() {
    let rig = rig_with(Pipeline::new(vec![
        Arc::new(Segments {
            stage: domain::Stage::Render,
            count: 1000,
            each: Duration::from_millis(20),
        }),
        Arc::new(Publish::default()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("board.json");
    std::fs::write(&file, board().to_string()).unwrap();
    let (ok, out, err) = operator(&rig, &["submit", file.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("job       "))
        .unwrap()
        .trim()
        .to_owned();
    rig.wait_for(&id, "running").await;
    let (ok, out, _) = operator(&rig, &["cancel", &id]).await;
    assert!(ok && out.starts_with("cancel_requested"), "{out}");
    let (ok, out, _) = operator(&rig, &["status", &id, "--follow"]).await;
    assert!(!ok, "following a job that ends canceled exits non-zero");
    assert!(out.contains("status    canceled"), "{out}");
}
