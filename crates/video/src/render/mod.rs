//! Slide video per segment: a slide drawn in Rust ([`slide`]), handed to ffmpeg as one raw
//! RGBA frame and repeated for exactly as many frames as the segment's narration needs.

pub mod slide;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;

/// The encoder arguments of every segment. They are identical for all segments so the
/// compose stage can concatenate them without re-encoding, and they are part of the cache
/// key.
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

/// Runs ffmpeg for segment encodes, at most `slots` at once.
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

    /// Encodes `frames` frames of the still `rgba` (straight RGBA8, `width`×`height`) at `fps`
    /// into a video-only MP4 at `out`.
    #[allow(clippy::too_many_arguments)] // each is one encoder parameter
    pub async fn encode_still(
        &self,
        rgba: &Path,
        width: u32,
        height: u32,
        fps: u32,
        frames: u64,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let frames = frames.max(1);
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgba"])
            .arg("-video_size")
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(fps.to_string())
            .arg("-i")
            .arg(rgba)
            // One input frame, looped: the slide is static, so ffmpeg reads it once.
            .arg("-vf")
            .arg(format!("loop=loop={}:size=1:start=0", frames - 1))
            .arg("-frames:v")
            .arg(frames.to_string())
            .args(VIDEO_ARGS)
            .arg("-r")
            .arg(fps.to_string())
            .args(["-an", "-f", "mp4"])
            .arg(out);
        crate::media::run_limited(cmd, "ffmpeg", cancel, &self.slots).await?;
        Ok(())
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
}
