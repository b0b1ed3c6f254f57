//! Cloud TTS over HTTP: Google Cloud Text-to-Speech ([`google`]) and OpenAI-style
//! `/v1/audio/speech` ([`openai`]), over a shared [`transport`].
//!
//! Both backends ask for 16-bit PCM WAV, check what comes back (RIFF, mono, 16-bit integer
//! samples, at least one sample) and write a canonical WAV to `out` through a temporary file
//! and a rename, so a failed or cancelled call never leaves a half-written `out` behind.
//!
//! Failures are typed ([`TtsHttpError`]) and turned into [`StageError`](crate::StageError)s
//! by kind, never by matching message text:
//!
//! | failure                                              | stage error | code              |
//! |------------------------------------------------------|-------------|-------------------|
//! | timeout, connection trouble, 408, 429, 5xx           | retryable   | `tts_unavailable` |
//! | 400, 401, 403, 404, 413, 422, other statuses, text too long | permanent | `tts_rejected` |
//! | not a WAV, stereo, not 16-bit, empty, oversize body  | permanent   | `tts_bad_audio`   |
//! | writing `out` failed                                 | retryable   | `tts_io`          |
//! | `cancel` fired                                       | canceled    | —                 |
//!
//! Secrets (API keys, access tokens) are [`SecretString`]s, whose `Debug` is redacted; they
//! are exposed only to build the request header, and are scrubbed from anything a server
//! echoes back, so they appear in no error, log line or fingerprint.
//!
//! The binary builds a backend from its environment with [`from_settings`]
//! ([`HttpTtsSettings`]: `VIDEO_TTS_BACKEND`, `VIDEO_TTS_URL`, `VIDEO_TTS_API_KEY`,
//! `VIDEO_TTS_VOICE`, `VIDEO_TTS_MODEL`); configuration errors name the variable to fix.

mod error;
pub mod google;
pub mod openai;
pub mod transport;

use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

pub use error::{ClientError, ConfigError, TtsHttpError};
pub use google::{
    GOOGLE_DEFAULT_URL, GOOGLE_MAX_TEXT_BYTES, GOOGLE_SAMPLE_RATE, GoogleAuth, GoogleTts,
    GoogleTtsConfig,
};
pub use openai::{
    OPENAI_DEFAULT_MODEL, OPENAI_DEFAULT_URL, OPENAI_DEFAULT_VOICE, OPENAI_MAX_TEXT_CHARS,
    OpenAiTts, OpenAiTtsConfig,
};
pub use transport::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, HttpOptions,
    parse_base_url,
};

use super::TtsBackend;
use super::wav::{self, Stored};

/// The rate both APIs call 1.0 (their "normal" speed is roughly 160 words a minute).
const NORMAL_WPM: f64 = 160.0;
/// Both backends run requests in parallel: the work is remote, the worker only waits.
const CONCURRENCY: usize = 4;

/// The environment's TTS settings, as read by the binary. Empty values count as unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTtsSettings<'a> {
    /// `VIDEO_TTS_BACKEND`: `google` or `openai` (any case, spaces ignored).
    pub backend: &'a str,
    /// `VIDEO_TTS_URL`; empty means the provider's public endpoint.
    pub url: &'a str,
    /// `VIDEO_TTS_API_KEY`; for Google, `Bearer <token>` means an access token.
    pub api_key: Option<&'a SecretString>,
    /// `VIDEO_TTS_VOICE`.
    pub voice: Option<&'a str>,
    /// `VIDEO_TTS_MODEL` (OpenAI only).
    pub model: Option<&'a str>,
}

/// Builds the backend `settings` name on `client`, with default timeouts and limits. Errors
/// name the variable and never repeat a secret.
pub fn from_settings(
    settings: &HttpTtsSettings<'_>,
    client: reqwest::Client,
) -> Result<Arc<dyn TtsBackend>, ConfigError> {
    fn set(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    // Exposed only to trim it; it leaves as a secret again.
    let api_key = settings
        .api_key
        .map(|k| k.expose_secret().trim())
        .filter(|k| !k.is_empty())
        .map(SecretString::from);
    let url_or = |default: &str| parse_base_url(set(Some(settings.url)).unwrap_or(default));
    match settings.backend.trim().to_ascii_lowercase().as_str() {
        "google" => {
            if set(settings.model).is_some() {
                return Err(ConfigError::Model(
                    "the google backend takes no model; the voice name (VIDEO_TTS_VOICE) picks it"
                        .into(),
                ));
            }
            let key = api_key.ok_or_else(|| {
                ConfigError::ApiKey(
                    "required by the google backend (an API key, or `Bearer <access token>`)"
                        .into(),
                )
            })?;
            let config = GoogleTtsConfig {
                base_url: url_or(GOOGLE_DEFAULT_URL)?,
                auth: GoogleAuth::from_setting(&key),
                voice_name: set(settings.voice).map(str::to_owned),
                http: HttpOptions::default(),
            };
            Ok(Arc::new(GoogleTts::new(config, client)?))
        }
        "openai" => {
            let config = OpenAiTtsConfig {
                base_url: url_or(OPENAI_DEFAULT_URL)?,
                api_key,
                model: set(settings.model)
                    .unwrap_or(OPENAI_DEFAULT_MODEL)
                    .to_owned(),
                voice: set(settings.voice)
                    .unwrap_or(OPENAI_DEFAULT_VOICE)
                    .to_owned(),
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

/// Checks a voice or model name: short, not empty, no control characters.
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

/// Refuses empty text, and text the provider found too long (`too_long` says why).
fn check_text(text: &str, too_long: Option<String>) -> Result<(), TtsHttpError> {
    if text.trim().is_empty() {
        return Err(TtsHttpError::Text("the text is empty".into()));
    }
    match too_long {
        Some(reason) => Err(TtsHttpError::Text(reason)),
        None => Ok(()),
    }
}

/// Validates and stores the WAV, unless `cancel` fired while it downloaded.
async fn finish(
    wav: Vec<u8>,
    out: &Path,
    cancel: &CancellationToken,
) -> Result<Stored, TtsHttpError> {
    if cancel.is_cancelled() {
        return Err(TtsHttpError::Canceled);
    }
    let target = out.to_path_buf();
    // Decoding and writing are blocking work (megabytes of samples, file system calls).
    let stored = tokio::task::spawn_blocking(move || wav::store(wav, &target))
        .await
        .map_err(|e| TtsHttpError::Io(format!("the writer task failed: {e}")))??;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;
    use crate::storyboard::Voice;

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
    fn empty_text_is_refused() {
        assert!(matches!(
            check_text("  \n", None),
            Err(TtsHttpError::Text(_))
        ));
        assert!(check_text("hi", None).is_ok());
    }

    fn build(settings: HttpTtsSettings<'_>) -> Result<Arc<dyn TtsBackend>, ConfigError> {
        from_settings(&settings, reqwest::Client::new())
    }

    #[test]
    fn settings_errors_name_the_variable() {
        let err = |settings| build(settings).unwrap_err();
        let google = HttpTtsSettings {
            backend: "google",
            ..Default::default()
        };
        let openai = HttpTtsSettings {
            backend: "openai",
            ..Default::default()
        };
        let key = SecretString::from("k");
        let bad_key = SecretString::from("a\nb");
        assert!(matches!(
            err(HttpTtsSettings {
                backend: "polly",
                ..google
            }),
            ConfigError::Backend(_)
        ));
        assert!(matches!(err(google), ConfigError::ApiKey(_)));
        let model = HttpTtsSettings {
            api_key: Some(&key),
            model: Some("m"),
            ..google
        };
        assert!(matches!(err(model), ConfigError::Model(_)));
        let url = HttpTtsSettings {
            url: "ftp://x",
            ..openai
        };
        assert!(matches!(err(url), ConfigError::BaseUrl(_)));
        let e = err(HttpTtsSettings {
            api_key: Some(&bad_key),
            ..openai
        });
        assert!(matches!(e, ConfigError::ApiKey(_)), "{e:?}");
        assert!(e.to_string().starts_with("VIDEO_TTS_API_KEY:") && !e.to_string().contains("a\nb"));
        let voice = HttpTtsSettings {
            voice: Some("\u{7}"),
            ..openai
        };
        assert!(err(voice).to_string().starts_with("VIDEO_TTS_VOICE:"));
    }

    #[test]
    fn settings_build_both_backends_with_defaults() {
        let voice = Voice::default();
        let key = SecretString::from("AIzaKEY");
        let google = build(HttpTtsSettings {
            backend: " Google ",
            api_key: Some(&key),
            voice: Some(""),
            ..Default::default()
        })
        .unwrap();
        let fp = google.fingerprint(&voice);
        assert!(fp.contains("texttospeech.googleapis.com"), "{fp}");
        assert!(!fp.contains("AIzaKEY"));
        assert_eq!(google.concurrency(), 4);
        let openai = build(HttpTtsSettings {
            backend: "openai",
            model: Some(" "),
            ..Default::default()
        })
        .unwrap();
        let fp = openai.fingerprint(&voice);
        assert!(
            fp.contains("api.openai.com") && fp.contains("model=tts-1"),
            "{fp}"
        );
        assert!(fp.contains("voice=alloy"), "{fp}");
    }
}
