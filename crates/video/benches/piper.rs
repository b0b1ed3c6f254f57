//! The Piper benchmark: the wall time of the TTS stage speaking the demo storyboard
//! (`examples/en-fractions-beats.json`, 10 segments, 28 sentences) through the real
//! pipeline with the real Piper, a sentence per run of the `piper` program (as before
//! batches: each run loads the model) next to batches (one run of the driver per worker)
//! with one and with two workers — in the same run, each on a cold cache. Then a lesson of
//! about 150 sentences (the storyboard four times, each segment opened by "Part N.").
//!
//! The frame is shrunk to 320×180 at 10 fps so the rest of the pipeline costs little; it
//! does not change the speech. Each row also gives the CPU-seconds of the whole run (this
//! process and every child it waited for, `/proc/self/stat`), nearly all of it speech.
//!
//! Run: `cargo bench -p video --bench piper` (needs `scripts/setup --voices`, ffmpeg,
//! ffprobe). `BENCH_LONG=0` skips the long lesson; `BENCH_RUNS=n` repeats each row n times.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: fail loudly

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use domain::{JobId, LeaseEpoch};
use pipeline::{ProgressEvent, ProgressSink, StageContext, StageError};
use tokio_util::sync::CancellationToken;
use video::storyboard::Voice;
use video::tts::piper::Piper;
use video::tts::{BatchError, Schedule, TtsBackend, Utterance};
use video::video::{PipelineStats, VideoConfig, video_pipeline};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

/// Piper with another number of calls at once.
#[derive(Debug)]
struct Workers(Piper, usize);

#[async_trait]
impl TtsBackend for Workers {
    fn fingerprint(&self, voice: &Voice) -> String {
        self.0.fingerprint(voice)
    }

    fn schedule(&self, voice: &Voice) -> Schedule {
        Schedule {
            workers: self.1,
            ..self.0.schedule(voice)
        }
    }

    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        self.0.synthesize(text, voice, out, cancel).await
    }

    async fn synthesize_batch(
        &self,
        batch: &[Utterance],
        voice: &Voice,
        cancel: &CancellationToken,
        spoken: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<(), BatchError> {
        self.0.synthesize_batch(batch, voice, cancel, spoken).await
    }
}

/// What one run measured.
struct Run {
    tts: Duration,
    cpu: f64,
    sentences: usize,
    speech_seconds: f64,
}

async fn run(tts: Arc<dyn TtsBackend>, input: &serde_json::Value, dir: &Path) -> Run {
    let ffmpeg = PathBuf::from("ffmpeg");
    let stats = Arc::new(PipelineStats::default());
    let config = VideoConfig {
        tts,
        store: video::publish::store_from_url(dir.join("artifacts").to_str().unwrap()).unwrap(),
        ffmpeg_version: video::media::version(&ffmpeg, "-version").expect("apt-get install ffmpeg"),
        ffmpeg,
        max_encoders: VideoConfig::cores(),
        cache: video::cache::SegmentCache::new(dir.join("cache"), u64::MAX),
    };
    let pipeline = video_pipeline(config, stats.clone());
    let (sink, mut events) = ProgressSink::channel();
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: JobId::new(),
            epoch: LeaseEpoch::NEVER.next(),
            input: Arc::new(input.clone()),
            work_dir: dir.join("work"),
        },
        sink,
        CancellationToken::new(),
    );
    let cpu = cpu_seconds();
    let published = pipeline.run(&ctx).await.unwrap();
    let cpu = cpu_seconds() - cpu;
    let mut tts = None;
    while let Ok(e) = events.try_recv() {
        if let ProgressEvent::StageFinished { stage, duration } = e
            && stage == domain::Stage::Tts
        {
            tts = Some(duration);
        }
    }
    // The film is as long as its narration (within a frame).
    let film = dir.join("artifacts").join(&published.artifact_key);
    let film = video::media::probe(Path::new("ffprobe"), &film)
        .await
        .unwrap();
    Run {
        tts: tts.expect("the tts stage finished"),
        cpu,
        sentences: stats.speech_made.load(Ordering::Relaxed),
        speech_seconds: film.duration,
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (bin, model) = video::tts::piper::installed_paths(&root);
    let bin = std::env::var_os("VIDEO_PIPER_BIN").map_or(bin, PathBuf::from);
    let model = std::env::var_os("VIDEO_PIPER_MODEL").map_or(model, PathBuf::from);
    if !(bin.exists() && model.exists()) {
        println!("NOT RUN: piper is not installed (scripts/setup --voices installs it)");
        return;
    }
    let piper = Piper::new(bin, model).unwrap();
    assert!(
        piper.batches(),
        "the batch driver cannot run beside {piper:?}"
    );
    let text = std::fs::read_to_string(root.join("examples/en-fractions-beats.json")).unwrap();
    let mut input: serde_json::Value = serde_json::from_str(&text).unwrap();
    input["frame"] = serde_json::json!({"width": 320, "height": 180, "fps": 10});
    let segments = input["segments"].as_array().unwrap().clone();
    let mut long = input.clone();
    long["segments"] = serde_json::Value::Array(
        (0..4)
            .flat_map(|round| {
                segments.iter().map(move |seg| {
                    let mut seg = seg.clone();
                    let said = seg["beats"][0]["narration"].as_str().unwrap().to_owned();
                    seg["beats"][0]["narration"] =
                        serde_json::Value::String(format!("Part {}. {said}", round + 1));
                    seg
                })
            })
            .collect(),
    );
    let mut cases = vec![("demo (10 segments)", input)];
    if std::env::var("BENCH_LONG").as_deref() != Ok("0") {
        cases.push(("long (40 segments)", long));
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let modes: [(&str, Arc<dyn TtsBackend>); 3] = [
        (
            "a run per sentence, 2 at once (before)",
            Arc::new(Workers(piper.clone().without_batches(), 2)),
        ),
        ("batches, 1 worker", Arc::new(Workers(piper.clone(), 1))),
        ("batches, 2 workers", Arc::new(Workers(piper.clone(), 2))),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("cores: {}\n", VideoConfig::cores());
    println!(
        "| storyboard | speech | sentences | speech s | tts stage wall s | sentences / s | run CPU s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, input) in &cases {
        for _ in 0..runs {
            for (mode, tts) in &modes {
                let dir = tempfile::tempdir().unwrap();
                let r = rt.block_on(run(tts.clone(), input, dir.path()));
                println!(
                    "| {name} | {mode} | {} | {:.1} | {:.2} | {:.2} | {:.1} |",
                    r.sentences,
                    r.speech_seconds,
                    r.tts.as_secs_f64(),
                    r.sentences as f64 / r.tts.as_secs_f64(),
                    r.cpu,
                );
            }
        }
    }
}
