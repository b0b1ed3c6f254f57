//! Building the pipeline a process runs, with the tools it needs checked at start: a worker
//! that cannot run ffmpeg should not take jobs, and a newcomer should be told how to install
//! what is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use pipeline::Pipeline;
use runner::scratch::WorkDirClaim;
use video::cache::SegmentCache;
use video::tts::TtsBackend;
use video::video::{PipelineStats, VideoConfig};

use crate::config::MediaSettings;

/// How to install the tools on the machines we know.
pub const INSTALL_HINT: &str = "install them with: sudo apt-get install -y ffmpeg espeak-ng \
     (Debian/Ubuntu), or brew install ffmpeg espeak-ng (macOS)";

/// Checks that `tools` run; the error names every missing one and how to install it.
pub fn require_tools(tools: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            let flag = if *tool == "espeak-ng" {
                "--version"
            } else {
                "-version"
            };
            video::media::version(Path::new(tool), flag).is_none()
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not found on PATH; {INSTALL_HINT}",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// The Piper backend of `settings`, with espeak-ng (when it runs) speaking the languages
/// its voice does not.
pub fn piper(settings: &MediaSettings) -> anyhow::Result<video::tts::piper::Piper> {
    let piper = video::tts::piper::Piper::new(&settings.piper_bin, &settings.piper_model)
        .context("VIDEO_PIPER_BIN / VIDEO_PIPER_MODEL")?;
    let fallback = video::tts::espeak::Espeak::new("espeak-ng");
    tracing::info!(
        voice = piper.voice_name(),
        voice.language = piper.language(),
        other_languages = if fallback.is_some() {
            "espeak-ng"
        } else {
            "refused"
        },
        "piper voice ready"
    );
    Ok(match fallback {
        Some(espeak) => piper.with_fallback(espeak),
        None => piper,
    })
}

/// The real pipeline from `settings`, counting into `stats`, keeping finished segments in
/// `cache/` of the claimed work dir within `scratch_max_bytes`. At start it removes the
/// attempt directories a crashed process left there and trims the cache to its budget (the
/// claim proves the work dir is this process's alone).
pub fn video_pipeline(
    settings: &MediaSettings,
    work: &WorkDirClaim,
    scratch_max_bytes: u64,
    stats: Arc<PipelineStats>,
) -> anyhow::Result<Pipeline> {
    let mut tools = vec!["ffmpeg", "ffprobe"];
    if settings.tts_backend == "espeak" {
        tools.push("espeak-ng");
    }
    require_tools(&tools)?;
    let tts: Arc<dyn TtsBackend> = if settings.tts_backend == "espeak" {
        Arc::new(
            video::tts::espeak::Espeak::new("espeak-ng")
                .with_context(|| format!("espeak-ng does not run; {INSTALL_HINT}"))?,
        )
    } else if settings.tts_backend == "piper" {
        Arc::new(piper(settings)?)
    } else {
        let client = video::tts::http::HttpOptions::default()
            .client()
            .context("building the TTS HTTP client")?;
        video::tts::http::from_settings(
            &video::tts::http::HttpTtsSettings {
                backend: &settings.tts_backend,
                url: &settings.tts_url,
                api_key: settings.tts_api_key.as_ref(),
                voice: settings.tts_voice.as_deref(),
                model: settings.tts_model.as_deref(),
            },
            client,
        )?
    };
    let store = video::publish::store_from_url(&settings.artifact_store_url)
        .map_err(|e| anyhow::anyhow!("VIDEO_ARTIFACT_STORE_URL: {e}"))?;
    let ffmpeg = PathBuf::from("ffmpeg");
    let ffmpeg_version = video::media::version(&ffmpeg, "-version")
        .with_context(|| format!("ffmpeg does not run; {INSTALL_HINT}"))?;
    let work_dir = work.root();
    work.clear_attempt_dirs()
        .with_context(|| format!("VIDEO_WORKER_WORK_DIR: clearing {}", work_dir.display()))?;
    let cache = SegmentCache::new(work_dir.join("cache"), scratch_max_bytes);
    let usage = cache
        .enforce_blocking()
        .with_context(|| format!("VIDEO_WORKER_WORK_DIR: trimming {}", cache.dir().display()))?;
    tracing::info!(
        cache_bytes = usage.bytes,
        cache_entries = usage.entries,
        evicted = usage.evicted,
        max_bytes = scratch_max_bytes,
        "segment cache ready"
    );
    Ok(video::video::video_pipeline(
        VideoConfig {
            tts,
            store,
            ffmpeg,
            ffmpeg_version,
            max_encoders: VideoConfig::cores(),
            cache,
        },
        stats,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;

    #[test]
    fn start_removes_a_crashed_processs_attempts_and_trims_the_cache_to_budget() {
        let work = tempfile::tempdir().unwrap();
        let left = work.path().join("attempts/job-3");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("video-0.mp4"), b"half an encode").unwrap();
        let cache = work.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        for name in ["a.wav", "b.wav", "c.wav"] {
            std::fs::write(cache.join(name), vec![0u8; 1000]).unwrap();
        }
        let settings = MediaSettings {
            artifact_store_url: work.path().join("artifacts").to_str().unwrap().into(),
            tts_backend: "espeak".into(),
            tts_url: String::new(),
            tts_api_key: None,
            tts_voice: None,
            tts_model: None,
            piper_bin: PathBuf::new(),
            piper_model: PathBuf::new(),
        };
        let claim = WorkDirClaim::acquire(work.path()).unwrap();
        let piper = MediaSettings {
            tts_backend: "piper".into(),
            piper_bin: work.path().join("no-piper"),
            ..settings.clone()
        };
        let e = video_pipeline(&piper, &claim, 2500, Arc::default()).unwrap_err();
        assert!(format!("{e:#}").contains("VIDEO_PIPER_BIN"), "{e:#}");
        let pipeline = video_pipeline(&settings, &claim, 2500, Arc::default()).unwrap();
        assert!(!work.path().join("attempts").exists());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // The pipeline holds the cache to the same budget after every attempt.
        std::fs::write(cache.join("d.wav"), vec![0u8; 1000]).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(pipeline.cache().unwrap().enforce())
            .unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }
}
