//! The render benchmark: the reference storyboard (`examples/en-fractions.json`, 10
//! segments, about 65 s of narration, 1280×720 at 25 fps) end to end through the real
//! pipeline — with fades off (`frame.transition: "cut"`) and with the default look (fades)
//! — next to `bench/repeated-clip.sh`, a hand-written shell script making the same film
//! (without fades) from the same slides and speech with the repeated-clip technique (each
//! picture encoded once), in the same run. Then a storyboard of over ten minutes (the same
//! 10 segments ten times) to show how the cost grows.
//!
//! Each side is measured in wall time and in CPU-seconds: user + system time of the process
//! and of every child it waited for (`/proc/self/stat`: `utime`, `stime`, `cutime`,
//! `cstime`), read before and after — for the pipeline that is this process's threads
//! (drawing, joining audio) and its ffmpeg and espeak-ng children; for the script, bash and
//! everything it ran. The script's slides are drawn beforehand, untimed.
//!
//! Run: `cargo bench -p video --bench render` (needs ffmpeg, ffprobe, espeak-ng).
//! `BENCH_LONG=0` skips the long storyboard; `BENCH_RUNS=n` repeats each row n times;
//! `BENCH_LOOK=cut` or `fade` runs the pipeline with that look only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{JobId, LeaseEpoch};
use pipeline::{ProgressEvent, ProgressSink, StageContext};
use tokio_util::sync::CancellationToken;
use video::render::VIDEO_ARGS;
use video::render::slide::{Reveal, SlideFrame, SlideRenderer};
use video::storyboard::Storyboard;
use video::tts::espeak::Espeak;
use video::video::{PipelineStats, VideoConfig, video_pipeline};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What one side of the comparison cost and made.
struct Run {
    wall: Duration,
    cpu: f64,
    film: video::media::Probe,
}

/// Ours: the run and per-stage times.
async fn ours(input: &serde_json::Value, dir: &Path) -> (Run, BTreeMap<String, Duration>) {
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
        pipeline::Attempt {
            job_id: JobId::new(),
            epoch: LeaseEpoch::NEVER.next(),
            input: Arc::new(input.clone()),
            work_dir: dir.join("work"),
        },
        sink,
        CancellationToken::new(),
    );
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let published = pipeline.run(&ctx).await.unwrap();
    let (wall, cpu) = (started.elapsed(), cpu_seconds() - cpu);
    let mut stages = BTreeMap::new();
    while let Ok(e) = events.try_recv() {
        if let ProgressEvent::StageFinished { stage, duration } = e {
            stages.insert(stage.to_string(), duration);
        }
    }
    let film = dir.join("artifacts").join(&published.artifact_key);
    let film = video::media::probe(Path::new("ffprobe"), &film)
        .await
        .unwrap();
    (Run { wall, cpu, film }, stages)
}

/// The script, on inputs prepared here (slides drawn here, untimed).
async fn script(board: &Storyboard, dir: &Path) -> Run {
    let segments = dir.join("segments");
    std::fs::create_dir_all(&segments).unwrap();
    let mut renderer = SlideRenderer::new();
    let n = board.segments.len();
    for (i, s) in board.segments.iter().enumerate() {
        // One sentence a line: the pipeline speaks each on its own (exact caption times),
        // so the script does too.
        let sentences: Vec<String> = s
            .spoken_beats()
            .iter()
            .flat_map(|b| video::captions::sentences(&b.narration))
            .collect();
        std::fs::write(segments.join(format!("{i:03}.txt")), sentences.join("\n")).unwrap();
        let rgba = renderer.draw(&SlideFrame {
            title: &board.title,
            slide: &s.slide,
            index: i,
            total: n,
            width: board.frame.width,
            height: board.frame.height,
            reveal: Reveal::all(),
        });
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/repeated-clip.sh");
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .env("VIDEO_ARGS", VIDEO_ARGS.join(" "))
        .status()
        .unwrap();
    let (wall, cpu) = (started.elapsed(), cpu_seconds() - cpu);
    assert!(status.success(), "the reference script failed");
    let film = video::media::probe(Path::new("ffprobe"), &dir.join("final.mp4"))
        .await
        .unwrap();
    Run { wall, cpu, film }
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
        cases.push(("long (100 segments)", long));
    }
    println!(
        "cores: {}, ffmpeg processes at once: {}\n",
        VideoConfig::cores(),
        VideoConfig::cores()
    );
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    println!(
        "| storyboard | pipeline look | film s | frames | pipeline CPU s | script CPU s | CPU pipeline / script | pipeline wall ms | script wall ms | wall pipeline / script | pipeline wall s per 10 min | plan | tts | render | compose | publish | peak RSS MiB |"
    );
    println!(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, input) in cases {
        let board = Storyboard::from_json(&input).unwrap();
        for _ in 0..runs {
            let script_dir = tempfile::tempdir().unwrap();
            let theirs = rt.block_on(script(&board, script_dir.path()));
            let looks = [("fades off (cut)", "cut"), ("default (fade)", "fade")];
            let only = std::env::var("BENCH_LOOK").ok();
            for (look, transition) in looks
                .into_iter()
                .filter(|(_, t)| only.as_deref().is_none_or(|o| o == *t))
            {
                let mut input = input.clone();
                input["frame"]["transition"] = serde_json::Value::from(transition);
                let ours_dir = tempfile::tempdir().unwrap();
                let (ours, stages) = rt.block_on(ours(&input, ours_dir.path()));
                let rss = peak_rss_mib();
                assert_eq!(
                    ours.film.video_frames, theirs.film.video_frames,
                    "both make the same frames"
                );
                assert!(
                    (ours.film.duration - theirs.film.duration).abs()
                        <= 1.0 / f64::from(board.frame.fps),
                    "both make the same film length: {:?} vs {:?}",
                    ours.film,
                    theirs.film
                );
                let stage = |s: &str| stages.get(s).map_or("-".into(), |d| ms(*d));
                println!(
                    "| {name} | {look} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {rss:.0} |",
                    ours.film.duration,
                    ours.film.video_frames.unwrap_or(0),
                    ours.cpu,
                    theirs.cpu,
                    ours.cpu / theirs.cpu,
                    ms(ours.wall),
                    ms(theirs.wall),
                    ours.wall.as_secs_f64() / theirs.wall.as_secs_f64(),
                    ours.wall.as_secs_f64() * 600.0 / ours.film.duration,
                    stage("plan"),
                    stage("tts"),
                    stage("render"),
                    stage("compose"),
                    stage("publish"),
                );
            }
        }
    }
}
