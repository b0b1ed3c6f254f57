//! The real pipeline end to end: espeak-ng, the slide renderer, ffmpeg, a local object store.
//! Output is checked with ffprobe. Needs `ffmpeg`, `ffprobe` and `espeak-ng` on PATH (CI
//! installs them; the failure message says how).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::{JobId, LeaseEpoch};
use pipeline::{ProgressEvent, ProgressSink, StageContext, StageError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use video::media::probe;
use video::render::frame_counts;
use video::tts::espeak::Espeak;

use crate::common::{CACHE_HITS, Rig, rig, tools_or_explain};

fn context(
    rig: &Rig,
    job: JobId,
    input: serde_json::Value,
    cancel: CancellationToken,
) -> (StageContext, pipeline::ProgressReceiver) {
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    let (sink, events) = ProgressSink::channel();
    // Each run is an attempt with scratch of its own, as the runner gives it.
    let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: job,
            epoch: LeaseEpoch::NEVER.next(),
            input: Arc::new(input),
            work_dir: rig
                .dir
                .path()
                .join("attempts")
                .join(format!("{job}-{attempt}")),
        },
        sink,
        cancel,
    );
    (ctx, events)
}

fn small(segments: usize) -> serde_json::Value {
    let narrations = [
        "One quarter plus one quarter makes one half.",
        "Two thirds is larger than one half.",
        "Three fifths and two fifths make a whole.",
        "Seven tenths is seventy percent.",
        "A fraction names a part of a whole.",
        "Equal fractions can look different.",
    ];
    json!({
        "version": 1,
        "title": "Test film",
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": (0..segments).map(|i| json!({
            "narration": narrations[i % narrations.len()],
            "slide": {"heading": format!("Point {}", i + 1), "bullets": ["first", "second"], "body": "body text"}
        })).collect::<Vec<_>>()
    })
}

fn wav_samples(dir: &Path) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wav") {
            let r = hound::WavReader::open(&path).unwrap();
            out.push((u64::from(r.duration()), r.spec().sample_rate));
        }
    }
    out
}

async fn film_path(rig: &Rig, key: &str) -> PathBuf {
    rig.dir.path().join("artifacts").join(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storyboard_becomes_an_h264_aac_mp4_as_long_as_its_narration() {
    let _counters = CACHE_HITS.read().await;
    let rig = rig();
    let job = JobId::new();
    let (ctx, mut events) = context(&rig, job, small(3), CancellationToken::new());
    let published = rig.pipeline.run(&ctx).await.unwrap();
    assert_eq!(
        published.artifact_key,
        format!("video-jobs/{job}/attempts/1/final.mp4")
    );
    let film = film_path(&rig, &published.artifact_key).await;
    let p = probe(Path::new("ffprobe"), &film).await.unwrap();
    let codecs: Vec<_> = p.streams.iter().map(|(k, c)| format!("{k}:{c}")).collect();
    assert_eq!(
        codecs,
        ["video:h264", "audio:aac", "subtitle:mov_text"],
        "{p:?}"
    );

    // Duration equals the narration within one frame, and so does every segment boundary.
    let speech = wav_samples(&rig.dir.path().join("cache"));
    assert_eq!(speech.len(), 3);
    let rate = speech[0].1;
    let total: u64 = speech.iter().map(|(n, _)| n).sum();
    let narration = total as f64 / f64::from(rate);
    let video = p.video_duration.unwrap();
    assert!(
        (video - narration).abs() <= 1.0 / 25.0,
        "video {video} s vs narration {narration} s"
    );
    let audio = p.audio_duration.unwrap();
    assert!(
        (audio - narration).abs() <= 0.05,
        "audio {audio} s vs narration {narration} s"
    );
    let frames: u64 = frame_counts(
        &speech.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        rate,
        25,
    )
    .iter()
    .sum();
    assert_eq!(p.video_frames, Some(frames));
    assert_eq!(
        rig.stats.videos_encoded.load(Ordering::Relaxed),
        3,
        "one encode per segment"
    );
    assert_eq!(rig.stats.speech_made.load(Ordering::Relaxed), 3);

    // Every segment of TTS and render reported progress.
    let mut segments = std::collections::BTreeMap::<String, usize>::new();
    while let Ok(e) = events.try_recv() {
        if let ProgressEvent::SegmentDone { stage, .. } = e {
            *segments.entry(stage.to_string()).or_default() += 1;
        }
    }
    assert_eq!(segments.get("tts"), Some(&3));
    assert_eq!(segments.get("render"), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_korean_example_renders() {
    let _counters = CACHE_HITS.read().await;
    let rig = rig();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ko-photosynthesis.json"),
    )
    .unwrap();
    let mut input: serde_json::Value = serde_json::from_str(&text).unwrap();
    input["frame"] = json!({"width": 640, "height": 360, "fps": 25});
    let (ctx, _events) = context(&rig, JobId::new(), input, CancellationToken::new());
    let published = rig.pipeline.run(&ctx).await.unwrap();
    let p = probe(
        Path::new("ffprobe"),
        &film_path(&rig, &published.artifact_key).await,
    )
    .await
    .unwrap();
    assert_eq!(p.streams.len(), 3, "video, audio and captions");
    assert!(
        p.duration > 3.0,
        "three Korean sentences take more than 3 s: {p:?}"
    );
}

fn ffmpeg_children_for(dir: &Path) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_render_kills_ffmpeg_and_leaves_no_child() {
    let _counters = CACHE_HITS.read().await;
    let rig = rig();
    let mut input = small(6);
    input["frame"] = json!({"width": 1920, "height": 1080, "fps": 60});
    let token = CancellationToken::new();
    let (ctx, mut events) = context(&rig, JobId::new(), input, token.clone());
    let work = ctx.work_dir.clone();
    let run = {
        let pipeline = rig.pipeline.clone();
        tokio::spawn(async move { pipeline.run(&ctx).await })
    };
    // Wait for the render stage and for an ffmpeg of this job to be running.
    loop {
        match events.recv().await {
            Some(ProgressEvent::StageStarted {
                stage: domain::Stage::Render,
            }) => break,
            Some(_) => {}
            None => panic!("the pipeline ended before rendering"),
        }
    }
    let seen = Instant::now();
    while ffmpeg_children_for(&work) == 0 {
        assert!(
            seen.elapsed() < Duration::from_secs(10),
            "no ffmpeg started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    token.cancel();
    let result = run.await.unwrap();
    assert_eq!(result.unwrap_err(), StageError::Canceled);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        asked.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ffmpeg_children_for(&work),
        0,
        "an ffmpeg of the job outlived it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_after_some_segments_resumes_without_redoing_them() {
    let _counters = CACHE_HITS.read().await;
    let rig = rig();
    let job = JobId::new();
    let input = small(6);
    let token = CancellationToken::new();
    let (ctx, mut events) = context(&rig, job, input.clone(), token.clone());
    let run = {
        let pipeline = rig.pipeline.clone();
        tokio::spawn(async move { pipeline.run(&ctx).await })
    };
    let mut rendered = 0;
    while let Some(e) = events.recv().await {
        if matches!(
            e,
            ProgressEvent::SegmentDone {
                stage: domain::Stage::Render,
                ..
            }
        ) {
            rendered += 1;
            if rendered == 2 {
                token.cancel(); // the worker dies here
                break;
            }
        }
    }
    assert_eq!(run.await.unwrap().unwrap_err(), StageError::Canceled);
    let encoded_first = rig.stats.videos_encoded.load(Ordering::Relaxed);
    assert!(encoded_first >= 2, "{encoded_first}");

    // The retry: same job, same instance, a new attempt with fresh scratch.
    let (ctx, _events) = context(&rig, job, input, CancellationToken::new());
    rig.pipeline.run(&ctx).await.unwrap();
    let s = &rig.stats;
    assert_eq!(
        s.speech_reused.load(Ordering::Relaxed),
        6,
        "all speech came from the cache"
    );
    assert_eq!(
        s.speech_made.load(Ordering::Relaxed),
        6,
        "nothing spoken twice"
    );
    assert_eq!(
        s.videos_reused.load(Ordering::Relaxed),
        encoded_first,
        "finished segments reused"
    );
    assert_eq!(
        s.videos_encoded.load(Ordering::Relaxed),
        6,
        "each segment encoded exactly once overall"
    );
}

#[tokio::test]
async fn invalid_storyboards_fail_permanently_with_field_level_errors() {
    let _counters = CACHE_HITS.read().await;
    let rig = rig();
    let mut input = small(1);
    input["segments"][0]["slide"]["heading"] = json!("");
    input["frame"]["width"] = json!(333);
    let (ctx, _events) = context(&rig, JobId::new(), input, CancellationToken::new());
    let Err(StageError::Permanent(error)) = rig.pipeline.run(&ctx).await else {
        panic!("expected a permanent failure");
    };
    assert_eq!(error.code.as_str(), "invalid_input");
    assert!(
        error.message.contains("segments[0].slide.heading"),
        "{}",
        error.message
    );
    assert!(error.message.contains("frame.width"), "{}", error.message);
    assert_eq!(
        rig.stats.speech_made.load(Ordering::Relaxed),
        0,
        "nothing ran"
    );
}

#[tokio::test]
async fn an_unknown_voice_fails_permanently_and_names_the_field() {
    let _counters = CACHE_HITS.read().await;
    use video::tts::TtsBackend;
    tools_or_explain();
    let espeak = Espeak::new("espeak-ng").unwrap();
    let voice = video::storyboard::Voice {
        language: "zz".into(),
        rate_wpm: 160,
    };
    let dir = tempfile::tempdir().unwrap();
    let result = espeak
        .synthesize(
            "hello",
            &voice,
            &dir.path().join("x.wav"),
            &CancellationToken::new(),
        )
        .await;
    let Err(StageError::Permanent(error)) = result else {
        panic!("expected a permanent failure, got {result:?}");
    };
    assert_eq!(error.code.as_str(), "invalid_input");
    assert!(
        error.message.contains("voice.language"),
        "{}",
        error.message
    );
}
