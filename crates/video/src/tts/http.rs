//! Cloud TTS over HTTP: Google Cloud Text-to-Speech and OpenAI-style `/v1/audio/speech`.
//!
//! Both backends ask for 16-bit PCM WAV, check what comes back (RIFF, mono, 16-bit integer
//! samples, at least one sample) and write a canonical WAV to `out` through a temporary file
//! and a rename, so a failed or cancelled call never leaves a half-written `out` behind.
//!
//! Failures are typed ([`TtsHttpError`]) and turned into [`StageError`]s by kind, never by
//! matching message text:
//!
//! | failure                                              | stage error | code              |
//! |------------------------------------------------------|-------------|-------------------|
//! | timeout, connection trouble, 408, 429, 5xx           | retryable   | `tts_unavailable` |
//! | 400, 401, 403, 404, 413, 422, other statuses, text too long | permanent | `tts_rejected` |
//! | not a WAV, stereo, not 16-bit, empty, oversize body  | permanent   | `tts_bad_audio`   |
//! | writing `out` failed                                 | retryable   | `tts_io`          |
//! | `cancel` fired                                       | canceled    | —                 |
//!
//! Secrets (API keys, access tokens) live in [`Secret`], whose `Debug` is redacted; they are
//! sent only as headers and are scrubbed from anything a server echoes back, so they appear
//! in no error, log line or fingerprint.
//!
//! The binary builds a backend from its environment with [`from_settings`]
//! (`VIDEO_TTS_BACKEND`, `VIDEO_TTS_URL`, `VIDEO_TTS_API_KEY`, `VIDEO_TTS_VOICE`,
//! `VIDEO_TTS_MODEL`); configuration errors name the variable to fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::TtsBackend;
use crate::StageError;
use crate::storyboard::Voice;

/// How long one synthesis request may take, from connecting to the last body byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take (a client setting; see [`HttpOptions::client`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read. Two minutes of 24 kHz speech is about 6 MB (8 MB as
/// base64); anything far beyond that is a broken or hostile server, not speech.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 50 * 1024 * 1024;

/// Google's documented limit on `input.text`, in bytes of UTF-8.
pub const GOOGLE_MAX_TEXT_BYTES: usize = 5000;
/// OpenAI's documented limit on `input`, in characters.
pub const OPENAI_MAX_TEXT_CHARS: usize = 4096;
/// The sample rate asked of Google.
pub const GOOGLE_SAMPLE_RATE: u32 = 24_000;

/// Google's public endpoint, used when `VIDEO_TTS_URL` is empty.
pub const GOOGLE_DEFAULT_URL: &str = "https://texttospeech.googleapis.com";
/// OpenAI's public endpoint, used when `VIDEO_TTS_URL` is empty.
pub const OPENAI_DEFAULT_URL: &str = "https://api.openai.com";
/// The OpenAI model used when `VIDEO_TTS_MODEL` is empty: `tts-1` honours `speed`
/// (`gpt-4o-mini-tts` ignores it, so the storyboard's rate would be lost).
pub const OPENAI_DEFAULT_MODEL: &str = "tts-1";
/// The OpenAI voice used when `VIDEO_TTS_VOICE` is empty.
pub const OPENAI_DEFAULT_VOICE: &str = "alloy";

/// The rate both APIs call 1.0 (their "normal" speed is roughly 160 words a minute).
const NORMAL_WPM: f64 = 160.0;
/// How much of an error body is read for the message: enough for a JSON error, no more.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// How much of a server's error message is kept.
const MAX_DETAIL_CHARS: usize = 300;
/// Both backends run requests in parallel: the work is remote, the worker only waits.
const CONCURRENCY: usize = 4;
/// Sample rates accepted from a server; anything else is a broken header.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// A credential. `Debug` never shows it, so configs and backends can derive `Debug` safely.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Timeouts and limits shared by both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The whole exchange: connect, send, read the body. Enforced per request.
    pub request_timeout: Duration,
    /// Establishing a connection. reqwest sets this per client, so it takes effect through
    /// [`HttpOptions::client`]; a caller-built client brings its own.
    pub connect_timeout: Duration,
    /// The largest response body read before giving up (`tts_bad_audio`).
    pub max_response_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl HttpOptions {
    /// A client suited to these backends: the connect timeout, and no redirects — a TTS API
    /// has no reason to redirect, and following one to another host would carry the
    /// `X-Goog-Api-Key` header along (reqwest strips only `Authorization` and cookies). A
    /// caller sharing its own client should configure it the same way.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("video-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
    }
}

/// A backend's configuration problem; `Display` names the environment variable to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `VIDEO_TTS_BACKEND` is not a known backend.
    #[error("VIDEO_TTS_BACKEND: {0}")]
    Backend(String),
    /// `VIDEO_TTS_URL` is unusable. The value itself is not repeated: it may hold credentials.
    #[error("VIDEO_TTS_URL: {0}")]
    BaseUrl(String),
    /// `VIDEO_TTS_API_KEY` is missing or malformed. The value is never repeated.
    #[error("VIDEO_TTS_API_KEY: {0}")]
    ApiKey(String),
    /// `VIDEO_TTS_VOICE` is unusable.
    #[error("VIDEO_TTS_VOICE: {0}")]
    Voice(String),
    /// `VIDEO_TTS_MODEL` is unusable.
    #[error("VIDEO_TTS_MODEL: {0}")]
    Model(String),
}

/// How to authenticate to Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleAuth {
    /// An API key, sent as `X-Goog-Api-Key` (a header rather than `?key=`, so it stays out of
    /// URLs, which end up in logs and error messages).
    ApiKey(Secret),
    /// An OAuth access token, sent as `Authorization: Bearer …`.
    Bearer(Secret),
}

impl GoogleAuth {
    /// Reads `VIDEO_TTS_API_KEY`: `Bearer <token>` is an access token, anything else an API
    /// key.
    pub fn from_setting(value: &str) -> Self {
        let value = value.trim();
        match value.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => {
                Self::Bearer(Secret::new(value[7..].trim()))
            }
            _ => Self::ApiKey(Secret::new(value)),
        }
    }

    fn secret(&self) -> &Secret {
        match self {
            Self::ApiKey(s) | Self::Bearer(s) => s,
        }
    }
}

/// Google Cloud Text-to-Speech settings.
#[derive(Debug, Clone)]
pub struct GoogleTtsConfig {
    /// Scheme, host and optional path prefix; `/v1/text:synthesize` is appended.
    pub base_url: Url,
    /// The credential.
    pub auth: GoogleAuth,
    /// A voice name (`en-US-Neural2-C`); `None` lets Google pick one for the language.
    pub voice_name: Option<String>,
    /// Timeouts and limits.
    pub http: HttpOptions,
}

/// OpenAI-style speech settings (OpenAI itself, or a compatible local server).
#[derive(Debug, Clone)]
pub struct OpenAiTtsConfig {
    /// Scheme, host and optional path prefix; `/v1/audio/speech` is appended (a prefix that
    /// already ends in `/v1`, as OpenAI base URLs often do, is not doubled).
    pub base_url: Url,
    /// Sent as `Authorization: Bearer …`; `None` for local servers that need none.
    pub api_key: Option<Secret>,
    /// The model (`tts-1`).
    pub model: String,
    /// The voice (`alloy`).
    pub voice: String,
    /// Timeouts and limits.
    pub http: HttpOptions,
}

/// Why one synthesis failed. [`TtsHttpError::is_retryable`] and [`TtsHttpError::code`]
/// classify it; `From<TtsHttpError> for StageError` applies that classification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtsHttpError {
    /// No complete answer within the request timeout.
    #[error("no complete answer within {} ms", after.as_millis())]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection failed or broke (refused, reset, DNS, TLS).
    #[error("could not reach the service: {0}")]
    Transport(String),
    /// The service answered with a non-success status.
    #[error("{}", describe_status(*status, retry_after.as_deref(), detail))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header, sanitized; reported, not acted on (the job queue owns
        /// retry timing).
        retry_after: Option<String>,
        /// The service's own explanation, shortened, with secrets scrubbed.
        detail: String,
    },
    /// The request could not be made at all (unbuildable, redirect loop).
    #[error("the request could not be made: {0}")]
    Request(String),
    /// The text is empty or beyond the API's limit; refused before sending.
    #[error("{0}")]
    Text(String),
    /// The response body exceeded the configured limit.
    #[error("the response exceeded {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The answer is not usable audio.
    #[error("unusable audio: {0}")]
    BadAudio(String),
    /// Writing the output file failed.
    #[error("writing the audio file: {0}")]
    Io(String),
    /// `cancel` fired.
    #[error("canceled")]
    Canceled,
}

impl TtsHttpError {
    /// Whether a later attempt may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport(_) | Self::Io(_) => true,
            Self::Status { status, .. } => status_is_retryable(*status),
            Self::Request(_)
            | Self::Text(_)
            | Self::TooLarge { .. }
            | Self::BadAudio(_)
            | Self::Canceled => false,
        }
    }

    /// The job error code: `tts_unavailable`, `tts_rejected`, `tts_bad_audio` or `tts_io`
    /// (and `canceled`, which never reaches a job error).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } | Self::Transport(_) => "tts_unavailable",
            Self::Status { status, .. } if status_is_retryable(*status) => "tts_unavailable",
            Self::Status { .. } | Self::Request(_) | Self::Text(_) => "tts_rejected",
            Self::TooLarge { .. } | Self::BadAudio(_) => "tts_bad_audio",
            Self::Io(_) => "tts_io",
            Self::Canceled => "canceled",
        }
    }

    fn into_stage_error(self, backend: &str) -> StageError {
        if self == Self::Canceled {
            return StageError::Canceled;
        }
        let message = format!("{backend} TTS: {self}");
        if self.is_retryable() {
            StageError::retryable(self.code(), message)
        } else {
            StageError::permanent(self.code(), message)
        }
    }
}

impl From<TtsHttpError> for StageError {
    fn from(e: TtsHttpError) -> Self {
        e.into_stage_error("HTTP")
    }
}

/// 408 and 429 say "not now"; 5xx is the service's own trouble. Everything else is about
/// this request or this configuration, and repeating it changes nothing.
fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

fn describe_status(status: u16, retry_after: Option<&str>, detail: &str) -> String {
    let what = match status {
        401 | 403 => {
            "the service refused the credentials — a configuration problem (check \
             VIDEO_TTS_API_KEY and the account's access to the API); retrying this job will \
             not help"
        }
        404 => {
            "no such endpoint, voice or model (check VIDEO_TTS_URL, VIDEO_TTS_VOICE, VIDEO_TTS_MODEL)"
        }
        413 => "the service refused the text as too large",
        400 | 422 => "the service refused the request",
        408 => "the service timed out waiting for the request",
        429 => "rate limited",
        500..=599 => "the service is unavailable",
        300..=399 => "unexpected redirect (check VIDEO_TTS_URL)",
        _ => "unexpected status",
    };
    let mut message = format!("HTTP {status}: {what}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(after) = retry_after {
        message.push_str(" (Retry-After: ");
        message.push_str(after);
        message.push(')');
    }
    message
}

/// The `Display` of an error and its sources, joined; for reqwest errors, called after
/// `without_url` so no URL is repeated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        // hyper and reqwest often repeat the inner message in the outer one.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn classify_reqwest(error: reqwest::Error, timeout: Duration) -> TtsHttpError {
    let error = error.without_url();
    if error.is_timeout() {
        TtsHttpError::Timeout { after: timeout }
    } else if error.is_builder() || error.is_redirect() {
        // A request we could not build, or a redirect loop: no retry fixes that.
        TtsHttpError::Request(error_chain(&error))
    } else {
        // Connect, request and body errors: the network or the peer, worth another try.
        TtsHttpError::Transport(error_chain(&error))
    }
}

/// The endpoint plus what authenticates to it; shared by both backends.
#[derive(Debug, Clone)]
struct Transport {
    client: reqwest::Client,
    http: HttpOptions,
    endpoint: Url,
    auth: Option<(HeaderName, HeaderValue)>,
    /// Kept only to scrub it from server messages.
    secret: Option<Secret>,
}

impl Transport {
    /// POSTs `body` as JSON and returns the response body, racing the timeout and `cancel`.
    async fn post_json<T: Serialize + Sync>(
        &self,
        body: &T,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TtsHttpError> {
        let timeout = self.http.request_timeout;
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .timeout(timeout)
            .json(body);
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
        }
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| classify_reqwest(e, timeout))?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| sanitize_retry_after(v.as_bytes()));
                // The explanation is a courtesy: a body that fails to arrive loses only it.
                let body = read_body(&mut response, MAX_ERROR_BODY_BYTES, true, timeout)
                    .await
                    .unwrap_or_default();
                return Err(TtsHttpError::Status {
                    status: status.as_u16(),
                    retry_after,
                    detail: error_detail(&body, self.secret.as_ref()),
                });
            }
            read_body(&mut response, self.http.max_response_bytes, false, timeout).await
        };
        // `biased`: a token cancelled before the call sends nothing.
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(TtsHttpError::Canceled),
            result = tokio::time::timeout(timeout, exchange) => match result {
                Ok(result) => result,
                Err(_elapsed) => Err(TtsHttpError::Timeout { after: timeout }),
            },
        }
    }
}

/// Reads the body chunk by chunk so a hostile server cannot make us buffer without bound.
/// With `truncate`, stops quietly at `limit`; otherwise exceeding it is an error.
async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
    truncate: bool,
    timeout: Duration,
) -> Result<Vec<u8>, TtsHttpError> {
    let declared = response.content_length().unwrap_or(0);
    if !truncate && declared > limit as u64 {
        return Err(TtsHttpError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0).min(limit));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify_reqwest(e, timeout))?
    {
        if body.len() + chunk.len() > limit {
            if truncate {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            return Err(TtsHttpError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Keeps a `Retry-After` value only if it looks like one (seconds or an HTTP date), so a
/// server cannot inject arbitrary text into our messages.
fn sanitize_retry_after(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let plausible = !text.is_empty()
        && text.len() <= 40
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | ':' | '-'));
    plausible.then(|| text.to_owned())
}

/// The useful part of an error body: `error.message` from Google's or OpenAI's JSON, else
/// the text; secrets scrubbed, control characters flattened, shortened.
fn error_detail(body: &[u8], secret: Option<&Secret>) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    // Scrub before shortening, so no cut-off prefix of a secret survives.
    let text = match secret.map(Secret::expose) {
        Some(s) if !s.is_empty() => text.replace(s, "<redacted>"),
        _ => text,
    };
    let flat = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match flat.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// The `speed` / `speakingRate` both APIs take: 1.0 is their normal pace (~160 wpm), and
/// both accept 0.25–4.0.
pub fn speed_for(rate_wpm: u32) -> f64 {
    (f64::from(rate_wpm) / NORMAL_WPM).clamp(0.25, 4.0)
}

/// BCP 47 casing (`en-us` → `en-US`, `zh_hant_tw` → `zh-Hant-TW`): tags are
/// case-insensitive, but Google documents and echoes the canonical form.
fn canonical_language(tag: &str) -> String {
    tag.trim()
        .split(['-', '_'])
        .enumerate()
        .map(|(i, part)| {
            let alpha = part.chars().all(|c| c.is_ascii_alphabetic());
            if i > 0 && alpha && part.len() == 2 {
                part.to_ascii_uppercase()
            } else if i > 0 && alpha && part.len() == 4 {
                let lower = part.to_ascii_lowercase();
                lower[..1].to_ascii_uppercase() + &lower[1..]
            } else {
                part.to_ascii_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Checks a base URL: http(s), no credentials, no query (a `?key=` there would end up in
/// logs; keys belong in `VIDEO_TTS_API_KEY`).
fn check_base_url(url: &Url) -> Result<(), ConfigError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::BaseUrl(
            "the scheme must be http or https".into(),
        ));
    }
    if url.host_str().is_none() || url.cannot_be_a_base() {
        return Err(ConfigError::BaseUrl("needs a host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::BaseUrl(
            "must not hold credentials; put them in VIDEO_TTS_API_KEY".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::BaseUrl(
            "must not have a query or fragment; put keys in VIDEO_TTS_API_KEY".into(),
        ));
    }
    Ok(())
}

/// Parses `VIDEO_TTS_URL` without repeating it in the error (it may hold a secret).
pub fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| ConfigError::BaseUrl(format!("not a valid URL ({e})")))?;
    check_base_url(&url)?;
    Ok(url)
}

/// `base` + `/v1/<tail>`, without doubling a `/v1` the base already ends with.
fn endpoint(base: &Url, tail: &[&str]) -> Result<Url, ConfigError> {
    check_base_url(base)?;
    let mut url = base.clone();
    let ends_in_v1 = base
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        == Some("v1");
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| ConfigError::BaseUrl("cannot take a path".into()))?;
        segments.pop_if_empty();
        if !ends_in_v1 {
            segments.push("v1");
        }
        segments.extend(tail);
    }
    Ok(url)
}

/// `host[:port]` of a base URL, for fingerprints: a different server may speak differently.
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("-");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn sensitive(value: &str) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        ConfigError::ApiKey("contains characters not allowed in an HTTP header".into())
    })?;
    // Keeps it out of `Debug` output of headers (hyper/reqwest tracing).
    value.set_sensitive(true);
    Ok(value)
}

fn check_name(value: &str, wrap: fn(String) -> ConfigError) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(wrap("must not be empty".into()));
    }
    if value.chars().any(char::is_control) || value.len() > 200 {
        return Err(wrap(
            "must be a short name without control characters".into(),
        ));
    }
    Ok(())
}

fn check_text(text: &str, too_long: Option<String>) -> Result<(), TtsHttpError> {
    if text.trim().is_empty() {
        return Err(TtsHttpError::Text("the text is empty".into()));
    }
    match too_long {
        Some(reason) => Err(TtsHttpError::Text(reason)),
        None => Ok(()),
    }
}

/// Google Cloud Text-to-Speech (`POST {base}/v1/text:synthesize`, LINEAR16 at 24 kHz).
#[derive(Debug, Clone)]
pub struct GoogleTts {
    transport: Transport,
    host: String,
    voice_name: Option<String>,
}

#[derive(Serialize)]
struct GoogleRequest<'a> {
    input: GoogleInput<'a>,
    voice: GoogleVoice<'a>,
    #[serde(rename = "audioConfig")]
    audio_config: GoogleAudioConfig,
}

#[derive(Serialize)]
struct GoogleInput<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoogleVoice<'a> {
    language_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoogleAudioConfig {
    audio_encoding: &'static str,
    sample_rate_hertz: u32,
    speaking_rate: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleResponse {
    audio_content: String,
}

impl GoogleTts {
    /// A backend on `client` (shared; see [`HttpOptions::client`] for how to build one).
    pub fn new(config: GoogleTtsConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let endpoint = endpoint(&config.base_url, &["text:synthesize"])?;
        let secret = config.auth.secret();
        if secret.expose().is_empty() {
            return Err(ConfigError::ApiKey("must not be empty".into()));
        }
        let auth = match &config.auth {
            GoogleAuth::ApiKey(key) => (
                HeaderName::from_static("x-goog-api-key"),
                sensitive(key.expose())?,
            ),
            GoogleAuth::Bearer(token) => (
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose()))?,
            ),
        };
        if let Some(name) = &config.voice_name {
            check_name(name, ConfigError::Voice)?;
        }
        Ok(Self {
            host: host_of(&config.base_url),
            voice_name: config.voice_name.map(|n| n.trim().to_owned()),
            transport: Transport {
                client,
                http: config.http,
                endpoint,
                auth: Some(auth),
                secret: Some(secret.clone()),
            },
        })
    }

    async fn speak(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), TtsHttpError> {
        let too_long = (text.len() > GOOGLE_MAX_TEXT_BYTES).then(|| {
            format!(
                "the text is {} bytes; Google takes at most {GOOGLE_MAX_TEXT_BYTES}",
                text.len()
            )
        });
        check_text(text, too_long)?;
        let request = GoogleRequest {
            input: GoogleInput { text },
            voice: GoogleVoice {
                language_code: canonical_language(&voice.language),
                name: self.voice_name.as_deref(),
            },
            audio_config: GoogleAudioConfig {
                audio_encoding: "LINEAR16",
                sample_rate_hertz: GOOGLE_SAMPLE_RATE,
                speaking_rate: speed_for(voice.rate_wpm),
            },
        };
        let started = Instant::now();
        let body = self.transport.post_json(&request, cancel).await?;
        let answer: GoogleResponse = serde_json::from_slice(&body).map_err(|e| {
            TtsHttpError::BadAudio(format!("the answer is not the expected JSON ({e})"))
        })?;
        drop(body);
        let wav = decode_base64(&answer.audio_content)?;
        finish(wav, out, cancel, "google", started).await
    }
}

/// proto3 JSON writes bytes as standard base64, but parsers accept the URL-safe alphabet
/// too, so a proxy re-encoding the answer may use either.
fn decode_base64(text: &str) -> Result<Vec<u8>, TtsHttpError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|e| TtsHttpError::BadAudio(format!("audioContent is not base64 ({e})")))
}

#[async_trait]
impl TtsBackend for GoogleTts {
    fn fingerprint(&self, voice: &Voice) -> String {
        format!(
            "google-tts/v1 host={} voice={} lang={} rate_wpm={} encoding=LINEAR16/{GOOGLE_SAMPLE_RATE}",
            self.host,
            self.voice_name.as_deref().unwrap_or("-"),
            canonical_language(&voice.language),
            voice.rate_wpm,
        )
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        self.speak(text, voice, out, cancel)
            .await
            .map_err(|e| e.into_stage_error("Google"))
    }
}

/// OpenAI-style speech (`POST {base}/v1/audio/speech`, `response_format: wav`).
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    transport: Transport,
    host: String,
    model: String,
    voice: String,
}

#[derive(Serialize)]
struct OpenAiRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'static str,
    speed: f64,
}

impl OpenAiTts {
    /// A backend on `client` (shared; see [`HttpOptions::client`] for how to build one).
    pub fn new(config: OpenAiTtsConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let endpoint = endpoint(&config.base_url, &["audio", "speech"])?;
        check_name(&config.model, ConfigError::Model)?;
        check_name(&config.voice, ConfigError::Voice)?;
        let auth = match &config.api_key {
            Some(key) if key.expose().is_empty() => {
                return Err(ConfigError::ApiKey("must not be empty".into()));
            }
            Some(key) => Some((
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", key.expose()))?,
            )),
            None => None,
        };
        Ok(Self {
            host: host_of(&config.base_url),
            model: config.model.trim().to_owned(),
            voice: config.voice.trim().to_owned(),
            transport: Transport {
                client,
                http: config.http,
                endpoint,
                auth,
                secret: config.api_key,
            },
        })
    }

    async fn speak(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), TtsHttpError> {
        let chars = text.chars().count();
        let too_long = (chars > OPENAI_MAX_TEXT_CHARS).then(|| {
            format!("the text is {chars} characters; the API takes at most {OPENAI_MAX_TEXT_CHARS}")
        });
        check_text(text, too_long)?;
        let request = OpenAiRequest {
            model: &self.model,
            input: text,
            voice: &self.voice,
            response_format: "wav",
            speed: speed_for(voice.rate_wpm),
        };
        let started = Instant::now();
        let wav = self.transport.post_json(&request, cancel).await?;
        finish(wav, out, cancel, "openai", started).await
    }
}

#[async_trait]
impl TtsBackend for OpenAiTts {
    fn fingerprint(&self, voice: &Voice) -> String {
        // The API takes no language, but the storyboard's language is part of what the
        // caller asked for; keeping it makes the key honest if a server starts using it.
        format!(
            "openai-tts/v1 host={} model={} voice={} lang={} rate_wpm={} format=wav",
            self.host,
            self.model,
            self.voice,
            canonical_language(&voice.language),
            voice.rate_wpm,
        )
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        self.speak(text, voice, out, cancel)
            .await
            .map_err(|e| e.into_stage_error("OpenAI"))
    }
}

/// Validates and stores the WAV, unless `cancel` fired while it downloaded.
async fn finish(
    wav: Vec<u8>,
    out: &Path,
    cancel: &CancellationToken,
    backend: &'static str,
    started: Instant,
) -> Result<(), TtsHttpError> {
    if cancel.is_cancelled() {
        return Err(TtsHttpError::Canceled);
    }
    let bytes = wav.len();
    let target = out.to_path_buf();
    // Decoding and writing are blocking work (megabytes of samples, file system calls).
    let stored = tokio::task::spawn_blocking(move || store_wav(wav, &target))
        .await
        .map_err(|e| TtsHttpError::Io(format!("the writer task failed: {e}")))??;
    tracing::debug!(
        backend,
        bytes,
        samples = stored.samples,
        sample_rate = stored.sample_rate,
        elapsed_ms = started.elapsed().as_millis(),
        "speech synthesized"
    );
    Ok(())
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    samples: u64,
    sample_rate: u32,
}

/// Fixes the length fields of a streamed WAV. Servers that stream (OpenAI among them) write
/// the header before they know the length and put a placeholder there (`0xFFFFFFFF`,
/// `0x7FFFFFFF`, or 0); hound would refuse or misread those. A `data` chunk declaring more
/// than is present, or nothing while bytes follow, is taken to end with the body (rounded
/// down to whole frames). HTTP itself already caught a truncated transfer.
fn repair_streamed_header(mut wav: Vec<u8>) -> Vec<u8> {
    let read_u32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return wav;
    }
    let mut block_align: usize = 1;
    let mut at = 12;
    while let (Some(id), Some(size)) = (wav.get(at..at + 4), read_u32(&wav, at + 4)) {
        let size = size as usize;
        let body = at + 8;
        if id == b"fmt " {
            if let Some(&[lo, hi]) = wav.get(body + 12..body + 14) {
                block_align = usize::from(u16::from_le_bytes([lo, hi])).max(1);
            }
        } else if id == b"data" {
            let present = wav.len() - body;
            if size == 0 || size > present {
                let fixed = present - present % block_align;
                if let (Ok(fixed32), Ok(riff)) =
                    (u32::try_from(fixed), u32::try_from(body + fixed - 8))
                {
                    wav[at + 4..at + 8].copy_from_slice(&fixed32.to_le_bytes());
                    wav[4..8].copy_from_slice(&riff.to_le_bytes());
                }
            }
            return wav;
        }
        // Chunks are padded to an even length.
        match body
            .checked_add(size)
            .and_then(|end| end.checked_add(size & 1))
        {
            Some(next) => at = next,
            None => break,
        }
    }
    wav
}

/// Checks the WAV is mono 16-bit PCM with samples, and writes it canonically (plain 44-byte
/// header, no extra chunks, true lengths) to a temporary file beside `out`, renamed over
/// `out` only when complete.
fn store_wav(wav: Vec<u8>, out: &Path) -> Result<Stored, TtsHttpError> {
    let wav = repair_streamed_header(wav);
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.as_slice()))
        .map_err(|e| TtsHttpError::BadAudio(format!("not a WAV file ({e})")))?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(TtsHttpError::BadAudio(format!(
            "{} channels; mono is required",
            spec.channels
        )));
    }
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        let kind = match spec.sample_format {
            hound::SampleFormat::Int => "integer",
            hound::SampleFormat::Float => "float",
        };
        return Err(TtsHttpError::BadAudio(format!(
            "{}-bit {kind} samples; 16-bit integer PCM is required",
            spec.bits_per_sample
        )));
    }
    if !SAMPLE_RATES.contains(&spec.sample_rate) {
        return Err(TtsHttpError::BadAudio(format!(
            "a sample rate of {} Hz",
            spec.sample_rate
        )));
    }
    if reader.len() == 0 {
        return Err(TtsHttpError::BadAudio("no samples".into()));
    }
    let out_spec = hound::WavSpec {
        channels: 1,
        sample_rate: spec.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let temp = TempFile::beside(out)?;
    let file = std::fs::File::create(&temp.path).map_err(|e| io_error("creating", &e))?;
    let mut buffered = std::io::BufWriter::new(file);
    let mut writer = hound::WavWriter::new(&mut buffered, out_spec).map_err(hound_io)?;
    let mut samples = 0u64;
    for sample in reader.samples::<i16>() {
        let sample = sample.map_err(|e| TtsHttpError::BadAudio(format!("reading samples: {e}")))?;
        writer.write_sample(sample).map_err(hound_io)?;
        samples += 1;
    }
    // Writes the true lengths into the header.
    writer.finalize().map_err(hound_io)?;
    let file = buffered
        .into_inner()
        .map_err(|e| io_error("writing", e.error()))?;
    // The data must be on disk before the rename makes it visible as `out`.
    file.sync_all().map_err(|e| io_error("syncing", &e))?;
    drop(file);
    temp.persist(out)?;
    Ok(Stored {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn hound_io(e: hound::Error) -> TtsHttpError {
    TtsHttpError::Io(format!("writing the temporary file: {e}"))
}

fn io_error(doing: &str, e: &std::io::Error) -> TtsHttpError {
    TtsHttpError::Io(format!("{doing} the temporary file: {e}"))
}

/// A temporary file beside the target (same directory, so the rename is atomic), removed on
/// drop unless persisted.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn beside(out: &Path) -> Result<Self, TtsHttpError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = out
            .file_name()
            .ok_or_else(|| TtsHttpError::Io(format!("{} names no file", out.display())))?;
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.{unique}.part", std::process::id()));
        Ok(Self {
            path: out.with_file_name(temp_name),
            keep: false,
        })
    }

    fn persist(mut self, out: &Path) -> Result<(), TtsHttpError> {
        std::fs::rename(&self.path, out)
            .map_err(|e| TtsHttpError::Io(format!("renaming into {}: {e}", out.display())))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: it may never have been created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Builds a backend from the environment's settings: `kind` is `VIDEO_TTS_BACKEND`
/// (`google` or `openai`), `base_url` is `VIDEO_TTS_URL` (empty: the public endpoint),
/// `api_key` is `VIDEO_TTS_API_KEY` (for Google, `Bearer <token>` means an access token),
/// `voice_name` is `VIDEO_TTS_VOICE` and `model` is `VIDEO_TTS_MODEL` (OpenAI only). Empty
/// values count as unset. Default timeouts and limits apply. Errors name the variable and
/// never repeat a secret.
pub fn from_settings(
    kind: &str,
    base_url: &str,
    api_key: Option<&str>,
    voice_name: Option<&str>,
    model: Option<&str>,
    client: reqwest::Client,
) -> Result<Arc<dyn TtsBackend>, String> {
    build(kind, base_url, api_key, voice_name, model, client).map_err(|e| e.to_string())
}

fn build(
    kind: &str,
    base_url: &str,
    api_key: Option<&str>,
    voice_name: Option<&str>,
    model: Option<&str>,
    client: reqwest::Client,
) -> Result<Arc<dyn TtsBackend>, ConfigError> {
    fn set(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let url_or = |default: &str| parse_base_url(set(Some(base_url)).unwrap_or(default));
    match kind.trim().to_ascii_lowercase().as_str() {
        "google" => {
            if set(model).is_some() {
                return Err(ConfigError::Model(
                    "the google backend takes no model; the voice name (VIDEO_TTS_VOICE) picks it"
                        .into(),
                ));
            }
            let key = set(api_key).ok_or_else(|| {
                ConfigError::ApiKey(
                    "required by the google backend (an API key, or `Bearer <access token>`)"
                        .into(),
                )
            })?;
            let config = GoogleTtsConfig {
                base_url: url_or(GOOGLE_DEFAULT_URL)?,
                auth: GoogleAuth::from_setting(key),
                voice_name: set(voice_name).map(str::to_owned),
                http: HttpOptions::default(),
            };
            Ok(Arc::new(GoogleTts::new(config, client)?))
        }
        "openai" => {
            let config = OpenAiTtsConfig {
                base_url: url_or(OPENAI_DEFAULT_URL)?,
                api_key: set(api_key).map(Secret::new),
                model: set(model).unwrap_or(OPENAI_DEFAULT_MODEL).to_owned(),
                voice: set(voice_name).unwrap_or(OPENAI_DEFAULT_VOICE).to_owned(),
                http: HttpOptions::default(),
            };
            Ok(Arc::new(OpenAiTts::new(config, client)?))
        }
        other => Err(ConfigError::Backend(format!(
            "unknown backend `{}` (expected google or openai)",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(channels: u16, bits: u16, format: hound::SampleFormat, frames: u32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 24_000,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames * u32::from(channels) {
            match (format, bits) {
                (hound::SampleFormat::Float, _) => writer.write_sample(0.1f32).unwrap(),
                (_, 8) => writer.write_sample((i % 100) as i8).unwrap(),
                _ => writer.write_sample((i % 1000) as i16).unwrap(),
            }
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn mono16(frames: u32) -> Vec<u8> {
        wav_bytes(1, 16, hound::SampleFormat::Int, frames)
    }

    #[test]
    fn speed_is_relative_to_160_wpm_and_clamped() {
        assert_eq!(speed_for(160), 1.0);
        assert_eq!(speed_for(80), 0.5);
        assert_eq!(speed_for(240), 1.5);
        assert_eq!(speed_for(0), 0.25);
        assert_eq!(speed_for(10_000), 4.0);
    }

    #[test]
    fn languages_get_canonical_case() {
        assert_eq!(canonical_language("en"), "en");
        assert_eq!(canonical_language("en-us"), "en-US");
        assert_eq!(canonical_language(" EN_gb "), "en-GB");
        assert_eq!(canonical_language("zh-hant-tw"), "zh-Hant-TW");
        assert_eq!(canonical_language("es-419"), "es-419");
    }

    #[test]
    fn endpoints_append_the_api_path_once() {
        let join = |base: &str, tail: &[&str]| {
            endpoint(&Url::parse(base).unwrap(), tail)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            join("http://127.0.0.1:8080", &["text:synthesize"]),
            "http://127.0.0.1:8080/v1/text:synthesize"
        );
        assert_eq!(
            join("https://proxy.example/tts/", &["audio", "speech"]),
            "https://proxy.example/tts/v1/audio/speech"
        );
        assert_eq!(
            join("https://api.openai.com/v1", &["audio", "speech"]),
            "https://api.openai.com/v1/audio/speech"
        );
        assert_eq!(
            join("https://api.openai.com/v1/", &["audio", "speech"]),
            "https://api.openai.com/v1/audio/speech"
        );
    }

    #[test]
    fn base_urls_with_secrets_or_odd_schemes_are_refused() {
        for bad in [
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?key=abc",
            "not a url",
        ] {
            let err = parse_base_url(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("VIDEO_TTS_URL: "), "{text}");
            assert!(!text.contains("pw") && !text.contains("abc"), "{text}");
        }
        parse_base_url("http://127.0.0.1:1/").unwrap();
    }

    #[test]
    fn statuses_are_classified_by_kind() {
        let status = |s: u16| TtsHttpError::Status {
            status: s,
            retry_after: None,
            detail: String::new(),
        };
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
            assert_eq!(status(s).code(), "tts_unavailable");
        }
        for s in [301, 400, 401, 403, 404, 405, 413, 422] {
            assert!(!status(s).is_retryable(), "{s}");
            assert_eq!(status(s).code(), "tts_rejected");
        }
        assert!(matches!(
            StageError::from(status(503)),
            StageError::Retryable(_)
        ));
        assert!(matches!(
            StageError::from(status(401)),
            StageError::Permanent(_)
        ));
        assert_eq!(
            StageError::from(TtsHttpError::Canceled),
            StageError::Canceled
        );
        assert!(matches!(
            StageError::from(TtsHttpError::BadAudio("x".into())),
            StageError::Permanent(_)
        ));
        assert!(
            TtsHttpError::Timeout {
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
    }

    #[test]
    fn auth_failures_say_it_is_configuration() {
        let text = TtsHttpError::Status {
            status: 401,
            retry_after: None,
            detail: "API key not valid".into(),
        }
        .to_string();
        assert!(text.contains("configuration"), "{text}");
        assert!(text.contains("VIDEO_TTS_API_KEY"), "{text}");
        assert!(text.contains("API key not valid"), "{text}");
    }

    #[test]
    fn retry_after_is_reported_only_when_plausible() {
        assert_eq!(sanitize_retry_after(b" 30 ").as_deref(), Some("30"));
        assert_eq!(
            sanitize_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT").as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(sanitize_retry_after(b"30\"; rm -rf"), None);
        assert_eq!(sanitize_retry_after(&[b'9'; 100]), None);
        let text = describe_status(429, Some("30"), "");
        assert!(text.contains("Retry-After: 30"), "{text}");
    }

    #[test]
    fn error_details_are_extracted_scrubbed_and_short() {
        let secret = Secret::new("sk-very-secret");
        let google = br#"{"error":{"code":400,"message":"bad voice for sk-very-secret","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            error_detail(google, Some(&secret)),
            "bad voice for <redacted>"
        );
        let long = "x".repeat(5000) + "\n\u{7}sk-very-secret";
        let detail = error_detail(long.as_bytes(), Some(&secret));
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS + 1);
        assert!(!detail.contains("sk-very"));
        assert_eq!(
            error_detail(b"line one\r\nline\ttwo", None),
            "line one line two"
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let auth = GoogleAuth::from_setting("AIzaSECRET");
        assert_eq!(auth, GoogleAuth::ApiKey(Secret::new("AIzaSECRET")));
        assert!(!format!("{auth:?}").contains("SECRET"));
        assert_eq!(
            GoogleAuth::from_setting("bearer ya29.TOKEN"),
            GoogleAuth::Bearer(Secret::new("ya29.TOKEN"))
        );
    }

    #[test]
    fn streamed_placeholder_lengths_are_repaired() {
        let good = mono16(1000);
        for placeholder in [u32::MAX, 0x7FFF_FFFF, 0] {
            let mut streamed = good.clone();
            streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
            streamed[40..44].copy_from_slice(&placeholder.to_le_bytes());
            let fixed = repair_streamed_header(streamed);
            assert_eq!(fixed, good, "placeholder {placeholder:#x}");
        }
        // An odd trailing byte is dropped rather than failing the whole file.
        let mut odd = good.clone();
        odd.push(7);
        odd[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let reader =
            hound::WavReader::new(std::io::Cursor::new(repair_streamed_header(odd))).unwrap();
        assert_eq!(reader.len(), 1000);
        // Correct headers and non-WAV input pass through untouched.
        assert_eq!(repair_streamed_header(good.clone()), good);
        assert_eq!(repair_streamed_header(b"garbage".to_vec()), b"garbage");
    }

    #[test]
    fn store_wav_accepts_only_mono_16_bit_pcm() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seg.wav");
        let stored = store_wav(mono16(12_000), &out).unwrap();
        assert_eq!(stored.samples, 12_000);
        let reader = hound::WavReader::open(&out).unwrap();
        assert_eq!(reader.len(), 12_000);
        assert_eq!(reader.spec().channels, 1);

        for (bad, what) in [
            (wav_bytes(2, 16, hound::SampleFormat::Int, 100), "channels"),
            (wav_bytes(1, 8, hound::SampleFormat::Int, 100), "16-bit"),
            (wav_bytes(1, 32, hound::SampleFormat::Float, 100), "16-bit"),
            (mono16(0), "no samples"),
            (b"ID3 this is an mp3".to_vec(), "not a WAV"),
        ] {
            let err = store_wav(bad, &out).unwrap_err();
            assert!(
                matches!(&err, TtsHttpError::BadAudio(m) if m.contains(what)),
                "{err:?}"
            );
            assert_eq!(err.code(), "tts_bad_audio");
        }
        // The earlier good file is intact and no temporary files remain.
        assert_eq!(hound::WavReader::open(&out).unwrap().len(), 12_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_sample_data_is_bad_audio_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seg.wav");
        // Cut inside the `fmt ` chunk: no header to repair, nothing to decode.
        let mut wav = mono16(100);
        wav.truncate(30);
        assert!(matches!(
            store_wav(wav, &out),
            Err(TtsHttpError::BadAudio(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn empty_text_is_refused() {
        assert!(matches!(
            check_text("  \n", None),
            Err(TtsHttpError::Text(_))
        ));
        assert!(check_text("hi", None).is_ok());
    }

    #[test]
    fn settings_errors_name_the_variable() {
        let client = reqwest::Client::new();
        let err = |kind, url, key, voice, model| {
            from_settings(kind, url, key, voice, model, client.clone()).unwrap_err()
        };
        assert!(err("polly", "", None, None, None).starts_with("VIDEO_TTS_BACKEND:"));
        assert!(err("google", "", None, None, None).starts_with("VIDEO_TTS_API_KEY:"));
        assert!(err("google", "", Some("k"), None, Some("m")).starts_with("VIDEO_TTS_MODEL:"));
        assert!(err("openai", "ftp://x", None, None, None).starts_with("VIDEO_TTS_URL:"));
        let bad_key = err("openai", "", Some("a\nb"), None, None);
        assert!(bad_key.starts_with("VIDEO_TTS_API_KEY:") && !bad_key.contains("a\nb"));
        assert!(err("openai", "", None, Some("\u{7}"), None).starts_with("VIDEO_TTS_VOICE:"));
    }

    #[test]
    fn settings_build_both_backends_with_defaults() {
        let client = reqwest::Client::new();
        let voice = Voice::default();
        let google = from_settings(
            " Google ",
            "",
            Some("AIzaKEY"),
            Some(""),
            None,
            client.clone(),
        )
        .unwrap();
        let fp = google.fingerprint(&voice);
        assert!(fp.contains("texttospeech.googleapis.com"), "{fp}");
        assert!(!fp.contains("AIzaKEY"));
        assert_eq!(google.concurrency(), 4);
        let openai = from_settings("openai", "", None, None, Some(" "), client).unwrap();
        let fp = openai.fingerprint(&voice);
        assert!(
            fp.contains("api.openai.com") && fp.contains("model=tts-1"),
            "{fp}"
        );
        assert!(fp.contains("voice=alloy"), "{fp}");
    }
}
