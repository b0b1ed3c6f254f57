//! `CloudTasks` against a local mock of the Cloud Tasks REST API and of the metadata server
//! (one axum server on 127.0.0.1:0 serving both).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use domain::JobId;
use queue::cloud_tasks::{CloudTasks, CloudTasksConfig, ConfigError, QueueTarget, task_id};
use queue::{EnqueueError, Enqueued, Enqueuer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PROJECT: &str = "proj-1";
const LOCATION: &str = "europe-west1";
const QUEUE: &str = "video-jobs";
const WORKER: &str = "https://worker.example.run.app";
const SERVICE_ACCOUNT: &str = "tasks-invoker@proj-1.iam.gserviceaccount.com";
const META_TOKEN: &str = "ya29.meta-token";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const TASKS_PATH: &str = "/v2/projects/proj-1/locations/europe-west1/queues/video-jobs/tasks";

#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    Hang,
}

struct Call {
    path: String,
    headers: HeaderMap,
    body: Value,
}

struct State {
    api_calls: Vec<Call>,
    metadata_calls: Vec<HeaderMap>,
    /// Served first, one per API call; then `api_default`.
    api_script: VecDeque<Reply>,
    api_default: Reply,
    metadata_reply: Reply,
}

#[derive(Clone)]
struct Mock {
    base: String,
    state: Arc<Mutex<State>>,
}

fn token_reply(expires_in: u64) -> Reply {
    Reply::Json(
        200,
        json!({"access_token": META_TOKEN, "expires_in": expires_in, "token_type": "Bearer"}),
    )
}

impl Mock {
    async fn start(api_default: Reply) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_calls: Vec::new(),
            metadata_calls: Vec::new(),
            api_script: VecDeque::new(),
            api_default,
            metadata_reply: token_reply(3599),
        }));
        let shared = state.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move { handle(&state, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().api_script.extend(replies);
    }

    fn set_metadata(&self, reply: Reply) {
        self.state.lock().unwrap().metadata_reply = reply;
    }

    fn api_calls(&self) -> usize {
        self.state.lock().unwrap().api_calls.len()
    }

    fn metadata_calls(&self) -> usize {
        self.state.lock().unwrap().metadata_calls.len()
    }

    fn config(&self) -> CloudTasksConfig {
        config(Duration::from_secs(1200), Duration::from_secs(1500))
            .unwrap()
            .with_api_base(&self.base)
            .with_metadata_base(&self.base)
    }

    fn tasks(&self) -> CloudTasks {
        CloudTasks::new(self.config(), reqwest::Client::new()).unwrap()
    }
}

async fn handle(state: &Mutex<State>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut s = state.lock().unwrap();
        if uri.path() == TOKEN_PATH {
            s.metadata_calls.push(headers);
            s.metadata_reply.clone()
        } else {
            s.api_calls.push(Call {
                path: uri.path().to_owned(),
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let next = s.api_script.pop_front();
            next.unwrap_or_else(|| s.api_default.clone())
        }
    };
    match reply {
        Reply::Json(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
    }
}

fn config(execution_limit: Duration, deadline: Duration) -> Result<CloudTasksConfig, ConfigError> {
    CloudTasksConfig::new(target(QUEUE), execution_limit, deadline)
}

fn target(queue: &str) -> QueueTarget {
    QueueTarget {
        project: PROJECT.into(),
        location: LOCATION.into(),
        queue: queue.into(),
        worker_url: WORKER.into(),
        service_account_email: SERVICE_ACCOUNT.into(),
    }
}

fn created_reply() -> Reply {
    Reply::Json(200, json!({"name": "whatever"}))
}

fn google_error(code: u16, status: &str) -> Reply {
    Reply::Json(
        code,
        json!({"error": {"code": code, "message": format!("{status} from the mock"), "status": status}}),
    )
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(s.len() % 4, 0, "padded base64 expected: {s}");
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .expect("standard alphabet") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    out
}

fn hashed_prefix(job_id: JobId) -> String {
    let digest = Sha256::digest(job_id.to_string().as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn creates_the_exact_task() {
    let mock = Mock::start(created_reply()).await;
    let job = JobId::new();

    let outcome = mock.tasks().enqueue(job, 3).await.unwrap();

    assert_eq!(outcome, Enqueued::Created);
    let state = mock.state.lock().unwrap();
    assert_eq!(state.metadata_calls.len(), 1);
    assert_eq!(state.metadata_calls[0]["metadata-flavor"], "Google");
    assert_eq!(state.api_calls.len(), 1);
    let call = &state.api_calls[0];
    assert_eq!(call.path, TASKS_PATH);
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {META_TOKEN}").as_str()
    );

    let task = &call.body["task"];
    let expected_name = format!(
        "projects/{PROJECT}/locations/{LOCATION}/queues/{QUEUE}/tasks/{}-{}-3",
        hashed_prefix(job),
        job.as_uuid().simple()
    );
    assert_eq!(task["name"], expected_name.as_str());
    assert_eq!(task["dispatchDeadline"], "1500s");
    let http = &task["httpRequest"];
    assert_eq!(http["url"], "https://worker.example.run.app/jobs/run");
    assert_eq!(http["httpMethod"], "POST");
    assert_eq!(http["headers"], json!({"Content-Type": "application/json"}));
    assert_eq!(
        http["oidcToken"],
        json!({"serviceAccountEmail": SERVICE_ACCOUNT, "audience": WORKER})
    );
    let payload = base64_decode(http["body"].as_str().unwrap());
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload, json!({"job_id": job.to_string()}));
}

#[tokio::test]
async fn task_names_spread_and_stay_valid() {
    let mock = Mock::start(created_reply()).await;
    let tasks = mock.tasks();
    let (a, b) = (JobId::new(), JobId::new());

    tasks.enqueue(a, 0).await.unwrap();
    tasks.enqueue(b, 0).await.unwrap();

    let state = mock.state.lock().unwrap();
    let ids: Vec<String> = state
        .api_calls
        .iter()
        .map(|c| {
            let name = c.body["task"]["name"].as_str().unwrap();
            name.rsplit('/').next().unwrap().to_owned()
        })
        .collect();
    let prefix = |id: &str| id.split('-').next().unwrap().to_owned();
    // UUIDv7 ids made back to back share their leading (time) digits; the hash must not.
    assert_ne!(prefix(&ids[0]), prefix(&ids[1]));
    assert_eq!(prefix(&ids[0]), hashed_prefix(a));
    assert_eq!(prefix(&ids[1]), hashed_prefix(b));
    for id in &ids {
        assert!(
            (1..=500).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{id}"
        );
    }
    // A deliberate re-enqueue (next generation) must not collide with the first task.
    assert_ne!(task_id(a, 0), task_id(a, 1));
    assert_eq!(task_id(a, 0), ids[0]);
}

#[tokio::test]
async fn already_exists_is_success() {
    let mock = Mock::start(google_error(409, "ALREADY_EXISTS")).await;
    let outcome = mock.tasks().enqueue(JobId::new(), 0).await.unwrap();
    assert_eq!(outcome, Enqueued::AlreadyExists);
}

#[tokio::test]
async fn refusals_are_rejected() {
    let mock = Mock::start(created_reply()).await;
    mock.script([
        google_error(400, "INVALID_ARGUMENT"),
        google_error(403, "PERMISSION_DENIED"),
        google_error(404, "NOT_FOUND"),
    ]);
    let tasks = mock.tasks();
    for expected in ["INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND"] {
        match tasks.enqueue(JobId::new(), 0).await {
            Err(EnqueueError::Rejected(msg)) => assert!(msg.contains(expected), "{msg}"),
            other => panic!("expected Rejected({expected}), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unavailable_is_unknown() {
    let mock = Mock::start(google_error(503, "UNAVAILABLE")).await;
    mock.script([google_error(429, "RESOURCE_EXHAUSTED")]);
    let tasks = mock.tasks();
    for _ in 0..2 {
        let err = tasks.enqueue(JobId::new(), 0).await.unwrap_err();
        assert!(matches!(err, EnqueueError::Unknown(_)), "{err:?}");
    }
}

#[tokio::test]
async fn hanging_api_is_unknown() {
    let mock = Mock::start(Reply::Hang).await;
    let config = mock
        .config()
        .with_request_timeout(Duration::from_millis(300));
    let tasks = CloudTasks::new(config, reqwest::Client::new()).unwrap();

    let started = std::time::Instant::now();
    let err = tasks.enqueue(JobId::new(), 0).await.unwrap_err();

    assert!(matches!(err, EnqueueError::Unknown(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connection_refused_is_unknown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = config(Duration::from_secs(60), Duration::from_secs(90))
        .unwrap()
        .with_api_base(&dead)
        .with_static_token("local-token");
    let tasks = CloudTasks::new(config, reqwest::Client::new()).unwrap();

    let err = tasks.enqueue(JobId::new(), 0).await.unwrap_err();
    assert!(matches!(err, EnqueueError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn token_is_cached_across_enqueues() {
    let mock = Mock::start(created_reply()).await;
    let tasks = mock.tasks();

    tasks.enqueue(JobId::new(), 0).await.unwrap();
    tasks.enqueue(JobId::new(), 0).await.unwrap();

    assert_eq!(mock.metadata_calls(), 1);
    assert_eq!(mock.api_calls(), 2);
}

#[tokio::test]
async fn token_near_expiry_is_fetched_again() {
    let mock = Mock::start(created_reply()).await;
    // Within the one-minute margin: not worth caching.
    mock.set_metadata(token_reply(30));
    let tasks = mock.tasks();

    tasks.enqueue(JobId::new(), 0).await.unwrap();
    tasks.enqueue(JobId::new(), 0).await.unwrap();

    assert_eq!(mock.metadata_calls(), 2);
}

#[tokio::test]
async fn token_failure_is_unknown_and_sends_nothing() {
    let mock = Mock::start(created_reply()).await;
    mock.set_metadata(Reply::Json(500, json!({"oops": true})));

    let err = mock.tasks().enqueue(JobId::new(), 0).await.unwrap_err();

    assert!(matches!(err, EnqueueError::Unknown(_)), "{err:?}");
    assert_eq!(mock.api_calls(), 0);
}

#[tokio::test]
async fn unauthorized_fetches_a_fresh_token_once() {
    let mock = Mock::start(created_reply()).await;
    mock.script([google_error(401, "UNAUTHENTICATED")]);
    let tasks = mock.tasks();

    let outcome = tasks.enqueue(JobId::new(), 0).await.unwrap();

    assert_eq!(outcome, Enqueued::Created);
    assert_eq!(mock.metadata_calls(), 2);
    assert_eq!(mock.api_calls(), 2);
}

#[tokio::test]
async fn static_token_skips_the_metadata_server() {
    let mock = Mock::start(created_reply()).await;
    let config = mock.config().with_static_token("local-token");
    let tasks = CloudTasks::new(config, reqwest::Client::new()).unwrap();

    tasks.enqueue(JobId::new(), 0).await.unwrap();

    assert_eq!(mock.metadata_calls(), 0);
    let state = mock.state.lock().unwrap();
    assert_eq!(
        state.api_calls[0].headers["authorization"],
        "Bearer local-token"
    );
    // The static token must not show up in Debug output.
    assert!(!format!("{tasks:?}").contains("local-token"));
}

#[tokio::test]
async fn explicit_audience_is_sent() {
    let mock = Mock::start(created_reply()).await;
    let config = mock.config().with_audience("https://jobs.example.com");
    let tasks = CloudTasks::new(config, reqwest::Client::new()).unwrap();

    tasks.enqueue(JobId::new(), 0).await.unwrap();

    let state = mock.state.lock().unwrap();
    let oidc = &state.api_calls[0].body["task"]["httpRequest"]["oidcToken"];
    assert_eq!(oidc["audience"], "https://jobs.example.com");
}

#[test]
fn deadline_must_exceed_the_execution_limit() {
    let limit = Duration::from_secs(1200);
    for deadline in [Duration::from_secs(1200), Duration::from_secs(600)] {
        let err = config(limit, deadline).unwrap_err();
        assert!(
            matches!(err, ConfigError::DeadlineNotAboveExecutionLimit { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("execution limit"), "{err}");
    }
    assert!(config(limit, Duration::from_secs(1201)).is_ok());
}

#[test]
fn deadline_is_capped_at_1800_s() {
    let limit = Duration::from_secs(1200);
    let err = config(limit, Duration::from_secs(1801)).unwrap_err();
    assert!(
        matches!(err, ConfigError::DeadlineTooLong { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1800"), "{err}");
    assert!(config(limit, Duration::from_secs(1800)).is_ok());
}

#[test]
fn the_enqueuer_validates_again() {
    let mut cfg = config(Duration::from_secs(1200), Duration::from_secs(1500)).unwrap();
    assert_eq!(cfg.audience, WORKER);
    cfg.dispatch_deadline = Duration::from_secs(3600);
    let err = CloudTasks::new(cfg, reqwest::Client::new()).unwrap_err();
    assert!(
        matches!(err, ConfigError::DeadlineTooLong { .. }),
        "{err:?}"
    );

    let bad_queue = CloudTasksConfig::new(
        target("a/b"),
        Duration::from_secs(60),
        Duration::from_secs(90),
    )
    .unwrap_err();
    assert!(
        matches!(bad_queue, ConfigError::Invalid { field: "queue", .. }),
        "{bad_queue:?}"
    );
}

#[tokio::test]
async fn task_state_asks_tasks_get_on_the_generations_name() {
    use queue::TaskState;
    let mock = Mock::start(created_reply()).await;
    let tasks = mock.tasks();
    let job = JobId::new();
    mock.script([
        Reply::Json(200, json!({"name": tasks.task_name(job, 3)})),
        google_error(404, "NOT_FOUND"),
        google_error(503, "UNAVAILABLE"),
        google_error(403, "PERMISSION_DENIED"),
    ]);
    assert_eq!(tasks.task_state(job, 3).await.unwrap(), TaskState::Pending);
    assert_eq!(tasks.task_state(job, 3).await.unwrap(), TaskState::Gone);
    for _ in 0..2 {
        let err = tasks.task_state(job, 3).await.unwrap_err();
        assert!(
            matches!(err, EnqueueError::Unknown(_)),
            "neither proves the task exists or not: {err:?}"
        );
    }
    let state = mock.state.lock().unwrap();
    assert_eq!(state.api_calls.len(), 4);
    for call in &state.api_calls {
        assert_eq!(call.path, format!("/v2/{}", tasks.task_name(job, 3)));
        assert_eq!(call.body, Value::Null, "a GET has no body");
        assert_eq!(
            call.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Bearer {META_TOKEN}")
        );
    }
}
