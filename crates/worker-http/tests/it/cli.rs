//! The operator commands as a person runs them: the built `video-worker` binary against the
//! real jobs API router on port 0 (Postgres, a worker behind a loopback queue) — submit and
//! follow, download the exact bytes, page through every job — and against nothing at all
//! (one line, non-zero exit, whatever the command). The event-stream reader is also driven
//! by a raw loopback server that splits a Korean character across two network chunks.

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::{ApiWithWorker, quick};
use domain::{JobId, JobRepository};
use futures_util::StreamExt;
use jobs_api::JobView;
use jobs_api::client::{ApiClient, ClientError};
use object_store::ObjectStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "operator-cli-api-key-0001";

/// The API (and a worker behind it) on loopback ports, driven with [`KEY`].
async fn rig() -> ApiWithWorker {
    ApiWithWorker::start(quick(), KEY, tempfile::tempdir().unwrap()).await
}

/// Runs `video-worker ARGS` against `base` with the key, off the async runtime.
async fn run(base: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_video-worker"));
    command
        .args(args)
        .env("VIDEO_API_URL", base)
        .env_remove("VIDEO_API_KEY")
        .env_remove("RUST_LOG");
    if let Some(key) = key {
        command.env("VIDEO_API_KEY", key);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn board() -> Value {
    json!({"version": 1, "title": "CLI film", "frame": {"width": 640, "height": 360, "fps": 25},
           "segments": [{"narration": "Made from the command line.", "slide": {"heading": "CLI"}}]})
}

/// Bytes that no two offsets share a pattern of: a misplaced chunk would show.
fn film_bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_then_download_writes_the_exact_film() {
    let rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let board_file = dir.path().join("board.json");
    std::fs::write(&board_file, board().to_string()).unwrap();

    let submitted = run(
        &rig.api.base,
        Some(KEY),
        &["submit", board_file.to_str().unwrap(), "--follow"],
    )
    .await;
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let out = stdout(&submitted);
    assert!(out.contains("status    succeeded"), "{out}");
    // The terminal state is shown, not the last stage's label at 100 %.
    assert!(!out.contains("progress"), "{out}");
    let id = stderr(&submitted)
        .lines()
        .find_map(|l| l.strip_prefix("submitted "))
        .unwrap()
        .to_owned();

    // The test pipeline records a key without writing a film: put one there.
    let job = ApiClient::new(&rig.api.base, KEY)
        .status(&id)
        .await
        .unwrap();
    let key = job.artifact_key.unwrap();
    let film = film_bytes(3 * 1024 * 1024 + 17);
    rig.api
        .artifacts
        .put(
            &object_store::path::Path::parse(&key).unwrap(),
            film.clone().into(),
        )
        .await
        .unwrap();

    let target = dir.path().join("film.mp4");
    let downloaded = run(
        &rig.api.base,
        Some(KEY),
        &["download", &id, "-o", target.to_str().unwrap()],
    )
    .await;
    assert!(downloaded.status.success(), "{}", stderr(&downloaded));
    assert!(std::fs::read(&target).unwrap() == film, "the bytes differ");

    // Its captions, published beside the film.
    let vtt = "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\nMade from the command line.\n";
    rig.api
        .artifacts
        .put(
            &object_store::path::Path::parse(video::publish::captions_key(&key)).unwrap(),
            vtt.into(),
        )
        .await
        .unwrap();
    let captions = dir.path().join("film.vtt");
    let downloaded = run(
        &rig.api.base,
        Some(KEY),
        &[
            "download",
            &id,
            "--captions",
            "-o",
            captions.to_str().unwrap(),
        ],
    )
    .await;
    assert!(downloaded.status.success(), "{}", stderr(&downloaded));
    assert_eq!(std::fs::read_to_string(&captions).unwrap(), vtt);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// Partial files left beside the target.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_an_unfinished_job_says_so_and_writes_nothing() {
    let rig = rig().await;
    let id = JobId::new();
    rig.repo
        .create(domain::NewJob { id, input: board() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("film.mp4");
    let output = run(
        &rig.api.base,
        Some(KEY),
        &["download", &id.to_string(), "-o", target.to_str().unwrap()],
    )
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("error: job {id} has no film to download: ")),
        "{err}"
    );
    assert!(err.contains("queued"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_and_all_follows_every_cursor_to_the_end() {
    let rig = rig().await;
    let mut created = HashSet::new();
    for _ in 0..7 {
        let id = JobId::new();
        rig.repo
            .create(domain::NewJob { id, input: board() })
            .await
            .unwrap();
        created.insert(id.to_string());
    }
    let ids = |output: &Output| -> Vec<String> {
        stdout(output)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };

    let all = run(&rig.api.base, Some(KEY), &["list", "--all", "--limit", "3"]).await;
    assert!(all.status.success(), "{}", stderr(&all));
    let listed = ids(&all);
    assert_eq!(listed.len(), 7, "{}", stdout(&all));
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), created);

    // One page at a time: the cursor printed leads to the next page.
    let first = run(&rig.api.base, Some(KEY), &["list", "--limit", "3"]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(ids(&first), listed[..3]);
    let hint = stderr(&first);
    let cursor = hint
        .trim()
        .strip_prefix("more: --cursor ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor in {hint:?}"));
    let second = run(
        &rig.api.base,
        Some(KEY),
        &["list", "--limit", "3", "--cursor", cursor],
    )
    .await;
    assert_eq!(ids(&second), listed[3..6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_one_line_and_a_failure_in_every_command() {
    let base = format!("http://127.0.0.1:{}", crate::common::free_port());
    let id = JobId::new().to_string();
    let dir = tempfile::tempdir().unwrap();
    let board_file = dir.path().join("board.json");
    std::fs::write(&board_file, board().to_string()).unwrap();
    let target = dir.path().join("film.mp4");
    let commands: [&[&str]; 8] = [
        &["status", &id],
        &["status", &id, "--follow"],
        &["cancel", &id],
        &["list"],
        &["list", "--all"],
        &["download", &id, "-o", target.to_str().unwrap()],
        &["submit", board_file.to_str().unwrap()],
        &["submit", board_file.to_str().unwrap(), "--follow"],
    ];
    let expected = format!("error: cannot reach the jobs API at {base}: connection refused\n");
    for args in commands {
        let output = run(&base, Some(KEY), args).await;
        assert!(!output.status.success(), "{args:?}");
        assert_eq!(stderr(&output), expected, "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
    }
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_the_environment_and_a_missing_key_says_which() {
    let top = run("http://127.0.0.1:9", None, &["--help"]).await;
    let text = stdout(&top);
    for needle in [
        "VIDEO_API_URL",
        "VIDEO_API_KEY",
        "http://127.0.0.1:8081",
        "download",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let sub = run("http://127.0.0.1:9", None, &["download", "--help"]).await;
    let text = stdout(&sub);
    assert!(text.contains("[env: VIDEO_API_URL="), "{text}");
    assert!(text.contains("[env: VIDEO_API_KEY"), "{text}");
    // The key's value is never echoed by --help.
    let with_key = run("http://127.0.0.1:9", Some(KEY), &["list", "--help"]).await;
    assert!(!stdout(&with_key).contains(KEY));

    let gone = run(
        "http://127.0.0.1:9",
        Some(KEY),
        &["submit", "/nonexistent/board.json"],
    )
    .await;
    assert!(!gone.status.success());
    assert_eq!(
        stderr(&gone),
        "error: /nonexistent/board.json: No such file or directory (os error 2)\n"
    );

    let missing = run("http://127.0.0.1:9", None, &["list"]).await;
    assert!(!missing.status.success());
    let err = stderr(&missing);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: VIDEO_API_KEY is not set"), "{err}");
}

// ---- the event stream, byte by byte --------------------------------------------------

/// A one-request HTTP/1.1 server answering an event stream written as the given chunks
/// (chunked transfer encoding, each chunk flushed and given time to arrive on its own).
async fn event_server(chunks: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up before its request ended");
            request.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        for chunk in chunks {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            socket.write_all(&frame).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        socket.write_all(b"0\r\n\r\n").await.unwrap();
        socket.flush().await.unwrap();
    });
    base
}

fn view(id: &str, status: &str, stage: Option<&str>, percent: u8, message: &str) -> Value {
    let mut v = json!({
        "id": id, "status": status, "stage": stage, "percent": percent,
        "segment_index": null, "segment_total": null, "message": message,
        "cancel_requested": false, "attempts": 1, "artifact_key": null, "artifact_url": null,
        "error_code": null, "error_message": null,
        "created_at": "2026-01-01T00:00:00+00:00", "started_at": null, "finished_at": null,
        "updated_at": "2026-01-01T00:00:01+00:00"
    });
    if stage.is_none() {
        // The terminal event carries no stage at all.
        v.as_object_mut().unwrap().remove("stage");
    }
    v
}

/// The stream's bytes split inside the first Korean character: two chunks.
fn split_mid_character(stream: &str) -> Vec<Vec<u8>> {
    let start = stream.find('한').unwrap();
    let cut = start + 1; // inside its three UTF-8 bytes
    assert!(!stream.is_char_boundary(cut));
    let bytes = stream.as_bytes();
    vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]
}

const KOREAN: &str = "한국어 내레이션을 만드는 중";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_split_across_chunks_arrives_whole() {
    let id = JobId::new().to_string();
    let progress = view(&id, "running", Some("tts"), 40, KOREAN);
    let done = view(&id, "succeeded", None, 100, "완료");
    let stream = format!(
        ": keep-alive\n\nevent: progress\ndata: {progress}\n\nevent: done\ndata: {done}\n\n"
    );
    // The split happens on the wire: the first chunk the client reads ends mid-character.
    let base = event_server(split_mid_character(&stream)).await;
    let raw = reqwest::get(format!("{base}/v1/jobs/{id}/events"))
        .await
        .unwrap();
    let first = raw.bytes_stream().next().await.unwrap().unwrap();
    assert!(
        std::str::from_utf8(&first).is_err(),
        "the chunks were merged"
    );

    let base = event_server(split_mid_character(&stream)).await;
    let mut seen: Vec<JobView> = Vec::new();
    let last = ApiClient::new(&base, KEY)
        .follow(&id, |v| seen.push(v.clone()))
        .await
        .unwrap();
    assert_eq!(seen[0].message.as_deref(), Some(KOREAN));
    assert_eq!(seen[0].stage.as_deref(), Some("tts"));
    assert_eq!(last.status, "succeeded");
    assert_eq!(last.stage, None);
    assert_eq!(last.message.as_deref(), Some("완료"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follow_prints_the_terminal_state_not_the_last_stage() {
    let id = JobId::new().to_string();
    // A `done` that still repeats the last stage, as older servers send it.
    let done = view(&id, "failed", Some("compose"), 100, KOREAN);
    let stream = format!("event: done\r\ndata: {done}\r\n\r\n");
    let base = event_server(split_mid_character(&stream)).await;
    let output = run(&base, Some(KEY), &["status", &id, "--follow"]).await;
    // A job that did not succeed is a failed command.
    assert!(!output.status.success());
    let out = stdout(&output);
    assert!(out.contains("status    failed"), "{out}");
    // Where it stopped, not as if it were still in progress.
    assert!(!out.contains("progress"), "{out}");
    assert!(out.contains("stopped   100% compose"), "{out}");
    assert_eq!(stderr(&output), "error: the job ended failed\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_early_is_an_error_not_a_result() {
    let id = JobId::new().to_string();
    let progress = view(&id, "running", Some("render"), 10, "rendering");
    let base = event_server(vec![
        format!("event: progress\ndata: {progress}\n\n").into_bytes(),
    ])
    .await;
    let result = ApiClient::new(&base, KEY).follow(&id, |_| {}).await;
    assert!(
        matches!(result, Err(ClientError::StreamEnded)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_event_with_only_the_status_is_completed_from_the_job() {
    use axum::http::header;
    let id = JobId::new().to_string();
    // The job as GET shows it; the event's terminal status is the one that counts.
    let job = view(&id, "canceled", Some("compose"), 60, "stopped");
    let app = axum::Router::new()
        .route(
            "/v1/jobs/{id}/events",
            axum::routing::get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    "event: done\ndata: {\"status\": \"canceled\"}\n\n",
                )
            }),
        )
        .route(
            "/v1/jobs/{id}",
            axum::routing::get(move || async move { axum::Json(job.clone()) }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let last = ApiClient::new(&base, KEY)
        .follow(&id, |_| {})
        .await
        .unwrap();
    assert_eq!(last.status, "canceled");
    assert_eq!(last.id, id);
}

// ---- a film served elsewhere ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_download_is_followed_without_the_key() {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let film = film_bytes(200_000);
    // The store: another origin, which must not see the API key.
    let served = film.clone();
    let store = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://127.0.0.1:{}", store.local_addr().unwrap().port());
    let store_app = axum::Router::new().route(
        "/signed/film.mp4",
        axum::routing::get(move |headers: HeaderMap| async move {
            if headers.contains_key(header::AUTHORIZATION) {
                return (StatusCode::FORBIDDEN, "the API key leaked").into_response();
            }
            served.clone().into_response()
        }),
    );
    tokio::spawn(async move { axum::serve(store, store_app).await });
    // The API: answers the artifact with a redirect to the store.
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://127.0.0.1:{}", api.local_addr().unwrap().port());
    let location = format!("{store_url}/signed/film.mp4");
    let api_app = axum::Router::new().route(
        "/v1/jobs/{id}/artifact",
        axum::routing::get(move || async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location.clone())],
            )
        }),
    );
    tokio::spawn(async move { axum::serve(api, api_app).await });

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("film.mp4");
    let written = ApiClient::new(&api_url, KEY)
        .download(&JobId::new().to_string(), &target)
        .await
        .unwrap();
    assert_eq!(written, film.len() as u64);
    assert!(std::fs::read(&target).unwrap() == film);
}
