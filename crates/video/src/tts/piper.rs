//! Piper (`piper-tts`, a neural voice run by onnxruntime) as a subprocess: offline, and a
//! voice a student will listen to. The text goes in on stdin (never as an argument), the
//! WAV comes out in a file, which is then read back and checked.
//!
//! Each run of `piper` loads the model, about a second on 2 cores — more than it takes to
//! speak a sentence. So a job's English sentences are spoken in one batch
//! ([`TtsBackend::schedule`]): one run of a small driver, `piper_batch.py` (beside this
//! file, embedded in the binary), with the Python of piper-tts's virtual environment, loads
//! the voice once and writes each sentence to its own file, reporting each as it is done, so
//! the stage caches and counts sentences while the rest are spoken. The driver makes the
//! same library calls with the same settings as the `piper` program, so the cache key is
//! the same either way. Its WAVs are checked like the program's. A piper without that
//! Python beside it (installed some other way) is run once per sentence.
//!
//! A Piper voice is one model file (`*.onnx`) with its config beside it (`*.onnx.json`), and
//! speaks one language — the bundled `en_US-joe-medium` speaks English. A storyboard in
//! another language is spoken by the fallback backend (espeak-ng) when there is one: the
//! teacher gets the film in the language they wrote, in the voice that can say it. Without
//! a fallback that is a permanent error naming `voice.language`.
//!
//! Failures are classified by what was asked and how the process ended, never by what it
//! printed, as for espeak-ng: a missing binary is the deployment's fault (permanent); a
//! signal, a timeout, a non-zero exit or a WAV that is not what the model makes is the
//! engine's trouble (retryable). The model and its config are read when the backend is
//! built, so a missing or broken voice stops the process at start, not a job.
//!
//! The cache fingerprint holds the engine's version, a SHA-256 of the model and of its
//! config, and the speed, so a segment spoken by espeak-ng or by another voice is never
//! reused for this one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::wav::{self, WavError};
use super::{BatchError, Schedule, TtsBackend, Utterance};
use crate::StageError;
use crate::storyboard::Voice;

/// How long a run may go without finishing a sentence, by default: Piper speaks at about a
/// quarter of real time on one core, plus a second to load the model; a sentence is at most
/// a minute of speech, so this much means it hangs.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// The batch driver: speaks one JSON line `{"text", "out"}` at a time, prints its index.
const DRIVER: &str = include_str!("piper_batch.py");

/// Asks the Python beside the program for the piper-tts version (first line) and whether
/// the library has what [`DRIVER`] uses (`batch` on the second).
const PROBE: &str = "import importlib.metadata as m
print(m.version('piper-tts'))
try:
    from piper import PiperVoice, SynthesisConfig
    print('batch')
except Exception:
    pass
";

/// How fast the bundled voice speaks at `--length-scale 1`, in words per minute (measured:
/// 88 words of a lesson in 28.2 s, sentence pauses included). A storyboard's `rate_wpm` is
/// met by scaling the phoneme lengths by this over the rate asked.
pub const NATURAL_WPM: u32 = 185;

/// The speeds Piper is asked for stay within these length scales; beyond them the voice
/// stops sounding like speech.
const LENGTH_SCALES: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// Why a Piper voice cannot be used: found when the backend is built, before any job.
#[derive(Debug, thiserror::Error)]
pub enum PiperError {
    /// The `piper` program is not there or not executable.
    #[error("piper program {path} is not an executable file; run scripts/setup --voices")]
    Program {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The model or its config cannot be read.
    #[error("piper voice {path}: {source}; run scripts/setup --voices")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config is not a Piper voice config.
    #[error("piper voice config {path}: {source}")]
    Config {
        /// The `*.onnx.json` file.
        path: PathBuf,
        /// What is wrong with it.
        source: VoiceConfigError,
    },
}

/// What is wrong with a voice's `*.onnx.json`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceConfigError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No usable sample rate.
    #[error("audio.sample_rate is missing or out of 8000..=48000")]
    SampleRate,
    /// No language.
    #[error("language.family (or espeak.voice) is missing")]
    Language,
}

/// What the backend needs to know of a voice's `*.onnx.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VoiceConfig {
    /// Samples per second of the WAV it makes.
    sample_rate: u32,
    /// The primary language subtag it speaks, lower-case (`en`).
    language: String,
}

fn parse_config(text: &str) -> Result<VoiceConfig, VoiceConfigError> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let sample_rate = v["audio"]["sample_rate"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| (8_000..=48_000).contains(r))
        .ok_or(VoiceConfigError::SampleRate)?;
    // `language.family` in current voices; the phonemizer's voice (`en-us`) in older ones.
    let language = v["language"]["family"]
        .as_str()
        .or_else(|| v["espeak"]["voice"].as_str())
        .and_then(|tag| tag.split(['-', '_']).next())
        .filter(|l| !l.is_empty())
        .ok_or(VoiceConfigError::Language)?
        .to_lowercase();
    Ok(VoiceConfig {
        sample_rate,
        language,
    })
}

/// The SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// What the Python beside the program (a virtual environment's `bin/`) says: the installed
/// `piper-tts` version, and that Python if it can run the batch driver. `(None, None)` for
/// a piper installed some other way: then the model's hash alone identifies the voice, and
/// each sentence is a run of the program.
fn probe(program: &Path) -> (Option<String>, Option<PathBuf>) {
    let Some(python) = program.parent().map(|dir| dir.join("python3")) else {
        return (None, None);
    };
    let Ok(out) = std::process::Command::new(&python)
        .args(["-I", "-c", PROBE])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return (None, None);
    };
    if !out.status.success() {
        return (None, None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(str::trim);
    let version = lines.next().filter(|v| !v.is_empty()).map(str::to_owned);
    let batch = version.is_some() && lines.next() == Some("batch");
    (version, batch.then_some(python))
}

/// Where `scripts/setup --voices` puts the program and the bundled voice, under `root`
/// (the repository; the container image uses `/opt/voices` the same way).
pub fn installed_paths(root: &Path) -> (PathBuf, PathBuf) {
    (
        root.join(".voices/bin/piper"),
        root.join(".voices/en_US-joe-medium.onnx"),
    )
}

/// The Piper backend.
#[derive(Debug, Clone)]
pub struct Piper {
    program: PathBuf,
    model: PathBuf,
    config: VoiceConfig,
    /// Engine version and the hashes of the model and its config: what makes these bytes.
    identity: String,
    /// Speaks the languages this voice does not.
    fallback: Option<super::espeak::Espeak>,
    /// The Python that runs [`DRIVER`]; `None`: one run of `program` per sentence.
    driver: Option<PathBuf>,
    timeout: Duration,
}

impl Piper {
    /// Uses `program` with the voice `model` (its config is `model` + `.json`). Reads and
    /// hashes both (a medium voice is about 60 MB) and asks the Python beside `program`
    /// for the engine's version and whether it can run the batch driver (it imports
    /// piper-tts), so this takes a second or so.
    pub fn new(program: impl Into<PathBuf>, model: impl Into<PathBuf>) -> Result<Self, PiperError> {
        let program = program.into();
        let model = model.into();
        if !is_executable(&program) {
            return Err(PiperError::Program { path: program });
        }
        let config_path = PathBuf::from(format!("{}.json", model.display()));
        let text =
            std::fs::read_to_string(&config_path).map_err(|source| PiperError::Unreadable {
                path: config_path.clone(),
                source,
            })?;
        let config = parse_config(&text).map_err(|source| PiperError::Config {
            path: config_path.clone(),
            source,
        })?;
        let model_hash = sha256_file(&model).map_err(|source| PiperError::Unreadable {
            path: model.clone(),
            source,
        })?;
        let config_hash = format!("{:x}", Sha256::digest(text.as_bytes()));
        let (version, driver) = probe(&program);
        let version = version.unwrap_or_else(|| "unknown".into());
        Ok(Self {
            identity: format!("piper-tts {version}|model {model_hash}|config {config_hash}"),
            program,
            model,
            config,
            fallback: None,
            driver,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Runs the `piper` program once per sentence, as before batches (a benchmark's
    /// reference; the audio is the same).
    pub fn without_batches(mut self) -> Self {
        self.driver = None;
        self
    }

    /// Whether sentences are spoken many to a run (the batch driver can run).
    pub fn batches(&self) -> bool {
        self.driver.is_some()
    }

    /// Speaks the languages the voice does not with `espeak`.
    pub fn with_fallback(mut self, espeak: super::espeak::Espeak) -> Self {
        self.fallback = Some(espeak);
        self
    }

    /// Kills a run that goes longer than `timeout` without finishing a sentence (a
    /// retryable failure).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The voice's name: its model file without `.onnx` (`en_US-joe-medium`).
    pub fn voice_name(&self) -> String {
        self.model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The primary language the voice speaks (`en`).
    pub fn language(&self) -> &str {
        &self.config.language
    }

    /// Whether this voice speaks `voice.language` (`en`, `en-gb`, `EN-us`, …).
    fn speaks(&self, voice: &Voice) -> bool {
        voice
            .language
            .split(['-', '_', '+'])
            .next()
            .is_some_and(|primary| primary.eq_ignore_ascii_case(&self.config.language))
    }

    /// The arguments of one synthesis into `out`, text on stdin.
    fn args(&self, voice: &Voice, out: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "--model".into(),
            self.model.clone().into_os_string(),
            "--output-file".into(),
            out.to_path_buf().into_os_string(),
            "--length-scale".into(),
            format!("{:.3}", length_scale(voice.rate_wpm)).into(),
        ]
    }

    /// Checks that `out` is the WAV this voice makes: 16-bit integer mono PCM at the model's
    /// sample rate, with some samples.
    fn check_output(&self, out: &Path) -> Result<(), WavError> {
        wav::check_file(out, self.config.sample_rate)
    }

    /// Speaks `batch` with one run of [`DRIVER`] by `python`, checking each WAV as the
    /// driver reports it and passing it on to `spoken`.
    async fn run_driver(
        &self,
        python: &Path,
        batch: &[Utterance],
        voice: &Voice,
        cancel: &CancellationToken,
        spoken: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<(), BatchError> {
        // A failure is the sentence being spoken: the one after the last reported.
        let at = |index: usize, error: StageError| BatchError {
            index: index.min(batch.len().saturating_sub(1)),
            error,
        };
        let mut input = String::new();
        for (index, utterance) in batch.iter().enumerate() {
            let Some(out) = utterance.out.to_str() else {
                let why = format!("{}: a path that is not UTF-8", utterance.out.display());
                return Err(at(index, StageError::retryable("internal", why)));
            };
            // JSON escapes a line break, but `piper` speaks lines apart: a sentence is one.
            let text = utterance.text.replace(['\n', '\r'], " ");
            input.push_str(&serde_json::json!({ "text": text, "out": out }).to_string());
            input.push('\n');
        }
        let mut cmd = Command::new(python);
        // Isolated (-I): neither the working directory nor PYTHON* variables can put other
        // modules in the way of piper-tts's.
        cmd.args(["-I", "-c", DRIVER])
            .arg(&self.model)
            .arg(format!("{:.3}", length_scale(voice.rate_wpm)));
        let (lines, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let run = crate::media::run_tool_lines(cmd, "piper", Some(input.as_bytes()), cancel, lines);
        tokio::pin!(run);
        let mut next = 0;
        let mut ended = None;
        loop {
            tokio::select! {
                line = reported.recv() => {
                    // `None`: the run is over and every line it printed is read.
                    let Some(line) = line else { break };
                    if next >= batch.len() || line.trim() != next.to_string() {
                        let why = format!(
                            "piper's batch driver printed {line:?} where sentence {next} was due"
                        );
                        return Err(at(next, StageError::retryable("tts_failed", why)));
                    }
                    self.check_output(&batch[next].out).map_err(|why| {
                        let why = format!("piper said a sentence was spoken but it is wrong: {why}");
                        at(next, StageError::retryable("tts_failed", why))
                    })?;
                    spoken(next);
                    next += 1;
                }
                result = &mut run, if ended.is_none() => ended = Some(result),
                // Dropping the run kills the child (kill_on_drop).
                () = tokio::time::sleep(self.timeout) => {
                    let why = format!("piper spoke no sentence in {} s", self.timeout.as_secs());
                    return Err(at(next, StageError::retryable("tts_unavailable", why)));
                }
            }
        }
        let ended = match ended {
            Some(result) => result,
            None => run.await,
        };
        match ended {
            Err(e) => Err(at(next, super::espeak::classify(e, "speaking"))),
            Ok(()) if next < batch.len() => Err(at(
                next,
                StageError::retryable(
                    "tts_failed",
                    format!(
                        "piper's batch driver exited 0 after {next} of {} sentences",
                        batch.len()
                    ),
                ),
            )),
            Ok(()) => Ok(()),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Piper's `--length-scale` for `rate_wpm` words per minute: the voice's natural rate over
/// the one asked, kept within `LENGTH_SCALES` (0.5 to 2).
pub fn length_scale(rate_wpm: u32) -> f64 {
    let scale = f64::from(NATURAL_WPM) / f64::from(rate_wpm.max(1));
    scale.clamp(*LENGTH_SCALES.start(), *LENGTH_SCALES.end())
}

#[async_trait]
impl TtsBackend for Piper {
    fn fingerprint(&self, voice: &Voice) -> String {
        match &self.fallback {
            Some(espeak) if !self.speaks(voice) => espeak.fingerprint(voice),
            _ => format!(
                "piper|{}|{:.3}",
                self.identity,
                length_scale(voice.rate_wpm)
            ),
        }
    }

    fn concurrency(&self) -> usize {
        // A sentence a run: each process loads the model (~250 MB resident) and onnxruntime
        // uses every core; two at once overlap one's model load with the other's speech,
        // more only thrash.
        2
    }

    fn schedule(&self, voice: &Voice) -> Schedule {
        if self.driver.is_some() && self.speaks(voice) {
            // One run for the job: the model is loaded once and onnxruntime already uses
            // every core. A second run at once cost more CPU-seconds and, on a long lesson,
            // more wall time too (docs/benchmarks.md, "Piper").
            Schedule {
                workers: 1,
                max_batch: usize::MAX,
            }
        } else {
            // Espeak-ng for another language, or the program once per sentence.
            Schedule {
                workers: self.concurrency(),
                max_batch: 1,
            }
        }
    }

    async fn synthesize_batch(
        &self,
        batch: &[Utterance],
        voice: &Voice,
        cancel: &CancellationToken,
        spoken: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<(), BatchError> {
        match &self.driver {
            // Nothing to say: no model to load.
            _ if batch.is_empty() => Ok(()),
            Some(python) if self.speaks(voice) => {
                self.run_driver(python, batch, voice, cancel, spoken).await
            }
            // Another language (espeak-ng, or the refusal), or no driver: one by one.
            _ => super::one_by_one(self, batch, voice, cancel, spoken).await,
        }
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        if !self.speaks(voice) {
            return match &self.fallback {
                Some(espeak) => espeak.synthesize(text, voice, out, cancel).await,
                None => Err(StageError::permanent(
                    "invalid_input",
                    format!(
                        "voice.language: the piper voice {} speaks only {:?}, not {:?}, and \
                         this worker has no espeak-ng to fall back on",
                        self.voice_name(),
                        self.config.language,
                        voice.language
                    ),
                )),
            };
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(self.args(voice, out));
        let run = crate::media::run_tool(cmd, "piper", Some(text.as_bytes()), cancel);
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(super::espeak::classify(e, "speaking")),
            // Dropping the run killed the child (kill_on_drop).
            Err(_) => {
                return Err(StageError::retryable(
                    "tts_unavailable",
                    format!("piper took longer than {} s", self.timeout.as_secs()),
                ));
            }
        }
        self.check_output(out).map_err(|why| {
            StageError::retryable(
                "tts_failed",
                format!("piper exited 0 but its output is wrong: {why}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;

    #[test]
    fn the_config_gives_the_rate_and_the_primary_language() {
        let current = r#"{"audio": {"sample_rate": 22050}, "language": {"code": "en_US", "family": "en"}, "espeak": {"voice": "en-us"}}"#;
        assert_eq!(
            parse_config(current).unwrap(),
            VoiceConfig {
                sample_rate: 22050,
                language: "en".into()
            }
        );
        let older = r#"{"audio": {"sample_rate": 16000}, "espeak": {"voice": "de"}}"#;
        assert_eq!(parse_config(older).unwrap().language, "de");
        for bad in [
            "not json",
            r#"{"language": {"family": "en"}}"#,
            r#"{"audio": {"sample_rate": 5}, "language": {"family": "en"}}"#,
            r#"{"audio": {"sample_rate": 22050}}"#,
        ] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_becomes_a_bounded_length_scale() {
        assert!((length_scale(NATURAL_WPM) - 1.0).abs() < 1e-9);
        assert!(length_scale(120) > 1.0 && length_scale(240) < 1.0);
        assert!((length_scale(10) - 2.0).abs() < 1e-9);
        assert!((length_scale(1000) - 0.5).abs() < 1e-9);
        assert!((length_scale(0) - 2.0).abs() < 1e-9);
    }
}
