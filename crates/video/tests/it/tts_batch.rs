//! The TTS stage's batches, with a backend that takes many sentences a call (as Piper
//! does) but speaks them with the real espeak-ng, so no Piper is needed: every sentence
//! not cached goes to the backend once, in film order, in as many batches as it runs at
//! once; cached sentences are never spoken again; a failure names the segment and the
//! sentence it happened on and keeps its class and code.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline::{ProgressSink, StageContext, StageError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use video::cache::SegmentCache;
use video::storyboard::Voice;
use video::tts::espeak::Espeak;
use video::tts::{BatchError, Schedule, TtsBackend, Utterance};
use video::video::{PipelineStats, VideoConfig, video_pipeline};

use crate::common::{CACHE_HITS, code, tools_or_explain};

/// Speaks with espeak-ng, any number of sentences a call, `workers` calls at once;
/// records each call's sentences. A sentence holding `fail_on` is refused.
#[derive(Debug)]
struct Batching {
    espeak: Espeak,
    workers: usize,
    calls: Mutex<Vec<Vec<String>>>,
    fail_on: Option<&'static str>,
}

impl Batching {
    fn new(workers: usize, fail_on: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            espeak: Espeak::new("espeak-ng").unwrap(),
            workers,
            calls: Mutex::new(Vec::new()),
            fail_on,
        })
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl TtsBackend for Batching {
    fn fingerprint(&self, voice: &Voice) -> String {
        self.espeak.fingerprint(voice)
    }

    fn schedule(&self, _: &Voice) -> Schedule {
        Schedule {
            workers: self.workers,
            max_batch: usize::MAX,
        }
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        self.espeak.synthesize(text, voice, out, cancel).await
    }

    async fn synthesize_batch(
        &self,
        batch: &[Utterance],
        voice: &Voice,
        cancel: &CancellationToken,
        spoken: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<(), BatchError> {
        self.calls
            .lock()
            .unwrap()
            .push(batch.iter().map(|u| u.text.clone()).collect());
        for (index, u) in batch.iter().enumerate() {
            if self.fail_on.is_some_and(|bad| u.text.contains(bad)) {
                let error = StageError::permanent("invalid_input", "the engine refused it");
                return Err(BatchError { index, error });
            }
            self.espeak
                .synthesize(&u.text, voice, &u.out, cancel)
                .await
                .map_err(|error| BatchError { index, error })?;
            spoken(index);
        }
        Ok(())
    }
}

/// A pipeline speaking with `tts`, caching in `dir`.
fn pipeline_with(tts: Arc<dyn TtsBackend>, dir: &Path) -> (pipeline::Pipeline, Arc<PipelineStats>) {
    tools_or_explain();
    let stats = Arc::new(PipelineStats::default());
    let config = VideoConfig {
        tts,
        store: video::publish::store_from_url(dir.join("films").to_str().unwrap()).unwrap(),
        ffmpeg: "ffmpeg".into(),
        ffmpeg_version: video::media::version(Path::new("ffmpeg"), "-version").unwrap(),
        max_encoders: 2,
        cache: SegmentCache::new(dir.join("cache"), u64::MAX),
    };
    (video_pipeline(config, stats.clone()), stats)
}

/// Runs `board` once; its attempt works in `dir/attempt-{n}`.
async fn run(
    pipeline: &pipeline::Pipeline,
    dir: &Path,
    n: usize,
    board: &serde_json::Value,
) -> Result<pipeline::Published, StageError> {
    let (sink, _events) = ProgressSink::channel();
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: domain::JobId::new(),
            epoch: domain::LeaseEpoch::NEVER.next(),
            input: Arc::new(board.clone()),
            work_dir: dir.join(format!("attempt-{n}")),
        },
        sink,
        CancellationToken::new(),
    );
    pipeline.run(&ctx).await
}

/// A small storyboard of these narrations, one segment each.
fn board(narrations: &[&str]) -> serde_json::Value {
    let segments: Vec<_> = narrations
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"narration": n,
                   "slide": {"heading": format!("Slide {i}"), "bullets": [], "body": ""}})
        })
        .collect();
    json!({
        "version": 1,
        "title": "Batches",
        "voice": {"language": "en", "rate_wpm": 200},
        "frame": {"width": 320, "height": 180, "fps": 10},
        "segments": segments,
    })
}

const FIRST: &str = "One half and one half. That makes a whole.";
const SECOND: &str = "Two quarters make a half.";
const THIRD: &str = "Three thirds make a whole. So do four quarters. And five fifths.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_backend_gets_every_uncached_sentence_once_in_film_order() {
    let _counters = CACHE_HITS.read().await;
    let dir = tempfile::tempdir().unwrap();
    let tts = Batching::new(1, None);
    let (pipeline, stats) = pipeline_with(tts.clone(), dir.path());
    run(&pipeline, dir.path(), 1, &board(&[FIRST, SECOND]))
        .await
        .unwrap();
    assert_eq!(
        tts.calls(),
        [[
            "One half and one half.",
            "That makes a whole.",
            "Two quarters make a half."
        ]],
        "one worker: one batch of every sentence, in order"
    );
    assert_eq!(
        stats.speech_made.load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // The same sentences again, and new ones: only the new ones are spoken.
    let (pipeline, stats) = pipeline_with(tts.clone(), dir.path());
    run(&pipeline, dir.path(), 2, &board(&[FIRST, THIRD, SECOND]))
        .await
        .unwrap();
    assert_eq!(
        tts.calls()[1..],
        [[
            "Three thirds make a whole.",
            "So do four quarters.",
            "And five fifths."
        ]]
    );
    let reused = stats
        .speech_reused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reused, 3);

    // Everything cached: no call at all.
    let (pipeline, _) = pipeline_with(tts.clone(), dir.path());
    run(&pipeline, dir.path(), 3, &board(&[THIRD, FIRST]))
        .await
        .unwrap();
    assert_eq!(tts.calls().len(), 2, "{:?}", tts.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_split_the_sentences_into_two_contiguous_batches() {
    let _counters = CACHE_HITS.read().await;
    let dir = tempfile::tempdir().unwrap();
    let tts = Batching::new(2, None);
    let (pipeline, _) = pipeline_with(tts.clone(), dir.path());
    run(&pipeline, dir.path(), 1, &board(&[FIRST, SECOND, THIRD]))
        .await
        .unwrap();
    let film: Vec<String> = [FIRST, SECOND, THIRD]
        .iter()
        .flat_map(|n| video::captions::sentences(n))
        .collect();
    let mut calls = tts.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    // The two run at once and either may be called first; in film order they are the
    // sentences, each once, the first batch a prefix.
    calls.sort_by_key(|call| film.iter().position(|s| Some(s) == call.first()));
    assert_eq!(calls.concat(), film, "{calls:?}");
    assert!(calls.iter().all(|c| !c.is_empty()), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sentence_names_its_segment_and_keeps_its_class() {
    let _counters = CACHE_HITS.read().await;
    let dir = tempfile::tempdir().unwrap();
    let tts = Batching::new(1, Some("quarters"));
    let (pipeline, stats) = pipeline_with(tts.clone(), dir.path());
    let e = run(&pipeline, dir.path(), 1, &board(&[FIRST, SECOND, THIRD]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ("permanent", "invalid_input".into()), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("segments[1]") && text.contains("Two quarters make a half."),
        "{text}"
    );
    assert!(text.contains("the engine refused it"), "{text}");
    // What was spoken before the failure is kept: a retry does not speak it again.
    assert_eq!(
        stats.speech_made.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// Speaks with espeak-ng, but a sentence holding "Blink" is 10 ms of a tone: too short to
/// get a frame of its own at 10 fps.
#[derive(Debug)]
struct Blink(Espeak);

#[async_trait]
impl TtsBackend for Blink {
    fn fingerprint(&self, voice: &Voice) -> String {
        format!("blink {}", self.0.fingerprint(voice))
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        if !text.contains("Blink") {
            return self.0.synthesize(text, voice, out, cancel).await;
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(out, spec).unwrap();
        for i in 0..220 {
            wav.write_sample(((f64::from(i) * 0.1).sin() * 3000.0) as i16)
                .unwrap();
        }
        wav.finalize().unwrap();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_speech_rounds_to_no_frame_keeps_the_film_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let blink = Arc::new(Blink(Espeak::new("espeak-ng").unwrap()));
    let (pipeline, _) = pipeline_with(blink, dir.path());
    let published = run(&pipeline, dir.path(), 1, &board(&[FIRST, "Blink.", SECOND]))
        .await
        .unwrap();
    let film = dir.path().join("films").join(&published.artifact_key);
    let probe = video::media::probe(Path::new("ffprobe"), &film)
        .await
        .unwrap();
    let (video, audio) = (probe.video_duration.unwrap(), probe.audio_duration.unwrap());
    // Within one frame (100 ms), the film's rule. A frame added for the blink puts the video
    // a frame and a half past the audio's end (4.2 s against 4.05 s), and every later
    // picture a frame late.
    assert!(
        (video - audio).abs() <= 0.1,
        "video {video} s vs audio {audio} s"
    );
}
