//! Helpers more than one test module needs.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use pipeline::{Pipeline, StageError};
use video::cache::SegmentCache;
use video::storyboard::Voice;
use video::tts::espeak::Espeak;
use video::video::{PipelineStats, VideoConfig, video_pipeline};

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

/// The real video pipeline with espeak-ng, publishing to a local store in a temp dir.
pub struct Rig {
    pub pipeline: Pipeline,
    pub stats: Arc<PipelineStats>,
    pub dir: tempfile::TempDir,
}

/// Fails with how to install them when ffmpeg, ffprobe or espeak-ng is missing.
pub fn tools_or_explain() {
    for tool in ["ffmpeg", "ffprobe", "espeak-ng"] {
        let ok = std::process::Command::new(tool)
            .arg("-version")
            .output()
            .is_ok()
            || std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok();
        assert!(
            ok,
            "{tool} is not installed: apt-get install ffmpeg espeak-ng"
        );
    }
}

/// A [`Rig`] with a cold cache and store.
pub fn rig() -> Rig {
    tools_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let store =
        video::publish::store_from_url(dir.path().join("artifacts").to_str().unwrap()).unwrap();
    let stats = Arc::new(PipelineStats::default());
    let config = VideoConfig {
        tts: Arc::new(Espeak::new("espeak-ng").unwrap()),
        store,
        ffmpeg: PathBuf::from("ffmpeg"),
        ffmpeg_version: video::media::version(Path::new("ffmpeg"), "-version").unwrap(),
        max_encoders: VideoConfig::cores(),
        cache: SegmentCache::new(dir.path().join("cache"), u64::MAX),
    };
    Rig {
        pipeline: video_pipeline(config, stats.clone()),
        stats,
        dir,
    }
}
