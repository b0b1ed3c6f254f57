//! The API's own work on Postgres, with a queue that records its tasks and no worker behind
//! it: every bad request a 4xx that stores nothing; the list paged newest first; an enqueue
//! refused or unclear, and the sweep that re-enqueues it; idempotent creates — a retry
//! answers the same job, a key reused for another storyboard is refused, concurrent creates
//! under one key make one job.

use std::sync::Arc;
use std::time::Duration;

use domain::{JobId, JobRepository, JobStatus};
use jobs_api::JobView;
use jobs_api::client::ApiClient;
use jobs_api::testing::{QueueAnswer, RecordingQueue, TestApi};
use serde_json::{Value, json};

use crate::helpers::{KEY, board};

/// A second client of the API, with its own idempotency keys.
const OTHER_KEY: &str = "contract-api-key-0002";

/// The API over a fresh database, with [`KEY`] and [`OTHER_KEY`] and a recording queue.
struct Rig {
    db: test_pg::TestDb,
    repo: Arc<dyn JobRepository>,
    queue: Arc<RecordingQueue>,
    base: String,
    client: reqwest::Client,
    _api: TestApi,
}

async fn rig() -> Rig {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let queue = Arc::new(RecordingQueue::default());
    let api = TestApi::start(
        Arc::new(repo_pg::PgRepository::new(db.pool.clone())),
        queue.clone(),
        &[KEY, OTHER_KEY],
    )
    .await;
    Rig {
        db,
        repo: api.repo.clone(),
        queue,
        base: api.base.clone(),
        client: reqwest::Client::new(),
        _api: api,
    }
}

impl Rig {
    fn api(&self) -> ApiClient {
        ApiClient::new(&self.base, KEY)
    }

    async fn rows(&self) -> usize {
        self.repo
            .list(&domain::ListQuery::new(None, 500).unwrap())
            .await
            .unwrap()
            .jobs
            .len()
    }

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
async fn bad_requests_are_4xx_with_json_errors_and_store_nothing() {
    let rig = rig().await;
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
    let rig = rig().await;
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
    let rig = rig().await;
    let recorder = rig.queue.clone();
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
        .execute(&rig.db.pool)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_with_its_idempotency_key_answers_the_same_job_and_stores_one_row() {
    let rig = rig().await;
    let recorder = rig.queue.clone();
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
        .fetch_all(&rig.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    let scopes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT scope FROM video_job_idempotency_keys")
        .fetch_all(&rig.db.pool)
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
    let rig = rig().await;
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
    let rig = Arc::new(rig().await);
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
