//! OpenAI-style speech: `POST {base}/v1/audio/speech` with `response_format: wav`, served by
//! OpenAI itself or a compatible local server (which may need no key). The WAV may come
//! streamed, with placeholder lengths in its header; `tts::wav` repairs those.

use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::error::{ConfigError, TtsHttpError};
use super::transport::{HttpOptions, Transport, endpoint, host_of, sensitive};
use super::{CONCURRENCY, canonical_language, check_name, check_text, finish, speed_for};
use crate::StageError;
use crate::storyboard::Voice;
use crate::tts::TtsBackend;

/// OpenAI's documented limit on `input`, in characters.
pub const OPENAI_MAX_TEXT_CHARS: usize = 4096;
/// OpenAI's public endpoint, used when `VIDEO_TTS_URL` is empty.
pub const OPENAI_DEFAULT_URL: &str = "https://api.openai.com";
/// The OpenAI model used when `VIDEO_TTS_MODEL` is empty: `tts-1` honours `speed`
/// (`gpt-4o-mini-tts` ignores it, so the storyboard's rate would be lost).
pub const OPENAI_DEFAULT_MODEL: &str = "tts-1";
/// The OpenAI voice used when `VIDEO_TTS_VOICE` is empty.
pub const OPENAI_DEFAULT_VOICE: &str = "alloy";

/// OpenAI-style speech settings (OpenAI itself, or a compatible local server).
#[derive(Debug, Clone)]
pub struct OpenAiTtsConfig {
    /// Scheme, host and optional path prefix; `/v1/audio/speech` is appended (a prefix that
    /// already ends in `/v1`, as OpenAI base URLs often do, is not doubled).
    pub base_url: Url,
    /// Sent as `Authorization: Bearer …`; `None` for local servers that need none.
    pub api_key: Option<SecretString>,
    /// The model (`tts-1`).
    pub model: String,
    /// The voice (`alloy`).
    pub voice: String,
    /// Timeouts and limits.
    pub http: HttpOptions,
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
            Some(key) if key.expose_secret().is_empty() => {
                return Err(ConfigError::ApiKey("must not be empty".into()));
            }
            Some(key) => Some((
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", key.expose_secret()))?,
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
        let bytes = wav.len();
        let stored = finish(wav, out, cancel).await?;
        stored.trace("openai", bytes, started);
        Ok(())
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
