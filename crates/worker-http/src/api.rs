//! The jobs API for the product side (`video-worker api`), on a listener of its own — never
//! the worker's.
//!
//! `POST /v1/jobs` validates the storyboard, stores the job and enqueues its delivery;
//! `GET /v1/jobs/{id}`, `GET /v1/jobs` (paged), `POST /v1/jobs/{id}/cancel`,
//! `GET /v1/jobs/{id}/events` (server-sent events fed by `NOTIFY`, ending with the terminal
//! state) and `GET /v1/jobs/{id}/artifact` (the MP4). Bearer API keys, compared in constant
//! time. `GET /openapi.json` describes it all. Every error is JSON `{error, message, fields}`
//! — axum's own refusals too (an unreadable path id, a bad query, a body over the limit, a
//! wrong method): each is mapped here rather than left to axum's plain-text answers — and a
//! body that does not fit names the field (`frame.width`, `segments[2].slide`; see
//! [`decode`]).
//!
//! A create may carry an `Idempotency-Key`: a client that lost the reply retries with the
//! same key and gets the same job (200) instead of a second film. Keys are scoped to the API
//! key that sent them and remembered for [`IDEMPOTENCY_KEY_RETENTION`]; the request they stand
//! for is compared by [`request_fingerprint`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{
    CancelOutcome, IdempotencyKey, IdempotentOutcome, IdempotentRequest, Job, JobError, JobId,
    JobRepository, JobStatus, ListCursor, ListQuery, NewJob, RepoError,
};
use futures_util::StreamExt;
use object_store::ObjectStore;
use queue::{EnqueueError, Enqueuer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;
use utoipa::{OpenApi, ToSchema};
use video::storyboard::Storyboard;

mod decode;

/// Largest accepted request body: a storyboard at its limits fits.
const MAX_BODY: usize = 1 << 20;

/// How long an `Idempotency-Key` is remembered: a retry within this answers the first job.
/// Longer than any client's retry loop; after it the key may be purged and reused.
pub const IDEMPOTENCY_KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The header of an idempotent create.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set to `true` on the answer to a create that found its job made by an earlier call.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The caller of a `/v1` route, as the key check found it: a digest of its API key that
/// scopes its idempotency keys. Domain-separated from the digest [`ApiKeys`] compares, so
/// the stored value is no other use's digest of the key.
#[derive(Debug, Clone, Copy)]
struct Caller {
    scope: [u8; 32],
}

impl Caller {
    fn of(api_key: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"video-worker idempotency scope v1\0");
        hash.update(api_key.as_bytes());
        Self {
            scope: hash.finalize().into(),
        }
    }
}

/// Bearer API keys, kept as SHA-256 digests so comparison is constant-time and
/// length-independent.
#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<[u8; 32]>>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// Keys from their plain values.
    pub fn new(keys: &[String]) -> Self {
        Self(Arc::new(
            keys.iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        ))
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Check every key, so timing does not tell which one (if any) matched.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, key| any | key.ct_eq(&digest))
            .into()
    }
}

/// Fan-out of job update notifications: one subscription per process.
#[derive(Debug, Clone)]
pub struct UpdateFeed(broadcast::Sender<JobId>);

impl UpdateFeed {
    /// Subscribes to `repo`'s job updates (first subscription before returning) and
    /// forwards them until the process ends, resubscribing when the stream ends.
    pub async fn start(repo: Arc<dyn JobRepository>) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let first = repo.job_updates().await;
        if let Err(e) = &first {
            tracing::warn!(error = %e, "job updates unavailable; event streams fall back to polling");
        }
        let feed = tx.clone();
        tokio::spawn(async move {
            let mut stream = first.ok();
            loop {
                if let Some(mut s) = stream.take() {
                    while let Some(id) = s.next().await {
                        let _ = feed.send(id);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                stream = repo.job_updates().await.ok();
            }
        });
        Self(tx)
    }
}

/// What the API is built from.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Jobs.
    pub repo: Arc<dyn JobRepository>,
    /// Where deliveries are enqueued.
    pub queue: Arc<dyn Enqueuer>,
    /// Who may call.
    pub keys: ApiKeys,
    /// Where finished films are.
    pub artifacts: Arc<dyn ObjectStore>,
    /// Live updates for event streams.
    pub feed: UpdateFeed,
}

/// The API's router.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/events", get(job_events))
        .route("/v1/jobs/{id}/artifact", get(job_artifact))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    Router::new()
        .merge(v1)
        .route("/openapi.json", get(openapi))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // After every route: it applies to the routes registered so far. axum keeps the
        // `Allow` header on the answer.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see the Allow header",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed",
                )
                .into_response()
            },
        ))
        .with_state(state)
}

// ---- errors ------------------------------------------------------------------------------

/// One field of a refused request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldErrorView {
    /// Where. In a storyboard (`invalid_storyboard`), its path from the storyboard:
    /// `frame.width`, `segments[2].slide.heading`. In the body (`invalid_request`), the body's
    /// key (`storyboard`, an unknown key) or `$` for the body itself. Otherwise the header,
    /// path or query parameter: `Idempotency-Key`, `id`, `limit`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// Every error the API answers, 4xx and 5xx alike.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// Machine-readable; the README lists them with their statuses: `invalid_json`,
    /// `invalid_request`, `invalid_storyboard`, `invalid_idempotency_key`,
    /// `idempotency_key_reused`, `invalid_id`, `invalid_query`, `unauthorized`, `not_found`,
    /// `method_not_allowed`, `not_ready`, `artifact_missing`, `body_too_large`,
    /// `unsupported_media_type`, `unavailable`, `internal`.
    pub error: String,
    /// For people.
    pub message: String,
    /// The fields at fault, each with its path; empty when the error is not about a field.
    pub fields: Vec<FieldErrorView>,
}

#[derive(Debug)]
struct ApiError(StatusCode, ApiErrorBody);

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self(
            status,
            ApiErrorBody {
                error: error.into(),
                message: message.into(),
                fields: Vec::new(),
            },
        )
    }

    /// The same error, naming the field at fault.
    fn field(mut self, field: impl Into<String>, reason: impl Into<String>) -> Self {
        self.1.fields.push(FieldErrorView {
            field: field.into(),
            reason: reason.into(),
        });
        self
    }

    fn storage(e: &RepoError) -> Self {
        // Log the cause once, here; the caller gets no internals.
        tracing::error!(error = %e, "storage error");
        if e.is_retryable() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the job store is unavailable; try again",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the job could not be read",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

async fn require_key(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if state.keys.accepts(key) => {
            let caller = Caller::of(key);
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key>)",
        )
        .into_response(),
    }
}

// ---- views -------------------------------------------------------------------------------

/// A job as the product sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id (uuid).
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The stage in progress: `plan`, `tts`, `render`, `compose`, `publish`. For a failed or
    /// canceled job, the stage it stopped in. Absent before the first progress report and
    /// once the job succeeded (every stage is then done; none is in progress).
    pub stage: Option<String>,
    /// 0–100; never goes back. 100 once succeeded.
    pub percent: u8,
    /// The segment last finished, from 0; absent when `stage` is.
    pub segment_index: Option<u32>,
    /// Segments of the stage; absent when `stage` is.
    pub segment_total: Option<u32>,
    /// A line for the user about the stage (`render: 3 of 10 segments`); absent when
    /// `stage` is.
    pub message: Option<String>,
    /// Whether cancel was requested.
    pub cancel_requested: bool,
    /// Acquisitions by workers so far.
    pub attempts: u32,
    /// Where the MP4 is (object-store key), once succeeded.
    pub artifact_key: Option<String>,
    /// The download path, once succeeded.
    pub artifact_url: Option<String>,
    /// Why it failed.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let succeeded = job.status == JobStatus::Succeeded;
        // The last report names the stage that was running; once the job succeeded that
        // label is stale (a client would show "100% compose"), so it is not repeated.
        let progress = job.progress.as_ref().filter(|_| !succeeded);
        Self {
            id: job.id.to_string(),
            status: job.status.as_str().into(),
            stage: progress.map(|p| p.stage.as_str().into()),
            percent: job.percent().get(),
            segment_index: progress.and_then(|p| p.segment).map(|s| s.index()),
            segment_total: progress.and_then(|p| p.segment).map(|s| s.total()),
            message: progress.and_then(|p| p.message.clone()),
            cancel_requested: job.cancel_requested_at.is_some(),
            attempts: job.attempts,
            artifact_key: job.artifact_key.clone().filter(|_| succeeded),
            artifact_url: succeeded.then(|| format!("/v1/jobs/{}/artifact", job.id)),
            error_code: job.error.as_ref().map(|e| e.code.to_string()),
            error_message: job.error.as_ref().map(|e| e.message.clone()),
            created_at: job.created_at.to_rfc3339(),
            started_at: job.started_at.map(|t| t.to_rfc3339()),
            finished_at: job.finished_at.map(|t| t.to_rfc3339()),
            updated_at: job.updated_at.to_rfc3339(),
        }
    }
}

/// `POST /v1/jobs` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The storyboard (schema version 1; see the README).
    #[schema(value_type = Object)]
    pub storyboard: serde_json::Value,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The answer to a cancel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    /// `canceled` (it was queued), `cancel_requested` (the worker stops at its next
    /// checkpoint), `already_requested`, or `already_finished`.
    pub outcome: String,
    /// The job now.
    pub job: JobView,
}

/// The `{id}` of a job route, parsed. Anything that is not a job id — including a
/// percent-encoding that does not decode to text, which axum would refuse in plain text —
/// is a 400 `invalid_id` naming `id`.
#[derive(Debug)]
struct JobIdPath(JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let text = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => text,
            // A route registered without `{id}`: this code's mistake, not the caller's.
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e, "a job route without its id");
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the route is misconfigured",
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_id",
                    "the job id in the path is not text (its percent-encoding is not UTF-8)",
                )
                .field("id", "not a job id (uuid)"));
            }
        };
        text.parse::<JobId>().map(Self).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                format!("{text:?} is not a job id (uuid)"),
            )
            .field("id", "not a job id (uuid)")
        })
    }
}

async fn load(repo: &dyn JobRepository, id: JobId) -> Result<Job, ApiError> {
    repo.get(id)
        .await
        .map_err(|e| ApiError::storage(&e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}")))
}

// ---- handlers ----------------------------------------------------------------------------

/// Create a job and enqueue its delivery.
///
/// With an `Idempotency-Key`, a retry of the same request answers the job the first call
/// made (200, `Idempotent-Replayed: true`) and creates nothing; the key used with a different
/// request is refused (422 `idempotency_key_reused`).
#[utoipa::path(post, path = "/v1/jobs",
    request_body(content = CreateJob, content_type = "application/json", description = "The storyboard to render. Type errors, missing and unknown fields are refused with 422 naming the field's path."),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry: 1–255 visible ASCII characters, unique per intended job (e.g. a UUID). Scoped to the API key that sends it and remembered for at least 24 h. Within that time the same key with the same request (the storyboard compared as parsed JSON: whitespace and key order do not matter) answers the first call's job with 200 and creates nothing; the same key with a different request is refused with 422 `idempotency_key_reused`.")),
    responses(
        (status = 200, description = "replay: an earlier create with this Idempotency-Key and the same request made this job (shown as it is now); nothing was created. If no worker has started it yet, its delivery was enqueued again (the queue dedups by task name)", body = JobView,
            headers(("Idempotent-Replayed" = String, description = "`true`"), ("Location" = String, description = "the job's URL"))),
        (status = 201, description = "created and enqueued", body = JobView,
            headers(("Location" = String, description = "the job's URL"))),
        (status = 202, description = "created; the queue did not answer clearly, the sweeper re-enqueues it if needed", body = JobView),
        (status = 400, description = "a malformed request, nothing stored: the body is not JSON (`invalid_json`), or the Idempotency-Key is malformed (`invalid_idempotency_key`, field `Idempotency-Key`: empty, over 255 characters, not visible ASCII, or sent twice)", body = ApiErrorBody),
        (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 413, description = "the body is over 1 MiB (`body_too_large`)", body = ApiErrorBody),
        (status = 415, description = "the body is not declared JSON (`unsupported_media_type`): send `Content-Type: application/json`", body = ApiErrorBody),
        (status = 422, description = "a well-formed JSON body that cannot be accepted, nothing stored: not `{\"storyboard\": {…}}` (`invalid_request`, fields name the body's keys); a storyboard with a value of the wrong type, a missing or unknown field, or a value out of its limits (`invalid_storyboard`, fields name paths in the storyboard such as `frame.width` or `segments[2].slide`); or the Idempotency-Key was first used with a different request (`idempotency_key_reused`, field `Idempotency-Key`)", body = ApiErrorBody),
        (status = 502, description = "the queue refused: the job is failed (enqueue_failed)", body = JobView),
        (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn create_job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    require_json(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over the limit of {MAX_BODY} bytes"),
            )
        } else {
            // The client stopped sending, or the connection broke.
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body could not be read to its end",
            )
        }
    })?;
    let new = NewJob {
        id: JobId::new(),
        input: read_create(&body)?,
    };
    let (job, replayed) = match key {
        None => (
            state
                .repo
                .create(new)
                .await
                .map_err(|e| ApiError::storage(&e))?,
            false,
        ),
        Some(key) => {
            let idempotent = IdempotentRequest {
                scope: caller.scope,
                fingerprint: request_fingerprint(&new.input),
                key,
                retention: IDEMPOTENCY_KEY_RETENTION,
            };
            match state
                .repo
                .create_idempotent(new, &idempotent)
                .await
                .map_err(|e| ApiError::storage(&e))?
            {
                IdempotentOutcome::Created(job) => (job, false),
                IdempotentOutcome::Existing(job) => (job, true),
                IdempotentOutcome::KeyReused { job_id } => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        format!(
                            "Idempotency-Key {:?} was used for a different request (job {job_id}); \
                             use a new key for a new job",
                            idempotent.key.as_str()
                        ),
                    )
                    .field("Idempotency-Key", "already used for a different request"));
                }
            }
        }
    };
    let id = job.id;
    // A replay answers the job as it is. One that no worker has started gets its delivery
    // enqueued again, exactly as the create did: the first call may have died between its
    // insert and its enqueue, and the queue dedups the task by name if it does exist.
    if replayed && !(job.status == JobStatus::Queued && job.attempts == 0) {
        return Ok(job_response(StatusCode::OK, &job, true));
    }
    // The job exists before its task, so a delivery never finds nothing. Only a confirmed
    // refusal fails it; an unclear answer leaves it queued for the sweeper.
    let (status, job) = match state.queue.enqueue(id, job.delivery_generation).await {
        Ok(_) if replayed => (StatusCode::OK, job),
        Ok(_) => (StatusCode::CREATED, job),
        Err(EnqueueError::Unknown(e)) => {
            tracing::warn!(job.id = %id, error = %e, "enqueue unclear; the sweeper will re-enqueue if no delivery comes");
            let status = if replayed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, job)
        }
        Err(EnqueueError::Rejected(e)) if replayed => {
            // Refused now, but the first call's task may exist and be pending: failing the
            // job could discard a delivery. The sweeper re-enqueues it if none comes.
            tracing::error!(job.id = %id, error = %e, "re-enqueue of a replayed create refused; the job stays queued for the sweeper");
            (StatusCode::OK, job)
        }
        Err(EnqueueError::Rejected(e)) => {
            tracing::error!(job.id = %id, error = %e, "enqueue refused; failing the job");
            let error = JobError::new(
                domain::ErrorCode::new("enqueue_failed").map_err(|_| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "error code")
                })?,
                format!("the queue refused the task: {e}"),
            );
            state
                .repo
                .fail_unstarted(id, error)
                .await
                .map_err(|e| ApiError::storage(&e))?;
            (
                StatusCode::BAD_GATEWAY,
                load(state.repo.as_ref(), id).await?,
            )
        }
    };
    Ok(job_response(status, &job, replayed))
}

/// A create's body must say it is JSON (`application/json`, or a `+json` type): 415
/// otherwise, so a form post (curl's `-d` without a header) gets a clear answer instead of
/// a guess.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let json = essence.as_deref().is_some_and(|essence| {
        essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
    });
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        )
        .field("Content-Type", "must be application/json"))
    }
}

/// A create's body, read in three steps, each refusal naming the field at fault: JSON at all
/// (400 `invalid_json`), the shape `{"storyboard": {…}}` (422 `invalid_request`), then the
/// storyboard — its types and fields, then its limits (422 `invalid_storyboard`, paths from
/// the storyboard). Returns the storyboard as sent, which is what the job stores.
fn read_create(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let invalid_request = |field: &str, reason: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the body must be {{\"storyboard\": {{…}}}}; {field}: {reason}"),
        )
        .field(field, reason)
    };
    let request: CreateJob =
        decode::from_value(&value).map_err(|p| invalid_request(&p.field, &p.reason))?;
    if !request.storyboard.is_object() {
        return Err(invalid_request(
            "storyboard",
            &format!("expected an object, got {}", json_kind(&request.storyboard)),
        ));
    }
    let invalid_storyboard = |fields: Vec<FieldErrorView>| {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_storyboard",
            format!("invalid storyboard: {message}"),
        );
        error.1.fields = fields;
        error
    };
    let board: Storyboard = decode::from_value(&request.storyboard).map_err(|p| {
        invalid_storyboard(vec![FieldErrorView {
            field: p.field,
            reason: p.reason,
        }])
    })?;
    board.validate().map_err(|e| {
        invalid_storyboard(
            e.0.into_iter()
                .map(|f| FieldErrorView {
                    field: f.field,
                    reason: f.reason,
                })
                .collect(),
        )
    })?;
    Ok(request.storyboard)
}

/// What a JSON value is, for a message.
fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The answer to a create: the job, its `Location`, and `Idempotent-Replayed` on a replay.
fn job_response(status: StatusCode, job: &Job, replayed: bool) -> Response {
    let mut response = (status, Json(JobView::from(job))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// The create's `Idempotency-Key`, if sent. A malformed one is a malformed request (400),
/// like a body that is not JSON: the key is checked before the body is read.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |reason: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("Idempotency-Key: {reason}"),
        )
        .field("Idempotency-Key", reason)
    };
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("send exactly one"));
    }
    let text = value.to_str().map_err(|_| {
        invalid("only visible ASCII characters (! to ~), no spaces or control characters")
    })?;
    IdempotencyKey::new(text)
        .map(Some)
        .map_err(|e| invalid(&e.reason))
}

/// What tells a retried create from a different one: SHA-256 of a version tag and the
/// canonical JSON of the parsed request `{"storyboard": …}` — object keys sorted by their
/// UTF-8 bytes, no whitespace, strings and numbers as serde_json writes them. Two bodies that
/// differ only in whitespace, key order or string escapes are the same request; any other
/// difference (a value, an added field, `1` against `1.0`) makes another.
pub fn request_fingerprint(storyboard: &serde_json::Value) -> [u8; 32] {
    let mut canonical = Vec::with_capacity(1024);
    canonical.extend_from_slice(b"{\"storyboard\":");
    write_canonical(storyboard, &mut canonical);
    canonical.push(b'}');
    let mut hash = Sha256::new();
    // The version tag: a change of the rule above must change every fingerprint.
    hash.update(b"video-worker create v1\n");
    hash.update(&canonical);
    hash.finalize().into()
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Display writes a scalar as compact JSON.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the job", body = JobView), (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 404, description = "no such job (`not_found`)", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn get_job(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    let job = load(state.repo.as_ref(), id).await?;
    Ok(Json(JobView::from(&job)))
}

/// The parameters `GET /v1/jobs` takes.
const LIST_PARAMS: &str = "status, limit and cursor";

/// The page size when `limit` is left out.
const DEFAULT_LIMIT: u32 = 50;

/// `GET /v1/jobs`'s query, read pair by pair so that each refusal names its parameter:
/// an unknown one, one given twice, or a value that does not parse. An empty value
/// (`?status=`) is the same as leaving the parameter out, as forms send it.
fn list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let (mut status, mut limit, mut after) = (None, DEFAULT_LIMIT, None);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            problems.push((name.clone(), "given more than once".into()));
            continue;
        }
        match name.as_str() {
            "status" | "limit" | "cursor" if value.is_empty() => {}
            "status" => match value.parse::<JobStatus>() {
                Ok(s) => status = Some(s),
                Err(e) => problems.push((name.clone(), e.reason)),
            },
            "limit" => match value.parse::<u32>() {
                Ok(n) => limit = n,
                Err(_) => problems.push((
                    name.clone(),
                    format!(
                        "{value:?} is not a whole number from 1 to {}",
                        ListQuery::MAX_LIMIT
                    ),
                )),
            },
            "cursor" => match decode_cursor(value) {
                Some(c) => after = Some(c),
                None => problems.push((
                    name.clone(),
                    "not a cursor this API gave out: pass a page's next_cursor as it is".into(),
                )),
            },
            _ => problems.push((
                name.clone(),
                format!("unknown parameter; this route takes {LIST_PARAMS}"),
            )),
        }
    }
    let query = match ListQuery::new(status, limit) {
        Ok(query) => Some(query.after(after)),
        Err(e) => {
            problems.push((e.field.into(), e.reason));
            None
        }
    };
    match (query, problems.is_empty()) {
        (Some(query), true) => Ok(query),
        _ => {
            let message = problems
                .iter()
                .map(|(field, reason)| format!("{field}: {reason}"))
                .collect::<Vec<_>>()
                .join("; ");
            Err(problems.into_iter().fold(
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message),
                |error, (field, reason)| error.field(field, reason),
            ))
        }
    }
}

fn encode_cursor(c: &ListCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", c.created_at.to_rfc3339(), c.id))
}

fn decode_cursor(text: &str) -> Option<ListCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once('|')?;
    Some(ListCursor {
        created_at: chrono::DateTime::parse_from_rfc3339(at)
            .ok()?
            .with_timezone(&chrono::Utc),
        id: id.parse().ok()?,
    })
}

/// Jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs",
    params(
        ("status" = Option<String>, Query, description = "only jobs with this status: `queued`, `running`, `succeeded`, `failed` or `canceled`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "a previous page's `next_cursor`, as it was given")),
    responses((status = 200, description = "a page of jobs, newest first", body = JobList),
        (status = 400, description = "a query parameter is unknown, given twice or not valid (`invalid_query`; each named in `fields`). An empty value is the same as leaving the parameter out", body = ApiErrorBody),
        (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(pairs) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is not a URL-encoded form",
        )
    })?;
    let query = list_query(&pairs)?;
    let page = state
        .repo
        .list(&query)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

/// Cancel a job (idempotent).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the outcome and the job now; idempotent: a repeat answers `already_requested` or `already_finished`", body = CancelView),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody), (status = 404, description = "no such job (`not_found`)", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn cancel_job(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<CancelView>, ApiError> {
    let outcome = state
        .repo
        .request_cancel(id)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    let outcome = match outcome {
        CancelOutcome::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no job {id}"),
            ));
        }
        CancelOutcome::Canceled => "canceled",
        CancelOutcome::Requested { first: true } => "cancel_requested",
        CancelOutcome::Requested { first: false } => "already_requested",
        CancelOutcome::AlreadyTerminal(_) => "already_finished",
    };
    let job = load(state.repo.as_ref(), id).await?;
    Ok(Json(CancelView {
        outcome: outcome.into(),
        job: JobView::from(&job),
    }))
}

/// Live progress as server-sent events: `progress` events with the job, then one `done`
/// event at the terminal state, then the stream ends.
///
/// Each event is `event: progress` or `event: done` with one `data:` line, the job as a
/// `JobView` in JSON. A `progress` event is sent when what the job shows changes — never
/// twice alike (a change of `updated_at` alone is no change). `done` comes once, with the
/// job in its terminal state (`succeeded`, `failed` or `canceled`; once succeeded `stage`,
/// the segment and `message` are absent and `percent` is 100), and then the stream ends. A
/// stream opened on a finished job sends only `done`. Comment lines keep an idle
/// connection open every 15 s.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "`text/event-stream`: `progress` events, each with the job (JobView) as it changes, then one `done` event with the job in its terminal state, then the end of the stream", content_type = "text/event-stream"),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody), (status = 404, description = "no such job (`not_found`)", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn job_events(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    // Subscribe before the first read: a change in between is not missed.
    let mut updates = state.feed.0.subscribe();
    let first = load(state.repo.as_ref(), id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    let repo = state.repo.clone();
    tokio::spawn(async move {
        let mut last: Option<JobView> = None;
        let mut job = first;
        loop {
            let view = JobView::from(&job);
            let terminal = job.status.is_terminal();
            if last
                .as_ref()
                .is_none_or(|last| !shows_the_same(last, &view))
            {
                let name = if terminal { "done" } else { "progress" };
                let Ok(data) = serde_json::to_string(&view) else {
                    return;
                };
                if tx
                    .send(Ok(Event::default().event(name).data(data)))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
                last = Some(view);
            }
            if terminal {
                return;
            }
            // Wake on a notification for this job, or every few seconds regardless (the
            // notification connection may be down; a re-read is cheap).
            let wait = async {
                loop {
                    match updates.recv().await {
                        Ok(changed) if changed == id => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            tokio::select! {
                () = wait => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                () = tx.closed() => return,
            }
            match repo.get(id).await {
                Ok(Some(now)) => job = now,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the job failed; retrying")
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Whether two views of a job show a client the same thing. `updated_at` moves with every
/// heartbeat, and a re-read after a notification or the periodic poll finds it changed
/// when nothing else did: no news, so no event.
fn shows_the_same(a: &JobView, b: &JobView) -> bool {
    let same_time = |v: &JobView| JobView {
        updated_at: String::new(),
        ..v.clone()
    };
    same_time(a) == same_time(b)
}

/// The film, streamed.
#[utoipa::path(get, path = "/v1/jobs/{id}/artifact", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the MP4", content_type = "video/mp4"),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 404, description = "no such job (`not_found`), or its film is not in the store (`artifact_missing`)", body = ApiErrorBody),
        (status = 409, description = "the job has not succeeded (`not_ready`)", body = ApiErrorBody),
        (status = 503, description = "the job store or the artifact store is unavailable (`unavailable`)", body = ApiErrorBody)),
    security(("api_key" = [])))]
async fn job_artifact(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    let job = load(state.repo.as_ref(), id).await?;
    let key = match (job.status, job.artifact_key) {
        (JobStatus::Succeeded, Some(key)) => key,
        (status, _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!("the job is {status}; there is a film only once it succeeded"),
            ));
        }
    };
    let path = object_store::path::Path::parse(&key).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "bad artifact key",
        )
    })?;
    let object = state.artifacts.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => ApiError::new(
            StatusCode::NOT_FOUND,
            "artifact_missing",
            "the film is not in the store",
        ),
        other => {
            tracing::error!(error = %other, "artifact store");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the artifact store is unavailable",
            )
        }
    })?;
    let size = object.meta.size;
    let body = Body::from_stream(object.into_stream());
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.mp4\"", job.id)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, body).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "video-worker jobs API", description = "Create narrated-video jobs from storyboards, follow their progress, cancel them and download the films."),
    paths(create_job, get_job, list_jobs, cancel_job, job_events, job_artifact),
    components(schemas(JobView, CreateJob, JobList, CancelView, ApiErrorBody, FieldErrorView)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Ready while the job store answers within a second.
async fn ready(State(state): State<ApiState>) -> Response {
    let probe = state.repo.get(JobId::new());
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}

async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_only_their_values() {
        let keys = ApiKeys::new(&["alpha-key-123".into(), "beta-key-456".into()]);
        assert!(keys.accepts("alpha-key-123"));
        assert!(keys.accepts("beta-key-456"));
        assert!(!keys.accepts("alpha-key-12"));
        assert!(!keys.accepts(""));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = ListCursor {
            created_at: chrono::Utc::now(),
            id: JobId::new(),
        };
        let back = decode_cursor(&encode_cursor(&c)).unwrap();
        assert_eq!(back.id, c.id);
        assert_eq!(
            back.created_at.timestamp_micros(),
            c.created_at.timestamp_micros()
        );
        assert!(decode_cursor("!!!").is_none());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x|y")).is_none());
    }

    #[test]
    fn the_fingerprint_ignores_whitespace_and_key_order_but_not_values() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": [1, "x"]}"#)
                .unwrap();
        let b: serde_json::Value = serde_json::from_str(
            "{\"s\":[1,\"\\u0078\"],\"frame\":{\"h\":2,\"w\":1},\n \"title\":\"A\"}",
        )
        .unwrap();
        assert_eq!(request_fingerprint(&a), request_fingerprint(&b));
        for other in [
            r#"{"title": "B", "frame": {"w": 1, "h": 2}, "s": [1, "x"]}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": ["x", 1]}"#,
            r#"{"title": "A", "frame": {"w": 1.0, "h": 2}, "s": [1, "x"]}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": [1, "x"], "extra": null}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2, "x": {}}, "s": [1, "x"]}"#,
        ] {
            let other: serde_json::Value = serde_json::from_str(other).unwrap();
            assert_ne!(
                request_fingerprint(&a),
                request_fingerprint(&other),
                "{other}"
            );
        }
    }

    #[test]
    fn a_malformed_idempotency_key_is_a_bad_request() {
        let with = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
            }
            idempotency_key(&headers)
        };
        assert!(with(&[]).unwrap().is_none());
        assert_eq!(with(&[b"order-42"]).unwrap().unwrap().as_str(), "order-42");
        let long = vec![b'k'; 256];
        for bad in [
            &[&b""[..]][..],
            &[&long[..]],
            &[b"two words"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                (e.0, e.1.error.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_openapi_document_describes_idempotent_creates() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let create = &doc["paths"]["/v1/jobs"]["post"];
        let header = create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .expect("the header is documented");
        assert_eq!(header["in"], "header");
        assert_eq!(header["required"], false);
        let replay = &create["responses"]["200"];
        assert!(
            replay["headers"]["Idempotent-Replayed"].is_object(),
            "{replay}"
        );
        let refused = create["responses"]["422"]["description"].as_str().unwrap();
        assert!(refused.contains("idempotency_key_reused"), "{refused}");
    }

    fn job_at(status: JobStatus) -> Job {
        let mut job = Job::new(JobId::new(), serde_json::json!({}), chrono::Utc::now());
        job.status = status;
        job.progress = Some(domain::ProgressReport {
            stage: domain::Stage::Render,
            percent: domain::Percent::new(40).unwrap(),
            segment: Some(domain::Segment::new(3, 10).unwrap()),
            message: Some("render: 4 of 10 segments".into()),
        });
        job
    }

    #[test]
    fn a_succeeded_job_shows_no_stage_and_a_stopped_one_shows_where_it_stopped() {
        let mut done = job_at(JobStatus::Succeeded);
        if let Some(p) = done.progress.as_mut() {
            p.percent = domain::Percent::FULL;
        }
        let view = JobView::from(&done);
        assert_eq!(
            (
                view.percent,
                view.stage,
                view.segment_index,
                view.segment_total,
                view.message
            ),
            (100, None, None, None, None)
        );
        for status in [JobStatus::Running, JobStatus::Failed, JobStatus::Canceled] {
            let view = JobView::from(&job_at(status));
            assert_eq!(
                (
                    view.percent,
                    view.stage.as_deref(),
                    view.segment_index,
                    view.segment_total
                ),
                (40, Some("render"), Some(3), Some(10)),
                "{status}"
            );
        }
    }

    #[test]
    fn views_that_differ_only_in_updated_at_show_the_same() {
        let job = job_at(JobStatus::Running);
        let a = JobView::from(&job);
        let mut later = job.clone();
        later.updated_at += chrono::Duration::seconds(5);
        assert!(shows_the_same(&a, &JobView::from(&later)));
        let mut moved = later;
        moved.progress = Some(domain::ProgressReport {
            stage: domain::Stage::Render,
            percent: domain::Percent::new(41).unwrap(),
            segment: Some(domain::Segment::new(4, 10).unwrap()),
            message: None,
        });
        assert!(!shows_the_same(&a, &JobView::from(&moved)));
    }

    #[test]
    fn every_error_has_a_fields_key() {
        let body = serde_json::to_value(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "not JSON").1,
        )
        .unwrap();
        assert_eq!(body["fields"], serde_json::json!([]));
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        for path in [
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{id}/events",
            "/v1/jobs/{id}/artifact",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
