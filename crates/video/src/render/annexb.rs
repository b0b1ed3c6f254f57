//! Clips as raw H.264 (Annex B byte streams), which join by plain byte concatenation.
//!
//! Every clip starts with an IDR access unit carrying its own SPS and PPS (libx264 repeats
//! the headers before each keyframe when the output has no global header, as for `-f h264`)
//! and is encoded without B-frames, so decode order is display order: appended one after
//! another, clips make a valid stream whose frames are exactly theirs, in order, and the
//! film's muxer gives them timestamps at the frame rate. That makes joining hundreds of
//! clips a file copy instead of the concat demuxer's open and probe per clip.
//!
//! A clip file on disk is *sealed*: the stream followed by a 16-byte trailer (a magic and
//! the stream's length), so a truncated or padded copy is told from a whole one
//! ([`is_sealed`]) — a byte stream carries no length of its own. The trailer is dropped when
//! clips are joined ([`unseal`]).

/// The trailer's magic: the format and its version.
const MAGIC: &[u8; 8] = b"vwclip01";
/// Magic plus the stream length (u64, little endian).
const TRAILER: usize = 16;

/// NAL unit types that carry a coded slice (non-IDR and IDR).
fn is_slice(nal_type: u8) -> bool {
    matches!(nal_type, 1 | 5)
}

/// The NAL units of an Annex B stream: `(start of its start code, NAL type, first payload
/// byte after the header)`.
fn nal_units(stream: &[u8]) -> Vec<(usize, u8, Option<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            // A four-byte start code's leading zero belongs to the unit that follows.
            let start = if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            if let Some(header) = stream.get(i + 3) {
                out.push((start, header & 0x1f, stream.get(i + 4).copied()));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether a slice NAL starts a picture: `first_mb_in_slice`, the first field of the slice
/// header, is 0, which Exp-Golomb codes as a single `1` bit.
fn starts_picture(nal_type: u8, first_payload: Option<u8>) -> bool {
    is_slice(nal_type) && first_payload.is_some_and(|b| b & 0x80 != 0)
}

/// The number of pictures (frames) in an Annex B stream.
pub fn frames(stream: &[u8]) -> usize {
    nal_units(stream)
        .iter()
        .filter(|(_, t, p)| starts_picture(*t, *p))
        .count()
}

/// Splits a stream before picture `frame` (counted from 0): the bytes of the pictures before
/// it, and the rest from the first NAL unit of that picture's access unit (its SPS and PPS
/// when it is an IDR). `None` when the stream has no such picture.
pub fn split_at_frame(stream: &[u8], frame: usize) -> Option<(&[u8], &[u8])> {
    let units = nal_units(stream);
    let mut pictures = 0usize;
    // Where the access unit being read began: the first non-slice NAL after a slice.
    let mut unit_start: Option<usize> = None;
    for (start, nal_type, payload) in units {
        if starts_picture(nal_type, payload) {
            if pictures == frame {
                let at = unit_start.unwrap_or(start);
                return Some((&stream[..at], &stream[at..]));
            }
            pictures += 1;
            unit_start = None;
        } else if !is_slice(nal_type) && unit_start.is_none() {
            unit_start = Some(start);
        }
    }
    None
}

/// The stream with its trailer, ready to be written as a clip file.
pub fn seal(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() + TRAILER);
    out.extend_from_slice(stream);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(stream.len() as u64).to_le_bytes());
    out
}

/// The stream inside a sealed clip file's bytes; `None` when they are not a whole one.
pub fn unseal(file: &[u8]) -> Option<&[u8]> {
    let body = file.len().checked_sub(TRAILER)?;
    let (stream, trailer) = file.split_at(body);
    let (magic, len) = trailer.split_at(MAGIC.len());
    let len = u64::from_le_bytes(len.try_into().ok()?);
    let starts = stream.starts_with(&[0, 0, 0, 1]) || stream.starts_with(&[0, 0, 1]);
    (magic == MAGIC && len == stream.len() as u64 && starts).then_some(stream)
}

/// Whether the file at `path` is a whole sealed clip (read from its ends only).
pub fn is_sealed(path: &std::path::Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let check = || -> std::io::Result<bool> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let Some(body) = len.checked_sub(TRAILER as u64) else {
            return Ok(false);
        };
        let mut head = [0u8; 4];
        file.read_exact(&mut head)?;
        let mut trailer = [0u8; TRAILER];
        file.seek(SeekFrom::Start(body))?;
        file.read_exact(&mut trailer)?;
        let (magic, n) = trailer.split_at(MAGIC.len());
        let n = u64::from_le_bytes(n.try_into().unwrap_or_default());
        let starts = head == [0, 0, 0, 1] || head[..3] == [0, 0, 1];
        Ok(magic == MAGIC && n == body && starts)
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made stream: SPS, PPS, SEI, IDR slice, two P slices, then SPS, PPS, IDR and a
    /// P slice; one P picture is coded as two slices (the second's first_mb is not 0).
    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        let mut nal = |header: u8, payload: &[u8], four: bool| {
            if four {
                s.push(0);
            }
            s.extend_from_slice(&[0, 0, 1, header]);
            s.extend_from_slice(payload);
        };
        nal(0x67, &[0x64, 0x00, 0x1f], true); // SPS
        nal(0x68, &[0xee, 0x3c], true); // PPS
        nal(0x06, &[0x05, 0x10], false); // SEI
        nal(0x65, &[0x88, 0x84, 0x21], false); // IDR, first_mb 0
        nal(0x41, &[0x9a, 0x02], true); // P, first_mb 0
        nal(0x41, &[0x9b, 0x03], true); // P, first_mb 0
        nal(0x41, &[0x40, 0x03], true); // P, first_mb 1: same picture
        nal(0x67, &[0x64, 0x00, 0x1f], true); // SPS
        nal(0x68, &[0xee, 0x3c], true); // PPS
        nal(0x65, &[0x88, 0x84, 0x22], true); // IDR
        nal(0x41, &[0x9a, 0x04], true); // P
        s
    }

    #[test]
    fn pictures_are_counted_by_their_first_slice() {
        assert_eq!(frames(&stream()), 5);
        assert_eq!(frames(&[]), 0);
    }

    #[test]
    fn a_split_before_an_idr_takes_its_parameter_sets_along() {
        let s = stream();
        let (head, tail) = split_at_frame(&s, 3).unwrap();
        assert_eq!(frames(head), 3);
        assert_eq!(frames(tail), 2);
        assert_eq!(
            &tail[..5],
            &[0, 0, 0, 1, 0x67],
            "the second part opens with its SPS"
        );
        assert_eq!([head, tail].concat(), s);
        let (none, all) = split_at_frame(&s, 0).unwrap();
        assert!(none.is_empty());
        assert_eq!(all, &s[..]);
        let (two, _) = split_at_frame(&s, 2).unwrap();
        assert_eq!(
            frames(two),
            2,
            "a split before a P picture cuts at its slice"
        );
        assert!(split_at_frame(&s, 5).is_none());
    }

    #[test]
    fn a_sealed_clip_is_whole_and_a_cut_or_padded_one_is_not() {
        let s = stream();
        let sealed = seal(&s);
        assert_eq!(unseal(&sealed), Some(&s[..]));
        assert_eq!(unseal(&sealed[..sealed.len() - 1]), None);
        assert_eq!(unseal(&sealed[1..]), None);
        let mut padded = sealed.clone();
        padded.push(0);
        assert_eq!(unseal(&padded), None);
        assert_eq!(unseal(b"not a clip at all, just some text"), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.h264");
        std::fs::write(&path, &sealed).unwrap();
        assert!(is_sealed(&path));
        std::fs::write(&path, &sealed[..sealed.len() / 2]).unwrap();
        assert!(!is_sealed(&path));
        std::fs::write(&path, b"").unwrap();
        assert!(!is_sealed(&path));
    }
}
