//! The film's pictures as video: a slide drawn in Rust ([`slide`]) is encoded once per
//! length it is shown for, and the film is assembled from those clips by stream copy, so the
//! encoding cost grows with the number of distinct pictures (and fades), not with seconds
//! of film.
//!
//! A picture shown for `N` frames at `FPS`, the first `F` of them fading in from the picture
//! before, is cut by [`shot_plan`] into a *head* clip — the `F` fade frames, then the
//! `(N − F) mod K` frames left over — and a one-second clip of `K = FPS` frames of the still,
//! shown `⌊(N − F)/K⌋` times. Both come from one ffmpeg and one x264 run
//! ([`Encoder::encode_shot`]): the fade frames are blended in Rust ([`blend`]) and piped in
//! with the still as raw RGBA, the still is cloned to length, a keyframe is forced where the
//! one-second part starts, and the raw H.264 that comes out is split there ([`annexb`]).
//! Every clip starts with an IDR frame, so keyframes are at most `F + K − 1` frames (1.3 s)
//! apart, for seeking. Clips join by byte concatenation ([`annexb`] says why that is
//! valid), so only fade frames cost encoding beyond the still itself.

pub mod annexb;
pub mod slide;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;

/// The encoder arguments of every clip. They are identical for all clips so they can be
/// joined without re-encoding, and they are part of the cache key. No B-frames: a raw
/// H.264 stream has no timestamps, so decode order must be display order for the joined
/// clips to be muxed by frame rate alone (and a still gains nothing from them).
pub const VIDEO_ARGS: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-tune",
    "stillimage",
    "-crf",
    "23",
    "-pix_fmt",
    "yuv420p",
    "-profile:v",
    "high",
    "-bf",
    "0",
];

/// How clips are cut, encoded and joined, part of every clip's cache key: a change here
/// makes other bytes from the same inputs, so entries made by another scheme must not be
/// reused. Bump it with any change to [`shot_plan`], [`blend`] or how clips are encoded.
pub const ENCODING_SCHEME: &str = "repeated-clip/2 head+second annexb fade-linear threads=1";

/// How long a fade lasts: short enough to keep the change with the voice, long enough to
/// be calm. At 25 fps it is 8 frames ([`fade_frames`]).
pub const FADE_MILLIS: u64 = 300;

/// Frames of a fade at `fps`: [`FADE_MILLIS`] rounded to the nearest frame.
pub fn fade_frames(fps: u32) -> u64 {
    (u64::from(fps) * FADE_MILLIS * 2 + 1000) / 2000
}

/// Frames per segment so that audio and video stay in sync over the whole film: segment `i`
/// gets `round(Sᵢ·fps/rate) − round(Sᵢ₋₁·fps/rate)` frames over the cumulative sample counts
/// `S`, so rounding never accumulates (each boundary is rounded once, from the true time).
pub fn frame_counts(samples: &[u64], sample_rate: u32, fps: u32) -> Vec<u64> {
    let rate = u128::from(sample_rate.max(1));
    let fps = u128::from(fps);
    let at = |cumulative: u128| -> u128 { (cumulative * fps * 2 + rate) / (rate * 2) };
    let mut out = Vec::with_capacity(samples.len());
    let mut cumulative = 0u128;
    let mut previous_frame = 0u128;
    for s in samples {
        cumulative += u128::from(*s);
        let frame = at(cumulative);
        out.push(u64::try_from(frame - previous_frame).unwrap_or(u64::MAX));
        previous_frame = frame;
    }
    out
}

/// How a shot — a picture shown for some frames, fading in over its first ones — is cut
/// into clips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShotPlan {
    /// Frames fading in from the picture before (the head's first frames).
    pub fade: u64,
    /// Frames of the head clip: the fade, then the still for the frames left over by the
    /// whole seconds. 0: no head clip.
    pub head: u64,
    /// Frames of the one-second clip (the frame rate).
    pub second: u64,
    /// Times the one-second clip is shown after the head. 0: no such clip.
    pub seconds: u64,
}

impl ShotPlan {
    /// Frames in all.
    pub fn frames(&self) -> u64 {
        self.head + self.second * self.seconds
    }
}

/// How a picture shown for `frames` frames at `fps`, the first `fade` of them a fade, is
/// cut: a head clip of the fade and the `(frames − fade) mod fps` frames left, then a
/// one-second clip shown `(frames − fade) / fps` times. A fade takes at most all frames but
/// the last. A shot of zero frames (a segment whose speech rounds to no frame) has no clip
/// at all: showing one frame would put every later picture, and the film's end, a frame
/// behind its voice.
pub fn shot_plan(frames: u64, fade: u64, fps: u32) -> ShotPlan {
    let second = u64::from(fps.max(1));
    let fade = fade.min(frames.saturating_sub(1));
    let body = frames - fade;
    ShotPlan {
        fade,
        head: fade + body % second,
        second,
        seconds: body / second,
    }
}

/// Frame `t` (from 0) of a fade of `n` frames from picture `from` to picture `to` (RGBA of
/// the same size), written into `out`: `to` weighs `(t + 1)/(n + 1)`, so the first frame
/// already moves and the frame after the last is `to` itself. Linear: at a lesson's pace a
/// steady crossfade reads calmest.
pub fn blend(from: &[u8], to: &[u8], t: u64, n: u64, out: &mut Vec<u8>) {
    let w = u32::try_from(((t + 1) * 256 * 2 + n + 1) / ((n + 1) * 2)).unwrap_or(256);
    let v = 256 - w.min(256);
    out.clear();
    out.extend(
        from.iter()
            .zip(to)
            .map(|(a, b)| ((u32::from(*a) * v + u32::from(*b) * w + 128) >> 8) as u8),
    );
}

/// The size and rate of every frame of the film.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// A finished clip and how many times in a row it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The clip: sealed raw H.264 ([`annexb::seal`]).
    pub file: PathBuf,
    /// Times shown, back to back.
    pub times: u64,
}

/// One shot to encode: its picture, the picture before (for the fade) and which of its
/// clips to make.
#[derive(Debug, Clone, Copy)]
pub struct ShotEncode<'a> {
    /// The picture, raw RGBA8 of `geometry`'s size.
    pub picture: &'a [u8],
    /// The picture before it, when the shot fades in (`plan.fade > 0`); without it the
    /// fade frames show the picture itself.
    pub from: Option<&'a [u8]>,
    /// How the shot is cut.
    pub plan: ShotPlan,
    /// Size and frame rate.
    pub geometry: Geometry,
    /// Where the head clip goes; `None`: not wanted (there is none, or it is cached).
    pub head: Option<&'a Path>,
    /// Where the one-second clip goes; `None`: not wanted.
    pub second: Option<&'a Path>,
}

fn io(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::retryable("io_failed", format!("{what}: {e}"))
}

/// Runs ffmpeg for clip encodes, at most `slots` at once.
#[derive(Debug, Clone)]
pub struct Encoder {
    ffmpeg: PathBuf,
    slots: Arc<Semaphore>,
}

impl Encoder {
    /// An encoder using `ffmpeg` and sharing `slots` with every other ffmpeg run of the job.
    pub fn new(ffmpeg: impl Into<PathBuf>, slots: Arc<Semaphore>) -> Self {
        Self {
            ffmpeg: ffmpeg.into(),
            slots,
        }
    }

    /// Encodes the wanted clips of one shot in one ffmpeg run: the fade frames (blended
    /// here) and the still go in raw on stdin, the still is cloned to length, a keyframe
    /// is forced where the one-second clip starts, and the H.264 that comes back is split
    /// there, checked frame by frame and written sealed.
    pub async fn encode_shot(
        &self,
        job: &ShotEncode<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let Geometry { width, height, fps } = job.geometry;
        let plan = job.plan;
        let head = job.head.filter(|_| plan.head > 0);
        let second = job.second.filter(|_| plan.seconds > 0);
        let head_frames = if head.is_some() { plan.head } else { 0 };
        let second_frames = if second.is_some() { plan.second } else { 0 };
        let total = head_frames + second_frames;
        if total == 0 {
            return Ok(());
        }
        let frame_len = width as usize * height as usize * 4;
        if job.picture.len() != frame_len || job.from.is_some_and(|f| f.len() != frame_len) {
            return Err(StageError::permanent(
                "internal",
                format!("a picture is not {width}×{height} RGBA"),
            ));
        }
        // The input: the fade frames (only for the head), then the still — blended one by
        // one on a blocking thread and streamed, so no more than a few frames are held.
        let fade = if head.is_some() { plan.fade } else { 0 };
        let from = job.from.filter(|_| fade > 0).map(<[u8]>::to_vec);
        let fade = if from.is_some() { fade } else { 0 };
        let (frames, input) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let to = job.picture.to_vec();
        let producer = tokio::task::spawn_blocking(move || {
            if let Some(from) = from {
                for t in 0..fade {
                    let mut frame = Vec::with_capacity(frame_len);
                    blend(&from, &to, t, fade, &mut frame);
                    if frames.blocking_send(frame).is_err() {
                        return;
                    }
                }
            }
            let _ = frames.blocking_send(to);
        });
        // Clones of the still after it (none when the clips are the fade alone: then the
        // still itself is cut off by the frame count).
        let repeats = total.saturating_sub(fade + 1);
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgba"])
            .arg("-video_size")
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(fps.to_string())
            .args(["-i", "pipe:0", "-vf"])
            // The still is the last frame in: cloned to length. (The loop filter's `start`
            // is off by one in some ffmpeg versions; tpad's clone of the last frame is not.)
            .arg(format!(
                "format=yuv420p,tpad=stop={repeats}:stop_mode=clone"
            ))
            .arg("-frames:v")
            .arg(total.to_string())
            .args(VIDEO_ARGS)
            // A job runs as many encoders as cores: one thread each spares x264's frame
            // threads, which a clip this short cannot use (measured: less system time).
            .args(["-threads", "1"]);
        if head_frames > 0 && second_frames > 0 {
            cmd.arg("-force_key_frames")
                .arg(format!("expr:eq(n,{head_frames})"))
                .args(["-forced-idr", "1"]);
        }
        cmd.arg("-r")
            .arg(fps.to_string())
            .args(["-an", "-f", "h264", "pipe:1"]);
        let out =
            crate::media::run_limited_streaming(cmd, "ffmpeg", input, cancel, &self.slots).await;
        // The producer ends once its frames are taken or the channel is gone.
        let _ = producer.await;
        let out = out?;
        let bad = |what: String| StageError::retryable("tool_failed", format!("ffmpeg: {what}"));
        let (head_bytes, second_bytes) = split_at_frame(&out, head_frames).ok_or_else(|| {
            bad(format!(
                "made {} frames, {total} asked",
                annexb::frames(&out)
            ))
        })?;
        for (file, bytes, want) in [
            (head, head_bytes, head_frames),
            (second, second_bytes, second_frames),
        ] {
            let Some(file) = file else { continue };
            let made = annexb::frames(bytes);
            if made as u64 != want {
                return Err(bad(format!("a clip of {made} frames, {want} asked")));
            }
            tokio::fs::write(file, annexb::seal(bytes))
                .await
                .map_err(|e| io("writing a clip", e))?;
        }
        Ok(())
    }
}

/// [`annexb::split_at_frame`], where a split at 0 is everything after (a stream of no
/// head) and a split at the end is everything before.
fn split_at_frame(stream: &[u8], frame: u64) -> Option<(&[u8], &[u8])> {
    let frame = usize::try_from(frame).ok()?;
    if frame == annexb::frames(stream) {
        return Some((stream, &[]));
    }
    annexb::split_at_frame(stream, frame)
}

/// Joins sealed clips into one raw H.264 stream at `out`: each clip's stream as many times
/// as it is shown, in order, trailers dropped. A clip that is not whole is an error.
pub async fn join_clips(clips: Vec<Clip>, out: PathBuf) -> Result<u64, StageError> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let file = std::fs::File::create(&out).map_err(|e| io("creating the film stream", e))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut frames = 0u64;
        let mut last: Option<(PathBuf, Vec<u8>)> = None;
        for clip in &clips {
            if last.as_ref().is_none_or(|(p, _)| *p != clip.file) {
                let bytes = std::fs::read(&clip.file)
                    .map_err(|e| io(&clip.file.display().to_string(), e))?;
                last = Some((clip.file.clone(), bytes));
            }
            let Some((_, bytes)) = &last else { continue };
            let stream = annexb::unseal(bytes).ok_or_else(|| {
                StageError::retryable(
                    "io_failed",
                    format!("{} is not a whole clip", clip.file.display()),
                )
            })?;
            let n = annexb::frames(stream) as u64;
            for _ in 0..clip.times {
                writer
                    .write_all(stream)
                    .map_err(|e| io("writing the film stream", e))?;
                frames += n;
            }
        }
        writer
            .flush()
            .map_err(|e| io("writing the film stream", e))?;
        Ok(frames)
    })
    .await
    .map_err(|e| io("joining clips", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_cumulative_audio_so_rounding_never_drifts() {
        // 3 segments of 1.01 s at 22050 Hz, 25 fps: 25.25 frames each.
        let seg = 22_271u64; // 1.01 s
        let counts = frame_counts(&[seg, seg, seg], 22_050, 25);
        assert_eq!(
            counts.iter().sum::<u64>(),
            76,
            "3.03 s × 25 = 75.75 → 76 in total"
        );
        assert_eq!(counts, vec![25, 26, 25]);
        // Per-segment rounding would give 25+25+25 = 75: a frame short, and growing.
        let many = frame_counts(&vec![seg; 100], 22_050, 25);
        let total: u64 = many.iter().sum();
        let exact = 100.0 * seg as f64 * 25.0 / 22_050.0;
        assert!((total as f64 - exact).abs() <= 0.5, "{total} vs {exact}");
    }

    #[test]
    fn empty_and_zero_inputs_do_not_panic() {
        assert!(frame_counts(&[], 22_050, 25).is_empty());
        assert_eq!(frame_counts(&[0], 0, 25), vec![0]);
    }

    #[test]
    fn a_fade_is_about_a_third_of_a_second() {
        assert_eq!(fade_frames(25), 8, "7.5 frames, rounded up");
        assert_eq!(fade_frames(30), 9);
        assert_eq!(fade_frames(24), 7);
        assert_eq!(fade_frames(60), 18);
        assert_eq!(fade_frames(1), 0, "no fade at one frame a second");
    }

    #[test]
    fn a_shot_is_a_head_of_fade_and_rest_then_whole_seconds() {
        assert_eq!(
            shot_plan(162, 8, 25),
            ShotPlan {
                fade: 8,
                head: 8 + 4,
                second: 25,
                seconds: 6
            },
            "154 frames after the fade: 6 seconds and 4 left"
        );
        assert_eq!(shot_plan(162, 0, 25).head, 12, "no fade: the rest alone");
        assert_eq!(shot_plan(75, 0, 25).head, 0, "whole seconds: no head");
        assert_eq!(shot_plan(83, 8, 25).head, 8, "the fade alone");
        assert_eq!(
            shot_plan(7, 8, 25).fade,
            6,
            "a fade leaves the last frame whole"
        );
        for (frames, fade, fps) in [
            (1, 0, 25),
            (1, 8, 25),
            (24, 8, 25),
            (25, 0, 25),
            (26, 8, 25),
            (1625, 8, 25),
            (90, 9, 30),
            (5, 3, 0),
        ] {
            let plan = shot_plan(frames, fade, fps);
            assert_eq!(plan.frames(), frames.max(1), "{frames} at {fps}");
            assert!(plan.head < plan.fade + plan.second.max(1), "{plan:?}");
            assert!(plan.fade < frames.max(1));
        }
        let none = shot_plan(0, 8, 25);
        assert_eq!(
            (none.frames(), none.head, none.seconds),
            (0, 0, 0),
            "zero frames: no clip, so nothing drifts"
        );
    }

    #[test]
    fn a_fade_moves_evenly_from_one_picture_to_the_other() {
        let (from, to) = ([0u8, 100, 255, 255], [200u8, 100, 0, 255]);
        let mut out = Vec::new();
        let n = 3; // weights 1/4, 2/4, 3/4 of the new picture
        blend(&from, &to, 0, n, &mut out);
        assert_eq!(out, [50, 100, 191, 255]);
        blend(&from, &to, 1, n, &mut out);
        assert_eq!(out, [100, 100, 128, 255], "half way in the middle");
        blend(&from, &to, 2, n, &mut out);
        assert_eq!(out, [150, 100, 64, 255]);
    }
}
