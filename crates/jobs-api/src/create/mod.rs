//! `POST /v1/jobs`: create a job, idempotently when asked, and enqueue its delivery.

mod body;
pub(crate) mod idempotency;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{IdempotentOutcome, IdempotentRequest, Job, JobError, JobId, JobStatus, NewJob};
use queue::EnqueueError;

use self::body::{read_create, require_json};
use self::idempotency::{
    IDEMPOTENCY_KEY_RETENTION, IDEMPOTENT_REPLAYED, idempotency_key, request_fingerprint,
};
use crate::ApiState;
use crate::error::{ApiError, ApiErrorBody, load};
use crate::keys::Caller;
use crate::routes::MAX_BODY;
use crate::views::{CreateJob, JobView};

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
        (status = 422, description = "a well-formed JSON body that cannot be accepted, nothing stored: not `{\"storyboard\": {…}}` (`invalid_request`, fields name the body's keys); a storyboard with a value of the wrong type, a missing or unknown field, a value out of its limits, a character the embedded fonts cannot draw, slide text that does not fit at the smallest legible size, a formula that cannot be typeset or is not mathematics, or more than 200 formulas (`invalid_storyboard`, fields name paths in the storyboard such as `frame.width`, `segments[2].slide` or `segments[2].beats[1].show`); or the Idempotency-Key was first used with a different request (`idempotency_key_reused`, field `Idempotency-Key`)", body = ApiErrorBody),
        (status = 502, description = "the queue refused: the job is failed (enqueue_failed)", body = JobView),
        (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn create_job(
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
    // Validation lays every slide out (text shaping, formulas typeset): CPU work, up to
    // about a second for a storyboard at its limits (200 formulas at most), so it runs off
    // the async workers.
    let input = tokio::task::spawn_blocking(move || read_create(&body))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the storyboard could not be checked",
            )
        })??;
    let new = NewJob {
        id: JobId::new(),
        input,
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

/// The answer to a create: the job, its `Location`, and `Idempotent-Replayed` on a replay.
pub(crate) fn job_response(status: StatusCode, job: &Job, replayed: bool) -> Response {
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
