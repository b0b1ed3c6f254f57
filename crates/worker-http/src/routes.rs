//! The worker's routes: `POST /jobs/run` (the queue's push), `POST /sweep` (one sweep pass,
//! [`crate::sweep_route`]), `GET /health`, `GET /ready`, `GET /metrics`. No path ends in `z`: Cloud Run reserves those.
//!
//! Every answer to a push is designed for the queue, which treats 2xx as done and retries
//! everything else: 2xx when a retry cannot help, non-2xx only when one can (SPEC §4).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::JobId;
use runner::RunOutcome;
use serde_json::json;
use tracing::Instrument;

use crate::app::AppState;
use queue::TaskHeaders;

pub(crate) fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/jobs/run", post(run_job))
        .route(
            crate::sweep_route::SWEEP_PATH,
            post(crate::sweep_route::handle),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Outermost: every line logged for a request, the job's included, carries its trace.
        .layer(axum::middleware::from_fn(crate::telemetry::trace_request))
        .with_state(state)
}

/// Why a push body names no job.
#[derive(Debug, thiserror::Error)]
enum PushBodyError {
    #[error("body is not {{\"job_id\": \"<uuid>\"}}: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("body is not {{\"job_id\": \"<uuid>\"}}: not a JSON object")]
    NotAnObject,
    #[error("body is not {{\"job_id\": \"<uuid>\"}}: job_id is not a string")]
    IdNotAString,
    #[error("body is not {{\"job_id\": \"<uuid>\"}}: no job_id")]
    NoId,
}

/// The job id of a push body, which must be a JSON object with a string `job_id` (other
/// members are ignored). Read by hand, not through a derived struct: serde would also accept
/// a sequence (`["<uuid>"]`) for a struct, and run a job for a body that is not an object.
fn job_id_of(body: &[u8]) -> Result<String, PushBodyError> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let serde_json::Value::Object(mut members) = value else {
        return Err(PushBodyError::NotAnObject);
    };
    match members.remove("job_id") {
        Some(serde_json::Value::String(id)) => Ok(id),
        Some(_) => Err(PushBodyError::IdNotAString),
        None => Err(PushBodyError::NoId),
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    metrics::counter!("video_worker_push_responses_total", "code" => status.as_str().to_owned())
        .increment(1);
    (status, axum::Json(body)).into_response()
}

/// A push that no retry can fix: acknowledge it so the queue stops, and say why.
fn rejected(reason: String) -> Response {
    tracing::error!(%reason, "push rejected");
    metrics::counter!("video_worker_push_rejected_total").increment(1);
    answer(
        StatusCode::OK,
        json!({"status": "rejected", "reason": reason}),
    )
}

async fn run_job(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let task = TaskHeaders::from_headers(&headers);
    let span = tracing::info_span!(
        "push",
        job.id = tracing::field::Empty,
        queue = task.queue.as_deref(),
        task.name = task.task.as_deref(),
        task.retry_count = task.retry_count,
        task.execution_count = task.execution_count,
        task.eta = task.eta,
        task.previous_response = task.previous_response,
    );
    async move {
        // Nothing is read or written before the caller is known.
        if let Err(error) = app.auth.authenticate(&headers).await {
            let status = error.status();
            tracing::warn!(%error, code = status.as_u16(), "push refused");
            return answer(
                status,
                json!({"status": "unauthorized", "error": error.to_string()}),
            );
        }
        let job_id = match job_id_of(&body) {
            Ok(id) => id,
            Err(reason) => return rejected(reason.to_string()),
        };
        let job_id: JobId = match job_id.parse() {
            Ok(id) => id,
            Err(e) => return rejected(e.to_string()),
        };
        tracing::Span::current().record("job.id", tracing::field::display(job_id));
        if app.shutdown.is_cancelled() {
            return unavailable("shutting_down", "this instance is shutting down");
        }
        // The job runs on a task of its own: if the queue hangs up (dispatch deadline), the
        // handler's future is dropped but the job goes on and finishes its lease protocol.
        let runner = app.runner.clone();
        let shutdown = app.shutdown.clone();
        let job = app
            .jobs
            .spawn(async move { runner.run(job_id, &shutdown).await }.in_current_span());
        match job.await {
            Ok(outcome) => respond(job_id, outcome),
            Err(e) => {
                tracing::error!(error = %e, "the job task failed");
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"status": "error"}),
                )
            }
        }
    }
    .instrument(span)
    .await
}

fn unavailable(status: &str, reason: &str) -> Response {
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": status, "reason": reason}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

fn respond(job_id: JobId, outcome: RunOutcome) -> Response {
    let id = job_id.to_string();
    match outcome {
        RunOutcome::Succeeded { artifact_key } => answer(
            StatusCode::OK,
            json!({"status": "succeeded", "job_id": id, "artifact_key": artifact_key}),
        ),
        RunOutcome::Failed { error } => answer(
            StatusCode::OK,
            json!({"status": "failed", "job_id": id, "error_code": error.code.as_str(), "error_message": error.message}),
        ),
        RunOutcome::Canceled => answer(StatusCode::OK, json!({"status": "canceled", "job_id": id})),
        RunOutcome::Skipped(status) => answer(
            StatusCode::OK,
            json!({"status": "skipped", "job_id": id, "job_status": status.as_str()}),
        ),
        RunOutcome::NotFound => {
            tracing::error!("push for a job that does not exist");
            answer(StatusCode::OK, json!({"status": "not_found", "job_id": id}))
        }
        RunOutcome::Superseded => answer(
            StatusCode::OK,
            json!({"status": "superseded", "job_id": id}),
        ),
        RunOutcome::Busy { retry_after, .. } => {
            let secs = retry_after.as_secs().max(1);
            let mut response = answer(
                StatusCode::CONFLICT,
                json!({"status": "busy", "job_id": id, "retry_after_seconds": secs}),
            );
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        RunOutcome::Retry { error } => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "retry", "job_id": id, "error_code": error.code.as_str()}),
        ),
        RunOutcome::ShuttingDown => unavailable("shutting_down", "this instance is shutting down"),
        RunOutcome::Broken { reason } => {
            // The store refused the acquire and this worker holds no lease, so the job cannot
            // be ended from here: a 2xx would leave it without a task. A retry can get a
            // lease (then the job is failed, fenced) or find it ended by the attempt limit.
            tracing::error!(%reason, "job row unusable; no lease to end it with");
            metrics::counter!("video_worker_broken_jobs_total").increment(1);
            unavailable("error", "the job's stored data is invalid")
        }
        RunOutcome::Unavailable { reason } => {
            tracing::error!(%reason, "cannot work: storage unavailable");
            unavailable("unavailable", "the job store is unavailable")
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(app): State<AppState>) -> Response {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    if app.readiness.check().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
