//! espeak-ng failures are typed by what was asked and how the process ended, never by its
//! messages: an unknown voice is the input's fault, a missing binary the deployment's, and a
//! signal, a timeout or a failing exit for a voice it has is worth a retry. A stand-in script
//! plays espeak-ng where a real one cannot be made to fail; the unknown voice uses the real
//! one.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline::StageError;
use tokio_util::sync::CancellationToken;
use video::tts::TtsBackend;
use video::tts::espeak::Espeak;

use crate::common::{code, script};

fn voice(language: &str) -> video::storyboard::Voice {
    crate::common::voice(language, 160)
}

/// A stand-in espeak-ng that knows `en-us` (and so `en`) and, asked to speak, runs `speak`.
fn fake(dir: &Path, speak: &str) -> PathBuf {
    script(
        &dir.join("espeak-ng"),
        &format!(
            "case \"$1\" in\n\
             --version) echo 'eSpeak NG text-to-speech: 1.51 stand-in' ;;\n\
             --voices) echo 'Pty Language Age/Gender VoiceName File Other Languages'\n\
                       echo ' 2  en-us --/M English_(America) gmw/en-US (en 3)' ;;\n\
             *) cat >/dev/null; {speak} ;;\n\
             esac\n"
        ),
    )
}

async fn speak(espeak: &Espeak, language: &str, dir: &Path) -> Result<(), StageError> {
    espeak
        .synthesize(
            "hello",
            &voice(language),
            &dir.join("out.wav"),
            &CancellationToken::new(),
        )
        .await
}

#[tokio::test]
async fn an_unsupported_voice_is_refused_before_synthesis_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    // The stand-in would say nothing wrong: the refusal comes from the voice list.
    let espeak = Espeak::new(fake(dir.path(), "exit 0")).unwrap();
    let Err(StageError::Permanent(error)) = speak(&espeak, "zz", dir.path()).await else {
        panic!("expected a permanent failure");
    };
    assert_eq!(error.code.as_str(), "invalid_input");
    assert!(
        error.message.contains("voice.language"),
        "{}",
        error.message
    );
    assert!(speak(&espeak, "en", dir.path()).await.is_ok());
    assert!(speak(&espeak, "en-us", dir.path()).await.is_ok());
}

#[tokio::test]
async fn a_failing_exit_for_a_supported_voice_is_retryable_whatever_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    // The message that the old text match took for the input's fault.
    let espeak = Espeak::new(fake(
        dir.path(),
        "echo 'Error: The specified espeak-ng voice does not exist.' >&2; exit 1",
    ))
    .unwrap();
    let e = speak(&espeak, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_failed".into()), "{e:?}");
}

#[tokio::test]
async fn killed_by_a_signal_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let espeak = Espeak::new(fake(dir.path(), "kill -KILL $$")).unwrap();
    let e = speak(&espeak, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_failed".into()), "{e:?}");
    assert!(e.to_string().contains("signal 9"), "{e}");
}

#[tokio::test]
async fn a_synthesis_past_its_timeout_is_killed_and_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let espeak = Espeak::new(fake(dir.path(), "exec sleep 30"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let e = speak(&espeak, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("retryable", "tts_unavailable".into()), "{e:?}");
}

#[tokio::test]
async fn a_missing_binary_is_a_permanent_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake(dir.path(), "exit 0");
    let espeak = Espeak::new(&program).unwrap();
    // Installed at start, gone by the first job (a broken image, a deleted mount).
    std::fs::remove_file(&program).unwrap();
    let e = speak(&espeak, "en", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("permanent", "tts_misconfigured".into()), "{e:?}");
}

#[tokio::test]
async fn the_real_engine_refuses_an_unknown_voice_and_speaks_a_known_one() {
    let dir = tempfile::tempdir().unwrap();
    let espeak = Espeak::new("espeak-ng").expect("apt-get install espeak-ng");
    let e = speak(&espeak, "zz", dir.path()).await.unwrap_err();
    assert_eq!(code(&e), ("permanent", "invalid_input".into()), "{e:?}");
    speak(&espeak, "en", dir.path()).await.unwrap();
    assert!(video::cache::looks_whole(
        &dir.path().join("out.wav"),
        "wav"
    ));
}
