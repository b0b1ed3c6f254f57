//! `GET /v1/jobs/{id}/artifact` and `GET /v1/jobs/{id}/captions`: a succeeded job's film
//! and its WebVTT captions (published beside it), streamed from the object store.

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
        (status = 500, description = "the job's stored key is not a valid object path (`internal`); not expected, as only the worker writes it", body = ApiErrorBody),
        (status = 503, description = "the job store or the artifact store is unavailable (`unavailable`)", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn job_artifact(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    download(&state, id, Download::Film).await
}

/// The captions, streamed.
#[utoipa::path(get, path = "/v1/jobs/{id}/captions", params(("id" = String, Path, description = "the job's id (a UUID)")),
    responses((status = 200, description = "the film's captions as WebVTT: one cue per sentence, at most two lines of 42 characters, timed from the narration", content_type = "text/vtt; charset=utf-8"),
        (status = 400, description = "the id is not a job id (`invalid_id`, field `id`)", body = ApiErrorBody), (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody),
        (status = 404, description = "no such job (`not_found`), or its captions are not in the store (`captions_missing`)", body = ApiErrorBody),
        (status = 409, description = "the job has not succeeded (`not_ready`)", body = ApiErrorBody),
        (status = 500, description = "the job's stored key is not a valid object path (`internal`); not expected, as only the worker writes it", body = ApiErrorBody),
        (status = 503, description = "the job store or the artifact store is unavailable (`unavailable`)", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn job_captions(
    State(state): State<ApiState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    download(&state, id, Download::Captions).await
}

/// What a download route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Download {
    Film,
    Captions,
}

impl Download {
    fn content_type(self) -> &'static str {
        match self {
            Self::Film => "video/mp4",
            Self::Captions => "text/vtt; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Film => "mp4",
            Self::Captions => "vtt",
        }
    }
}

async fn download(
    state: &ApiState,
    id: domain::JobId,
    what: Download,
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
    let key = match what {
        Download::Film => key,
        Download::Captions => video::publish::captions_key(&key),
    };
    let path = object_store::path::Path::parse(&key).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "bad artifact key",
        )
    })?;
    let object = state.artifacts.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => match what {
            Download::Film => ApiError::new(
                StatusCode::NOT_FOUND,
                "artifact_missing",
                "the film is not in the store",
            ),
            Download::Captions => ApiError::new(
                StatusCode::NOT_FOUND,
                "captions_missing",
                "the film's captions are not in the store",
            ),
        },
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
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(what.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.{}\"",
        job.id,
        what.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, body).into_response())
}
