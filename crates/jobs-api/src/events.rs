//! Live progress: the process's one subscription to job updates ([`UpdateFeed`]) and
//! `GET /v1/jobs/{id}/events`, the server-sent events it feeds.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::{JobId, JobRepository};
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::ApiState;
use crate::error::{ApiError, ApiErrorBody, JobIdPath, load};
use crate::views::{JobView, shows_the_same};

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
pub(crate) async fn job_events(
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
