//! Google Cloud Tasks over its REST API (v2): [`CloudTasks`] creates one HTTP task per
//! enqueue, which Cloud Tasks then pushes to the worker's `POST /jobs/run` with
//! `{"job_id": "<uuid>"}`, an OIDC token for the worker, and a dispatch deadline.
//!
//! - **Task names** are `{8 hex of sha256(job id)}-{job uuid, simple}-{generation}`. Naming
//!   the task makes a retried enqueue idempotent (Cloud Tasks answers `ALREADY_EXISTS`), and
//!   the hashed prefix spreads names over Cloud Tasks' key space: job ids are UUIDv7, i.e.
//!   time-ordered, and Google warns that sequential name prefixes hurt dispatch throughput.
//! - **Dispatch deadline**: how long Cloud Tasks waits for the worker's answer before it
//!   counts the attempt as failed and retries. It must outlast the worker's execution limit,
//!   or Cloud Tasks would redeliver a job that is still running; Cloud Tasks caps it at
//!   30 min (and floors it at 15 s) for HTTP targets. Both are checked when building.
//! - **Access token** for the API: from the metadata server (GCE / Cloud Run), cached until a
//!   minute before it expires, or a static token for local use. It is never logged.
//! - **Task state** ([`Enqueuer::task_state`]): `tasks.get` on the deterministic name;
//!   200 → [`TaskState::Pending`], 404 → [`TaskState::Gone`] (a task is deleted once it was
//!   delivered or dropped after its last attempt), anything else → [`EnqueueError::Unknown`].
//! - **Outcomes**: 2xx → [`Enqueued::Created`]; 409 `ALREADY_EXISTS` →
//!   [`Enqueued::AlreadyExists`]; other 4xx → [`EnqueueError::Rejected`] (the task certainly
//!   does not exist); 408/429/499/5xx, timeouts, connection errors and token failures →
//!   [`EnqueueError::Unknown`] (it may exist; the sweeper re-enqueues with a new generation).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use domain::JobId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{EnqueueError, Enqueued, Enqueuer, TaskState};

/// The public Cloud Tasks endpoint.
pub const DEFAULT_API_BASE: &str = "https://cloudtasks.googleapis.com";
/// The GCE / Cloud Run metadata server.
pub const DEFAULT_METADATA_BASE: &str = "http://metadata.google.internal";
/// Per-request timeout for the API and the metadata server.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest dispatch deadline Cloud Tasks accepts for HTTP targets.
pub const MAX_DISPATCH_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The shortest dispatch deadline Cloud Tasks accepts for HTTP targets.
pub const MIN_DISPATCH_DEADLINE: Duration = Duration::from_secs(15);
/// The worker's route that runs a job.
pub const RUN_PATH: &str = "/jobs/run";

/// A cached metadata token is refreshed this long before it expires, so a token never
/// expires between being read from the cache and reaching Cloud Tasks.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How much of an error body goes into an error message.
const MAX_ERROR_DETAIL: usize = 300;

/// Where the API's access token comes from.
#[derive(Clone)]
pub enum AccessToken {
    /// Fetched from the metadata server at this base URL (the service account the process
    /// runs as), cached until a minute before it expires.
    Metadata {
        /// e.g. [`DEFAULT_METADATA_BASE`]; a local mock in tests.
        base: String,
    },
    /// A fixed token, for local use (e.g. `gcloud auth print-access-token`).
    Static(SecretString),
}

// By hand so that a static token never ends up in a log line through `{:?}`.
impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Metadata { base } => f.debug_struct("Metadata").field("base", base).finish(),
            Self::Static(_) => f.write_str("Static(<redacted>)"),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Cloud Tasks would give up on (and redeliver) a job that is still within its limit.
    #[error(
        "the dispatch deadline ({deadline:?}) must be above the worker's execution limit ({execution_limit:?})"
    )]
    DeadlineNotAboveExecutionLimit {
        /// The configured dispatch deadline.
        deadline: Duration,
        /// The worker's execution limit.
        execution_limit: Duration,
    },
    /// Cloud Tasks refuses HTTP tasks with a longer deadline.
    #[error("the dispatch deadline ({deadline:?}) is above Cloud Tasks' maximum of 1800 s")]
    DeadlineTooLong {
        /// The configured dispatch deadline.
        deadline: Duration,
    },
    /// Cloud Tasks refuses HTTP tasks with a shorter deadline.
    #[error("the dispatch deadline ({deadline:?}) is below Cloud Tasks' minimum of 15 s")]
    DeadlineTooShort {
        /// The configured dispatch deadline.
        deadline: Duration,
    },
    /// Some other field is unusable.
    #[error("invalid Cloud Tasks setting `{field}`: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which queue delivers to which worker, signed as which service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTarget {
    /// The Google Cloud project of the queue.
    pub project: String,
    /// The queue's region, e.g. `europe-west1`.
    pub location: String,
    /// The queue's id.
    pub queue: String,
    /// The worker's base URL; tasks push to `{worker_url}/jobs/run`.
    pub worker_url: String,
    /// The service account whose OIDC token the task carries.
    pub service_account_email: String,
}

/// Which queue, which worker, and how to talk to Cloud Tasks.
#[derive(Debug, Clone)]
pub struct CloudTasksConfig {
    /// Google Cloud project id.
    pub project: String,
    /// The queue's location, e.g. `europe-west1`.
    pub location: String,
    /// The queue id.
    pub queue: String,
    /// The worker's base URL (e.g. `https://worker-xyz.a.run.app`); tasks go to
    /// `{worker_url}/jobs/run`.
    pub worker_url: String,
    /// The `aud` of the OIDC token Cloud Tasks sends; the worker checks it exactly. The
    /// worker's URL by default.
    pub audience: String,
    /// The service account Cloud Tasks signs the OIDC token as (the enqueuer needs
    /// `iam.serviceAccounts.actAs` on it).
    pub service_account_email: String,
    /// The worker's hard execution limit for one attempt.
    pub execution_limit: Duration,
    /// How long Cloud Tasks waits for the worker's answer; above `execution_limit`, at most
    /// 1800 s.
    pub dispatch_deadline: Duration,
    /// Base URL of the Cloud Tasks API.
    pub api_base: String,
    /// Where the API's access token comes from.
    pub access_token: AccessToken,
    /// Timeout of each request to the API and to the metadata server.
    pub request_timeout: Duration,
}

impl CloudTasksConfig {
    /// A validated configuration with the defaults: audience = `worker_url`, the public API,
    /// tokens from the metadata server, 10 s request timeout.
    pub fn new(
        target: QueueTarget,
        execution_limit: Duration,
        dispatch_deadline: Duration,
    ) -> Result<Self, ConfigError> {
        let worker_url = target.worker_url.trim_end_matches('/').to_owned();
        let config = Self {
            project: target.project,
            location: target.location,
            queue: target.queue,
            audience: worker_url.clone(),
            worker_url,
            service_account_email: target.service_account_email,
            execution_limit,
            dispatch_deadline,
            api_base: DEFAULT_API_BASE.to_owned(),
            access_token: AccessToken::Metadata {
                base: DEFAULT_METADATA_BASE.to_owned(),
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        };
        config.validate()?;
        Ok(config)
    }

    /// Sets the OIDC audience (when the worker expects something other than its URL).
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Sets the API's base URL (a mock in tests).
    #[must_use]
    pub fn with_api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Fetches tokens from the metadata server at `base` (a mock in tests).
    #[must_use]
    pub fn with_metadata_base(mut self, base: impl Into<String>) -> Self {
        self.access_token = AccessToken::Metadata {
            base: base.into().trim_end_matches('/').to_owned(),
        };
        self
    }

    /// Uses a fixed access token instead of the metadata server (local use).
    #[must_use]
    pub fn with_static_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = AccessToken::Static(SecretString::from(token.into()));
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Checks every field; [`CloudTasks::new`] calls it again, since the fields are public.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dispatch_deadline > MAX_DISPATCH_DEADLINE {
            return Err(ConfigError::DeadlineTooLong {
                deadline: self.dispatch_deadline,
            });
        }
        if self.dispatch_deadline < MIN_DISPATCH_DEADLINE {
            return Err(ConfigError::DeadlineTooShort {
                deadline: self.dispatch_deadline,
            });
        }
        if self.dispatch_deadline <= self.execution_limit {
            return Err(ConfigError::DeadlineNotAboveExecutionLimit {
                deadline: self.dispatch_deadline,
                execution_limit: self.execution_limit,
            });
        }
        if self.execution_limit.is_zero() {
            return Err(invalid("execution_limit", "must be above zero"));
        }
        // These three go into the URL path and the task name unescaped.
        path_segment("project", &self.project)?;
        path_segment("location", &self.location)?;
        path_segment("queue", &self.queue)?;
        http_url("worker_url", &self.worker_url)?;
        http_url("api_base", &self.api_base)?;
        if self.audience.trim().is_empty() {
            return Err(invalid("audience", "is empty"));
        }
        let email = &self.service_account_email;
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err(invalid(
                "service_account_email",
                format!("{email:?} is not an email address"),
            ));
        }
        match &self.access_token {
            AccessToken::Metadata { base } => http_url("metadata_base", base)?,
            AccessToken::Static(token) if token.expose_secret().trim().is_empty() => {
                return Err(invalid("access_token", "the static token is empty"));
            }
            AccessToken::Static(_) => {}
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be above zero"));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn path_segment(field: &'static str, value: &str) -> Result<(), ConfigError> {
    // Project ids may be legacy `domain.com:project`, hence `.` and `:`.
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is empty or has characters outside [A-Za-z0-9._:-]"),
        ))
    }
}

fn http_url(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !value.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(invalid(field, format!("{value:?} is not an http(s) URL"))),
    }
}

/// The task id (last segment of the task name) for delivery `generation` of `job_id`:
/// `{first 8 hex of sha256(job id)}-{job uuid, simple}-{generation}`, e.g.
/// `3f2a9c01-0190f6b2c4d87a1e9b3c5d7e9f1a2b3c-0`. The hash is over the hyphenated uuid text.
/// It matches `[A-Za-z0-9_-]{1,500}` (at most 52 characters).
pub fn task_id(job_id: JobId, generation: u32) -> String {
    let digest = Sha256::digest(job_id.to_string().as_bytes());
    let prefix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}-{generation}", job_id.as_uuid().simple())
}

/// An [`Enqueuer`] that creates HTTP tasks in a Cloud Tasks queue.
#[derive(Debug)]
pub struct CloudTasks {
    client: reqwest::Client,
    config: CloudTasksConfig,
    /// `{api_base}/v2/projects/{p}/locations/{l}/queues/{q}/tasks`.
    tasks_url: String,
    /// `projects/{p}/locations/{l}/queues/{q}`.
    queue_name: String,
    /// The metadata token and when to refresh it. A mutex held across the fetch, so that
    /// concurrent enqueues on a cold cache make one metadata request, not one each.
    token: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("value", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

impl CloudTasks {
    /// An enqueuer for `config` using `client` (share one across the process; the request
    /// timeout is applied per request, so the client's own settings may stay default).
    pub fn new(config: CloudTasksConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        config.validate()?;
        let queue_name = format!(
            "projects/{}/locations/{}/queues/{}",
            config.project, config.location, config.queue
        );
        let tasks_url = format!(
            "{}/v2/{queue_name}/tasks",
            config.api_base.trim_end_matches('/')
        );
        Ok(Self {
            client,
            config,
            tasks_url,
            queue_name,
            token: Mutex::new(None),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &CloudTasksConfig {
        &self.config
    }

    /// The full task name for delivery `generation` of `job_id`.
    pub fn task_name(&self, job_id: JobId, generation: u32) -> String {
        format!("{}/tasks/{}", self.queue_name, task_id(job_id, generation))
    }

    fn request_body(&self, name: String, job_id: JobId) -> CreateTaskRequest {
        let payload = serde_json::json!({ "job_id": job_id }).to_string();
        CreateTaskRequest {
            task: Task {
                name,
                dispatch_deadline: google_duration(self.config.dispatch_deadline),
                http_request: HttpRequest {
                    url: format!("{}{RUN_PATH}", self.config.worker_url.trim_end_matches('/')),
                    http_method: "POST",
                    headers: Headers {
                        content_type: "application/json",
                    },
                    body: base64_encode(payload.as_bytes()),
                    oidc_token: OidcToken {
                        service_account_email: self.config.service_account_email.clone(),
                        audience: self.config.audience.clone(),
                    },
                },
            },
        }
    }

    /// The access token for the API: the static one, or the cached metadata token, fetched
    /// again once within a minute of expiry.
    async fn access_token(&self) -> Result<SecretString, EnqueueError> {
        let base = match &self.config.access_token {
            AccessToken::Static(token) => return Ok(token.clone()),
            AccessToken::Metadata { base } => base,
        };
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_metadata_token(base).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch_metadata_token(&self, base: &str) -> Result<CachedToken, EnqueueError> {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            base.trim_end_matches('/')
        );
        let unknown = |what: String| EnqueueError::Unknown(format!("access token: {what}"));
        let response = self
            .client
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| unknown(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unknown(format!("the metadata server answered {status}")));
        }
        let bytes = response.bytes().await.map_err(|e| unknown(describe(&e)))?;
        // The parse error is not passed on: serde may quote the input, i.e. the token.
        let token: MetadataToken = serde_json::from_slice(&bytes)
            .map_err(|_| unknown("the metadata server's answer is not a token".into()))?;
        if token.access_token.is_empty() {
            return Err(unknown("the metadata server sent an empty token".into()));
        }
        let lifetime = Duration::from_secs(token.expires_in);
        Ok(CachedToken {
            value: token.access_token.into(),
            refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
        })
    }

    async fn create(&self, body: &CreateTaskRequest) -> Result<Answer, EnqueueError> {
        self.send(self.client.post(&self.tasks_url).json(body))
            .await
    }

    async fn get(&self, name: &str) -> Result<Answer, EnqueueError> {
        let url = format!("{}/v2/{name}", self.config.api_base.trim_end_matches('/'));
        self.send(self.client.get(&url)).await
    }

    /// Sends `request` with a fresh access token and the request timeout; any answer is an
    /// `Answer`, no answer is `Unknown`.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, EnqueueError> {
        let token = self.access_token().await?;
        let response = request
            .bearer_auth(token.expose_secret())
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| EnqueueError::Unknown(describe(&e)))?;
        let status = response.status().as_u16();
        // The body counts against the same timeout; an unread body only costs the detail.
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, text })
    }
}

#[async_trait]
impl Enqueuer for CloudTasks {
    async fn enqueue(&self, job_id: JobId, generation: u32) -> Result<Enqueued, EnqueueError> {
        let name = self.task_name(job_id, generation);
        let body = self.request_body(name.clone(), job_id);
        let mut answer = self.create(&body).await?;
        // A 401 most likely means the cached token was revoked or expired early; no task was
        // created, so one retry with a fresh token is safe (and the name dedupes anyway).
        if answer.status == 401 && matches!(self.config.access_token, AccessToken::Metadata { .. })
        {
            self.forget_token().await;
            answer = self.create(&body).await?;
        }
        let result = classify(answer.status, &answer.text);
        match &result {
            Ok(Enqueued::Created) => {
                tracing::debug!(job.id = %job_id, generation, task = %name, "task created");
            }
            Ok(Enqueued::AlreadyExists) => {
                tracing::info!(job.id = %job_id, generation, task = %name, "task already exists");
            }
            Err(e) => {
                tracing::warn!(job.id = %job_id, generation, task = %name, error = %e, "enqueue failed");
            }
        }
        result
    }

    async fn task_state(&self, job_id: JobId, generation: u32) -> Result<TaskState, EnqueueError> {
        let name = self.task_name(job_id, generation);
        let mut answer = self.get(&name).await?;
        // As for create: a 401 most likely means the cached token went bad; ask once more.
        if answer.status == 401 && matches!(self.config.access_token, AccessToken::Metadata { .. })
        {
            self.forget_token().await;
            answer = self.get(&name).await?;
        }
        let state = classify_get(answer.status, &answer.text);
        tracing::debug!(job.id = %job_id, generation, task = %name, state = ?state, "task state");
        state
    }
}

/// Maps a `tasks.get` answer: only a 200 proves the task exists and only a 404 proves it
/// does not; anything else (401/403 included: a permission problem says nothing about the
/// task) leaves the question open.
fn classify_get(status: u16, text: &str) -> Result<TaskState, EnqueueError> {
    match status {
        200..=299 => Ok(TaskState::Pending),
        404 => Ok(TaskState::Gone),
        _ => Err(EnqueueError::Unknown(format!(
            "tasks.get answered {status}: {}",
            truncate(text.trim())
        ))),
    }
}

struct Answer {
    status: u16,
    text: String,
}

/// Maps the API's answer to the trait's outcomes: "certain there is no task" (`Rejected`)
/// only when the API clearly refused; anything ambiguous is `Unknown`.
fn classify(status: u16, text: &str) -> Result<Enqueued, EnqueueError> {
    let error = serde_json::from_str::<GoogleErrorBody>(text)
        .ok()
        .map(|b| b.error);
    let detail = || match &error {
        Some(e) => format!(
            "{status} {}: {}",
            e.status.as_deref().unwrap_or("?"),
            truncate(e.message.as_deref().unwrap_or(""))
        ),
        None => format!("{status}: {}", truncate(text.trim())),
    };
    match status {
        200..=299 => Ok(Enqueued::Created),
        409 if error
            .as_ref()
            .and_then(|e| e.status.as_deref())
            .is_some_and(|s| s == "ALREADY_EXISTS") =>
        {
            // Also the answer for a name used by a task that already ran (Cloud Tasks keeps
            // names for a while): either way this delivery is someone else's.
            Ok(Enqueued::AlreadyExists)
        }
        // A 409 that is not ALREADY_EXISTS (ABORTED: a concurrency conflict) is transient.
        409 => Err(EnqueueError::Unknown(detail())),
        // Request timeout, rate limit, client closed (CANCELLED): the request may have landed.
        408 | 429 | 499 => Err(EnqueueError::Unknown(detail())),
        400..=499 => Err(EnqueueError::Rejected(detail())),
        _ => Err(EnqueueError::Unknown(detail())),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_DETAIL) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// A reqwest error in a few words. Requests carry the token in a header only, never in the
/// URL, so the message cannot leak it.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {e}")
}

/// A `google.protobuf.Duration` in its JSON form: seconds with an `s` suffix.
fn google_duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        nanos => {
            let frac = format!("{nanos:09}");
            format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
        }
    }
}

/// Standard base64 with padding, as `HttpRequest.body` (`bytes` in JSON) requires.
fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[derive(Serialize)]
struct CreateTaskRequest {
    task: Task,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    name: String,
    dispatch_deadline: String,
    http_request: HttpRequest,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequest {
    url: String,
    http_method: &'static str,
    headers: Headers,
    body: String,
    oidc_token: OidcToken,
}

#[derive(Serialize)]
struct Headers {
    #[serde(rename = "Content-Type")]
    content_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OidcToken {
    service_account_email: String,
    audience: String,
}

#[derive(Deserialize)]
struct MetadataToken {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    message: Option<String>,
    status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn durations_use_the_json_form() {
        assert_eq!(google_duration(Duration::from_secs(1500)), "1500s");
        assert_eq!(google_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn ambiguous_answers_are_unknown() {
        for status in [408, 429, 499, 500, 503, 504] {
            assert!(
                matches!(classify(status, ""), Err(EnqueueError::Unknown(_))),
                "{status}"
            );
        }
        let aborted = r#"{"error":{"code":409,"status":"ABORTED","message":"x"}}"#;
        assert!(matches!(
            classify(409, aborted),
            Err(EnqueueError::Unknown(_))
        ));
        for status in [400, 401, 403, 404, 412] {
            assert!(
                matches!(classify(status, ""), Err(EnqueueError::Rejected(_))),
                "{status}"
            );
        }
    }

    #[test]
    fn debug_never_shows_a_static_token() {
        let shown = format!("{:?}", AccessToken::Static("ya29.secret".into()));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
