//! What the media pipeline reads: which pipeline, the tools, the work dir and its budget.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{ConfigError, Env, err, get, secret};

/// Which pipeline the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// The real one: TTS, render, compose, publish.
    Video,
    /// No media work; for measuring the worker's own overhead and for lease tests.
    Noop,
}

/// The speech engine and where the films go: what the `video` pipeline needs.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// `VIDEO_ARTIFACT_STORE_URL`.
    pub artifact_store_url: String,
    /// `VIDEO_TTS_BACKEND`: `espeak`, `piper`, `google` or `openai`.
    pub tts_backend: String,
    /// `VIDEO_TTS_URL` (empty: the provider's public endpoint).
    pub tts_url: String,
    /// `VIDEO_TTS_API_KEY`.
    pub tts_api_key: Option<SecretString>,
    /// `VIDEO_TTS_VOICE`.
    pub tts_voice: Option<String>,
    /// `VIDEO_TTS_MODEL`.
    pub tts_model: Option<String>,
    /// `VIDEO_PIPER_BIN`: the `piper` program of the `piper` backend.
    pub piper_bin: PathBuf,
    /// `VIDEO_PIPER_MODEL`: its voice, a `*.onnx` with its `*.onnx.json` beside it.
    pub piper_model: PathBuf,
}

impl MediaSettings {
    /// Reads the media settings (also used by `demo`, which needs no other setting).
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let tts_backend = get(env, "VIDEO_TTS_BACKEND").unwrap_or_else(|| "espeak".into());
        if !matches!(
            tts_backend.as_str(),
            "espeak" | "piper" | "google" | "openai"
        ) {
            return Err(err(
                "VIDEO_TTS_BACKEND",
                format!("{tts_backend:?}: use espeak, piper, google or openai"),
            ));
        }
        let (piper_bin, piper_model) = Self::piper_paths(env);
        Ok(Self {
            artifact_store_url: get(env, "VIDEO_ARTIFACT_STORE_URL")
                .unwrap_or_else(|| "./artifacts".into()),
            tts_backend,
            tts_url: get(env, "VIDEO_TTS_URL").unwrap_or_default(),
            tts_api_key: secret(env, "VIDEO_TTS_API_KEY"),
            tts_voice: get(env, "VIDEO_TTS_VOICE"),
            tts_model: get(env, "VIDEO_TTS_MODEL"),
            piper_bin,
            piper_model,
        })
    }

    /// `VIDEO_PIPER_BIN` and `VIDEO_PIPER_MODEL`, by default where `scripts/setup --voices`
    /// installs them (`.voices/`, relative to the working directory).
    pub fn piper_paths(env: Env<'_>) -> (PathBuf, PathBuf) {
        let (bin, model) = video::tts::piper::installed_paths(Path::new(""));
        (
            get(env, "VIDEO_PIPER_BIN").map_or(bin, PathBuf::from),
            get(env, "VIDEO_PIPER_MODEL").map_or(model, PathBuf::from),
        )
    }
}

/// `VIDEO_WORKER_SCRATCH_MAX_BYTES` when unset: 512 MiB.
pub const DEFAULT_SCRATCH_MAX_BYTES: u64 = 512 << 20;
