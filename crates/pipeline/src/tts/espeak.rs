//! `espeak-ng` as a subprocess: offline, deterministic, good enough to hear the pipeline work.
//! The text goes in on stdin (never as an argument, so a narration that starts with `-`
//! is not an option), the WAV comes out in a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::TtsBackend;
use crate::StageError;
use crate::storyboard::Voice;

/// The espeak-ng backend.
#[derive(Debug, Clone)]
pub struct Espeak {
    program: PathBuf,
    /// `espeak-ng --version`, read once: a new engine makes different audio.
    version: String,
}

impl Espeak {
    /// Uses `program` (usually `espeak-ng` on PATH). `None` if it does not run.
    pub fn new(program: impl Into<PathBuf>) -> Option<Self> {
        let program = program.into();
        let version = crate::media::version(&program, "--version")?;
        Some(Self { program, version })
    }

    /// The engine's version line.
    pub fn version(&self) -> &str {
        &self.version
    }
}

#[async_trait]
impl TtsBackend for Espeak {
    fn fingerprint(&self, voice: &Voice) -> String {
        format!(
            "espeak-ng|{}|{}|{}",
            self.version, voice.language, voice.rate_wpm
        )
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-v")
            .arg(&voice.language)
            .arg("-s")
            .arg(voice.rate_wpm.to_string())
            .args(["-b", "1", "--stdin", "-w"])
            .arg(out);
        match crate::media::run_with_input(cmd, "espeak-ng", Some(text.as_bytes()), cancel).await {
            Ok(_) => Ok(()),
            // An unknown voice is the input's fault: no retry will find it.
            Err(StageError::Retryable(e)) if e.message.to_lowercase().contains("voice") => Err(
                StageError::permanent("invalid_input", format!("voice.language: {}", e.message)),
            ),
            Err(e) => Err(e),
        }
    }
}
