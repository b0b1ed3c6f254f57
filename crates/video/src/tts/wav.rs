//! The WAV checks the backends share: the compose stage joins mono 16-bit integer PCM, so
//! every backend's output is held to that (and to having samples) before a segment counts
//! as spoken.
//!
//! The HTTP backends receive the audio as bytes: [`store`] repairs a streamed header, checks
//! it and writes a canonical WAV through a temporary file and a rename, so a failed call never
//! leaves a half-written file behind. Piper writes its own file: [`check_file`] reads it back.
//! Failures are a [`WavError`] variant, never a message to be parsed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Sample rates accepted; anything else is a broken header.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// Why audio is not what the backends promise, or could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// Not RIFF/WAVE, or a header hound cannot read.
    #[error("not a WAV file ({0})")]
    NotWav(String),
    /// More than one channel.
    #[error("{0} channels; mono is required")]
    Channels(u16),
    /// Not 16-bit integer samples.
    #[error("{bits}-bit {kind} samples; 16-bit integer PCM is required")]
    Format {
        /// Bits per sample.
        bits: u16,
        /// `integer` or `float`.
        kind: &'static str,
    },
    /// A sample rate no speech engine makes.
    #[error("a sample rate of {0} Hz")]
    SampleRate(u32),
    /// Not the sample rate the engine was expected to make.
    #[error("{found} Hz, not the expected {expected} Hz")]
    UnexpectedRate {
        /// What the file says.
        found: u32,
        /// What the engine makes.
        expected: u32,
    },
    /// A header and no samples.
    #[error("no samples")]
    Empty,
    /// The sample data is cut short or unreadable.
    #[error("reading samples: {0}")]
    Samples(String),
    /// Writing the output failed: the local disk's trouble, not the audio's.
    #[error("{0}")]
    Io(String),
}

/// Checks a header describes mono 16-bit integer PCM at a plausible rate.
pub(crate) fn check_spec(spec: hound::WavSpec) -> Result<(), WavError> {
    if spec.channels != 1 {
        return Err(WavError::Channels(spec.channels));
    }
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        let kind = match spec.sample_format {
            hound::SampleFormat::Int => "integer",
            hound::SampleFormat::Float => "float",
        };
        return Err(WavError::Format {
            bits: spec.bits_per_sample,
            kind,
        });
    }
    if !SAMPLE_RATES.contains(&spec.sample_rate) {
        return Err(WavError::SampleRate(spec.sample_rate));
    }
    Ok(())
}

/// Checks the file at `path` is mono 16-bit integer PCM at `expected_rate`, with samples.
pub(crate) fn check_file(path: &Path, expected_rate: u32) -> Result<(), WavError> {
    let reader = hound::WavReader::open(path).map_err(|e| WavError::NotWav(e.to_string()))?;
    let spec = reader.spec();
    check_spec(spec)?;
    if spec.sample_rate != expected_rate {
        return Err(WavError::UnexpectedRate {
            found: spec.sample_rate,
            expected: expected_rate,
        });
    }
    if reader.duration() == 0 {
        return Err(WavError::Empty);
    }
    Ok(())
}

/// What [`store`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Samples written.
    pub samples: u64,
    /// Their rate.
    pub sample_rate: u32,
}

impl Stored {
    /// Logs what `backend` made: `bytes` received, in the time since `started`.
    pub fn trace(&self, backend: &'static str, bytes: usize, started: Instant) {
        tracing::debug!(
            backend,
            bytes,
            samples = self.samples,
            sample_rate = self.sample_rate,
            elapsed_ms = started.elapsed().as_millis(),
            "speech synthesized"
        );
    }
}

/// Fixes the length fields of a streamed WAV. Servers that stream (OpenAI among them) write
/// the header before they know the length and put a placeholder there (`0xFFFFFFFF`,
/// `0x7FFFFFFF`, or 0); hound would refuse or misread those. A `data` chunk declaring more
/// than is present, or nothing while bytes follow, is taken to end with the body (rounded
/// down to whole frames). HTTP itself already caught a truncated transfer.
pub(crate) fn repair_streamed_header(mut wav: Vec<u8>) -> Vec<u8> {
    let read_u32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return wav;
    }
    let mut block_align: usize = 1;
    let mut at = 12;
    while let (Some(id), Some(size)) = (wav.get(at..at + 4), read_u32(&wav, at + 4)) {
        let size = size as usize;
        let body = at + 8;
        if id == b"fmt " {
            if let Some(&[lo, hi]) = wav.get(body + 12..body + 14) {
                block_align = usize::from(u16::from_le_bytes([lo, hi])).max(1);
            }
        } else if id == b"data" {
            let present = wav.len() - body;
            if size == 0 || size > present {
                let fixed = present - present % block_align;
                if let (Ok(fixed32), Ok(riff)) =
                    (u32::try_from(fixed), u32::try_from(body + fixed - 8))
                {
                    wav[at + 4..at + 8].copy_from_slice(&fixed32.to_le_bytes());
                    wav[4..8].copy_from_slice(&riff.to_le_bytes());
                }
            }
            return wav;
        }
        // Chunks are padded to an even length.
        match body
            .checked_add(size)
            .and_then(|end| end.checked_add(size & 1))
        {
            Some(next) => at = next,
            None => break,
        }
    }
    wav
}

/// Checks the WAV is mono 16-bit PCM with samples, and writes it canonically (plain 44-byte
/// header, no extra chunks, true lengths) to a temporary file beside `out`, renamed over
/// `out` only when complete.
pub(crate) fn store(wav: Vec<u8>, out: &Path) -> Result<Stored, WavError> {
    let wav = repair_streamed_header(wav);
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.as_slice()))
        .map_err(|e| WavError::NotWav(e.to_string()))?;
    let spec = reader.spec();
    check_spec(spec)?;
    if reader.len() == 0 {
        return Err(WavError::Empty);
    }
    let out_spec = hound::WavSpec {
        channels: 1,
        sample_rate: spec.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let temp = TempFile::beside(out)?;
    let file = std::fs::File::create(&temp.path).map_err(|e| io_error("creating", &e))?;
    let mut buffered = std::io::BufWriter::new(file);
    let mut writer = hound::WavWriter::new(&mut buffered, out_spec).map_err(hound_io)?;
    let mut samples = 0u64;
    for sample in reader.samples::<i16>() {
        let sample = sample.map_err(|e| WavError::Samples(e.to_string()))?;
        writer.write_sample(sample).map_err(hound_io)?;
        samples += 1;
    }
    // Writes the true lengths into the header.
    writer.finalize().map_err(hound_io)?;
    let file = buffered
        .into_inner()
        .map_err(|e| io_error("writing", e.error()))?;
    // The data must be on disk before the rename makes it visible as `out`.
    file.sync_all().map_err(|e| io_error("syncing", &e))?;
    drop(file);
    temp.persist(out)?;
    Ok(Stored {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn hound_io(e: hound::Error) -> WavError {
    WavError::Io(format!("writing the temporary file: {e}"))
}

fn io_error(doing: &str, e: &std::io::Error) -> WavError {
    WavError::Io(format!("{doing} the temporary file: {e}"))
}

/// A temporary file beside the target (same directory, so the rename is atomic), removed on
/// drop unless persisted.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn beside(out: &Path) -> Result<Self, WavError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = out
            .file_name()
            .ok_or_else(|| WavError::Io(format!("{} names no file", out.display())))?;
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.{unique}.part", std::process::id()));
        Ok(Self {
            path: out.with_file_name(temp_name),
            keep: false,
        })
    }

    fn persist(mut self, out: &Path) -> Result<(), WavError> {
        std::fs::rename(&self.path, out)
            .map_err(|e| WavError::Io(format!("renaming into {}: {e}", out.display())))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: it may never have been created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;

    fn wav_bytes(channels: u16, bits: u16, format: hound::SampleFormat, frames: u32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 24_000,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames * u32::from(channels) {
            match (format, bits) {
                (hound::SampleFormat::Float, _) => writer.write_sample(0.1f32).unwrap(),
                (_, 8) => writer.write_sample((i % 100) as i8).unwrap(),
                _ => writer.write_sample((i % 1000) as i16).unwrap(),
            }
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn mono16(frames: u32) -> Vec<u8> {
        wav_bytes(1, 16, hound::SampleFormat::Int, frames)
    }

    #[test]
    fn streamed_placeholder_lengths_are_repaired() {
        let good = mono16(1000);
        for placeholder in [u32::MAX, 0x7FFF_FFFF, 0] {
            let mut streamed = good.clone();
            streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
            streamed[40..44].copy_from_slice(&placeholder.to_le_bytes());
            let fixed = repair_streamed_header(streamed);
            assert_eq!(fixed, good, "placeholder {placeholder:#x}");
        }
        // An odd trailing byte is dropped rather than failing the whole file.
        let mut odd = good.clone();
        odd.push(7);
        odd[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let reader =
            hound::WavReader::new(std::io::Cursor::new(repair_streamed_header(odd))).unwrap();
        assert_eq!(reader.len(), 1000);
        // Correct headers and non-WAV input pass through untouched.
        assert_eq!(repair_streamed_header(good.clone()), good);
        assert_eq!(repair_streamed_header(b"garbage".to_vec()), b"garbage");
    }

    #[test]
    fn store_accepts_only_mono_16_bit_pcm() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seg.wav");
        let stored = store(mono16(12_000), &out).unwrap();
        assert_eq!(stored.samples, 12_000);
        let reader = hound::WavReader::open(&out).unwrap();
        assert_eq!(reader.len(), 12_000);
        assert_eq!(reader.spec().channels, 1);

        for (bad, expected) in [
            (
                wav_bytes(2, 16, hound::SampleFormat::Int, 100),
                WavError::Channels(2),
            ),
            (
                wav_bytes(1, 8, hound::SampleFormat::Int, 100),
                WavError::Format {
                    bits: 8,
                    kind: "integer",
                },
            ),
            (
                wav_bytes(1, 32, hound::SampleFormat::Float, 100),
                WavError::Format {
                    bits: 32,
                    kind: "float",
                },
            ),
            (mono16(0), WavError::Empty),
        ] {
            assert_eq!(store(bad, &out).unwrap_err(), expected);
        }
        assert!(matches!(
            store(b"ID3 this is an mp3".to_vec(), &out),
            Err(WavError::NotWav(_))
        ));
        // The earlier good file is intact and no temporary files remain.
        assert_eq!(hound::WavReader::open(&out).unwrap().len(), 12_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_sample_data_is_bad_audio_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seg.wav");
        // Cut inside the `fmt ` chunk: no header to repair, nothing to decode.
        let mut wav = mono16(100);
        wav.truncate(30);
        assert!(matches!(store(wav, &out), Err(WavError::NotWav(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_is_checked_against_the_rate_expected() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seg.wav");
        std::fs::write(&out, mono16(100)).unwrap();
        check_file(&out, 24_000).unwrap();
        assert_eq!(
            check_file(&out, 22_050),
            Err(WavError::UnexpectedRate {
                found: 24_000,
                expected: 22_050
            })
        );
        std::fs::write(&out, mono16(0)).unwrap();
        assert_eq!(check_file(&out, 24_000), Err(WavError::Empty));
    }
}
