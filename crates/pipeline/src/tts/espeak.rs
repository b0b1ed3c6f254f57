//! `espeak-ng` as a subprocess: offline, deterministic, good enough to hear the pipeline work.
//! The text goes in on stdin (never as an argument, so a narration that starts with `-`
//! is not an option), the WAV comes out in a file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
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
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            StageError::retryable(
                "tool_unavailable",
                format!("cannot start espeak-ng: {e}; install it (apt-get install espeak-ng)"),
            )
        })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| StageError::retryable("tool_failed", "espeak-ng has no stdin"))?;
        let text = text.to_owned();
        let work = async move {
            stdin.write_all(text.as_bytes()).await.map_err(|e| {
                StageError::retryable("tool_failed", format!("espeak-ng stdin: {e}"))
            })?;
            drop(stdin);
            let output = child
                .wait_with_output()
                .await
                .map_err(|e| StageError::retryable("tool_failed", format!("espeak-ng: {e}")))?;
            if output.status.success() {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&output.stderr);
                // An unknown voice is the input's fault: no retry will find it.
                if err.contains("voice") || err.contains("Voice") {
                    Err(StageError::permanent(
                        "invalid_input",
                        format!("voice.language: espeak-ng: {}", err.trim()),
                    ))
                } else {
                    Err(StageError::retryable(
                        "tool_failed",
                        format!("espeak-ng exited with {}: {}", output.status, err.trim()),
                    ))
                }
            }
        };
        tokio::select! {
            result = work => result,
            // Dropping `work` drops the child: kill_on_drop ends it.
            () = cancel.cancelled() => Err(StageError::Canceled),
        }
    }
}
