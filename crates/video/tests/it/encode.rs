//! The render stage's encoding with real ffmpeg, checked by ffprobe: each picture is encoded
//! once (a head clip of its fade and the frames left over, and a one-second clip repeated by
//! stream copy), fades are blended between the two pictures, and the joined result is still
//! constant-frame-rate H.264 of exactly the frames asked for, with a keyframe at least every
//! two seconds, and a film whose video is as long as its audio within one frame. Needs
//! `ffmpeg` and `ffprobe` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use video::compose::{FilmMux, encode_aac, mux_film};
use video::render::{Clip, Encoder, Geometry, ShotEncode, frame_counts, join_clips, shot_plan};

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

/// A picture with detail in it (a gradient and a shade of blue per `seed`), so the encoder
/// has something to code.
fn picture(seed: u8) -> Vec<u8> {
    let (w, h) = (GEOMETRY.width as usize, GEOMETRY.height as usize);
    let mut rgba = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            rgba.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, seed, 255]);
        }
    }
    rgba
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

/// A picture shown for `frames` frames, fading in over `fade` of them from the one before.
struct Shown<'a> {
    picture: &'a [u8],
    frames: u64,
    fade: u64,
}

/// Encodes the shots as the render stage does and returns the film's clips in order.
async fn clips(dir: &Path, shots: &[Shown<'_>], name: &str) -> Vec<Clip> {
    let mut out = Vec::new();
    for (n, shot) in shots.iter().enumerate() {
        let plan = shot_plan(shot.frames, shot.fade, FPS);
        let head = dir.join(format!("{name}-{n}-head.h264"));
        let second = dir.join(format!("{name}-{n}-second.h264"));
        let from = n.checked_sub(1).map(|p| shots[p].picture);
        let job = ShotEncode {
            picture: shot.picture,
            from: from.filter(|_| plan.fade > 0),
            plan,
            geometry: GEOMETRY,
            head: Some(&head),
            second: Some(&second),
        };
        encoder()
            .encode_shot(&job, &CancellationToken::new())
            .await
            .unwrap();
        if plan.head > 0 {
            out.push(Clip {
                file: head,
                times: 1,
            });
        }
        if plan.seconds > 0 {
            out.push(Clip {
                file: second,
                times: plan.seconds,
            });
        }
    }
    out
}

/// The shots encoded, joined by stream copy and put in an MP4 (video only).
async fn film(dir: &Path, shots: &[Shown<'_>], name: &str) -> PathBuf {
    let clips = clips(dir, shots, name).await;
    let stream = dir.join(format!("{name}.h264"));
    let frames = join_clips(clips, stream.clone()).await.unwrap();
    assert_eq!(
        frames,
        shots.iter().map(|s| s.frames).sum::<u64>(),
        "the joined stream has every frame"
    );
    let out = dir.join(format!("{name}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "h264", "-framerate"])
        .arg(FPS.to_string())
        .arg("-i")
        .arg(&stream)
        .args(["-c", "copy"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

#[tokio::test]
async fn a_still_shorter_than_a_second_is_one_clip_of_its_frames() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let still = picture(1);
    let shots = [Shown {
        picture: &still,
        frames: 13,
        fade: 0,
    }];
    assert_eq!(clips(dir.path(), &shots, "c").await.len(), 1);
    let out = film(dir.path(), &shots, "short").await;
    let s = assert_well_formed(&out, 13);
    assert_eq!(s.keyframes, [0.0]);
}

#[tokio::test]
async fn a_whole_number_of_seconds_is_the_one_second_clip_repeated() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let still = picture(2);
    let shots = [Shown {
        picture: &still,
        frames: 3 * u64::from(FPS),
        fade: 0,
    }];
    let made = clips(dir.path(), &shots, "c").await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].times, 3);
    let out = film(dir.path(), &shots, "whole").await;
    let s = assert_well_formed(&out, 75);
    assert_eq!(
        s.keyframes,
        [0.0, 1.0, 2.0],
        "one IDR per repeat of the clip"
    );
}

#[tokio::test]
async fn with_cuts_each_picture_shows_for_its_frames_and_changes_at_once() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (picture(3), picture(200));
    let shots = [
        Shown {
            picture: &first,
            frames: 62,
            fade: 0,
        },
        Shown {
            picture: &second,
            frames: 30,
            fade: 0,
        },
    ];
    let out = film(dir.path(), &shots, "cuts").await;
    let s = assert_well_formed(&out, 92);
    // 62 = 12 + 25 + 25 and 30 = 5 + 25: a clip starts at each of these frames.
    let starts = [0, 12, 37, 62, 67].map(|f| f as f64 / f64::from(FPS));
    assert_eq!(s.keyframes, starts);
    // The first picture up to frame 61, the second from frame 62: blue, decoded back.
    assert!(mean_blue(&out, 61) < 40.0, "{}", mean_blue(&out, 61));
    assert!(mean_blue(&out, 62) > 160.0, "{}", mean_blue(&out, 62));
    assert!(mean_blue(&out, 91) > 160.0, "{}", mean_blue(&out, 91));
}

#[tokio::test]
async fn a_fade_blends_the_two_pictures_from_the_frame_the_new_one_starts() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (picture(3), picture(200));
    let shots = [
        Shown {
            picture: &first,
            frames: 62,
            fade: 0,
        },
        Shown {
            picture: &second,
            frames: 40,
            fade: 8,
        },
    ];
    let out = film(dir.path(), &shots, "fade").await;
    let s = assert_well_formed(&out, 102);
    // The second shot: a head of the 8 fade frames and 7 left over, then one second.
    let starts = [0, 12, 37, 62, 77].map(|f| f as f64 / f64::from(FPS));
    assert_eq!(s.keyframes, starts);
    let blue: Vec<f64> = (60..72).map(|n| mean_blue(&out, n)).collect();
    // Blue goes 3 → 200 in ninths over frames 62..=69: the frame before is the old
    // picture, each fade frame more of the new one, then the new picture whole.
    assert!(blue[1] < 40.0, "{blue:?}");
    for w in blue[1..11].windows(2) {
        assert!(w[1] > w[0] + 10.0, "each fade frame moves on: {blue:?}");
    }
    let middle = blue[6]; // frame 66: 5/9 of the way
    let expected = 3.0 + 197.0 * 5.0 / 9.0;
    assert!((middle - expected).abs() < 12.0, "{middle} vs {expected}");
    assert!(blue[10] > 190.0, "whole after the fade: {blue:?}");
    assert!((blue[10] - blue[11]).abs() < 2.0, "and it holds: {blue:?}");
}

#[tokio::test]
async fn a_head_of_the_fade_alone_is_made_when_its_second_is_cached() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (picture(3), picture(200));
    // 33 frames fading over 8: a head of just the fade, then one second, which is not
    // asked for (as when the cache has it).
    let plan = shot_plan(33, 8, FPS);
    assert_eq!((plan.head, plan.seconds), (8, 1));
    let head = dir.path().join("head.h264");
    let job = ShotEncode {
        picture: &b,
        from: Some(&a),
        plan,
        geometry: GEOMETRY,
        head: Some(&head),
        second: None,
    };
    encoder()
        .encode_shot(&job, &CancellationToken::new())
        .await
        .unwrap();
    let stream = dir.path().join("head-only.h264");
    let frames = join_clips(
        vec![Clip {
            file: head,
            times: 1,
        }],
        stream,
    )
    .await
    .unwrap();
    assert_eq!(frames, 8);
}

#[tokio::test]
async fn a_shot_shorter_than_the_fade_fades_shorter_and_keeps_every_frame() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (picture(3), picture(200), picture(100));
    // The render stage gives a 3-frame shot a fade of 1 (half of it), and 8 to the next.
    let shots = [
        Shown {
            picture: &a,
            frames: 30,
            fade: 0,
        },
        Shown {
            picture: &b,
            frames: 3,
            fade: 1,
        },
        Shown {
            picture: &c,
            frames: 30,
            fade: 8,
        },
    ];
    let out = film(dir.path(), &shots, "short-fade").await;
    assert_well_formed(&out, 63);
    let (before, mid, whole) = (
        mean_blue(&out, 29),
        mean_blue(&out, 30),
        mean_blue(&out, 31),
    );
    assert!(before < 40.0 && whole > 160.0, "{before} {mid} {whole}");
    assert!(
        mid > before + 40.0 && mid < whole - 40.0,
        "{before} {mid} {whole}"
    );
}

#[tokio::test]
async fn a_film_of_segments_is_as_long_as_its_audio_within_a_frame() {
    ffmpeg_or_explain();
    let dir = tempfile::tempdir().unwrap();
    let pictures = [picture(4), picture(90), picture(180)];
    // 2.5 s, 0.52 s and 4 s of narration (one with no whole second, one with no rest).
    let samples = [RATE as u64 * 5 / 2, RATE as u64 * 52 / 100, RATE as u64 * 4];
    let frames = frame_counts(&samples, RATE, FPS);
    let shots: Vec<Shown<'_>> = frames
        .iter()
        .zip(&pictures)
        .enumerate()
        .map(|(i, (n, p))| Shown {
            picture: p,
            frames: *n,
            fade: if i == 0 { 0 } else { 8 },
        })
        .collect();
    let clips = clips(dir.path(), &shots, "film").await;
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
        clips: &clips,
        frames: frames.iter().sum(),
        fps: FPS,
        audio: &aac,
        stream: &dir.path().join("video.h264"),
        captions: None,
        out: &film,
    };
    // Clips holding other frames than planned (a damaged cache entry, say) are refused
    // before anything is muxed.
    let short = FilmMux {
        frames: job.frames + 1,
        ..job
    };
    let refused = mux_film(&short, &cancel).await.unwrap_err();
    assert!(refused.to_string().contains("frames"), "{refused}");
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
