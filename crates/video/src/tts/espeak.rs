//! `espeak-ng` as a subprocess: offline, deterministic, good enough to hear the pipeline work.
//! The text goes in on stdin (never as an argument, so a narration that starts with `-`
//! is not an option), the WAV comes out in a file.
//!
//! Failures are classified by what was asked and how the process ended, never by what it
//! printed: the voice is checked against `espeak-ng --voices` (read once) before synthesis,
//! so an unknown one is the input's fault (permanent); a missing binary is the deployment's
//! (permanent: no attempt on this build of the worker can speak); a signal, a timeout or a
//! non-zero exit for a voice it has is the engine's trouble (retryable).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::TtsBackend;
use crate::StageError;
use crate::media::ToolError;
use crate::storyboard::Voice;

/// How long one segment may take by default: espeak-ng speaks a paragraph in well under a
/// second, so a minute means it hangs.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The espeak-ng backend.
#[derive(Debug, Clone)]
pub struct Espeak {
    program: PathBuf,
    /// `espeak-ng --version`, read once: a new engine makes different audio.
    version: String,
    /// The languages and voice names it has, from `--voices`, read on first use.
    voices: OnceCell<HashSet<String>>,
    timeout: Duration,
}

impl Espeak {
    /// Uses `program` (usually `espeak-ng` on PATH). `None` if it does not run.
    pub fn new(program: impl Into<PathBuf>) -> Option<Self> {
        let program = program.into();
        let version = crate::media::version(&program, "--version")?;
        Some(Self {
            program,
            version,
            voices: OnceCell::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Kills a synthesis that takes longer than `timeout` (a retryable failure).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The engine's version line.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The voices it has, asked once per process (a failed ask is asked again next time).
    async fn voices(&self) -> Result<&HashSet<String>, StageError> {
        self.voices
            .get_or_try_init(|| async {
                let mut cmd = Command::new(&self.program);
                cmd.arg("--voices");
                let out = crate::media::run_tool(cmd, "espeak-ng", None, &CancellationToken::new())
                    .await
                    .map_err(|e| classify(e, "listing its voices"))?;
                Ok(parse_voices(&String::from_utf8_lossy(&out)))
            })
            .await
    }
}

/// The names `-v` accepts, lower-cased, from `espeak-ng --voices`: each row's language,
/// voice name, file and its other languages (`(en 3)`).
fn parse_voices(listing: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for line in listing.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 {
            continue;
        }
        for name in [cols[1], cols[3], cols[4]] {
            names.insert(name.to_lowercase());
        }
        for other in &cols[5..] {
            if let Some(lang) = other.strip_prefix('(') {
                names.insert(lang.to_lowercase());
            }
        }
    }
    names
}

/// Whether espeak-ng has a voice for `language`. It falls back from `en-zz` to `en`, so a
/// tag is supported when it or one of its prefixes is; `+variant` suffixes are ignored.
fn supports(voices: &HashSet<String>, language: &str) -> bool {
    let tag = language
        .split('+')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let mut candidate = tag.as_str();
    loop {
        if voices.contains(candidate) {
            return true;
        }
        match candidate.rfind('-') {
            Some(i) => candidate = &candidate[..i],
            None => return false,
        }
    }
}

/// A failure of a speech engine run as a child process (espeak-ng, Piper) — the voice was
/// checked before — typed by how the process ended, never by what it printed.
pub(super) fn classify(e: ToolError, what: &str) -> StageError {
    match e {
        ToolError::Canceled => StageError::Canceled,
        // No attempt of this deployment can speak: fail the job now, not after N retries.
        ToolError::Missing { .. } => StageError::permanent(
            "tts_misconfigured",
            format!("{e} (while {what}); the worker is misconfigured"),
        ),
        ToolError::Exited { .. } | ToolError::Killed { .. } | ToolError::Io { .. } => {
            StageError::retryable("tts_failed", format!("{e} (while {what})"))
        }
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
        if !supports(self.voices().await?, &voice.language) {
            return Err(StageError::permanent(
                "invalid_input",
                format!(
                    "voice.language: espeak-ng has no voice for {:?} (see espeak-ng --voices)",
                    voice.language
                ),
            ));
        }
        let mut cmd = Command::new(&self.program);
        cmd.arg("-v")
            .arg(&voice.language)
            .arg("-s")
            .arg(voice.rate_wpm.to_string())
            .args(["-b", "1", "--stdin", "-w"])
            .arg(out);
        let run = crate::media::run_tool(cmd, "espeak-ng", Some(text.as_bytes()), cancel);
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(e, "speaking")),
            // Dropping the run killed the child (kill_on_drop).
            Err(_) => Err(StageError::retryable(
                "tts_unavailable",
                format!("espeak-ng took longer than {} s", self.timeout.as_secs()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str =
        "Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  ko              --/M      Korean             ko
";

    #[test]
    fn a_tag_is_supported_by_itself_a_prefix_or_another_language_entry() {
        let voices = parse_voices(LISTING);
        for ok in ["en", "EN-US", "en-zz", "ko", "af", "en-us+f3", "korean"] {
            assert!(supports(&voices, ok), "{ok}");
        }
        for bad in ["zz", "", "e", "kor"] {
            assert!(!supports(&voices, bad), "{bad}");
        }
    }
}
