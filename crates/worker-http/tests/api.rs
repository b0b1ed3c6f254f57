//! The jobs API through its real router, on Postgres, with the worker behind a loopback
//! queue: create → delivered → succeeded with a downloadable film; cancel; live progress over
//! server-sent events; every bad input a 4xx that stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Publish, Segments, TOKEN, TestApp, runner_config};
use domain::{JobId, JobRepository, JobStatus};
use jobs_api::client::ApiClient;
use jobs_api::testing::{QueueAnswer, RecordingQueue, TestApi};
use jobs_api::{ApiParts, JobView};
use pipeline::Pipeline;
use queue::Enqueuer;
use queue::loopback::LoopbackQueue;
use repo_pg::PgRepository;
use serde_json::{Value, json};
use worker_http::Readiness;

const KEY: &str = "product-side-api-key-0001";
/// A second client of the API, with its own idempotency keys.
const OTHER_KEY: &str = "product-side-api-key-0002";

struct Rig {
    _db: test_pg::TestDb,
    repo: Arc<PgRepository>,
    base: String,
    client: reqwest::Client,
    _store: tempfile::TempDir,
    _worker: TestApp,
}

async fn rig_with(pipeline: Pipeline, queue: Option<Arc<dyn Enqueuer>>) -> Rig {
    rig_full(pipeline, queue, tempfile::tempdir().unwrap()).await
}

async fn rig_full(
    pipeline: Pipeline,
    queue: Option<Arc<dyn Enqueuer>>,
    store: tempfile::TempDir,
) -> Rig {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = Arc::new(PgRepository::new(db.pool.clone()));
    let worker = TestApp::spawn_with(
        repo.clone(),
        pipeline,
        runner_config("w"),
        Readiness::Always,
        true,
    )
    .await;
    let queue = queue.unwrap_or_else(|| {
        let mut q = LoopbackQueue::new(format!("{}/jobs/run", worker.base));
        q.bearer = Some(TOKEN.into());
        Arc::new(q)
    });
    let api = TestApi::start_with(
        ApiParts {
            repo: repo.clone(),
            queue,
            artifacts: video::publish::store_from_url(store.path().to_str().unwrap()).unwrap(),
        },
        &[KEY, OTHER_KEY],
    )
    .await;
    Rig {
        _db: db,
        repo,
        base: api.base.clone(),
        client: reqwest::Client::new(),
        _store: store,
        _worker: worker,
    }
}

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
    fn api(&self) -> ApiClient {
        ApiClient::new(&self.base, KEY)
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

    async fn rows(&self) -> usize {
        self.repo
            .list(&domain::ListQuery::new(None, 500).unwrap())
            .await
            .unwrap()
            .jobs
            .len()
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
    let rig = rig_full(video, None, dir).await;
    let created = rig
        .client
        .post(format!("{}/v1/jobs", rig.base))
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
        .client
        .get(format!("{}{url}", rig.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(film.status().as_u16(), 200);
    assert_eq!(film.headers()["content-type"], "video/mp4");
    let bytes = film.bytes().await.unwrap();
    let path = rig._store.path().join("download.mp4");
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
        .client
        .get(format!("{}/v1/jobs/{}/captions", rig.base, job.id))
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
    let rig = rig_with(
        Pipeline::new(vec![
            Arc::new(Segments {
                stage: domain::Stage::Render,
                count: 1000,
                each: Duration::from_millis(20),
            }),
            Arc::new(Publish::default()),
        ]),
        None,
    )
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
        .client
        .get(format!("{}/v1/jobs/{}/artifact", rig.base, job.id))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status().as_u16(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_ordered_progress_and_end_with_the_terminal_state() {
    let rig = rig_with(slow(), None).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_4xx_with_json_errors_and_store_nothing() {
    let rig = rig_with(slow(), None).await;
    let post = |body: String| {
        rig.client
            .post(format!("{}/v1/jobs", rig.base))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, code, error) in [
        ("not json".to_owned(), 400, "invalid_json"),
        ("{}".to_owned(), 422, "invalid_request"),
        (
            json!({"storyboard": board(), "extra": 1}).to_string(),
            422,
            "invalid_request",
        ),
        (
            json!({"storyboard": {"version": 1, "title": "", "segments": []}}).to_string(),
            422,
            "invalid_storyboard",
        ),
        (
            json!({"storyboard": "text"}).to_string(),
            422,
            "invalid_request",
        ),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], error, "{body}: {e}");
    }
    let r = post(json!({"storyboard": {"version": 1, "title": "", "segments": []}}).to_string())
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    let fields: Vec<&str> = e["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"title") && fields.contains(&"segments"),
        "{fields:?}"
    );
    let big = json!({"storyboard": {"pad": "x".repeat(2 << 20)}}).to_string();
    // On a client of its own: the server closes a connection whose body it refused to
    // read, and a pooled connection reused after that would fail the next request.
    let oversized = reqwest::Client::new()
        .post(format!("{}/v1/jobs", rig.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status().as_u16(), 413);
    for key in [None, Some("wrong-key-wrong-key-wrong")] {
        let mut r = rig
            .client
            .post(format!("{}/v1/jobs", rig.base))
            .json(&json!({"storyboard": board()}));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    }
    assert_eq!(rig.rows().await, 0, "nothing was stored");

    let get = |path: String| {
        rig.client
            .get(format!("{}{path}", rig.base))
            .bearer_auth(KEY)
            .send()
    };
    assert_eq!(
        get("/v1/jobs/not-a-uuid".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        get(format!("/v1/jobs/{}", JobId::new()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        get(format!("/v1/jobs/{}/events", JobId::new()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        get("/v1/jobs?status=done".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        get("/v1/jobs?limit=0".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        get("/v1/jobs?cursor=zzz".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        get("/v1/jobs?color=red".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    let cancel = rig
        .client
        .post(format!("{}/v1/jobs/{}/cancel", rig.base, JobId::new()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 404);
    let ready = rig
        .client
        .get(format!("{}/ready", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let doc: Value = rig
        .client
        .get(format!("{}/openapi.json", rig.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/jobs/{id}/events"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_with_a_status_filter() {
    let rig = rig_with(slow(), Some(Arc::new(RecordingQueue::default()))).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(rig.api().submit(board()).await.unwrap().id);
    }
    rig.api().cancel(&ids[1]).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/jobs?limit=2", rig.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = rig
            .client
            .get(url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for j in page["jobs"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");
    let canceled = rig.api().list(Some("canceled"), 10).await.unwrap();
    assert_eq!(canceled.jobs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_enqueue_fails_the_job_and_an_unclear_one_leaves_it_queued() {
    let recorder = Arc::new(RecordingQueue::default());
    let rig = rig_with(slow(), Some(recorder.clone())).await;
    *recorder.answer.lock().unwrap() = QueueAnswer::Refuse;
    let r = rig
        .client
        .post(format!("{}/v1/jobs", rig.base))
        .bearer_auth(KEY)
        .json(&json!({"storyboard": board()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let job: JobView = r.json().await.unwrap();
    assert_eq!(
        (job.status.as_str(), job.error_code.as_deref()),
        ("failed", Some("enqueue_failed"))
    );

    *recorder.answer.lock().unwrap() = QueueAnswer::Unclear;
    let r = rig
        .client
        .post(format!("{}/v1/jobs", rig.base))
        .bearer_auth(KEY)
        .json(&json!({"storyboard": board()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: JobView = r.json().await.unwrap();
    assert_eq!(job.status, "queued");
    let id: JobId = job.id.parse().unwrap();

    // The sweeper finds it queued long after and enqueues it again, under a new generation.
    sqlx::query("UPDATE video_jobs SET updated_at = now() - interval '2 hours' WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&rig._db.pool)
        .await
        .unwrap();
    *recorder.answer.lock().unwrap() = QueueAnswer::Accept;
    let policy = domain::SweepPolicy {
        expired_for: Duration::from_secs(900),
        max_attempts: 5,
        queued_for: Some(Duration::from_secs(1800)),
        queued_limit: u32::MAX,
    };
    let report = queue::sweep_once(rig.repo.as_ref(), Some(recorder.as_ref()), &policy)
        .await
        .unwrap();
    assert_eq!(report.reenqueued, 1);
    let asked = recorder.asked.lock().unwrap().clone();
    assert_eq!(asked.last().unwrap().0, id);
    assert_ne!(
        asked.last().unwrap().1,
        0,
        "a re-enqueue does not reuse the first task's name"
    );
    assert_eq!(
        rig.repo.get(id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
}

async fn operator(rig: &Rig, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_video-worker"))
        .args(args)
        .env("VIDEO_API_URL", &rig.base)
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
    let rig = rig_with(slow(), None).await;
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
    let rig = rig_with(
        Pipeline::new(vec![
            Arc::new(Segments {
                stage: domain::Stage::Render,
                count: 1000,
                each: Duration::from_millis(20),
            }),
            Arc::new(Publish::default()),
        ]),
        None,
    )
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

impl Rig {
    async fn create_with_key(
        &self,
        api_key: &str,
        idempotency_key: &str,
        body: String,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(api_key)
            .header("content-type", "application/json")
            .header("Idempotency-Key", idempotency_key)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_with_its_idempotency_key_answers_the_same_job_and_stores_one_row() {
    let recorder = Arc::new(RecordingQueue::default());
    let rig = rig_with(slow(), Some(recorder.clone())).await;
    let body = json!({"storyboard": board()}).to_string();
    let first = rig.create_with_key(KEY, "order-42", body).await;
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let job: JobView = first.json().await.unwrap();

    // The retry's body is the same request written differently: whitespace and key order.
    let mut reordered = String::from("{ \"storyboard\" : {");
    let Value::Object(fields) = board() else {
        unreachable!()
    };
    let parts: Vec<String> = fields
        .iter()
        .rev()
        .map(|(k, v)| format!("\n  {}:  {v}", json!(k)))
        .collect();
    reordered.push_str(&parts.join(" ,"));
    reordered.push_str("} }");
    let again = rig.create_with_key(KEY, "order-42", reordered).await;
    assert_eq!(again.status().as_u16(), 200, "a replay is not a creation");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.headers()["location"].to_str().unwrap(),
        format!("/v1/jobs/{}", job.id)
    );
    let replayed: JobView = again.json().await.unwrap();
    assert_eq!(replayed.id, job.id);
    assert_eq!(rig.rows().await, 1, "no second row");
    let id: JobId = job.id.parse().unwrap();
    assert_eq!(
        recorder.asked.lock().unwrap().clone(),
        vec![(id, 0), (id, 0)],
        "a replay of a job nobody started enqueues it again, exactly as the create did"
    );

    // Once a worker has started it, a replay answers the job as it is and enqueues nothing.
    let started = rig
        .repo
        .acquire(&domain::AcquireRequest {
            job_id: id,
            holder: domain::InstanceId::new("w-test").unwrap(),
            ttl: Duration::from_secs(60),
            max_attempts: 5,
            session: None,
        })
        .await
        .unwrap();
    assert!(matches!(started, domain::AcquireOutcome::Acquired { .. }));
    let body = json!({"storyboard": board()}).to_string();
    let running = rig.create_with_key(KEY, "order-42", body.clone()).await;
    assert_eq!(running.status().as_u16(), 200);
    assert_eq!(running.json::<JobView>().await.unwrap().status, "running");
    assert_eq!(recorder.asked.lock().unwrap().len(), 2);

    // The key is the caller's: another API key's "order-42", a new key, or no key at all
    // each make a new job.
    for (api_key, idempotency_key) in [
        (OTHER_KEY, Some("order-42")),
        (KEY, Some("order-43")),
        (KEY, None),
    ] {
        let mut request = rig
            .client
            .post(format!("{}/v1/jobs", rig.base))
            .bearer_auth(api_key)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "{api_key} {idempotency_key:?}");
        assert_ne!(r.json::<JobView>().await.unwrap().id, job.id);
    }
    assert_eq!(rig.rows().await, 4);
    let stored: Vec<String> = sqlx::query_scalar("SELECT idem_key FROM video_job_idempotency_keys")
        .fetch_all(&rig._db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    let scopes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT scope FROM video_job_idempotency_keys")
        .fetch_all(&rig._db.pool)
        .await
        .unwrap();
    assert!(
        scopes
            .iter()
            .all(|s| s.len() == 32 && !s.windows(KEY.len()).any(|w| w == KEY.as_bytes())),
        "a digest of the API key is stored, never the key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_storyboard_is_refused_and_creates_nothing() {
    let rig = rig_with(slow(), Some(Arc::new(RecordingQueue::default()))).await;
    let first = rig
        .create_with_key(KEY, "order-42", json!({"storyboard": board()}).to_string())
        .await;
    assert_eq!(first.status().as_u16(), 201);
    let mut other = board();
    other["title"] = json!("Another film");
    let refused = rig
        .create_with_key(KEY, "order-42", json!({"storyboard": other}).to_string())
        .await;
    assert_eq!(refused.status().as_u16(), 422);
    let e: Value = refused.json().await.unwrap();
    assert_eq!(e["error"], "idempotency_key_reused", "{e}");
    assert!(e["message"].as_str().unwrap().contains("order-42"), "{e}");
    assert_eq!(e["fields"][0]["field"], "Idempotency-Key", "{e}");
    assert_eq!(rig.rows().await, 1, "nothing was created");

    // A malformed key is a malformed request, refused before anything is stored.
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "two words"] {
        let r = rig
            .create_with_key(KEY, bad, json!({"storyboard": board()}).to_string())
            .await;
        assert_eq!(r.status().as_u16(), 400, "{bad:?}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_idempotency_key", "{bad:?}: {e}");
    }
    // An invalid storyboard under a key stores neither a job nor the key.
    let r = rig
        .create_with_key(
            KEY,
            "order-44",
            json!({"storyboard": {"version": 1}}).to_string(),
        )
        .await;
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_storyboard"
    );
    let r = rig
        .create_with_key(KEY, "order-44", json!({"storyboard": board()}).to_string())
        .await;
    assert_eq!(
        r.status().as_u16(),
        201,
        "the key was not spent by the refused request"
    );
    assert_eq!(rig.rows().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_with_one_idempotency_key_make_exactly_one_job() {
    let rig = Arc::new(rig_with(slow(), Some(Arc::new(RecordingQueue::default()))).await);
    let body = json!({"storyboard": board()}).to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(24));
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (rig, body, barrier) = (rig.clone(), body.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = rig.create_with_key(KEY, "burst", body).await;
                let status = r.status().as_u16();
                (status, r.json::<JobView>().await.unwrap().id)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert_eq!(rig.rows().await, 1, "exactly one row");
    let id = &answers[0].1;
    assert!(
        answers.iter().all(|(_, i)| i == id),
        "every answer names the same job: {answers:?}"
    );
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let replayed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, replayed), (1, 23), "{answers:?}");
}
