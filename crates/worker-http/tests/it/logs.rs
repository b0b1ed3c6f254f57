//! The log lines Cloud Run collects, read from the real binaries' stderr: `serve` handling a
//! push and `api` handling a request, each sent with a trace header. Every line is one JSON
//! object with Cloud Logging's `severity`; every line logged while handling the request
//! carries its trace (`logging.googleapis.com/trace` under `GOOGLE_CLOUD_PROJECT`) and span.

use std::sync::{Arc, Mutex};

use crate::common::{Launch, ServeProcess, free_port};
use serde_json::Value;

const PROJECT: &str = "log-test-project";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const KEY: &str = "log-test-api-key-00001";

/// `video-worker SUBCOMMAND` logging JSON lines under [`PROJECT`] to a captured stderr.
fn logged(launch: Launch) -> Launch {
    launch
        .env("VIDEO_WORKER_LOG_FORMAT", "json")
        .env("GOOGLE_CLOUD_PROJECT", PROJECT)
        .capture_stderr()
}

/// `serve` on `database_url` with the `noop` pipeline, logging at `info`, exporting spans to
/// `otlp` if given.
async fn serve(database_url: &str, otlp: Option<&str>) -> ServeProcess {
    let launch = logged(Launch::serve(database_url, "logged")).env("RUST_LOG", "info");
    match otlp {
        Some(endpoint) => launch.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        None => launch.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
    }
    .start()
    .await
}

/// A push of `id` carrying the caller's `traceparent`.
async fn traced_push(worker: &ServeProcess, id: domain::JobId) {
    let answer = worker
        .push(id)
        .header("traceparent", format!("00-{TRACE}-{SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
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
    let (db, repo) = crate::common::pg_database().await;
    let id = crate::common::new_job(repo.as_ref(), serde_json::json!({})).await;
    let worker = serve(&db.url, None).await;
    traced_push(&worker, id).await;
    // Another request's lines must not carry this trace.
    reqwest::get(format!("{}/health", worker.base))
        .await
        .unwrap();

    let lines = worker.kill_and_read_logs();
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
    let (db, _repo) = crate::common::pg_database().await;
    let store = tempfile::tempdir().unwrap();
    let api = logged(Launch::subcommand("api", &db.url, "api"))
        .env("VIDEO_API_KEYS", KEY)
        .env("VIDEO_QUEUE", "loopback")
        .env(
            "VIDEO_WORKER_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("VIDEO_ARTIFACT_STORE_URL", store.path())
        // The per-request line is DEBUG: Cloud Run logs each request already.
        .env("RUST_LOG", "info,worker_http::telemetry=debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .start()
        .await;
    // X-Cloud-Trace-Context carries the span in decimal; the log has it in hex.
    let span_decimal = u64::from_str_radix(SPAN, 16).unwrap();
    let answer = reqwest::Client::new()
        .get(format!("{}/v1/jobs?limit=5", api.base))
        .bearer_auth(KEY)
        .header(
            "x-cloud-trace-context",
            format!("{TRACE}/{span_decimal};o=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let lines = api.kill_and_read_logs();
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
    let (db, repo) = crate::common::pg_database().await;
    let id = crate::common::new_job(repo.as_ref(), serde_json::json!({})).await;
    let worker = serve(&db.url, Some(&endpoint)).await;
    traced_push(&worker, id).await;
    // SIGTERM: the process drains, and the last batch is sent as it exits.
    let lines = worker.terminate_and_read_logs();

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
