//! Resume on any instance: finished segments go to the object store too, and a retry on a
//! worker with an empty work dir takes them from there; a damaged copy, local or stored, is
//! evicted and redone; a store that is down costs only the resume. Real espeak-ng, ffmpeg
//! and a local directory as the shared store. The segment-cache counter is read from a real
//! Prometheus recorder; it is process-wide, so these tests hold [`CACHE_HITS`] for writing
//! and no other test runs a pipeline meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use domain::{JobId, LeaseEpoch, Stage};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pipeline::{Pipeline, ProgressEvent, ProgressSink, StageContext, StageError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use video::cache::{SegmentCache, looks_whole};
use video::tts::espeak::Espeak;
use video::video::{PipelineStats, VideoConfig, video_pipeline};

use crate::common::CACHE_HITS;

fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        handle
    })
}

/// `video_worker_segment_cache_hits_total{source=...}` as rendered for Prometheus.
fn hits(source: &str) -> u64 {
    let text = metrics().render();
    let wanted = format!("video_worker_segment_cache_hits_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// One worker instance: its own (empty) work dir, the store shared through `store_dir`.
struct Worker {
    pipeline: Pipeline,
    stats: Arc<PipelineStats>,
    work: tempfile::TempDir,
}

fn worker(store_dir: &Path) -> Worker {
    metrics();
    let work = tempfile::tempdir().unwrap();
    let stats = Arc::new(PipelineStats::default());
    let config = VideoConfig {
        tts: Arc::new(Espeak::new("espeak-ng").expect("apt-get install espeak-ng")),
        store: video::publish::store_from_url(store_dir.to_str().unwrap()).unwrap(),
        ffmpeg: PathBuf::from("ffmpeg"),
        ffmpeg_version: video::media::version(Path::new("ffmpeg"), "-version")
            .expect("apt-get install ffmpeg"),
        max_encoders: 2,
        cache: SegmentCache::new(work.path().join("cache"), u64::MAX),
    };
    Worker {
        pipeline: video_pipeline(config, stats.clone()),
        stats,
        work,
    }
}

fn context(
    worker: &Worker,
    job: JobId,
    input: &serde_json::Value,
    cancel: CancellationToken,
) -> (StageContext, pipeline::ProgressReceiver) {
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    let (sink, events) = ProgressSink::channel();
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: job,
            epoch: LeaseEpoch::NEVER.next(),
            input: Arc::new(input.clone()),
            work_dir: worker
                .work
                .path()
                .join("attempts")
                .join(attempt.to_string()),
        },
        sink,
        cancel,
    );
    (ctx, events)
}

fn board(segments: usize) -> serde_json::Value {
    json!({
        "version": 1,
        "title": "Resume",
        "frame": {"width": 320, "height": 180, "fps": 10},
        "segments": (0..segments).map(|i| json!({
            "narration": format!("Segment number {i} of the resume test."),
            "slide": {"heading": format!("Part {}", i + 1), "bullets": ["one"], "body": "text"}
        })).collect::<Vec<_>>()
    })
}

fn count(n: &AtomicUsize) -> usize {
    n.load(Ordering::Relaxed)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_an_empty_instance_renders_only_the_unfinished_segments() {
    let _turn = CACHE_HITS.write().await;
    let store = tempfile::tempdir().unwrap();
    let job = JobId::new();
    let input = board(6);

    // The first instance is stopped (the instance dies) after four segments are rendered.
    let first = worker(store.path());
    let token = CancellationToken::new();
    let (ctx, mut events) = context(&first, job, &input, token.clone());
    let run = {
        let pipeline = first.pipeline.clone();
        tokio::spawn(async move { pipeline.run(&ctx).await })
    };
    let mut rendered = 0;
    while let Some(e) = events.recv().await {
        if let ProgressEvent::SegmentDone {
            stage: Stage::Render,
            ..
        } = e
        {
            rendered += 1;
            if rendered == 4 {
                token.cancel();
                break;
            }
        }
    }
    assert_eq!(run.await.unwrap().unwrap_err(), StageError::Canceled);
    let encoded_first = count(&first.stats.videos_encoded);
    assert!((4..6).contains(&encoded_first), "{encoded_first}");
    let segments = store.path().join(format!("video-jobs/{job}/segments"));
    assert_eq!(
        files(&segments, "wav").len(),
        6,
        "every narration is in the store"
    );
    let stored_first = files(&segments, "h264").len();
    assert_eq!(stored_first, count(&first.stats.clips_encoded));
    assert!(
        stored_first >= encoded_first,
        "a clip or two per finished segment"
    );

    // The retry lands on another instance: nothing local, the same store.
    let (store_hits, local_hits) = (hits("store"), hits("local"));
    let second = worker(store.path());
    let (ctx, _events) = context(&second, job, &input, CancellationToken::new());
    second.pipeline.run(&ctx).await.unwrap();
    let s = &second.stats;
    assert_eq!(count(&s.speech_made), 0, "no narration spoken again");
    assert_eq!(count(&s.speech_from_store), 6);
    assert_eq!(
        count(&s.videos_encoded),
        6 - encoded_first,
        "only the unfinished segments were encoded"
    );
    assert_eq!(count(&s.videos_from_store), encoded_first);
    assert_eq!(
        count(&s.clips_reused),
        stored_first,
        "every stored clip reused"
    );
    assert_eq!(
        hits("store") - store_hits,
        (6 + stored_first) as u64,
        "the counter says where they came from"
    );
    assert_eq!(hits("local"), local_hits);
    assert_eq!(
        files(&segments, "h264").len(),
        stored_first + count(&s.clips_encoded),
        "the rest was kept too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_local_or_stored_are_evicted_and_redone_not_failed() {
    let _turn = CACHE_HITS.write().await;
    let store = tempfile::tempdir().unwrap();
    let job = JobId::new();
    let input = board(2);
    let w = worker(store.path());
    let (ctx, _events) = context(&w, job, &input, CancellationToken::new());
    w.pipeline.run(&ctx).await.unwrap();
    assert_eq!(count(&w.stats.videos_encoded), 2);

    // A host crash on a persistent disk: every cached clip is cut short under its real key;
    // in the store one clip is garbled, so one segment comes whole from the store and the
    // other is partly encoded again.
    let cache = w.work.path().join("cache");
    let local = files(&cache, "h264");
    assert_eq!(local.len(), count(&w.stats.clips_encoded));
    assert!(local.len() >= 2, "a clip or two per segment");
    for path in &local {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    }
    let segments = store.path().join(format!("video-jobs/{job}/segments"));
    let stored = files(&segments, "h264");
    std::fs::write(&stored[0], b"not an mp4 at all").unwrap();

    let (ctx, _events) = context(&w, job, &input, CancellationToken::new());
    w.pipeline.run(&ctx).await.unwrap();
    assert_eq!(count(&w.stats.videos_from_store), 1, "the good stored copy");
    assert_eq!(
        count(&w.stats.videos_encoded),
        3,
        "the doubly bad one redone"
    );
    for path in files(&cache, "h264")
        .iter()
        .chain(&files(&segments, "h264"))
    {
        assert!(
            looks_whole(path, "h264"),
            "{} is whole again",
            path.display()
        );
    }
}

/// A WAV whose chunks add up (it looks whole) but whose format the decoder refuses (ADPCM).
fn undecodable_wav() -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&40u32.to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes()); // format 2: ADPCM
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&22_050u32.to_le_bytes());
    w.extend_from_slice(&44_100u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&4u32.to_le_bytes());
    w.extend_from_slice(&[0; 4]);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_but_undecodable_narration_is_evicted_and_spoken_again() {
    let _turn = CACHE_HITS.write().await;
    let store = tempfile::tempdir().unwrap();
    let job = JobId::new();
    let input = board(2);
    let w = worker(store.path());
    let (ctx, _events) = context(&w, job, &input, CancellationToken::new());
    w.pipeline.run(&ctx).await.unwrap();
    assert_eq!(count(&w.stats.speech_made), 2);

    let cache = w.work.path().join("cache");
    let segments = store.path().join(format!("video-jobs/{job}/segments"));
    let copies: Vec<PathBuf> = files(&cache, "wav")
        .into_iter()
        .chain(files(&segments, "wav"))
        .collect();
    assert_eq!(copies.len(), 4, "two narrations, cached and stored");
    for path in &copies {
        std::fs::write(path, undecodable_wav()).unwrap();
        assert!(looks_whole(path, "wav"), "the structure check passes it");
    }

    let (ctx, _events) = context(&w, job, &input, CancellationToken::new());
    w.pipeline.run(&ctx).await.unwrap();
    assert_eq!(count(&w.stats.speech_made), 4, "both spoken again");
    for path in files(&cache, "wav").iter().chain(&files(&segments, "wav")) {
        assert!(
            hound::WavReader::open(path).is_ok(),
            "{} decodes again",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_segment_uploads_does_not_fail_the_job() {
    let _turn = CACHE_HITS.write().await;
    let store = tempfile::tempdir().unwrap();
    let job = JobId::new();
    // A file where the segments' folder should be: every segment upload fails.
    let blocked = store.path().join(format!("video-jobs/{job}"));
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("segments"), b"in the way").unwrap();

    let w = worker(store.path());
    let (ctx, _events) = context(&w, job, &board(2), CancellationToken::new());
    let published = w.pipeline.run(&ctx).await.unwrap();
    assert!(store.path().join(&published.artifact_key).is_file());
    assert_eq!(count(&w.stats.videos_encoded), 2);
}
