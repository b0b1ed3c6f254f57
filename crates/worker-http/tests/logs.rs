//! The log lines Cloud Run collects, read from the real binaries' stderr: `serve` handling a
//! push and `api` handling a request, each sent with a trace header. Every line is one JSON
//! object with Cloud Logging's `severity`; every line logged while handling the request
//! carries its trace (`logging.googleapis.com/trace` under `GOOGLE_CLOUD_PROJECT`) and span.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TOKEN, free_port};
use serde_json::Value;

const PROJECT: &str = "log-test-project";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const KEY: &str = "log-test-api-key-00001";

/// A child process whose stderr is read to its end once it is stopped, with a work dir of
/// its own (two `serve` processes may not share one).
struct Logged(
    Child,
    #[allow(dead_code)] // held for its Drop: the dir lives as long as the process
    tempfile::TempDir,
);

impl Logged {
    fn start(command: &mut Command) -> Self {
        let work = tempfile::tempdir().unwrap();
        #[allow(clippy::zombie_processes)] // stopped and reaped by `lines` or on drop
        let child = command
            .env("VIDEO_WORKER_WORK_DIR", work.path())
            .env("VIDEO_WORKER_LOG_FORMAT", "json")
            .env("GOOGLE_CLOUD_PROJECT", PROJECT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self(child, work)
    }

    /// Stops the process; every line it wrote, parsed.
    fn lines(mut self) -> Vec<Value> {
        let _ = self.0.kill();
        self.read()
    }

    /// Stops the process as Cloud Run does (SIGTERM) and waits for it to exit by itself;
    /// every line it wrote, parsed.
    fn stop(mut self) -> Vec<Value> {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.read()
    }

    fn read(&mut self) -> Vec<Value> {
        let _ = self.0.wait();
        let mut text = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

fn assert_every_line_has_a_severity(lines: &[Value]) {
    assert!(!lines.is_empty());
    for line in lines {
        let severity = line["severity"].as_str().unwrap_or_default();
        assert!(
            ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&severity),
            "{line}"
        );
        assert!(line.get("level").is_none(), "{line}");
    }
}

fn assert_traced(line: &Value) {
    assert_eq!(
        line["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{TRACE}"),
        "{line}"
    );
    assert_eq!(line["logging.googleapis.com/spanId"], SPAN, "{line}");
    assert_eq!(line["logging.googleapis.com/trace_sampled"], true, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_logs_json_lines_with_severity_and_the_callers_trace() {
    let (db, repo) = common::pg_database().await;
    let id = common::new_job(repo.as_ref(), serde_json::json!({})).await;
    let port = free_port();
    let worker = Logged::start(
        Command::new(env!("CARGO_BIN_EXE_video-worker"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("PORT", port.to_string())
            .env("VIDEO_WORKER_AUTH_TOKEN", TOKEN)
            .env("VIDEO_WORKER_PIPELINE", "noop")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let answer = reqwest::Client::new()
        .post(format!("{base}/jobs/run"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{TRACE}-{SPAN}-01"))
        .body(serde_json::json!({ "job_id": id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Another request's lines must not carry this trace.
    reqwest::get(format!("{base}/health")).await.unwrap();

    let lines = worker.lines();
    assert_every_line_has_a_severity(&lines);
    let job_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["job.id"] == id.to_string())
        .collect();
    let messages: Vec<&str> = job_lines
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(messages.contains(&"lease acquired"), "{lines:#?}");
    assert!(messages.contains(&"attempt ended"), "{lines:#?}");
    for line in &job_lines {
        assert_traced(line);
        assert_eq!(line["severity"], "INFO", "{line}");
    }
    // Lines outside any request (start-up) have no trace.
    let serving = lines
        .iter()
        .find(|l| l["message"] == "video-worker serving")
        .unwrap();
    assert!(serving.get("logging.googleapis.com/trace").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_request_logs_under_the_cloud_trace_header() {
    let (db, _repo) = common::pg_database().await;
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = Logged::start(
        Command::new(env!("CARGO_BIN_EXE_video-worker"))
            .arg("api")
            .env("DATABASE_URL", &db.url)
            .env("PORT", port.to_string())
            .env("VIDEO_API_KEYS", KEY)
            .env("VIDEO_QUEUE", "loopback")
            .env(
                "VIDEO_WORKER_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("VIDEO_ARTIFACT_STORE_URL", store.path())
            // The per-request line is DEBUG: Cloud Run logs each request already.
            .env("RUST_LOG", "info,worker_http::telemetry=debug")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    // X-Cloud-Trace-Context carries the span in decimal; the log has it in hex.
    let span_decimal = u64::from_str_radix(SPAN, 16).unwrap();
    let answer = reqwest::Client::new()
        .get(format!("{base}/v1/jobs?limit=5"))
        .bearer_auth(KEY)
        .header(
            "x-cloud-trace-context",
            format!("{TRACE}/{span_decimal};o=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let lines = api.lines();
    assert_every_line_has_a_severity(&lines);
    let handled: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request handled" && l["span"]["http.path"] == "/v1/jobs")
        .collect();
    assert_eq!(handled.len(), 1, "{lines:#?}");
    assert_traced(handled[0]);
    assert_eq!(handled[0]["severity"], "DEBUG");
    assert_eq!(handled[0]["status"], 200);
}

/// What an OTLP/HTTP collector on a loopback port received: (content type, body) per export.
type Exports = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn collector() -> (String, Exports) {
    let exports: Exports = Arc::default();
    let seen = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push((content_type, body.to_vec()));
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, exports)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_the_spans_are_exported_in_the_callers_trace() {
    let (endpoint, exports) = collector().await;
    let (db, repo) = common::pg_database().await;
    let id = common::new_job(repo.as_ref(), serde_json::json!({})).await;
    let port = free_port();
    let worker = Logged::start(
        Command::new(env!("CARGO_BIN_EXE_video-worker"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("PORT", port.to_string())
            .env("VIDEO_WORKER_AUTH_TOKEN", TOKEN)
            .env("VIDEO_WORKER_PIPELINE", "noop")
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let answer = reqwest::Client::new()
        .post(format!("{base}/jobs/run"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{TRACE}-{SPAN}-01"))
        .body(serde_json::json!({ "job_id": id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // SIGTERM: the process drains, and the last batch is sent as it exits.
    let lines = worker.stop();

    let exports = exports.lock().unwrap().clone();
    assert!(!exports.is_empty(), "nothing exported");
    assert!(
        exports
            .iter()
            .all(|(content_type, _)| content_type == "application/x-protobuf")
    );
    let body: Vec<u8> = exports.into_iter().flat_map(|(_, body)| body).collect();
    // The exported spans are in the caller's trace, children of its span.
    assert!(
        contains(&body, &hex(TRACE)),
        "the trace id is not in the export"
    );
    assert!(
        contains(&body, &hex(SPAN)),
        "the caller's span is not a parent"
    );
    // The job's log lines name an exported span of that trace.
    let job_line = lines
        .iter()
        .find(|l| l["span"]["job.id"] == id.to_string())
        .unwrap();
    assert_eq!(
        job_line["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{TRACE}")
    );
    let span_id = job_line["logging.googleapis.com/spanId"].as_str().unwrap();
    assert_ne!(
        span_id, SPAN,
        "the line should name our span, not the caller's"
    );
    assert!(contains(&body, &hex(span_id)), "{span_id} was not exported");
}
