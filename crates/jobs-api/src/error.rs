//! The one error shape every answer shares, `{error, message, fields}`, and the parsing of
//! a job id in the path, whose refusal is such an error too.

use axum::Json;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{Job, JobId, JobRepository, RepoError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) ApiErrorBody);

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
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
    pub(crate) fn field(mut self, field: impl Into<String>, reason: impl Into<String>) -> Self {
        self.1.fields.push(FieldErrorView {
            field: field.into(),
            reason: reason.into(),
        });
        self
    }

    pub(crate) fn storage(e: &RepoError) -> Self {
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

/// The `{id}` of a job route, parsed. Anything that is not a job id — including a
/// percent-encoding that does not decode to text, which axum would refuse in plain text —
/// is a 400 `invalid_id` naming `id`.
#[derive(Debug)]
pub(crate) struct JobIdPath(pub(crate) JobId);

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

pub(crate) async fn load(repo: &dyn JobRepository, id: JobId) -> Result<Job, ApiError> {
    repo.get(id)
        .await
        .map_err(|e| ApiError::storage(&e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_fields_key() {
        let body = serde_json::to_value(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "not JSON").1,
        )
        .unwrap();
        assert_eq!(body["fields"], serde_json::json!([]));
    }
}
