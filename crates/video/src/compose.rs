//! One MP4 from the clips: the narration's PCM is joined in Rust and encoded to AAC once —
//! per-segment AAC would add priming samples at every join (drift and clicks); the film's
//! video clips are joined without re-encoding, as bytes, into one raw H.264 stream
//! ([`crate::render::join_clips`]), which one ffmpeg run muxes with the AAC and the
//! captions (a `mov_text` track), timestamped at the frame rate, with `+faststart` so a
//! browser can play while downloading.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;
use crate::render::{Clip, join_clips};

fn io(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::retryable("io_failed", format!("{what}: {e}"))
}

/// Joins mono 16-bit WAV files into one; returns its sample count and rate. Refuses files of
/// different rates or formats (one backend makes one format).
pub async fn join_wavs(parts: Vec<PathBuf>, out: PathBuf) -> Result<(u64, u32), StageError> {
    tokio::task::spawn_blocking(move || {
        let mut writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>> = None;
        let mut spec0: Option<hound::WavSpec> = None;
        let mut total = 0u64;
        for part in &parts {
            let mut reader =
                hound::WavReader::open(part).map_err(|e| io(&part.display().to_string(), e))?;
            let spec = reader.spec();
            crate::tts::wav::check_spec(spec).map_err(|e| {
                StageError::retryable("tts_bad_audio", format!("{}: {e}", part.display()))
            })?;
            match spec0 {
                None => {
                    spec0 = Some(spec);
                    writer = Some(
                        hound::WavWriter::create(&out, spec)
                            .map_err(|e| io("creating the joined WAV", e))?,
                    );
                }
                Some(s) if s.sample_rate != spec.sample_rate => {
                    return Err(StageError::retryable(
                        "tts_bad_audio",
                        "segments have different sample rates",
                    ));
                }
                Some(_) => {}
            }
            let Some(w) = writer.as_mut() else { break };
            for sample in reader.samples::<i16>() {
                let sample = sample.map_err(|e| io(&part.display().to_string(), e))?;
                w.write_sample(sample)
                    .map_err(|e| io("writing the joined WAV", e))?;
                total += 1;
            }
        }
        let rate = spec0.map_or(0, |s| s.sample_rate);
        if let Some(w) = writer {
            w.finalize()
                .map_err(|e| io("finishing the joined WAV", e))?;
        }
        Ok((total, rate))
    })
    .await
    .map_err(|e| io("joining audio", e))?
}

/// Encodes `wav` to AAC in an `.m4a` at `out`, within the ffmpeg `slots`.
pub async fn encode_aac(
    ffmpeg: &Path,
    [wav, out]: [&Path; 2],
    cancel: &CancellationToken,
    slots: &Arc<Semaphore>,
) -> Result<(), StageError> {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(wav)
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "mp4"])
        .arg(out);
    crate::media::run_limited(cmd, "ffmpeg", cancel, slots).await?;
    Ok(())
}

/// The film: video clips joined without re-encoding and the narration muxed in.
#[derive(Debug, Clone, Copy)]
pub struct FilmMux<'a> {
    /// The `ffmpeg` binary.
    pub ffmpeg: &'a Path,
    /// The video clips, in order, each with the times it is shown (sealed raw H.264, same
    /// encoder arguments, each starting with an IDR frame).
    pub clips: &'a [Clip],
    /// Frames the clips must hold together; a clip from the cache or the store with other
    /// frames than planned would move every picture after it off its voice.
    pub frames: u64,
    /// The film's frame rate: the raw stream's frames are timed by it.
    pub fps: u32,
    /// The narration's AAC.
    pub audio: &'a Path,
    /// Where the joined raw H.264 stream is written (a scratch file).
    pub stream: &'a Path,
    /// The captions, as a soft subtitle track; `None`: no subtitle track.
    pub captions: Option<FilmCaptions<'a>>,
    /// The final MP4.
    pub out: &'a Path,
}

/// A film's captions: the WebVTT file and its language.
#[derive(Debug, Clone, Copy)]
pub struct FilmCaptions<'a> {
    /// The WebVTT file.
    pub vtt: &'a Path,
    /// Its ISO 639-2 language code (`eng`, `kor`, `und`), tagged on the track.
    pub language: &'a str,
}

/// Joins the clips into one stream and muxes it with the audio and the captions, if any,
/// in one ffmpeg run — the video's bytes are copied, never decoded.
pub async fn mux_film(job: &FilmMux<'_>, cancel: &CancellationToken) -> Result<(), StageError> {
    let joined = join_clips(job.clips.to_vec(), job.stream.to_path_buf()).await?;
    if joined != job.frames {
        return Err(StageError::retryable(
            "io_failed",
            format!(
                "the film's clips hold {joined} frames, {} planned",
                job.frames
            ),
        ));
    }
    let mut cmd = Command::new(job.ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "h264", "-framerate"])
        .arg(job.fps.to_string())
        .arg("-i")
        .arg(job.stream)
        .arg("-i")
        .arg(job.audio);
    if let Some(captions) = &job.captions {
        cmd.arg("-i").arg(captions.vtt);
    }
    cmd.args([
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "copy",
    ]);
    if let Some(captions) = &job.captions {
        cmd.args(["-map", "2:s:0", "-c:s", "mov_text"])
            .arg("-metadata:s:s:0")
            .arg(format!("language={}", captions.language));
    }
    cmd.args(["-movflags", "+faststart", "-f", "mp4"])
        .arg(job.out);
    let muxed = crate::media::run(cmd, "ffmpeg", cancel).await;
    let _ = tokio::fs::remove_file(job.stream).await;
    muxed?;
    Ok(())
}
