//! The HTTP exchange both cloud backends share: the client settings, one JSON POST raced
//! against its timeout and `cancel`, a bounded body read, and the typing of failures —
//! reqwest's error kinds and the HTTP status become [`TtsHttpError`] variants; a server's
//! `Retry-After` and error message are kept only once sanitized and scrubbed of the secret.
//! Base URLs are checked here too, since they become the endpoint.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::error::{ClientError, ConfigError, TtsHttpError};

/// How long one synthesis request may take, from connecting to the last body byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take (a client setting; see [`HttpOptions::client`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read. Two minutes of 24 kHz speech is about 6 MB (8 MB as
/// base64); anything far beyond that is a broken or hostile server, not speech.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 50 * 1024 * 1024;

/// How much of an error body is read for the message: enough for a JSON error, no more.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// How much of a server's error message is kept.
const MAX_DETAIL_CHARS: usize = 300;

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
    pub fn client(&self) -> Result<reqwest::Client, ClientError> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("video-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)
    }
}

/// The endpoint plus what authenticates to it; shared by both backends.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    pub client: reqwest::Client,
    pub http: HttpOptions,
    pub endpoint: Url,
    /// The header that authenticates, its value marked sensitive.
    pub auth: Option<(HeaderName, HeaderValue)>,
    /// Kept only to scrub it from server messages.
    pub secret: Option<SecretString>,
}

impl Transport {
    /// POSTs `body` as JSON and returns the response body, racing the timeout and `cancel`.
    pub async fn post_json<T: Serialize + Sync>(
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
fn error_detail(body: &[u8], secret: Option<&SecretString>) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    // Scrub before shortening, so no cut-off prefix of a secret survives.
    let text = match secret.map(ExposeSecret::expose_secret) {
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

/// The `Display` of an error and its sources, joined; for reqwest errors, called after
/// `without_url` so no URL is repeated. Only for the message: the kind was decided before.
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

/// Types a reqwest failure by its kind.
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
pub(super) fn endpoint(base: &Url, tail: &[&str]) -> Result<Url, ConfigError> {
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
pub(super) fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("-");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// `value` as a header value marked sensitive. This is where a credential is exposed: once,
/// to become the header.
pub(super) fn sensitive(value: &str) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        ConfigError::ApiKey("contains characters not allowed in an HTTP header".into())
    })?;
    // Keeps it out of `Debug` output of headers (hyper/reqwest tracing).
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;

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
            assert!(matches!(err, ConfigError::BaseUrl(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.starts_with("VIDEO_TTS_URL: "), "{text}");
            assert!(!text.contains("pw") && !text.contains("abc"), "{text}");
        }
        parse_base_url("http://127.0.0.1:1/").unwrap();
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
    }

    #[test]
    fn error_details_are_extracted_scrubbed_and_short() {
        let secret = SecretString::from("sk-very-secret");
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
}
