//! Helpers more than one test module needs.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline::StageError;
use video::storyboard::Voice;

/// The segment-cache hit counter is process-wide and every module now shares the process:
/// the tests that read it (`resume`) take this for writing, the tests that run a pipeline
/// which may hit a cache take it for reading, so no run moves the counter under a reader.
pub static CACHE_HITS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A voice for `language` at `rate_wpm`.
pub fn voice(language: &str, rate_wpm: u32) -> Voice {
    Voice {
        language: language.into(),
        rate_wpm,
    }
}

/// The class and code of a stage error.
pub fn code(e: &StageError) -> (&'static str, String) {
    match e {
        StageError::Permanent(e) => ("permanent", e.code.as_str().to_owned()),
        StageError::Retryable(e) => ("retryable", e.code.as_str().to_owned()),
        StageError::Canceled => ("canceled", String::new()),
    }
}

/// Writes an executable shell script with `body` at `path`, and waits until it can run.
///
/// A child forked by a parallel test in the instant the script was open for writing holds
/// its descriptor until that child execs, and exec of the script fails with ETXTBSY
/// meanwhile. Once one run gets through, nobody can hold it any more.
#[cfg(unix)]
pub fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    for _ in 0..100 {
        match std::process::Command::new(path)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
        {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => break,
        }
    }
    path.to_path_buf()
}
