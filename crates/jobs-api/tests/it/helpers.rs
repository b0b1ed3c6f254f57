//! The setup every check shares: the API started through `jobs_api::testing`, the requests
//! the checks send, a valid storyboard, and the shape check every error answer passes.

use std::sync::Arc;

use domain::{AcquireOutcome, AcquireRequest, InstanceId, JobId, JobRepository, Lease};
use jobs_api::testing::{RecordingQueue, TestApi};
use serde_json::{Value, json};

pub(crate) const KEY: &str = "contract-api-key-0001";

/// The API over `repo`, with a queue that takes every task.
pub(crate) async fn serve(repo: Arc<dyn JobRepository>) -> TestApi {
    TestApi::start(repo, Arc::new(RecordingQueue::default()), &[KEY]).await
}

/// The API over the in-memory repository.
pub(crate) async fn mem() -> TestApi {
    serve(Arc::new(repo_mem::MemRepository::new())).await
}

/// Takes the lease on `id` as worker `holder` (60 s TTL), as a worker's first delivery
/// would: the job is running afterwards.
pub(crate) async fn lease(repo: &dyn JobRepository, id: JobId, holder: &str) -> Lease {
    let outcome = repo
        .acquire(&AcquireRequest {
            job_id: id,
            holder: InstanceId::new(holder).unwrap(),
            ttl: std::time::Duration::from_secs(60),
            max_attempts: 5,
            session: None,
        })
        .await
        .unwrap();
    let AcquireOutcome::Acquired { lease, .. } = outcome else {
        panic!("not acquired: {outcome:?}")
    };
    lease
}

/// The requests the checks below send.
pub(crate) trait Calls {
    fn post_json(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder;
    fn get(&self, path: &str) -> reqwest::RequestBuilder;
    async fn stored(&self) -> usize;
}

impl Calls for TestApi {
    fn post_json(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    async fn stored(&self) -> usize {
        self.repo
            .list(&domain::ListQuery::new(None, 500).unwrap())
            .await
            .unwrap()
            .jobs
            .len()
    }
}

pub(crate) fn board() -> Value {
    json!({"version": 1, "title": "Contract",
           "frame": {"width": 640, "height": 360, "fps": 25},
           "segments": [
               {"narration": "One.", "slide": {"heading": "1"}},
               {"narration": "Two.", "slide": {"heading": "2"}},
               {"narration": "Three.", "slide": {"heading": "3"}}]})
}

/// An error answer, checked for the shape every error has: JSON with exactly `error`,
/// `message` and `fields` (an array of `{field, reason}`). Returns the status and the body.
pub(crate) async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/json", "{status}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "fields", "message"], "{text}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{text}"
    );
    for field in body["fields"].as_array().unwrap() {
        assert!(
            field["field"].is_string() && field["reason"].is_string(),
            "{text}"
        );
    }
    (status, body)
}

/// The `field` of each entry of `fields`.
pub(crate) fn fields(body: &Value) -> Vec<String> {
    body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}
