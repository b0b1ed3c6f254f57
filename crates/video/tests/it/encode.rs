//! The render stage's encoding with real ffmpeg, checked by ffprobe: each picture is encoded
//! once (a one-second clip repeated by stream copy, plus the rest) and the result is still
//! constant-frame-rate H.264 of exactly the frames asked for, with a keyframe at least every
//! two seconds, and a film whose video is as long as its audio within one frame. Needs
//! `ffmpeg` and `ffprobe` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use video::compose::{FilmMux, encode_aac, mux_film};
use video::render::{Beat, Encoder, Geometry, SegmentEncode, frame_counts};

const FPS: u32 = 25;
const RATE: u32 = 22_050;
const GEOMETRY: Geometry = Geometry {
    width: 320,
    height: 240,
    fps: FPS,
};

fn ffmpeg_or_explain() {
    for tool in ["ffmpeg", "ffprobe"] {
        assert!(
            Command::new(tool).arg("-version").output().is_ok(),
            "{tool} is not installed: apt-get install ffmpeg"
        );
    }
}

fn encoder() -> Encoder {
    Encoder::new("ffmpeg", Arc::new(Semaphore::new(2)))
}

/// A picture with detail in it (a gradient and a shade per `seed`), so the encoder has
/// something to code.
fn picture(dir: &Path, seed: u8) -> PathBuf {
    let (w, h) = (GEOMETRY.width as usize, GEOMETRY.height as usize);
    let mut rgba = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            rgba.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, seed, 255]);
        }
    }
    let path = dir.join(format!("picture-{seed}.rgba"));
    std::fs::write(&path, rgba).unwrap();
    path
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe failed on {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

/// What the tests check about a video stream.
#[derive(Debug)]
struct Stream {
    codec: String,
    frame_rate: String,
    average_rate: String,
    frames: u64,
    /// Presentation times of every frame, in stream time base units, in order.
    pts: Vec<i64>,
    /// Presentation times of the keyframes, seconds.
    keyframes: Vec<f64>,
    duration: f64,
}

fn video_stream(file: &Path) -> Stream {
    let fields = ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,r_frame_rate,avg_frame_rate,nb_read_frames,duration",
            "-of",
            "default=nw=1",
        ],
        file,
    );
    let field = |name: &str| -> String {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {fields}"))
            .to_owned()
    };
    let numbers = |text: String| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let pts = numbers(ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts",
            "-of",
            "csv=p=0",
        ],
        file,
    ))
    .iter()
    .map(|v| v.parse().unwrap())
    .collect();
    let keyframes = numbers(ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ],
        file,
    ))
    .iter()
    .map(|v| v.parse().unwrap())
    .collect();
    Stream {
        codec: field("codec_name"),
        frame_rate: field("r_frame_rate"),
        average_rate: field("avg_frame_rate"),
        frames: field("nb_read_frames").parse().unwrap(),
        pts,
        keyframes,
        duration: field("duration").parse().unwrap(),
    }
}

/// H.264 at a constant `FPS`, exactly `frames` frames, a keyframe at the start and at
/// least every two seconds up to the end.
fn assert_well_formed(file: &Path, frames: u64) -> Stream {
    let s = video_stream(file);
    assert_eq!(s.codec, "h264", "{s:?}");
    let rate = format!("{FPS}/1");
    assert_eq!((&s.frame_rate, &s.average_rate), (&rate, &rate), "{s:?}");
    assert_eq!(s.frames, frames, "exact frame count");
    assert_eq!(s.pts.len() as u64, frames, "every frame decodes");
    let steps: Vec<i64> = s.pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|d| Some(d) == steps.first()),
        "constant frame rate: every frame lasts as long ({steps:?})"
    );
    let end = frames as f64 / f64::from(FPS);
    assert!(
        (s.duration - end).abs() < 1e-6,
        "{} s for {frames} frames",
        s.duration
    );
    assert_eq!(s.keyframes.first().copied(), Some(0.0), "{s:?}");
    let mut marks = s.keyframes.clone();
    marks.push(end);
    for w in marks.windows(2) {
        assert!(w[1] - w[0] <= 2.0 + 1e-9, "keyframes {:?}", s.keyframes);
    }
    s
}

/// The mean blue of frame `n`, decoded.
fn mean_blue(file: &Path, n: u64) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .arg("-vf")
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "frame {n}");
    let blue: Vec<f64> = out.stdout.chunks(3).map(|p| f64::from(p[2])).collect();
    blue.iter().sum::<f64>() / blue.len() as f64
}

async fn segment(dir: &Path, beats: &[Beat<'_>], name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.mp4"));
    let job = SegmentEncode {
        beats,
        geometry: GEOMETRY,
        scratch: dir,
        out: &out,
    };
    encoder()
        .encode_segment(&job, &CancellationToken::new())
        .await
        .unwrap();
    out
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-beat") || n.ends_with(".txt"))
        .collect()
}

#[tokio::test]
async fn a_still_shorter_than_a_second_is_one_clip_of_its_frames() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let still = picture(dir.path(), 1);
    let out = segment(
        dir.path(),
        &[Beat {
            rgba: &still,
            frames: 13,
        }],
        "short",
    )
    .await;
    let s = assert_well_formed(&out, 13);
    assert_eq!(s.keyframes, [0.0]);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test]
async fn a_whole_number_of_seconds_is_the_one_second_clip_repeated() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let still = picture(dir.path(), 2);
    let out = segment(
        dir.path(),
        &[Beat {
            rgba: &still,
            frames: 3 * u64::from(FPS),
        }],
        "whole",
    )
    .await;
    let s = assert_well_formed(&out, 75);
    assert_eq!(
        s.keyframes,
        [0.0, 1.0, 2.0],
        "one IDR per repeat of the clip"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test]
async fn a_segment_of_several_beats_shows_each_picture_for_its_frames() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (picture(dir.path(), 3), picture(dir.path(), 200));
    let out = segment(
        dir.path(),
        &[
            Beat {
                rgba: &first,
                frames: 62,
            },
            Beat {
                rgba: &second,
                frames: 30,
            },
        ],
        "beats",
    )
    .await;
    let s = assert_well_formed(&out, 92);
    // 62 = 25 + 25 + 12 and 30 = 25 + 5: a clip starts at each of these frames.
    let starts = [0, 25, 50, 62, 87].map(|f| f as f64 / f64::from(FPS));
    assert_eq!(s.keyframes, starts);
    // The first picture up to frame 61, the second from frame 62: blue, decoded back.
    assert!(mean_blue(&out, 61) < 40.0, "{}", mean_blue(&out, 61));
    assert!(mean_blue(&out, 62) > 160.0, "{}", mean_blue(&out, 62));
    assert!(mean_blue(&out, 91) > 160.0, "{}", mean_blue(&out, 91));
}

#[tokio::test]
async fn a_film_of_segments_is_as_long_as_its_audio_within_a_frame() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let still = picture(dir.path(), 4);
    // 2.5 s, 0.52 s and 4 s of narration (one with no whole second, one with no rest).
    let samples = [RATE as u64 * 5 / 2, RATE as u64 * 52 / 100, RATE as u64 * 4];
    let frames = frame_counts(&samples, RATE, FPS);
    let mut videos = Vec::new();
    for (i, n) in frames.iter().enumerate() {
        let beats = [Beat {
            rgba: &still,
            frames: *n,
        }];
        videos.push(segment(dir.path(), &beats, &format!("video-{i}")).await);
    }
    let wav = dir.path().join("narration.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..samples.iter().sum::<u64>() {
        let t = i as f64 / f64::from(RATE);
        writer
            .write_sample(((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16)
            .unwrap();
    }
    writer.finalize().unwrap();
    let (cancel, slots) = (CancellationToken::new(), Arc::new(Semaphore::new(2)));
    let aac = dir.path().join("narration.m4a");
    encode_aac(Path::new("ffmpeg"), [&wav, &aac], &cancel, &slots)
        .await
        .unwrap();
    let film = dir.path().join("final.mp4");
    let job = FilmMux {
        ffmpeg: Path::new("ffmpeg"),
        videos: &videos,
        audio: &aac,
        list: &dir.path().join("segments.txt"),
        captions: None,
        out: &film,
    };
    mux_film(&job, &cancel).await.unwrap();

    let total: u64 = frames.iter().sum();
    assert_eq!(total, 176, "7.02 s at 25 fps");
    let video = assert_well_formed(&film, total);
    let audio: f64 = ffprobe(
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=duration",
            "-of",
            "csv=p=0",
        ],
        &film,
    )
    .trim()
    .parse()
    .unwrap();
    let narration = samples.iter().sum::<u64>() as f64 / f64::from(RATE);
    assert!(
        (audio - narration).abs() <= 1.0 / f64::from(FPS),
        "audio {audio} s vs narration {narration} s"
    );
    assert!(
        (video.duration - audio).abs() <= 1.0 / f64::from(FPS),
        "video {} s vs audio {audio} s",
        video.duration
    );
}
