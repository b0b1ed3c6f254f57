//! One job: `GET /v1/jobs/{id}` and `POST /v1/jobs/{id}/cancel`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::CancelOutcome;

use crate::ApiState;
use crate::error::{ApiError, ApiErrorBody, JobIdPath, load};
use crate::views::{CancelView, JobView};

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the job", body = JobView), (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 404, description = "no such job (`not_found`)", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn get_job(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    let job = load(state.repo.as_ref(), id).await?;
    Ok(Json(JobView::from(&job)))
}

/// Cancel a job (idempotent).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the outcome and the job now; idempotent: a repeat answers `already_requested` or `already_finished`", body = CancelView),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody), (status = 404, description = "no such job (`not_found`)", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn cancel_job(
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
