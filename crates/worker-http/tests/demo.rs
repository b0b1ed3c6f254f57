//! The `demo` command and its in-process queue.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::process::Command;
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
        assert_eq!(h(i, "x-cloudtasks-queuename").as_deref(), Some("demo"));
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

fn demo(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_video-worker"))
        .arg("demo")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn demo_renders_a_storyboard_to_a_narrated_mp4_and_prints_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let board = serde_json::json!({
        "version": 1,
        "title": "Demo test",
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": [
            {"narration": "First, a short sentence.", "slide": {"heading": "One"}},
            {"narration": "Then a second one.", "slide": {"heading": "Two", "bullets": ["a", "b"]}}
        ]
    });
    std::fs::write(dir.path().join("board.json"), board.to_string()).unwrap();
    let out = demo(
        &["--storyboard", "board.json", "--out", "films"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        path.ends_with("/final.mp4") && path.contains("/films/"),
        "{path}"
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &path,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["h264", "aac"]
    );
    assert!(stderr.contains("done in"), "{stderr}");
}

#[test]
fn demo_with_an_invalid_storyboard_names_the_field_and_renders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"version":1,"title":"","segments":[]}"#,
    )
    .unwrap();
    let out = demo(&["--storyboard", "bad.json", "--out", "films"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("title") && stderr.contains("segments"),
        "{stderr}"
    );
    assert!(!dir.path().join("films").exists(), "nothing was written");
    let out = demo(&["--storyboard", "missing.json"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
