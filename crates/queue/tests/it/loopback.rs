//! The loopback queue delivers like Cloud Tasks: its headers, and a retry on every non-2xx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use domain::JobId;
use queue::loopback::LoopbackQueue;

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn flaky(State(seen): State<Seen>, headers: HeaderMap) -> axum::response::Response {
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(headers);
        seen.len()
    };
    match n {
        1 => (StatusCode::CONFLICT, [("retry-after", "0")], "{}").into_response(),
        2 => (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response(),
        _ => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "succeeded"})),
        )
            .into_response(),
    }
}

#[tokio::test]
async fn the_loopback_queue_retries_like_cloud_tasks_until_a_2xx() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/jobs/run", axum::routing::post(flaky))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut queue = LoopbackQueue::new(format!("http://127.0.0.1:{port}/jobs/run"));
    queue.min_backoff = Duration::from_millis(10);
    let delivered = queue.deliver(JobId::new()).await.unwrap();
    assert_eq!((delivered.status, delivered.attempts), (200, 3));
    let seen = seen.lock().unwrap();
    let h = |i: usize, name: &str| seen[i].get(name).map(|v| v.to_str().unwrap().to_owned());
    for i in 0..3 {
        assert_eq!(h(i, "x-cloudtasks-queuename").as_deref(), Some("loopback"));
        assert_eq!(h(i, "x-cloudtasks-taskname"), h(0, "x-cloudtasks-taskname"));
        assert_eq!(h(i, "x-cloudtasks-taskretrycount"), Some(i.to_string()));
        assert_eq!(h(i, "x-cloudtasks-taskexecutioncount"), Some(i.to_string()));
        assert!(h(i, "x-cloudtasks-tasketa").unwrap().parse::<f64>().is_ok());
    }
    assert_eq!(h(0, "x-cloudtasks-taskpreviousresponse"), None);
    assert_eq!(
        h(1, "x-cloudtasks-taskpreviousresponse").as_deref(),
        Some("409")
    );
    assert_eq!(
        h(2, "x-cloudtasks-taskpreviousresponse").as_deref(),
        Some("503")
    );
}

type Open = Arc<std::sync::atomic::AtomicBool>;

async fn gated(State(open): State<Open>) -> axum::response::Response {
    if open.load(std::sync::atomic::Ordering::SeqCst) {
        (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
    } else {
        (StatusCode::CONFLICT, [("retry-after", "0")], "{}").into_response()
    }
}

#[tokio::test]
async fn the_loopback_queue_knows_which_tasks_are_pending_until_delivered() {
    use queue::{Enqueued, Enqueuer, TaskState};
    let open: Open = Arc::default();
    let app = axum::Router::new()
        .route("/jobs/run", axum::routing::post(gated))
        .with_state(open.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut queue = LoopbackQueue::new(format!("http://127.0.0.1:{port}/jobs/run"));
    queue.min_backoff = Duration::from_millis(10);
    queue.max_backoff = Duration::from_millis(50);
    queue.max_attempts = u32::MAX;
    let job = JobId::new();

    assert_eq!(queue.task_state(job, 0).await.unwrap(), TaskState::Gone);
    assert_eq!(queue.enqueue(job, 0).await.unwrap(), Enqueued::Created);
    assert_eq!(
        queue.enqueue(job, 0).await.unwrap(),
        Enqueued::AlreadyExists,
        "a pending name is deduplicated"
    );
    assert_eq!(queue.task_state(job, 0).await.unwrap(), TaskState::Pending);
    assert_eq!(queue.task_state(job, 1).await.unwrap(), TaskState::Gone);
    assert_eq!(queue.live_tasks(), vec![(job, 0)]);

    open.store(true, std::sync::atomic::Ordering::SeqCst);
    while queue.task_state(job, 0).await.unwrap() == TaskState::Pending {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(queue.live_tasks().is_empty(), "a delivered task is gone");
}
