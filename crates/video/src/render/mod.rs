//! Slide video per segment: a slide drawn in Rust ([`slide`]) is encoded once per length
//! it is shown for, and the segment is assembled from those clips by stream copy, so the
//! encoding cost grows with the number of distinct pictures, not with seconds of film.
//!
//! A picture shown for `N` frames at `FPS` is cut by [`repeat_plan`] into a one-second clip
//! of `K = FPS` frames, shown `⌊N/K⌋` times, and one clip of the `N mod K` frames left. Both
//! come from a single ffmpeg run ([`Encoder::encode_still`]: the raw frame is read and
//! converted once, then split), every clip starts with an IDR frame (so keyframes are at
//! most a second apart, for seeking), and [`Encoder::assemble`] joins the clips in order
//! with the concat demuxer and `-c copy`. A segment is a sequence of beats — pictures, each
//! with its frame count ([`Beat`]); today every segment is one beat.

pub mod slide;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;

/// The encoder arguments of every clip. They are identical for all clips so they can be
/// concatenated without re-encoding, and they are part of the cache key.
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
];

/// How segment videos are cut and joined, part of every segment's cache key: a change here
/// makes other bytes from the same inputs, so entries made by another scheme must not be
/// reused. Bump it with any change to [`repeat_plan`] or to how clips are encoded or joined.
pub const ENCODING_SCHEME: &str = "repeated-clip/1";

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

/// A clip of `frames` frames shown `times` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    /// The clip's length in frames.
    pub frames: u64,
    /// How many times it is shown, back to back.
    pub times: u64,
}

/// How a still shown for `frames` frames at `fps` is cut: a one-second clip of `fps` frames
/// shown `frames / fps` times, then a clip of the `frames % fps` frames left, shown once.
/// Zero frames count as one: a segment always shows its picture.
pub fn repeat_plan(frames: u64, fps: u32) -> Vec<Repeat> {
    let frames = frames.max(1);
    let second = u64::from(fps.max(1));
    let mut plan = Vec::with_capacity(2);
    if frames >= second {
        plan.push(Repeat {
            frames: second,
            times: frames / second,
        });
    }
    let rest = frames % second;
    if rest > 0 {
        plan.push(Repeat {
            frames: rest,
            times: 1,
        });
    }
    plan
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

/// One picture of a segment: a raw RGBA8 file (straight alpha, the film's size) shown for
/// `frames` frames.
#[derive(Debug, Clone, Copy)]
pub struct Beat<'a> {
    /// The picture.
    pub rgba: &'a Path,
    /// How long it is shown.
    pub frames: u64,
}

/// A finished clip and how many times in a row it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The clip's MP4.
    pub file: PathBuf,
    /// Times shown, back to back.
    pub times: u64,
}

/// One picture encoded into clips of the given lengths, by one ffmpeg run.
#[derive(Debug, Clone, Copy)]
pub struct StillEncode<'a> {
    /// The picture, raw RGBA8 of `geometry`'s size.
    pub rgba: &'a Path,
    /// Size and frame rate.
    pub geometry: Geometry,
    /// The clips to make: frame count (at least one) and output file. Each starts with an
    /// IDR frame.
    pub clips: &'a [(u64, PathBuf)],
}

/// A segment: its beats, in order, encoded into one video-only MP4.
#[derive(Debug, Clone, Copy)]
pub struct SegmentEncode<'a> {
    /// The pictures and their frame counts.
    pub beats: &'a [Beat<'a>],
    /// Size and frame rate.
    pub geometry: Geometry,
    /// Where the clips and the concat list are made (removed once joined).
    pub scratch: &'a Path,
    /// The segment's MP4.
    pub out: &'a Path,
}

fn io(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::retryable("io_failed", format!("{what}: {e}"))
}

/// Writes the concat demuxer's list for `clips` at `list`: each clip's file as many times as
/// it is shown.
pub async fn write_concat_list(clips: &[Clip], list: &Path) -> Result<(), StageError> {
    let mut text = String::new();
    for clip in clips {
        // The concat demuxer's quoting: a single quote becomes '\''.
        let line = format!(
            "file '{}'\n",
            clip.file.display().to_string().replace('\'', r"'\''")
        );
        for _ in 0..clip.times {
            text.push_str(&line);
        }
    }
    tokio::fs::write(list, text)
        .await
        .map_err(|e| io("writing the concat list", e))
}

/// Runs ffmpeg for clip encodes and joins, at most `slots` at once.
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

    /// Encodes one picture into each of `job.clips`, in one ffmpeg run: the raw frame is read
    /// and converted to YUV once, then split and looped for each clip's frame count.
    pub async fn encode_still(
        &self,
        job: &StillEncode<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let Geometry { width, height, fps } = job.geometry;
        let n = job.clips.len();
        if n == 0 {
            return Ok(());
        }
        let mut graph = format!("[0:v]format=yuv420p,split={n}");
        for i in 0..n {
            graph.push_str(&format!("[s{i}]"));
        }
        for (i, (frames, _)) in job.clips.iter().enumerate() {
            let repeats = frames.max(&1) - 1;
            graph.push_str(&format!(";[s{i}]loop=loop={repeats}:size=1:start=0[o{i}]"));
        }
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgba"])
            .arg("-video_size")
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(fps.to_string())
            .arg("-i")
            .arg(job.rgba)
            .arg("-filter_complex")
            .arg(graph);
        for (i, (frames, out)) in job.clips.iter().enumerate() {
            cmd.arg("-map")
                .arg(format!("[o{i}]"))
                .arg("-frames:v")
                .arg(frames.max(&1).to_string())
                .args(VIDEO_ARGS)
                .arg("-r")
                .arg(fps.to_string())
                .args(["-an", "-f", "mp4"])
                .arg(out);
        }
        crate::media::run_limited(cmd, "ffmpeg", cancel, &self.slots).await?;
        Ok(())
    }

    /// Joins `clips` in order into `out` with the concat demuxer and `-c copy` (no
    /// re-encoding), through the list file `list`.
    pub async fn join(
        &self,
        clips: &[Clip],
        list: &Path,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        write_concat_list(clips, list).await?;
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "concat", "-safe", "0", "-i"])
            .arg(list)
            .args(["-c", "copy", "-f", "mp4"])
            .arg(out);
        crate::media::run_limited(cmd, "ffmpeg", cancel, &self.slots).await?;
        Ok(())
    }

    /// Encodes a segment: each beat's picture once, cut by [`repeat_plan`], the clips joined
    /// by stream copy into `job.out` (a segment of one clip shown once is that clip).
    pub async fn encode_segment(
        &self,
        job: &SegmentEncode<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let stem = job
            .out
            .file_stem()
            .map_or_else(|| "segment".into(), |s| s.to_string_lossy().into_owned());
        let mut clips = Vec::new();
        let made = async {
            for (b, beat) in job.beats.iter().enumerate() {
                let plan = repeat_plan(beat.frames, job.geometry.fps);
                let files: Vec<(u64, PathBuf)> = plan
                    .iter()
                    .map(|r| {
                        let name = format!("{stem}-beat{b}-{}f.mp4", r.frames);
                        (r.frames, job.scratch.join(name))
                    })
                    .collect();
                clips.extend(files.iter().zip(&plan).map(|((_, file), r)| Clip {
                    file: file.clone(),
                    times: r.times,
                }));
                let still = StillEncode {
                    rgba: beat.rgba,
                    geometry: job.geometry,
                    clips: &files,
                };
                self.encode_still(&still, cancel).await?;
            }
            match clips.as_slice() {
                [only] if only.times == 1 => tokio::fs::rename(&only.file, job.out)
                    .await
                    .map_err(|e| io("moving the segment's clip", e)),
                _ => {
                    let list = job.scratch.join(format!("{stem}-clips.txt"));
                    let joined = self.join(&clips, &list, job.out, cancel).await;
                    let _ = tokio::fs::remove_file(&list).await;
                    joined
                }
            }
        }
        .await;
        for clip in &clips {
            let _ = tokio::fs::remove_file(&clip.file).await;
        }
        made
    }
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

    fn shown(plan: &[Repeat]) -> u64 {
        plan.iter().map(|r| r.frames * r.times).sum()
    }

    #[test]
    fn a_still_is_a_one_second_clip_repeated_and_the_rest_once() {
        let plan = repeat_plan(162, 25);
        assert_eq!(
            plan,
            vec![
                Repeat {
                    frames: 25,
                    times: 6
                },
                Repeat {
                    frames: 12,
                    times: 1
                }
            ]
        );
        for (frames, fps) in [(1, 25), (24, 25), (25, 25), (26, 25), (1625, 25), (90, 30)] {
            let plan = repeat_plan(frames, fps);
            assert_eq!(shown(&plan), frames, "{frames} at {fps}");
            assert!(plan.iter().all(|r| r.frames <= u64::from(fps)));
            assert!(plan.len() <= 2, "each picture is encoded at most twice");
        }
    }

    #[test]
    fn a_whole_number_of_seconds_has_no_rest_and_a_short_still_no_second() {
        assert_eq!(
            repeat_plan(75, 25),
            vec![Repeat {
                frames: 25,
                times: 3
            }]
        );
        assert_eq!(
            repeat_plan(7, 25),
            vec![Repeat {
                frames: 7,
                times: 1
            }]
        );
        assert_eq!(shown(&repeat_plan(0, 25)), 1, "zero frames show one");
        assert_eq!(
            shown(&repeat_plan(5, 0)),
            5,
            "a zero rate does not divide by zero"
        );
    }

    #[tokio::test]
    async fn the_concat_list_repeats_each_clip_and_quotes_names() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let clips = [
            Clip {
                file: PathBuf::from("/x/it's.mp4"),
                times: 2,
            },
            Clip {
                file: PathBuf::from("/x/rest.mp4"),
                times: 1,
            },
        ];
        write_concat_list(&clips, &list).await.unwrap();
        let text = std::fs::read_to_string(&list).unwrap();
        assert_eq!(
            text,
            "file '/x/it'\\''s.mp4'\nfile '/x/it'\\''s.mp4'\nfile '/x/rest.mp4'\n"
        );
    }
}
