//! One MP4 from the segments: the segment videos are concatenated without re-encoding
//! (concat demuxer, `-c copy`); the narration's PCM is joined in Rust and encoded to AAC
//! once — per-segment AAC would add priming samples at every join (drift and clicks); then
//! both are muxed, with the captions as a `mov_text` track, with `+faststart` so a browser
//! can play while downloading.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;

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
            if spec.channels != 1
                || spec.bits_per_sample != 16
                || spec.sample_format != hound::SampleFormat::Int
            {
                return Err(StageError::retryable(
                    "tts_bad_audio",
                    format!("{}: not mono 16-bit PCM", part.display()),
                ));
            }
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

/// Encodes `wav` to AAC in an `.m4a` at `out`.
pub async fn encode_aac(
    ffmpeg: &Path,
    wav: &Path,
    out: &Path,
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

/// Concatenates same-format video files without re-encoding.
pub async fn concat_videos(
    ffmpeg: &Path,
    parts: &[PathBuf],
    list: &Path,
    out: &Path,
    cancel: &CancellationToken,
) -> Result<(), StageError> {
    let mut text = String::new();
    for part in parts {
        // The concat demuxer's quoting: a single quote becomes '\''.
        let escaped = part.display().to_string().replace('\'', r"'\''");
        text.push_str(&format!("file '{escaped}'\n"));
    }
    tokio::fs::write(list, text)
        .await
        .map_err(|e| io("writing the concat list", e))?;
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "concat", "-safe", "0", "-i"])
        .arg(list)
        .args(["-c", "copy", "-f", "mp4"])
        .arg(out);
    crate::media::run(cmd, "ffmpeg", cancel).await?;
    Ok(())
}

/// Muxes the video and the audio into the final MP4, with `captions` (a WebVTT file and
/// its ISO 639-2 language) as a soft `mov_text` subtitle track.
pub async fn mux(
    ffmpeg: &Path,
    [video, audio]: [&Path; 2],
    captions: Option<(&Path, &str)>,
    out: &Path,
    cancel: &CancellationToken,
) -> Result<(), StageError> {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(video)
        .arg("-i")
        .arg(audio);
    if let Some((vtt, _)) = captions {
        cmd.arg("-i").arg(vtt);
    }
    cmd.args([
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "copy",
    ]);
    if let Some((_, language)) = captions {
        cmd.args(["-map", "2:s:0", "-c:s", "mov_text"])
            .arg("-metadata:s:s:0")
            .arg(format!("language={language}"));
    }
    cmd.args(["-movflags", "+faststart", "-f", "mp4"]).arg(out);
    crate::media::run(cmd, "ffmpeg", cancel).await?;
    Ok(())
}
