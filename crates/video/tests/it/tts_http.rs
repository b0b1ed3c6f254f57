//! The HTTP TTS backends against a local mock server (axum on 127.0.0.1, loopback only):
//! the requests they send, the WAV they write, and how each failure is classified.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use pipeline::StageError;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use video::storyboard::Voice;
use video::tts::TtsBackend;
use video::tts::http::{
    GoogleAuth, GoogleTts, GoogleTtsConfig, HttpOptions, HttpTtsSettings, OpenAiTts,
    OpenAiTtsConfig, from_settings,
};

use crate::common::voice;

const KEY: &str = "sk-test-SECRET-4242";
const RATE: u32 = 24_000;
/// 0.5 s at 24 kHz.
const HALF_SECOND: u32 = RATE / 2;

/// What the mock answers.
#[derive(Clone)]
enum Reply {
    /// These audio bytes: as `{"audioContent": base64}` on Google's path, raw on OpenAI's.
    Audio(Vec<u8>),
    /// This body, verbatim, with status 200.
    Verbatim(Vec<u8>),
    /// This status, an optional `Retry-After`, and a JSON error that echoes the API key (so
    /// the tests can check it is scrubbed).
    Status(u16, Option<&'static str>),
    /// These audio bytes raw, in chunks of this size, without a `Content-Length`.
    Chunked(Vec<u8>, usize),
    /// Sends the headers and the first bytes of a WAV, then nothing more.
    Stall,
    /// Never answers.
    Hang,
}

/// One request the mock received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: serde_json::Value,
}

struct MockState {
    reply: Mutex<Reply>,
    seen: Mutex<Vec<Seen>>,
}

struct Mock {
    base: String,
    state: Arc<MockState>,
}

impl Mock {
    async fn start(reply: Reply) -> Self {
        let state = Arc::new(MockState {
            reply: Mutex::new(reply),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    fn set(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&self.base).unwrap()
    }
}

async fn answer(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let reply = state.reply.lock().unwrap().clone();
    match reply {
        Reply::Audio(bytes) if uri.path().ends_with("text:synthesize") => {
            let content = base64::engine::general_purpose::STANDARD.encode(bytes);
            axum::Json(serde_json::json!({"audioContent": content})).into_response()
        }
        Reply::Audio(bytes) => ([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response(),
        Reply::Verbatim(bytes) => bytes.into_response(),
        Reply::Status(code, retry_after) => {
            let body = serde_json::json!({"error": {"message": format!("no thanks, {KEY}")}});
            let mut response =
                (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, after.parse().unwrap());
            }
            response
        }
        Reply::Chunked(bytes, size) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        Reply::Stall => {
            let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(
                mono(100)[..20].to_vec(),
            ))]);
            let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
            axum::body::Body::from_stream(body).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// A WAV of a 440 Hz sine at 24 kHz, `frames` per channel.
fn sine_wav(channels: u16, bits: u16, frames: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: RATE,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..frames {
        let t = f64::from(i) / f64::from(RATE);
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 0.5;
        for _ in 0..channels {
            if bits == 8 {
                writer.write_sample((v * 127.0) as i8).unwrap();
            } else {
                writer.write_sample((v * 32767.0) as i16).unwrap();
            }
        }
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

fn mono(frames: u32) -> Vec<u8> {
    sine_wav(1, 16, frames)
}

fn options(request_timeout: Duration) -> HttpOptions {
    HttpOptions {
        request_timeout,
        connect_timeout: Duration::from_secs(2),
        ..HttpOptions::default()
    }
}

fn client() -> reqwest::Client {
    HttpOptions::default().client().unwrap()
}

fn google_with(
    mock: &Mock,
    http: HttpOptions,
    auth: GoogleAuth,
    voice_name: Option<&str>,
) -> GoogleTts {
    let config = GoogleTtsConfig {
        base_url: mock.url(),
        auth,
        voice_name: voice_name.map(str::to_owned),
        http,
    };
    GoogleTts::new(config, client()).unwrap()
}

fn google(mock: &Mock, http: HttpOptions) -> GoogleTts {
    google_with(
        mock,
        http,
        GoogleAuth::ApiKey(SecretString::from(KEY)),
        Some("en-US-Neural2-C"),
    )
}

fn openai(mock: &Mock, http: HttpOptions) -> OpenAiTts {
    let config = OpenAiTtsConfig {
        base_url: mock.url(),
        api_key: Some(SecretString::from(KEY)),
        model: "tts-1".into(),
        voice: "nova".into(),
        http,
    };
    OpenAiTts::new(config, client()).unwrap()
}

/// Both backends on the same mock, named for assertion messages.
fn both(mock: &Mock, http: HttpOptions) -> Vec<(&'static str, Arc<dyn TtsBackend>)> {
    vec![
        ("google", Arc::new(google(mock, http.clone()))),
        ("openai", Arc::new(openai(mock, http))),
    ]
}

async fn speak(backend: &dyn TtsBackend, out: &Path) -> Result<(), StageError> {
    backend
        .synthesize(
            "Hello there.",
            &Voice::default(),
            out,
            &CancellationToken::new(),
        )
        .await
}

/// The job error of a failure, with its class.
fn failure(result: Result<(), StageError>) -> (&'static str, String, String) {
    match result.unwrap_err() {
        StageError::Retryable(e) => ("retryable", e.code.to_string(), e.message),
        StageError::Permanent(e) => ("permanent", e.code.to_string(), e.message),
        StageError::Canceled => ("canceled", String::new(), String::new()),
    }
}

fn header<'h>(seen: &'h Seen, name: &str) -> Option<&'h str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The files in a directory, by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn google_writes_the_wav_and_sends_the_documented_request() {
    let mock = Mock::start(Reply::Audio(mono(HALF_SECOND))).await;
    let backend = google(&mock, options(Duration::from_secs(5)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seg-0.wav");

    backend
        .synthesize(
            "Hello there, world.",
            &voice("en-us", 200),
            &out,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    let reader = hound::WavReader::open(&out).unwrap();
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().bits_per_sample, 16);
    assert_eq!(reader.spec().sample_rate, RATE);
    assert_eq!(reader.len(), HALF_SECOND);
    assert_eq!(files_in(dir.path()), ["seg-0.wav"]);

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/v1/text:synthesize");
    assert_eq!(header(request, "x-goog-api-key"), Some(KEY));
    assert_eq!(header(request, "authorization"), None);
    assert!(
        header(request, "content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        request.body,
        serde_json::json!({
            "input": {"text": "Hello there, world."},
            "voice": {"languageCode": "en-US", "name": "en-US-Neural2-C"},
            "audioConfig": {"audioEncoding": "LINEAR16", "sampleRateHertz": 24000, "speakingRate": 1.25}
        })
    );
}

#[tokio::test]
async fn google_sends_a_bearer_token_and_omits_an_unset_voice_name() {
    let mock = Mock::start(Reply::Audio(mono(100))).await;
    let backend = google_with(
        &mock,
        options(Duration::from_secs(5)),
        GoogleAuth::from_setting(&SecretString::from("Bearer ya29.token")),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    speak(&backend, &dir.path().join("a.wav")).await.unwrap();

    let seen = mock.seen();
    assert_eq!(header(&seen[0], "authorization"), Some("Bearer ya29.token"));
    assert_eq!(header(&seen[0], "x-goog-api-key"), None);
    assert_eq!(
        seen[0].body["voice"],
        serde_json::json!({"languageCode": "en"})
    );
    assert_eq!(seen[0].body["audioConfig"]["speakingRate"], 1.0);
}

#[tokio::test]
async fn openai_writes_the_wav_and_sends_the_documented_request() {
    let mock = Mock::start(Reply::Audio(mono(HALF_SECOND))).await;
    let backend = openai(&mock, options(Duration::from_secs(5)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seg-0.wav");

    backend
        .synthesize(
            "Fractions, part one.",
            &voice("en", 120),
            &out,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    let reader = hound::WavReader::open(&out).unwrap();
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().bits_per_sample, 16);
    assert_eq!(reader.len(), HALF_SECOND);
    assert_eq!(files_in(dir.path()), ["seg-0.wav"]);

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/audio/speech");
    assert_eq!(
        header(&seen[0], "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        seen[0].body,
        serde_json::json!({
            "model": "tts-1", "input": "Fractions, part one.", "voice": "nova",
            "response_format": "wav", "speed": 0.75
        })
    );
}

#[tokio::test]
async fn speed_is_clamped_to_what_the_apis_accept() {
    let mock = Mock::start(Reply::Audio(mono(100))).await;
    let dir = tempfile::tempdir().unwrap();
    for (_, backend) in both(&mock, options(Duration::from_secs(5))) {
        let out = dir.path().join("a.wav");
        let cancel = CancellationToken::new();
        backend
            .synthesize("Hi.", &voice("en", 20), &out, &cancel)
            .await
            .unwrap();
        backend
            .synthesize("Hi.", &voice("en", 1000), &out, &cancel)
            .await
            .unwrap();
    }
    let speeds: Vec<f64> = mock
        .seen()
        .iter()
        .map(|s| {
            let v = s
                .body
                .get("speed")
                .or_else(|| s.body["audioConfig"].get("speakingRate"));
            v.unwrap().as_f64().unwrap()
        })
        .collect();
    assert_eq!(speeds, [0.25, 4.0, 0.25, 4.0]);
}

#[tokio::test]
async fn streamed_wav_with_placeholder_lengths_is_accepted() {
    // What OpenAI streams: the RIFF and data sizes are 0xFFFFFFFF.
    let mut streamed = mono(HALF_SECOND);
    streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let mock = Mock::start(Reply::Audio(streamed)).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        let out = dir.path().join(format!("{name}.wav"));
        speak(backend.as_ref(), &out).await.unwrap();
        assert_eq!(
            hound::WavReader::open(&out).unwrap().len(),
            HALF_SECOND,
            "{name}"
        );
    }
}

#[tokio::test]
async fn overload_and_server_errors_are_retryable() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        for (status, retry_after) in [(500, None), (503, Some("120")), (429, Some("7"))] {
            mock.set(Reply::Status(status, retry_after));
            let (class, code, message) =
                failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
            assert_eq!(
                (class, code.as_str()),
                ("retryable", "tts_unavailable"),
                "{name} {status}"
            );
            assert!(message.contains(&format!("HTTP {status}")), "{message}");
            if let Some(after) = retry_after {
                assert!(
                    message.contains(&format!("Retry-After: {after}")),
                    "{message}"
                );
            }
            assert!(
                message.contains("no thanks"),
                "the service's reason is kept: {message}"
            );
            assert!(!message.contains(KEY), "{message}");
        }
    }
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn refusals_are_permanent_and_auth_failures_say_it_is_configuration() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        for status in [400, 401, 403, 404, 413, 422] {
            mock.set(Reply::Status(status, None));
            let (class, code, message) =
                failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
            assert_eq!(
                (class, code.as_str()),
                ("permanent", "tts_rejected"),
                "{name} {status}"
            );
            assert!(!message.contains(KEY), "{message}");
            if matches!(status, 401 | 403) {
                assert!(message.contains("configuration"), "{message}");
                assert!(message.contains("VIDEO_TTS_API_KEY"), "{message}");
            }
        }
    }
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn a_hanging_server_times_out_as_retryable() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_millis(300))) {
        let started = Instant::now();
        let (class, code, message) =
            failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
        let took = started.elapsed();
        assert_eq!(
            (class, code.as_str()),
            ("retryable", "tts_unavailable"),
            "{name}: {message}"
        );
        assert!(
            took >= Duration::from_millis(250),
            "{name} gave up after {took:?}"
        );
        assert!(took < Duration::from_secs(3), "{name} took {took:?}");
        assert!(message.contains("300 ms"), "{message}");
    }
}

#[tokio::test]
async fn a_body_that_stalls_times_out_as_retryable() {
    let mock = Mock::start(Reply::Stall).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = openai(&mock, options(Duration::from_millis(300)));
    let started = Instant::now();
    let (class, code, message) = failure(speak(&backend, &dir.path().join("a.wav")).await);
    assert_eq!(
        (class, code.as_str()),
        ("retryable", "tts_unavailable"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn cancel_while_the_request_hangs_stops_quickly() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_secs(30))) {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let result = backend
            .synthesize(
                "Hello.",
                &Voice::default(),
                &dir.path().join("a.wav"),
                &cancel,
            )
            .await;
        assert_eq!(result, Err(StageError::Canceled), "{name}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        mock.seen().len(),
        2,
        "both requests were under way when cancelled"
    );
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn an_already_cancelled_token_sends_nothing() {
    let mock = Mock::start(Reply::Audio(mono(100))).await;
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        let result = backend
            .synthesize(
                "Hello.",
                &Voice::default(),
                &dir.path().join("a.wav"),
                &cancel,
            )
            .await;
        assert_eq!(result, Err(StageError::Canceled), "{name}");
    }
    assert!(mock.seen().is_empty());
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn unusable_audio_is_permanent_bad_audio() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "not a WAV",
            Reply::Audio(b"ID3\x04 an mp3, perhaps".to_vec()),
        ),
        ("stereo", Reply::Audio(sine_wav(2, 16, 1000))),
        ("8-bit", Reply::Audio(sine_wav(1, 8, 1000))),
        ("no samples", Reply::Audio(mono(0))),
        ("empty body", Reply::Verbatim(Vec::new())),
    ];
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        for (case, reply) in cases.clone() {
            mock.set(reply);
            let (class, code, message) =
                failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
            assert_eq!(
                (class, code.as_str()),
                ("permanent", "tts_bad_audio"),
                "{name} {case}: {message}"
            );
        }
    }
    // Google's JSON envelope can be broken too.
    let backend = google(&mock, options(Duration::from_secs(5)));
    for body in [
        &b"<html>502</html>"[..],
        br#"{"audioContent": "!!! not base64 !!!"}"#,
        br#"{"other": 1}"#,
    ] {
        mock.set(Reply::Verbatim(body.to_vec()));
        let (class, code, _) = failure(speak(&backend, &dir.path().join("a.wav")).await);
        assert_eq!((class, code.as_str()), ("permanent", "tts_bad_audio"));
    }
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test]
async fn an_oversize_response_is_refused() {
    let mock = Mock::start(Reply::Audio(mono(HALF_SECOND))).await;
    let dir = tempfile::tempdir().unwrap();
    let small = HttpOptions {
        max_response_bytes: 10_000,
        ..options(Duration::from_secs(5))
    };
    for (name, backend) in both(&mock, small.clone()) {
        let (class, code, message) =
            failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
        assert_eq!(
            (class, code.as_str()),
            ("permanent", "tts_bad_audio"),
            "{name}"
        );
        assert!(message.contains("10000 bytes"), "{message}");
    }
    assert!(files_in(dir.path()).is_empty());
    // Without a Content-Length, the limit is enforced while reading.
    mock.set(Reply::Chunked(mono(HALF_SECOND), 4096));
    let backend = openai(&mock, small);
    let (class, code, message) = failure(speak(&backend, &dir.path().join("a.wav")).await);
    assert_eq!(
        (class, code.as_str()),
        ("permanent", "tts_bad_audio"),
        "{message}"
    );
    assert!(message.contains("10000 bytes"), "{message}");
    // Under the limit, a chunked answer is read whole.
    let backend = openai(&mock, options(Duration::from_secs(5)));
    speak(&backend, &dir.path().join("a.wav")).await.unwrap();
    let reader = hound::WavReader::open(dir.path().join("a.wav")).unwrap();
    assert_eq!(reader.len(), HALF_SECOND);
}

#[tokio::test]
async fn oversize_text_is_refused_without_a_request() {
    let mock = Mock::start(Reply::Audio(mono(100))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.wav");
    let cancel = CancellationToken::new();
    let voice = Voice::default();

    // Google counts bytes: 1700 Hangul syllables are 5100 bytes.
    let google = google(&mock, options(Duration::from_secs(5)));
    let korean = "가".repeat(1700);
    let (class, code, message) = failure(google.synthesize(&korean, &voice, &out, &cancel).await);
    assert_eq!((class, code.as_str()), ("permanent", "tts_rejected"));
    assert!(message.contains("5100 bytes"), "{message}");
    // OpenAI counts characters.
    let openai = openai(&mock, options(Duration::from_secs(5)));
    let (class, code, _) = failure(
        openai
            .synthesize(&"a".repeat(4097), &voice, &out, &cancel)
            .await,
    );
    assert_eq!((class, code.as_str()), ("permanent", "tts_rejected"));
    // Empty text is refused too.
    let (class, code, _) = failure(openai.synthesize(" \n", &voice, &out, &cancel).await);
    assert_eq!((class, code.as_str()), ("permanent", "tts_rejected"));
    assert!(mock.seen().is_empty());

    // Exactly at the limits is fine.
    google
        .synthesize(&"a".repeat(5000), &voice, &out, &cancel)
        .await
        .unwrap();
    openai
        .synthesize(&"가".repeat(4096), &voice, &out, &cancel)
        .await
        .unwrap();
    assert_eq!(mock.seen().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mock = Mock {
        base,
        state: Arc::new(MockState {
            reply: Mutex::new(Reply::Hang),
            seen: Mutex::new(Vec::new()),
        }),
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in both(&mock, options(Duration::from_secs(5))) {
        let (class, code, message) =
            failure(speak(backend.as_ref(), &dir.path().join("a.wav")).await);
        assert_eq!(
            (class, code.as_str()),
            ("retryable", "tts_unavailable"),
            "{name}: {message}"
        );
        assert!(!message.contains(KEY));
    }
}

#[tokio::test]
async fn failures_leave_an_existing_out_untouched() {
    let mock = Mock::start(Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seg.wav");
    std::fs::write(&out, b"previous").unwrap();
    for (name, backend) in both(&mock, options(Duration::from_millis(300))) {
        for reply in [
            Reply::Hang,
            Reply::Status(503, None),
            Reply::Audio(sine_wav(2, 16, 1000)),
            Reply::Audio(mono(HALF_SECOND)[..30].to_vec()),
        ] {
            mock.set(reply);
            assert!(speak(backend.as_ref(), &out).await.is_err(), "{name}");
            assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{name}");
            assert_eq!(
                files_in(dir.path()),
                ["seg.wav"],
                "{name}: no temporary files left"
            );
        }
    }
}

#[tokio::test]
async fn fingerprints_are_stable_specific_and_secret_free() {
    let mock = Mock::start(Reply::Hang).await;
    let host = mock.base.trim_start_matches("http://").to_owned();
    let backends = both(&mock, options(Duration::from_secs(5)));
    let v = voice("en-us", 160);
    for (name, backend) in &backends {
        let fp = backend.fingerprint(&v);
        assert_eq!(fp, backend.fingerprint(&v.clone()), "{name}: stable");
        assert!(!fp.contains(KEY) && !fp.contains("SECRET"), "{name}: {fp}");
        assert!(fp.contains(&host), "{name}: {fp}");
        assert!(fp.contains("en-US") && fp.contains("160"), "{name}: {fp}");
        assert_ne!(
            fp,
            backend.fingerprint(&voice("en-us", 170)),
            "{name}: rate"
        );
        assert_ne!(
            fp,
            backend.fingerprint(&voice("ko", 160)),
            "{name}: language"
        );
        assert!(
            !format!("{backend:?}").contains(KEY),
            "{name}: Debug shows the key"
        );
        assert_eq!(backend.concurrency(), 4);
    }
    assert!(backends[0].1.fingerprint(&v).contains("en-US-Neural2-C"));
    let openai_fp = backends[1].1.fingerprint(&v);
    assert!(
        openai_fp.contains("tts-1") && openai_fp.contains("nova"),
        "{openai_fp}"
    );
    assert_ne!(backends[0].1.fingerprint(&v), openai_fp);
}

#[tokio::test]
async fn from_settings_builds_working_backends() {
    let mock = Mock::start(Reply::Audio(mono(HALF_SECOND))).await;
    let dir = tempfile::tempdir().unwrap();

    let key = SecretString::from(KEY);
    let google = from_settings(
        &HttpTtsSettings {
            backend: "google",
            url: &mock.base,
            api_key: Some(&key),
            voice: Some("en-GB-Wavenet-A"),
            model: None,
        },
        client(),
    )
    .unwrap();
    speak(google.as_ref(), &dir.path().join("g.wav"))
        .await
        .unwrap();
    // A base URL ending in `/v1`, as OpenAI clients usually take it, is not doubled.
    let base = format!("{}/v1/", mock.base);
    let openai = from_settings(
        &HttpTtsSettings {
            backend: "openai",
            url: &base,
            api_key: Some(&key),
            ..HttpTtsSettings::default()
        },
        client(),
    )
    .unwrap();
    speak(openai.as_ref(), &dir.path().join("o.wav"))
        .await
        .unwrap();

    let seen = mock.seen();
    assert_eq!(seen[0].path, "/v1/text:synthesize");
    assert_eq!(header(&seen[0], "x-goog-api-key"), Some(KEY));
    assert_eq!(seen[0].body["voice"]["name"], "en-GB-Wavenet-A");
    assert_eq!(seen[1].path, "/v1/audio/speech");
    assert_eq!(seen[1].body["model"], "tts-1");
    assert_eq!(seen[1].body["voice"], "alloy");

    let err = from_settings(
        &HttpTtsSettings {
            backend: "openai",
            url: "http://user:pw@127.0.0.1/",
            ..HttpTtsSettings::default()
        },
        client(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("VIDEO_TTS_URL:") && !err.contains("pw"),
        "{err}"
    );
}
