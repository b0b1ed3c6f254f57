//! The router: the `/v1` routes behind the key check, the open routes (`/openapi.json`,
//! `/health`, `/ready`), and JSON answers for axum's own refusals (no route, wrong method,
//! a panic).

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::JobId;

use crate::ApiState;
use crate::artifact::{job_artifact, job_captions};
use crate::create::create_job;
use crate::error::ApiError;
use crate::events::job_events;
use crate::job::{cancel_job, get_job};
use crate::keys::require_key;
use crate::list::list_jobs;
use crate::openapi::openapi;

/// Largest accepted request body: a storyboard at its limits fits.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// The API's router.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/events", get(job_events))
        .route("/v1/jobs/{id}/artifact", get(job_artifact))
        .route("/v1/jobs/{id}/captions", get(job_captions))
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

/// Ready while the job store answers within a second.
pub(crate) async fn ready(State(state): State<ApiState>) -> Response {
    let probe = state.repo.get(JobId::new());
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response(),
    }
}
