//! `GET /v1/jobs/{id}/artifact`: a succeeded job's film, streamed from the object store.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::JobStatus;

use crate::ApiState;
use crate::error::{ApiError, ApiErrorBody, JobIdPath, load};

/// The film, streamed.
#[utoipa::path(get, path = "/v1/jobs/{id}/artifact", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the MP4", content_type = "video/mp4"),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 404, description = "no such job (`not_found`), or its film is not in the store (`artifact_missing`)", body = ApiErrorBody),
        (status = 409, description = "the job has not succeeded (`not_ready`)", body = ApiErrorBody),
        (status = 503, description = "the job store or the artifact store is unavailable (`unavailable`)", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn job_artifact(
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
