//! The Piper backend: what it asks of the program, how its failures are typed (by what was
//! asked and how the process ended, never by its messages), that a cancel kills the child,
//! that a language the voice does not speak goes to espeak-ng or is refused naming the
//! field, and that segments of different engines or voices never share a cache key; that a
//! batch is one run of the driver with each sentence in its own file, in order, and that
//! its failures say which sentence. Stand-in scripts play piper (and the Python of its
//! virtual environment) where a real one cannot be made to fail; the last tests run the
//! real one installed by `scripts/setup --voices` and check the WAVs it makes.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pipeline::StageError;
use tokio_util::sync::CancellationToken;
use video::tts::espeak::Espeak;
use video::tts::piper::{Piper, PiperError};
use video::tts::{BatchError, Schedule, TtsBackend, Utterance};

use crate::common::{CACHE_HITS, code, script, voice};

const RATE: u32 = 22050;

/// A mono 16-bit WAV of a 440 Hz tone, `seconds` long at `rate`.
fn tone(path: &Path, rate: u32, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(f64::from(rate) * seconds) as u32 {
        let t = f64::from(i) / f64::from(rate);
        w.write_sample((8000.0 * (t * 440.0 * std::f64::consts::TAU).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

/// A voice model (any bytes) with a config saying it speaks English at 22050 Hz.
fn model(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("en_US-test-medium.onnx");
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(
        dir.join("en_US-test-medium.onnx.json"),
        r#"{"audio": {"sample_rate": 22050}, "language": {"code": "en_US", "family": "en"}}"#,
    )
    .unwrap();
    path
}

/// A stand-in piper that records its arguments and stdin in `dir`, then runs `speak` with
/// `$out` set to the `--output-file` it was given (`cp good.wav "$out"` speaks well).
fn fake(dir: &Path, speak: &str) -> Piper {
    tone(&dir.join("good.wav"), RATE, 0.5);
    let d = dir.display();
    let program = script(
        &dir.join("piper"),
        &format!(
            "[ \"$1\" = --version ] && exit 0\n\
             printf '%s\\n' \"$@\" > {d}/args\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --output-file ] && out=$2; shift; done\n\
             cat > {d}/stdin\n\
             cd {d}; {speak}\n"
        ),
    );
    Piper::new(program, model(dir, b"model one")).unwrap()
}

async fn speak(piper: &Piper, language: &str, dir: &Path) -> Result<(), StageError> {
    piper
        .synthesize(
            "-v is not an option here.",
            &voice(language, 160),
            &dir.join("out.wav"),
            &CancellationToken::new(),
        )
        .await
}

#[tokio::test]
async fn the_text_goes_on_stdin_and_the_model_output_and_speed_as_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(dir.path(), "cp good.wav \"$out\"");
    speak(&piper, "en-US", dir.path()).await.unwrap();
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    let model = dir.path().join("en_US-test-medium.onnx");
    let out = dir.path().join("out.wav");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--model",
            model.to_str().unwrap(),
            "--output-file",
            out.to_str().unwrap(),
            "--length-scale",
            "1.156", // 185 wpm natural, 160 asked
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stdin")).unwrap(),
        "-v is not an option here."
    );
    assert_eq!(piper.voice_name(), "en_US-test-medium");
    assert_eq!(piper.language(), "en");
}

#[tokio::test]
async fn a_failing_exit_or_a_signal_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(
        dir.path(),
        "echo 'wave.Error: # channels not specified' >&2; exit 1",
    );
    let e = speak(&piper, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_failed".into()), "{e:?}");

    let piper = fake(dir.path(), "kill -KILL $$");
    let e = speak(&piper, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_failed".into()), "{e:?}");
    assert!(e.to_string().contains("signal 9"), "{e}");
}

#[tokio::test]
async fn an_exit_0_without_the_wav_the_model_makes_is_retryable() {
    for (name, speak_it) in [
        ("no file", "true"),
        ("not a WAV", "echo hello > \"$out\""),
        ("another rate", "cp other.wav \"$out\""),
        ("no samples", "cp empty.wav \"$out\""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        tone(&dir.path().join("other.wav"), 16000, 0.5);
        tone(&dir.path().join("empty.wav"), RATE, 0.0);
        let piper = fake(dir.path(), speak_it);
        let e = speak(&piper, "en", dir.path()).await.unwrap_err();
        assert_eq!(
            code(&e),
            ("retryable", "tts_failed".into()),
            "{name}: {e:?}"
        );
    }
}

#[tokio::test]
async fn a_synthesis_past_its_timeout_is_killed_and_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(dir.path(), "exec sleep 30").with_timeout(Duration::from_millis(300));
    let e = speak(&piper, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_unavailable".into()), "{e:?}");
}

#[tokio::test]
async fn a_cancel_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(dir.path(), "echo $$ > pid; exec sleep 30");
    let cancel = CancellationToken::new();
    let pid_file = dir.path().join("pid");
    let watch = {
        let cancel = cancel.clone();
        let pid_file = pid_file.clone();
        tokio::spawn(async move {
            while std::fs::read_to_string(&pid_file).is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        })
    };
    let out = dir.path().join("out.wav");
    let e = piper
        .synthesize("hello", &voice("en", 160), &out, &cancel)
        .await
        .unwrap_err();
    watch.await.unwrap();
    assert_eq!(code(&e), ("canceled", String::new()), "{e:?}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let mut alive = true;
    for _ in 0..100 {
        // Gone, or a zombie waiting to be reaped: either way it no longer runs.
        alive = std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "the piper child still runs after the cancel");
}

#[tokio::test]
async fn a_missing_binary_is_a_permanent_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(dir.path(), "cp good.wav \"$out\"");
    // Installed at start, gone by the first job (a broken image, a deleted mount).
    std::fs::remove_file(dir.path().join("piper")).unwrap();
    let e = speak(&piper, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("permanent", "tts_misconfigured".into()), "{e:?}");
}

#[test]
fn a_missing_program_model_or_config_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(&dir.path().join("piper"), "exit 0\n");
    let model = model(dir.path(), b"model");
    assert!(matches!(
        Piper::new(dir.path().join("nope"), &model),
        Err(PiperError::Program { .. })
    ));
    assert!(matches!(
        Piper::new(dir.path().join("en_US-test-medium.onnx.json"), &model),
        Err(PiperError::Program { .. }) // a file, but not executable
    ));
    assert!(matches!(
        Piper::new(&program, dir.path().join("other.onnx")),
        Err(PiperError::Unreadable { .. })
    ));
    std::fs::write(dir.path().join("en_US-test-medium.onnx.json"), "{}").unwrap();
    assert!(matches!(
        Piper::new(&program, &model),
        Err(PiperError::Config { .. })
    ));
}

/// A stand-in espeak-ng that knows English and Korean and writes the good WAV and a mark.
fn fake_espeak(dir: &Path) -> Espeak {
    let d = dir.display();
    let program = script(
        &dir.join("espeak-ng"),
        &format!(
            "case \"$1\" in\n\
             --version) echo 'eSpeak NG text-to-speech: 1.51 stand-in' ;;\n\
             --voices) echo 'Pty Language Age/Gender VoiceName File Other Languages'\n\
                       echo ' 2  ko --/M Korean ko'\n\
                       echo ' 2  en-us --/M English_(America) gmw/en-US (en 3)' ;;\n\
             *) cat >/dev/null; for a; do out=$a; done; cp {d}/good.wav \"$out\"; touch {d}/espoke ;;\n\
             esac\n"
        ),
    );
    Espeak::new(program).unwrap()
}

#[tokio::test]
async fn another_language_is_spoken_by_espeak_ng_or_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake(dir.path(), "touch piped; cp good.wav \"$out\"");
    let e = speak(&piper, "ko", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("permanent", "invalid_input".into()), "{e:?}");
    assert!(e.to_string().contains("voice.language"), "{e}");

    let espeak = fake_espeak(dir.path());
    let piper = piper.with_fallback(espeak.clone());
    speak(&piper, "ko", dir.path()).await.unwrap();
    assert!(dir.path().join("espoke").exists());
    assert!(!dir.path().join("piped").exists());
    let ko = voice("ko", 160);
    assert_eq!(piper.fingerprint(&ko), espeak.fingerprint(&ko));

    speak(&piper, "en-gb", dir.path()).await.unwrap();
    assert!(dir.path().join("piped").exists(), "English is Piper's");
}

#[test]
fn the_cache_fingerprint_tells_engines_models_and_speeds_apart() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let a = fake(one.path(), "true");
    let same = fake(two.path(), "true");
    let en = voice("en", 160);
    assert_eq!(
        a.fingerprint(&en),
        same.fingerprint(&en),
        "same model bytes"
    );
    model(two.path(), b"model two");
    let b = Piper::new(
        two.path().join("piper"),
        two.path().join("en_US-test-medium.onnx"),
    )
    .unwrap();
    assert_ne!(a.fingerprint(&en), b.fingerprint(&en), "another model");
    assert_ne!(a.fingerprint(&en), a.fingerprint(&voice("en", 200)));
    let espeak = fake_espeak(one.path());
    assert_ne!(a.fingerprint(&en), espeak.fingerprint(&en));
    assert!(a.fingerprint(&en).starts_with("piper|"));
}

/// A stand-in piper with, beside it, a stand-in `python3` that answers the probe as a
/// piper-tts with the library does and, run as the batch driver, records its arguments,
/// its stdin and each run in `dir`, then for each input line sets `$i` (its index) and
/// `$out` and runs `each` (`cp tone-$i.wav "$out"; echo $i` speaks well). `tone-$i.wav`
/// lasts `i + 1` tenths of a second.
fn fake_batching(dir: &Path, each: &str) -> Piper {
    for i in 0..6 {
        tone(
            &dir.join(format!("tone-{i}.wav")),
            RATE,
            0.1 * f64::from(i + 1),
        );
    }
    tone(&dir.join("other.wav"), 16000, 0.5);
    let d = dir.display();
    script(
        &dir.join("python3"),
        &format!(
            "[ \"$1\" = --version ] && exit 0\n\
             if [ $# -eq 3 ]; then echo 1.8.0; echo batch; exit 0; fi\n\
             printf '%s\\n' \"$@\" > {d}/driver-args\n\
             echo run >> {d}/runs\n\
             cd {d}; i=0\n\
             while IFS= read -r line; do\n\
               printf '%s\\n' \"$line\" >> driver-stdin\n\
               out=$(printf '%s' \"$line\" | sed 's/^{{\"out\":\"\\([^\"]*\\)\".*/\\1/')\n\
               {each}\n\
               i=$((i+1))\n\
             done\n"
        ),
    );
    fake(dir, "cp good.wav \"$out\"")
}

/// Speaks `texts` as one batch into `dir/s{i}.wav`: the outcome, and the indices reported
/// spoken, in the order they were.
async fn batch(
    piper: &Piper,
    texts: &[&str],
    dir: &Path,
    cancel: &CancellationToken,
) -> (Result<(), BatchError>, Vec<usize>) {
    let utterances: Vec<Utterance> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Utterance {
            text: (*t).into(),
            out: dir.join(format!("s{i}.wav")),
        })
        .collect();
    let spoken = Mutex::new(Vec::new());
    let result = piper
        .synthesize_batch(&utterances, &voice("en", 160), cancel, &|i| {
            spoken.lock().unwrap().push(i);
        })
        .await;
    (result, spoken.into_inner().unwrap())
}

fn samples(path: &Path) -> u32 {
    hound::WavReader::open(path).unwrap().duration()
}

const TEXTS: [&str; 4] = [
    "One.",
    "Two \"quoted\" words.",
    "A line\nbreak.",
    "-v is not an option.",
];

#[tokio::test]
async fn a_batch_is_one_run_of_the_driver_with_each_sentence_in_its_own_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake_batching(dir.path(), "cp tone-$i.wav \"$out\"; echo $i");
    assert!(piper.batches());
    let one_run = Schedule {
        workers: 1,
        max_batch: usize::MAX,
    };
    let a_run_a_sentence = Schedule {
        workers: 2,
        max_batch: 1,
    };
    assert_eq!(piper.schedule(&voice("en-US", 160)), one_run);
    // Korean goes to espeak-ng, a sentence a call.
    assert_eq!(piper.schedule(&voice("ko", 160)), a_run_a_sentence);
    let (result, spoken) = batch(&piper, &TEXTS, dir.path(), &CancellationToken::new()).await;
    result.unwrap();
    assert_eq!(spoken, [0, 1, 2, 3]);
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "one run for the batch");
    for i in 0..4 {
        assert_eq!(
            samples(&dir.path().join(format!("s{i}.wav"))),
            samples(&dir.path().join(format!("tone-{i}.wav"))),
            "sentence {i} is in its own file"
        );
    }
    // The driver gets the model and speed as arguments, a JSON line a sentence on stdin.
    let args = std::fs::read_to_string(dir.path().join("driver-args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let model = dir.path().join("en_US-test-medium.onnx");
    assert_eq!(args[..2], ["-I", "-c"]);
    assert!(args.contains(&"from piper import PiperVoice, SynthesisConfig"));
    assert_eq!(args[args.len() - 2..], [model.to_str().unwrap(), "1.156"]);
    let stdin = std::fs::read_to_string(dir.path().join("driver-stdin")).unwrap();
    let lines: Vec<serde_json::Value> = stdin
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stdin}");
    assert_eq!(lines[1]["text"], "Two \"quoted\" words.");
    assert_eq!(lines[2]["text"], "A line break.", "one line a sentence");
    assert_eq!(lines[3]["out"], dir.path().join("s3.wav").to_str().unwrap());
    // Without batches: the program once per sentence, as before.
    let piper = piper.without_batches();
    assert_eq!(piper.schedule(&voice("en", 160)), a_run_a_sentence);
    let (result, spoken) = batch(&piper, &TEXTS[..2], dir.path(), &CancellationToken::new()).await;
    result.unwrap();
    assert_eq!(spoken, [0, 1]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stdin")).unwrap(),
        TEXTS[1],
        "the program spoke the last sentence"
    );
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "the driver did not run again");
}

#[tokio::test]
async fn a_failed_batch_says_which_sentence_and_keeps_those_before() {
    for (name, each, index, expected) in [
        (
            "exit 1 on the third",
            "[ $i = 2 ] && exit 1; cp tone-$i.wav \"$out\"; echo $i",
            2,
            ("retryable", "tts_failed"),
        ),
        (
            "killed on the second",
            "[ $i = 1 ] && kill -KILL $$; cp tone-$i.wav \"$out\"; echo $i",
            1,
            ("retryable", "tts_failed"),
        ),
        (
            "exit 0 after two",
            "[ $i = 2 ] && exit 0; cp tone-$i.wav \"$out\"; echo $i",
            2,
            ("retryable", "tts_failed"),
        ),
        (
            "another rate for the second",
            "if [ $i = 1 ]; then cp other.wav \"$out\"; else cp tone-$i.wav \"$out\"; fi; echo $i",
            1,
            ("retryable", "tts_failed"),
        ),
        (
            "no file for the first",
            "echo $i",
            0,
            ("retryable", "tts_failed"),
        ),
        (
            "an index out of turn",
            "cp tone-$i.wav \"$out\"; echo 7",
            0,
            ("retryable", "tts_failed"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let piper = fake_batching(dir.path(), each);
        let (result, spoken) = batch(&piper, &TEXTS, dir.path(), &CancellationToken::new()).await;
        let e = result.unwrap_err();
        assert_eq!(e.index, index, "{name}: {e:?}");
        assert_eq!(
            code(&e.error),
            (expected.0, expected.1.into()),
            "{name}: {e:?}"
        );
        assert_eq!(spoken, (0..index).collect::<Vec<_>>(), "{name}");
    }
}

#[tokio::test]
async fn a_batch_that_stops_speaking_is_killed_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake_batching(
        dir.path(),
        "[ $i = 1 ] && exec sleep 30; cp tone-$i.wav \"$out\"; echo $i",
    )
    .with_timeout(Duration::from_millis(500));
    let (result, spoken) = batch(&piper, &TEXTS, dir.path(), &CancellationToken::new()).await;
    let e = result.unwrap_err();
    assert_eq!(
        (e.index, code(&e.error)),
        (1, ("retryable", "tts_unavailable".into())),
        "{e:?}"
    );
    assert_eq!(spoken, [0]);
}

#[tokio::test]
async fn a_cancel_kills_the_batch_driver() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake_batching(dir.path(), "echo $$ > pid; exec sleep 30");
    let cancel = CancellationToken::new();
    let pid_file = dir.path().join("pid");
    let watch = {
        let cancel = cancel.clone();
        let pid_file = pid_file.clone();
        tokio::spawn(async move {
            while std::fs::read_to_string(&pid_file).is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        })
    };
    let (result, spoken) = batch(&piper, &TEXTS, dir.path(), &cancel).await;
    watch.await.unwrap();
    let e = result.unwrap_err();
    assert_eq!(code(&e.error), ("canceled", String::new()), "{e:?}");
    assert!(spoken.is_empty());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let mut alive = true;
    for _ in 0..100 {
        alive = std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "the driver still runs after the cancel");
}

#[tokio::test]
async fn a_batch_in_another_language_goes_to_espeak_ng_not_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let piper = fake_batching(dir.path(), "cp tone-$i.wav \"$out\"; echo $i")
        .with_fallback(fake_espeak(dir.path()));
    let utterances = [Utterance {
        text: "안녕하세요.".into(),
        out: dir.path().join("ko.wav"),
    }];
    piper
        .synthesize_batch(
            &utterances,
            &voice("ko", 160),
            &CancellationToken::new(),
            &|_| {},
        )
        .await
        .unwrap();
    assert!(dir.path().join("espoke").exists());
    assert!(!dir.path().join("runs").exists(), "the driver did not run");
}

/// The program and voice `scripts/setup --voices` installed, or those named by
/// `VIDEO_PIPER_BIN` and `VIDEO_PIPER_MODEL`.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (bin, model) = video::tts::piper::installed_paths(&root);
    let bin = std::env::var_os("VIDEO_PIPER_BIN").map_or(bin, PathBuf::from);
    let model = std::env::var_os("VIDEO_PIPER_MODEL").map_or(model, PathBuf::from);
    (bin.exists() && model.exists()).then_some((bin, model))
}

/// Speaks `text` at `rate_wpm` with the real piper; the WAV's samples and rate.
async fn real(piper: &Piper, text: &str, rate_wpm: u32, out: &Path) -> (Vec<i16>, u32) {
    piper
        .synthesize(text, &voice("en", rate_wpm), out, &CancellationToken::new())
        .await
        .unwrap();
    let mut reader = hound::WavReader::open(out).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (samples, spec.sample_rate)
}

#[tokio::test]
async fn the_real_piper_speaks_english_at_the_rate_asked() {
    let Some((bin, model)) = installed() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/setup --voices, so piper must be installed"
        );
        eprintln!(
            "NOT RUN: piper is not installed (scripts/setup --voices installs it in .voices/)"
        );
        return;
    };
    let piper = Piper::new(bin, model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = "One half plus one half makes one whole.";
    let (samples, rate) = real(&piper, text, 160, &dir.path().join("a.wav")).await;
    assert_eq!(rate, 22050);
    let seconds = samples.len() as f64 / f64::from(rate);
    // Eight words at 160 words a minute: three seconds, give or take the voice's own pace.
    assert!((1.5..6.0).contains(&seconds), "{seconds} s");
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(peak > 3000 && rms > 300.0, "silent: peak {peak}, rms {rms}");

    let (fast, _) = real(&piper, text, 240, &dir.path().join("b.wav")).await;
    assert!(
        (fast.len() as f64) < samples.len() as f64 * 0.85,
        "240 wpm ({} samples) is not faster than 160 ({})",
        fast.len(),
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storyboard_spoken_by_the_real_piper_becomes_a_film_as_long_as_its_narration() {
    let _counters = CACHE_HITS.read().await;
    use pipeline::{ProgressSink, StageContext};
    let Some((bin, model)) = installed() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/setup --voices, so piper must be installed"
        );
        eprintln!(
            "NOT RUN: piper is not installed (scripts/setup --voices installs it in .voices/)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ffmpeg = PathBuf::from("ffmpeg");
    let config = video::video::VideoConfig {
        tts: std::sync::Arc::new(Piper::new(bin, model).unwrap()),
        store: video::publish::store_from_url(dir.path().join("films").to_str().unwrap()).unwrap(),
        ffmpeg_version: video::media::version(&ffmpeg, "-version").expect("apt-get install ffmpeg"),
        ffmpeg,
        max_encoders: 2,
        cache: video::cache::SegmentCache::new(dir.path().join("cache"), u64::MAX),
    };
    let pipeline = video::video::video_pipeline(config, Default::default());
    let board = serde_json::json!({
        "version": 1,
        "title": "Halves",
        "frame": {"width": 320, "height": 180, "fps": 25},
        "segments": [
            {"narration": "One half plus one half makes one whole.",
             "slide": {"heading": "Halves", "bullets": ["1/2 + 1/2 = 1"], "body": ""}},
            {"narration": "Two quarters make one half.",
             "slide": {"heading": "Quarters", "bullets": ["2/4 = 1/2"], "body": ""}}
        ]
    });
    let (sink, _events) = ProgressSink::channel();
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: domain::JobId::new(),
            epoch: domain::LeaseEpoch::NEVER.next(),
            input: std::sync::Arc::new(board),
            work_dir: dir.path().join("attempt"),
        },
        sink,
        CancellationToken::new(),
    );
    let published = pipeline.run(&ctx).await.unwrap();
    let mut samples = 0u64;
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wav") {
            let reader = hound::WavReader::open(&path).unwrap();
            assert_eq!(reader.spec().sample_rate, RATE);
            samples += u64::from(reader.duration());
        }
    }
    let narration = samples as f64 / f64::from(RATE);
    assert!((2.5..10.0).contains(&narration), "{narration} s of speech");
    let film = dir.path().join("films").join(&published.artifact_key);
    let p = video::media::probe(Path::new("ffprobe"), &film)
        .await
        .unwrap();
    let video = p.video_duration.unwrap();
    assert!(
        (video - narration).abs() <= 1.0 / 25.0,
        "video {video} s vs narration {narration} s"
    );
}

#[tokio::test]
async fn the_real_piper_speaks_a_batch_in_one_run_each_sentence_in_its_own_file_in_order() {
    let Some((bin, model)) = installed() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/setup --voices, so piper must be installed"
        );
        eprintln!(
            "NOT RUN: piper is not installed (scripts/setup --voices installs it in .voices/)"
        );
        return;
    };
    let piper = Piper::new(bin, model).unwrap();
    assert!(
        piper.batches(),
        "scripts/setup --voices installs piper-tts with its library: the driver must run"
    );
    let dir = tempfile::tempdir().unwrap();
    // Lengths far apart, so the files' order shows in their durations.
    let texts = [
        "Yes.",
        "A fraction has a number on top, the numerator, and a number below, the \
         denominator, and the line between them means that the top is divided by the bottom.",
        "Two quarters make one half.",
    ];
    let (result, spoken) = batch(&piper, &texts, dir.path(), &CancellationToken::new()).await;
    result.unwrap();
    assert_eq!(spoken, [0, 1, 2]);
    let mut seconds = Vec::new();
    for i in 0..texts.len() {
        let mut reader = hound::WavReader::open(dir.path().join(format!("s{i}.wav"))).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.bits_per_sample, spec.sample_rate),
            (1, 16, RATE),
            "sentence {i}"
        );
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / samples.len().max(1) as f64)
            .sqrt();
        assert!(
            peak > 3000 && rms > 300.0,
            "sentence {i} is silent: peak {peak}, rms {rms}"
        );
        seconds.push(samples.len() as f64 / f64::from(RATE));
    }
    // One word, five words, thirty words: each file holds its own sentence.
    assert!(
        seconds[0] < 1.5 && seconds[0] < seconds[2] && seconds[2] < seconds[1] && seconds[1] > 6.0,
        "{seconds:?} s"
    );
    assert!(
        !dir.path().join("s0.wav.part").exists(),
        "no partial file is left"
    );
}
