//! `POST /sweep`: one sweep pass ([`queue::sweep`]) on the worker's listener, for Cloud
//! Scheduler — on Cloud Run with request-based CPU nothing runs between requests, so the
//! in-process loop would not fire while the service sits at zero.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;

/// The route of one sweep pass on the worker's listener (Cloud Scheduler's target).
pub const SWEEP_PATH: &str = "/sweep";

/// `POST /sweep`: authenticated exactly like a push (the same allow-list or shared token),
/// then one pass; 200 with the [`queue::SweepReport`] as JSON. Nothing is read before the caller
/// is known. A database that is down answers 503 with `Retry-After`, so the scheduler's
/// retry (or the next minute's run) tries again.
pub(crate) async fn handle(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(error) = app.auth.authenticate(&headers).await {
        let status = error.status();
        tracing::warn!(%error, code = status.as_u16(), "sweep refused");
        return (
            status,
            axum::Json(json!({"status": "unauthorized", "error": error.to_string()})),
        )
            .into_response();
    }
    // The pass runs on a task of its own, like a job: if the scheduler hangs up (its attempt
    // deadline), the pass still finishes — a job whose generation advanced gets its task.
    let sweeper = app.sweep.clone();
    let pass = app.jobs.spawn(async move { sweeper.pass().await });
    let Ok(result) = pass.await else {
        tracing::error!("the sweep task failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"status": "error", "reason": "the sweep task failed"})),
        )
            .into_response();
    };
    match result {
        Ok(report) => {
            tracing::info!(?report, "sweep done (POST /sweep)");
            (StatusCode::OK, axum::Json(report)).into_response()
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(error = %e, "sweep failed: storage unavailable");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({"status": "unavailable", "reason": "the job store is unavailable"}),
                ),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "sweep failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"status": "error", "reason": e.to_string()})),
            )
                .into_response()
        }
    }
}
