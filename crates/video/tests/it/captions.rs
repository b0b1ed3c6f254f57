//! Beats and captions end to end: espeak-ng, the slide renderer, ffmpeg and ffprobe, a local
//! object store. A beat starts at the exact sample its voice does; a version 1 storyboard
//! keeps its timing; the captions beside the film are valid WebVTT timed from the audio and
//! ride inside the MP4 as a language-tagged `mov_text` track.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::{JobId, LeaseEpoch};
use pipeline::{ProgressSink, StageContext};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use video::captions::{MAX_LINE_CHARS, MAX_LINES, sentences};
use video::media::probe;
use video::render::frame_counts;
use video::render::slide::{Reveal, SlideFrame, SlideRenderer};
use video::storyboard::Storyboard;
use video::timeline::{beat_frames, pictures};
use video::tts::TtsBackend;
use video::tts::espeak::Espeak;

use crate::common::{Rig, rig};

async fn run(rig: &Rig, input: serde_json::Value) -> (PathBuf, PathBuf) {
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    let job = JobId::new();
    let (sink, _events) = ProgressSink::channel();
    let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    let ctx = StageContext::new(
        pipeline::Attempt {
            job_id: job,
            epoch: LeaseEpoch::NEVER.next(),
            input: Arc::new(input),
            work_dir: rig.dir.path().join(format!("attempts/{job}-{attempt}")),
        },
        sink,
        CancellationToken::new(),
    );
    let published = rig.pipeline.run(&ctx).await.unwrap();
    let artifacts = rig.dir.path().join("artifacts");
    let film = artifacts.join(&published.artifact_key);
    let captions = artifacts.join(video::publish::captions_key(&published.artifact_key));
    assert_eq!(captions.parent(), film.parent(), "captions beside the film");
    (film, captions)
}

/// Samples of what espeak-ng says for `text`, spoken on its own as the pipeline does.
async fn spoken(text: &str, language: &str) -> (u64, u32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.wav");
    let voice = video::storyboard::Voice {
        language: language.into(),
        rate_wpm: 160,
    };
    Espeak::new("espeak-ng")
        .unwrap()
        .synthesize(text, &voice, &out, &CancellationToken::new())
        .await
        .unwrap();
    let r = hound::WavReader::open(&out).unwrap();
    (u64::from(r.duration()), r.spec().sample_rate)
}

fn beats_board() -> serde_json::Value {
    json!({
        "version": 2,
        "title": "Beats",
        "frame": {"width": 640, "height": 360, "fps": 25, "transition": "cut"},
        "segments": [
            {"slide": {"heading": "Adding", "bullets": ["Same bottom", "Add the tops"]},
             "beats": [
                {"narration": "Let us add two fractions. Watch closely."},
                {"narration": "Both have the same denominator.", "show": "next_bullet"},
                {"narration": "So we add the numerators.", "show": "next_bullet"},
                {"narration": "Remember the first rule.", "show": {"highlight": 0}}
             ]},
            {"narration": "That is all for today.", "slide": {"heading": "End", "bullets": ["Bye"]}}
        ]
    })
}

/// `[HH:]MM:SS.mmm` in seconds (WebVTT makes the hours optional; ffmpeg leaves them out).
fn seconds(stamp: &str) -> f64 {
    let mut parts: Vec<&str> = stamp.split(':').collect();
    if parts.len() == 2 {
        parts.insert(0, "00");
    }
    assert_eq!(parts.len(), 3, "{stamp}");
    assert!(
        parts[0].len() >= 2 && parts[1].len() == 2 && parts[2].len() == 6,
        "{stamp}"
    );
    parts[0].parse::<f64>().unwrap() * 3600.0
        + parts[1].parse::<f64>().unwrap() * 60.0
        + parts[2].parse::<f64>().unwrap()
}

/// Checks the WebVTT syntax and limits; returns the cues as (start s, end s, text).
fn parse_vtt(text: &str) -> Vec<(f64, f64, String)> {
    let mut blocks = text.split("\n\n");
    assert_eq!(blocks.next(), Some("WEBVTT"), "{text}");
    let mut cues = Vec::new();
    for block in blocks.filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines().peekable();
        // The identifier is optional (ffmpeg writes none); ours count from 1.
        if let Some(id) = lines.next_if(|l| !l.contains("-->")) {
            assert_eq!(id.parse::<usize>().unwrap(), cues.len() + 1, "{block}");
        }
        let timing = lines.next().unwrap();
        let (start, end) = timing.split_once(" --> ").expect("a cue timing line");
        let (start, end) = (seconds(start), seconds(end));
        let text: Vec<&str> = lines.collect();
        assert!((1..=MAX_LINES).contains(&text.len()), "{block}");
        for line in &text {
            assert!(line.chars().count() <= MAX_LINE_CHARS, "{line:?}");
            assert!(!line.contains("-->"));
        }
        assert!(start < end, "{block}");
        if let Some((_, last_end, _)) = cues.last() {
            assert!(start >= *last_end, "cues overlap: {block}");
        }
        cues.push((start, end, text.join(" ")));
    }
    cues
}

/// Frame `n` of `file`, decoded to RGB.
fn decoded_frame(file: &Path, n: u64) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .arg("-vf")
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "frame {n}");
    out.stdout
}

/// The mean absolute difference of two frames' bytes.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_start_at_the_exact_sample_their_voice_does() {
    let rig = rig();
    let input = beats_board();
    let board = Storyboard::from_json(&input).unwrap();
    // The pipeline speaks sentence by sentence; a beat is its sentences' samples, a segment
    // its beats'.
    let mut beat_samples = Vec::new();
    let mut rate = 0;
    for segment in &board.segments {
        let mut per_beat = Vec::new();
        for beat in segment.spoken_beats() {
            let mut n = 0;
            for sentence in sentences(&beat.narration) {
                let (s, r) = spoken(&sentence, "en").await;
                n += s;
                rate = r;
            }
            per_beat.push(n);
        }
        beat_samples.push(per_beat);
    }
    let (film, captions) = run(&rig, input).await;
    let frames = beat_frames(&beat_samples, rate, 25);
    // Each beat starts on the frame nearest its first sample: the cumulative rule.
    let flat: Vec<u64> = beat_samples.iter().flatten().copied().collect();
    let mut start = 0u64;
    let mut frame = 0u64;
    for (n, f) in flat.iter().zip(frames.iter().flatten()) {
        let nearest = (start * 25 * 2 + u64::from(rate)) / (u64::from(rate) * 2);
        assert_eq!(frame, nearest, "beat starting at sample {start}");
        start += n;
        frame += f;
    }
    let p = probe(Path::new("ffprobe"), &film).await.unwrap();
    assert_eq!(
        p.video_frames,
        Some(frame),
        "every beat's frames are in the film"
    );
    // Segment 0 shows four pictures: the heading alone, then each bullet, then the first
    // emphasised again — four encodes joined, no frame lost.
    let reveals = board.segments[0].reveals();
    assert_eq!(pictures(&reveals, &frames[0]).len(), 4);
    // And the film shows them: the picture changes exactly on each beat's first frame and
    // holds within a beat.
    let mut boundary = 0u64;
    for beat in &frames[0][..3] {
        boundary += beat;
        let before = decoded_frame(&film, boundary - 1);
        let at = decoded_frame(&film, boundary);
        let after = decoded_frame(&film, boundary + 1);
        let change = mean_abs_diff(&before, &at);
        let hold = mean_abs_diff(&at, &after);
        // Measured: 0.70–1.03 when a bullet appears or the emphasis moves; 0.23 when the
        // same picture is merely encoded again (every beat showing the whole slide).
        assert!(
            change > 0.45 && change > 5.0 * hold,
            "frame {boundary}: change {change:.3}, hold {hold:.3}"
        );
    }
    assert_eq!(rig.stats.videos_encoded.load(Ordering::Relaxed), 2);
    assert_eq!(
        rig.stats.speech_made.load(Ordering::Relaxed),
        6,
        "one per sentence"
    );

    // The captions: one cue per sentence, ending with the audio.
    let vtt = std::fs::read_to_string(&captions).unwrap();
    let cues = parse_vtt(&vtt);
    assert_eq!(cues.len(), 6, "{vtt}");
    assert_eq!(cues[0].2, "Let us add two fractions.");
    assert_eq!(cues[1].2, "Watch closely.");
    let total: u64 = flat.iter().sum();
    let audio_end = total as f64 / f64::from(rate);
    let last_end = cues.last().unwrap().1;
    assert!(
        (last_end - audio_end).abs() <= 1.0 / 25.0,
        "{last_end} vs {audio_end}"
    );
    let beat1 = beat_samples[0][0] as f64 / f64::from(rate);
    assert!(
        (cues[2].0 - beat1).abs() <= 0.0005,
        "the third cue starts with the second beat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_fade_pictures_blend_from_the_beats_first_frame_and_no_frame_is_added() {
    let rig = rig();
    let input = json!({
        "version": 2,
        "title": "Fades",
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": [
            {"slide": {"heading": "Adding", "bullets": ["Same bottom", "Add the tops"]},
             "beats": [
                {"narration": "Let us add two fractions."},
                {"narration": "A.", "show": "next_bullet"},
                {"narration": "Both have the same denominator.", "show": "next_bullet"}
             ]},
            {"narration": "That is all for today.", "slide": {"heading": "The end of the lesson", "bullets": ["Goodbye", "See you"]}}
        ]
    });
    let board = Storyboard::from_json(&input).unwrap();
    assert_eq!(
        board.frame.transition,
        video::storyboard::Transition::Fade,
        "the default"
    );
    let mut beat_samples = Vec::new();
    let mut rate = 0;
    for segment in &board.segments {
        let mut per_beat = Vec::new();
        for beat in segment.spoken_beats() {
            let mut n = 0;
            for sentence in sentences(&beat.narration) {
                let (s, r) = spoken(&sentence, "en").await;
                n += s;
                rate = r;
            }
            per_beat.push(n);
        }
        beat_samples.push(per_beat);
    }
    let (film, _) = run(&rig, input).await;
    let frames = beat_frames(&beat_samples, rate, 25);
    let fade = video::render::fade_frames(25);
    assert_eq!(fade, 8);
    assert!(
        frames[0][1] < fade,
        "the short beat is shorter than a fade: {frames:?}"
    );
    let total: u64 = frames.iter().flatten().sum();
    let p = probe(Path::new("ffprobe"), &film).await.unwrap();
    assert_eq!(p.video_frames, Some(total), "fades add no frame");

    // Between the slides: the frame before the boundary is the old slide, the fade starts
    // on the boundary (the new segment's first frame, where its voice starts), the frame in
    // its middle is measurably between the two slides, and after it the new slide holds.
    let boundary: u64 = frames[0].iter().sum();
    let old = decoded_frame(&film, boundary - 1);
    let first = decoded_frame(&film, boundary);
    let middle = decoded_frame(&film, boundary + fade / 2);
    let new = decoded_frame(&film, boundary + fade);
    let held = decoded_frame(&film, boundary + fade + 3);
    let full = mean_abs_diff(&old, &new);
    assert!(full > 2.0, "the slides differ: {full:.3}");
    let (from_old, to_new) = (mean_abs_diff(&old, &middle), mean_abs_diff(&middle, &new));
    assert!(
        from_old > 0.25 * full && to_new > 0.25 * full,
        "frame {} is between: {from_old:.3} from the old, {to_new:.3} from the new, {full:.3} apart",
        boundary + fade / 2
    );
    let started = mean_abs_diff(&old, &first);
    assert!(
        started > 0.05 * full && started < 0.3 * full,
        "the first frame has moved a little: {started:.3} of {full:.3}"
    );
    assert!(mean_abs_diff(&new, &held) < 0.1 * full, "then it holds");
    // The short beat fades in over half its frames and is then shown whole.
    assert!(
        mean_abs_diff(
            &decoded_frame(&film, frames[0][0] - 1),
            &decoded_frame(&film, frames[0][0])
        ) > 0.1,
        "the short beat's picture starts on its first frame"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_storyboard_keeps_its_frames_and_gets_tagged_captions() {
    let rig = rig();
    let narrations = [
        "One quarter plus one quarter makes one half.",
        "Two thirds is larger than one half.",
    ];
    let input = json!({
        "version": 1,
        "title": "Old",
        "voice": {"language": "ko"},
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": narrations.iter().map(|n| json!({
            "narration": n, "slide": {"heading": "H", "bullets": ["a", "b"]}
        })).collect::<Vec<_>>()
    });
    let mut samples = Vec::new();
    let mut rate = 0;
    for n in narrations {
        let (s, r) = spoken(n, "ko").await;
        samples.push(s);
        rate = r;
    }
    let (film, captions) = run(&rig, input.clone()).await;
    let p = probe(Path::new("ffprobe"), &film).await.unwrap();
    let expected: u64 = frame_counts(&samples, rate, 25).iter().sum();
    assert_eq!(
        p.video_frames,
        Some(expected),
        "one segment, one beat: the frames it always had"
    );
    let codecs: Vec<_> = p.streams.iter().map(|(k, c)| format!("{k}:{c}")).collect();
    assert_eq!(codecs, ["video:h264", "audio:aac", "subtitle:mov_text"]);
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "s:0"])
        .args(["-show_entries", "stream_tags=language", "-of", "csv=p=0"])
        .arg(&film)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kor");
    // The subtitle track holds the same cues as the file beside the film.
    let cues = parse_vtt(&std::fs::read_to_string(&captions).unwrap());
    assert_eq!(cues.len(), 2);
    let dumped = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&film)
        .args(["-map", "0:s:0", "-f", "webvtt", "-"])
        .output()
        .unwrap();
    let inside = parse_vtt(&String::from_utf8_lossy(&dumped.stdout).replace("\r\n", "\n"));
    assert_eq!(
        inside.iter().map(|c| &c.2).collect::<Vec<_>>(),
        cues.iter().map(|c| &c.2).collect::<Vec<_>>()
    );
    let end = samples.iter().sum::<u64>() as f64 / f64::from(rate);
    assert!((cues[1].1 - end).abs() <= 1.0 / 25.0);

    // Written as version 2 with one beat per segment, the same film.
    let mut v2 = input;
    v2["version"] = json!(2);
    let (film2, _) = run(&rig, v2).await;
    let p2 = probe(Path::new("ffprobe"), &film2).await.unwrap();
    assert_eq!(p2.video_frames, p.video_frames);
    assert_eq!(rig.stats.videos_reused.load(Ordering::Relaxed), 2);
}

#[test]
fn a_reveal_hides_later_bullets_and_dims_all_but_the_current_one() {
    let board = Storyboard::from_json(&beats_board()).unwrap();
    let slide = &board.segments[0].slide;
    let mut r = SlideRenderer::new();
    let draw = |r: &mut SlideRenderer, reveal| {
        r.draw(&SlideFrame {
            title: "T",
            slide,
            index: 0,
            total: 2,
            width: 640,
            height: 360,
            reveal,
        })
    };
    let whole = draw(&mut r, Reveal::all());
    assert_eq!(
        draw(&mut r, Reveal::all()),
        whole,
        "all shown = the v1 slide"
    );
    let none = draw(
        &mut r,
        Reveal {
            visible: 0,
            emphasised: None,
        },
    );
    let first = draw(
        &mut r,
        Reveal {
            visible: 1,
            emphasised: Some(0),
        },
    );
    let both_second = draw(
        &mut r,
        Reveal {
            visible: 2,
            emphasised: Some(1),
        },
    );
    let both_first = draw(
        &mut r,
        Reveal {
            visible: 2,
            emphasised: Some(0),
        },
    );
    let pictures = [&none, &first, &both_second, &both_first, &whole];
    for (i, a) in pictures.iter().enumerate() {
        for b in &pictures[i + 1..] {
            assert_ne!(a, b, "each reveal state is its own picture");
        }
    }
    // Hiding only removes ink: the heading's rows are identical.
    let row = 640 * 4;
    assert_eq!(none[..row * 80], whole[..row * 80]);
}
