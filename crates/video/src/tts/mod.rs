//! Speech per segment, behind a backend trait.
//!
//! `espeak-ng` (a subprocess, offline) is the default; [`piper`] is a natural offline voice
//! for English (a subprocess too); [`http`] has cloud voices (Google
//! `text:synthesize`, OpenAI-style `/v1/audio/speech`). Every backend writes a mono 16-bit
//! PCM WAV file; the compose stage joins their samples and encodes AAC once.

pub mod espeak;
pub mod http;
pub mod piper;
pub(crate) mod wav;

use std::path::Path;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::StageError;
use crate::storyboard::Voice;

/// A speech engine.
#[async_trait]
pub trait TtsBackend: Send + Sync + std::fmt::Debug {
    /// Everything about this backend that shapes the audio bytes for `voice` (engine,
    /// version, voice name, rate): part of the segment cache key.
    fn fingerprint(&self, voice: &Voice) -> String;

    /// How many segments may be synthesized at once.
    fn concurrency(&self) -> usize {
        2
    }

    /// Speaks `text` into a mono 16-bit PCM WAV file at `out`. Stops early (killing any
    /// child process) when `cancel` fires. Network trouble, timeouts, 429 and 5xx are
    /// [`StageError::Retryable`]; a refusal of the input is [`StageError::Permanent`].
    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError>;
}
