//! What can go wrong with a cloud voice, as types: [`ConfigError`] when a backend is built
//! (naming the environment variable to fix), [`ClientError`] when the HTTP client is, and
//! [`TtsHttpError`] for one synthesis, classified into a [`StageError`] by kind and HTTP
//! status, never by message text.

use std::time::Duration;

use crate::StageError;
use crate::tts::wav::WavError;

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

/// The HTTP client could not be built (no TLS backend, an unusable system configuration).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client")]
pub struct ClientError(#[source] pub reqwest::Error);

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

impl From<WavError> for TtsHttpError {
    fn from(e: WavError) -> Self {
        match e {
            WavError::Io(_) => Self::Io(e.to_string()),
            _ => Self::BadAudio(e.to_string()),
        }
    }
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

    /// The stage error, its message prefixed with the backend's name.
    pub(crate) fn into_stage_error(self, backend: &str) -> StageError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Audio the service sent is its fault; a disk that refused it is ours.
        assert_eq!(TtsHttpError::from(WavError::Empty).code(), "tts_bad_audio");
        assert_eq!(
            TtsHttpError::from(WavError::Io("disk full".into())).code(),
            "tts_io"
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
        let text = describe_status(429, Some("30"), "");
        assert!(text.contains("Retry-After: 30"), "{text}");
    }
}
