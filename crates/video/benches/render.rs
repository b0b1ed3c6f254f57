//! The render benchmark: the reference storyboard (`examples/en-fractions.json`, 10
//! segments, about 65 s of narration, 1280×720 at 25 fps) end to end through the real
//! pipeline, next to `bench/reference.sh` — a plain sequential shell script calling the same
//! espeak-ng and ffmpeg commands on the same inputs — in the same run. Then a 10-minute
//! storyboard (the same 10 segments ten times) to show how the cost grows.
//!
//! Run: `cargo bench -p video --bench render` (needs ffmpeg, ffprobe, espeak-ng).
//! `BENCH_LONG=0` skips the 10-minute storyboard.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{JobId, LeaseEpoch};
use pipeline::{ProgressEvent, ProgressSink, StageContext};
use tokio_util::sync::CancellationToken;
use video::render::VIDEO_ARGS;
use video::render::slide::SlideRenderer;
use video::storyboard::Storyboard;
use video::tts::espeak::Espeak;
use video::video::{PipelineStats, VideoConfig, video_pipeline};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Ours: wall time and per-stage times.
async fn ours(
    input: &serde_json::Value,
    dir: &Path,
) -> (Duration, BTreeMap<String, Duration>, f64) {
    let store = video::publish::store_from_url(dir.join("artifacts").to_str().unwrap()).unwrap();
    let config = VideoConfig {
        tts: Arc::new(Espeak::new("espeak-ng").unwrap()),
        store,
        ffmpeg: PathBuf::from("ffmpeg"),
        ffmpeg_version: video::media::version(Path::new("ffmpeg"), "-version").unwrap(),
        max_encoders: VideoConfig::cores(),
        cache: video::cache::SegmentCache::new(dir.join("cache"), u64::MAX),
    };
    let pipeline = video_pipeline(config, Arc::new(PipelineStats::default()));
    let (sink, mut events) = ProgressSink::channel();
    let ctx = StageContext::new(
        JobId::new(),
        LeaseEpoch::NEVER.next(),
        Arc::new(input.clone()),
        dir.join("work"),
        sink,
        CancellationToken::new(),
    );
    let started = Instant::now();
    let published = pipeline.run(&ctx).await.unwrap();
    let took = started.elapsed();
    let mut stages = BTreeMap::new();
    while let Ok(e) = events.try_recv() {
        if let ProgressEvent::StageFinished { stage, duration } = e {
            stages.insert(stage.to_string(), duration);
        }
    }
    let film = dir.join("artifacts").join(&published.artifact_key);
    let probe = video::media::probe(Path::new("ffprobe"), &film)
        .await
        .unwrap();
    (took, stages, probe.duration)
}

/// The script, on inputs prepared here (slides drawn here, untimed).
fn reference(board: &Storyboard, dir: &Path) -> (Duration, f64) {
    let segments = dir.join("segments");
    std::fs::create_dir_all(&segments).unwrap();
    let mut renderer = SlideRenderer::new();
    let n = board.segments.len();
    for (i, s) in board.segments.iter().enumerate() {
        let narration: Vec<String> = s.spoken_beats().into_iter().map(|b| b.narration).collect();
        std::fs::write(segments.join(format!("{i:03}.txt")), narration.join(" ")).unwrap();
        let rgba = renderer.draw(
            &board.title,
            &s.slide,
            i,
            n,
            board.frame.width,
            board.frame.height,
        );
        std::fs::write(segments.join(format!("{i:03}.rgba")), rgba).unwrap();
    }
    let f = board.frame;
    std::fs::write(
        dir.join("params"),
        format!(
            "{} {} {} {} {}\n",
            f.width, f.height, f.fps, board.voice.language, board.voice.rate_wpm
        ),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/reference.sh");
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .env("VIDEO_ARGS", VIDEO_ARGS.join(" "))
        .status()
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "reference script failed");
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(dir.join("final.mp4"))
        .output()
        .unwrap();
    let duration = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    (took, duration)
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/en-fractions.json"),
    )
    .unwrap();
    let input: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut long = input.clone();
    let segments = input["segments"].as_array().unwrap().clone();
    // Ten rounds of the ten segments, each narration made distinct so none is a cache hit.
    long["segments"] = serde_json::Value::Array(
        (0..10)
            .flat_map(|round| {
                segments.iter().map(move |seg| {
                    let mut seg = seg.clone();
                    let said = seg["narration"].as_str().unwrap_or_default().to_owned();
                    seg["narration"] =
                        serde_json::Value::String(format!("Part {}. {said}", round + 1));
                    seg
                })
            })
            .collect(),
    );
    let mut cases = vec![("reference (10 segments)", input)];
    if std::env::var("BENCH_LONG").as_deref() != Ok("0") {
        cases.push(("10-minute (100 segments)", long));
    }
    println!(
        "cores: {}, ffmpeg processes at once: {}\n",
        VideoConfig::cores(),
        VideoConfig::cores()
    );
    println!(
        "| storyboard | film s | pipeline ms | script ms | pipeline / script | plan | tts | render | compose | publish | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, input) in cases {
        let board = Storyboard::from_json(&input).unwrap();
        let ours_dir = tempfile::tempdir().unwrap();
        let (took, stages, film) = rt.block_on(ours(&input, ours_dir.path()));
        let rss = peak_rss_mib();
        let script_dir = tempfile::tempdir().unwrap();
        let (script, script_film) = reference(&board, script_dir.path());
        assert!(
            (film - script_film).abs() < 0.1,
            "both make the same film length: {film} vs {script_film}"
        );
        let stage = |s: &str| stages.get(s).map_or("-".into(), |d| ms(*d));
        println!(
            "| {name} | {film:.1} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {rss:.0} |",
            ms(took),
            ms(script),
            took.as_secs_f64() / script.as_secs_f64(),
            stage("plan"),
            stage("tts"),
            stage("render"),
            stage("compose"),
            stage("publish"),
        );
    }
}
