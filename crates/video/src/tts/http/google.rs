//! Google Cloud Text-to-Speech: `POST {base}/v1/text:synthesize`, LINEAR16 at 24 kHz, the
//! audio base64 in `audioContent`. Authenticates with an API key (`X-Goog-Api-Key`) or an
//! OAuth access token (`Authorization: Bearer …`).

use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::error::{ConfigError, TtsHttpError};
use super::transport::{HttpOptions, Transport, endpoint, host_of, sensitive};
use super::{CONCURRENCY, canonical_language, check_name, check_text, finish, speed_for};
use crate::StageError;
use crate::storyboard::Voice;
use crate::tts::TtsBackend;

/// Google's documented limit on `input.text`, in bytes of UTF-8.
pub const GOOGLE_MAX_TEXT_BYTES: usize = 5000;
/// The sample rate asked of Google.
pub const GOOGLE_SAMPLE_RATE: u32 = 24_000;
/// Google's public endpoint, used when `VIDEO_TTS_URL` is empty.
pub const GOOGLE_DEFAULT_URL: &str = "https://texttospeech.googleapis.com";

/// How to authenticate to Google. `Debug` shows the kind, never the credential.
#[derive(Debug, Clone)]
pub enum GoogleAuth {
    /// An API key, sent as `X-Goog-Api-Key` (a header rather than `?key=`, so it stays out of
    /// URLs, which end up in logs and error messages).
    ApiKey(SecretString),
    /// An OAuth access token, sent as `Authorization: Bearer …`.
    Bearer(SecretString),
}

impl GoogleAuth {
    /// Reads `VIDEO_TTS_API_KEY`: `Bearer <token>` is an access token, anything else an API
    /// key.
    pub fn from_setting(value: &SecretString) -> Self {
        let value = value.expose_secret().trim();
        match value.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => {
                Self::Bearer(SecretString::from(value[7..].trim()))
            }
            _ => Self::ApiKey(SecretString::from(value)),
        }
    }

    fn secret(&self) -> &SecretString {
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
        if secret.expose_secret().is_empty() {
            return Err(ConfigError::ApiKey("must not be empty".into()));
        }
        let auth = match &config.auth {
            GoogleAuth::ApiKey(key) => (
                HeaderName::from_static("x-goog-api-key"),
                sensitive(key.expose_secret())?,
            ),
            GoogleAuth::Bearer(token) => (
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose_secret()))?,
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
        let bytes = wav.len();
        let stored = finish(wav, out, cancel).await?;
        stored.trace("google", bytes, started);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let auth = GoogleAuth::from_setting(&SecretString::from(" AIzaSECRET "));
        assert!(
            matches!(&auth, GoogleAuth::ApiKey(k) if k.expose_secret() == "AIzaSECRET"),
            "{auth:?}"
        );
        assert!(!format!("{auth:?}").contains("SECRET"));
        let bearer = GoogleAuth::from_setting(&SecretString::from("bearer ya29.TOKEN"));
        assert!(
            matches!(&bearer, GoogleAuth::Bearer(t) if t.expose_secret() == "ya29.TOKEN"),
            "{bearer:?}"
        );
        assert!(!format!("{bearer:?}").contains("TOKEN"));
    }
}
