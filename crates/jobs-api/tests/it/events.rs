//! The event stream ends with the terminal state and never repeats an event (on Postgres:
//! its `NOTIFY` feed and heartbeats are what made events repeat).

use std::sync::Arc;
use std::time::Duration;

use domain::{FinalOutcome, JobId, JobRepository, Percent, ProgressReport, Stage};
use futures_util::StreamExt;
use serde_json::{Value, json};

use jobs_api::testing::TestApi;

use crate::helpers::*;

/// Server-sent events read off a response, whole events at a time however the bytes are cut.
struct Events {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(api: &TestApi, id: &str) -> Self {
        let r = api
            .get(&format!("/v1/jobs/{id}/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(r.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    /// The next event's name and data; `None` once the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut name, mut data) = (String::new(), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            // A guard against a hang, not a measure of speed.
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("no event within 30 s")?;
            self.buffer.extend_from_slice(&chunk.unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_ends_with_the_terminal_state_and_never_repeats_an_event() {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = Arc::new(repo_pg::PgRepository::new(db.pool.clone()));
    let api = serve(repo.clone()).await;
    let created: Value = api
        .post_json(json!({ "storyboard": board() }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_text = created["id"].as_str().unwrap().to_owned();
    let id: JobId = id_text.parse().unwrap();
    let mut events = Events::open(&api, &id_text).await;
    let mut seen = vec![events.next().await.unwrap()];

    let lease = lease(repo.as_ref(), id, "contract-worker").await;
    seen.push(events.next().await.unwrap());

    // Heartbeats change `updated_at` and nothing a client sees; a notification then makes
    // the stream read the job again. That read is no news: no event.
    for _ in 0..3 {
        repo.heartbeat(&lease, Duration::from_secs(60))
            .await
            .unwrap();
        sqlx::query("SELECT pg_notify('video_job_update', $1)")
            .bind(&id_text)
            .execute(&db.pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    repo.report_progress(
        &lease,
        &ProgressReport {
            stage: Stage::Compose,
            percent: Percent::new(90).unwrap(),
            segment: None,
            message: Some("compose: started".into()),
        },
    )
    .await
    .unwrap();
    seen.push(events.next().await.unwrap());
    repo.finalize(
        &lease,
        &FinalOutcome::Succeeded {
            artifact_key: format!("video-jobs/{id}/final.mp4"),
        },
    )
    .await
    .unwrap();
    while let Some(event) = events.next().await {
        seen.push(event);
    }

    let summary: Vec<(String, String, Value, u64)> = seen
        .iter()
        .map(|(name, job)| {
            (
                name.clone(),
                job["status"].as_str().unwrap().to_owned(),
                job["stage"].clone(),
                job["percent"].as_u64().unwrap(),
            )
        })
        .collect();
    let progress = |status: &str, stage: Value, percent: u64| {
        ("progress".to_owned(), status.to_owned(), stage, percent)
    };
    assert_eq!(
        summary,
        vec![
            progress("queued", Value::Null, 0),
            progress("running", Value::Null, 0),
            progress("running", json!("compose"), 90),
            ("done".to_owned(), "succeeded".to_owned(), Value::Null, 100),
        ],
        "one event per visible change, and `done` without the stale stage: {seen:#?}"
    );
    let done = &seen[3].1;
    assert_eq!(
        (
            &done["message"],
            &done["segment_index"],
            &done["artifact_url"]
        ),
        (
            &Value::Null,
            &Value::Null,
            &json!(format!("/v1/jobs/{id}/artifact"))
        ),
        "{done}"
    );
    // What GET answers is what `done` said.
    let now: Value = api
        .get(&format!("/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&now["status"], &now["stage"]),
        (&json!("succeeded"), &Value::Null)
    );

    // A stream opened on the finished job sends `done` alone.
    let mut again = Events::open(&api, &id_text).await;
    let (name, job) = again.next().await.unwrap();
    assert_eq!(
        (name.as_str(), &job["status"]),
        ("done", &json!("succeeded"))
    );
    assert!(again.next().await.is_none());
}
