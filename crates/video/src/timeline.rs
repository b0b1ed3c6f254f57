//! When each beat's picture shows: frames per beat from the audio, the pictures of a
//! segment as `(reveal, frames)` runs, and the film's pictures in order as [`Shot`]s, each
//! fading in from the one before.
//!
//! Beat boundaries are rounded with [`frame_counts`]'s cumulative rule over the whole
//! film, so a picture changes on the frame nearest the sample where its beat's voice starts
//! and the segment boundaries are exactly those of per-segment counting: a segment of one
//! beat (every version 1 storyboard) gets the frames it always did.

use crate::render::frame_counts;
use crate::render::slide::Reveal;

/// Frames per beat, per segment, from the samples per beat, per segment.
pub fn beat_frames(beat_samples: &[Vec<u64>], sample_rate: u32, fps: u32) -> Vec<Vec<u64>> {
    let flat: Vec<u64> = beat_samples.iter().flatten().copied().collect();
    let mut frames = frame_counts(&flat, sample_rate, fps).into_iter();
    beat_samples
        .iter()
        .map(|beats| frames.by_ref().take(beats.len()).collect())
        .collect()
}

/// A segment's pictures: each beat's reveal with its frames, beats of no frames left out
/// and neighbours showing the same picture merged. A segment of no frames at all keeps its
/// first picture with 0 frames: a shot that is counted but never drawn or encoded.
pub fn pictures(reveals: &[Reveal], frames: &[u64]) -> Vec<(Reveal, u64)> {
    let mut out: Vec<(Reveal, u64)> = Vec::new();
    for (reveal, n) in reveals.iter().zip(frames) {
        if *n == 0 {
            continue;
        }
        match out.last_mut() {
            Some((last, total)) if last == reveal => *total += n,
            _ => out.push((*reveal, *n)),
        }
    }
    if out.is_empty()
        && let Some(first) = reveals.first()
    {
        out.push((*first, 0));
    }
    out
}

/// One picture of the film, in film order: which segment shows it, what of the slide it
/// reveals, for how many frames, and how many of its first frames fade in from the picture
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shot {
    /// The segment, counted from 0.
    pub segment: usize,
    /// What the slide shows.
    pub reveal: Reveal,
    /// Frames shown.
    pub frames: u64,
    /// Of those, the first ones that fade in; 0: a cut.
    pub fade: u64,
}

/// The film's shots from each segment's [`pictures`]. Every picture change fades over
/// `fade` frames — between slides too, where a segment's first picture fades in from the
/// last picture of the segment before — starting on the frame where the new picture would
/// have cut in, so the sync rule holds and no frame is added. A shot shorter than twice the
/// fade fades over its first half (rounded down), so it is seen whole too. The film's
/// first picture does not fade in: it is also the poster a player shows before play.
pub fn shots(segments: &[Vec<(Reveal, u64)>], fade: u64) -> Vec<Shot> {
    let mut out: Vec<Shot> = Vec::new();
    for (segment, pictures) in segments.iter().enumerate() {
        for (reveal, frames) in pictures {
            let fade = if out.is_empty() {
                0
            } else {
                fade.min(frames / 2)
            };
            out.push(Shot {
                segment,
                reveal: *reveal,
                frames: *frames,
                fade,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_picture_but_the_first_fades_in_and_short_ones_fade_shorter() {
        let a = Reveal::all();
        let b = Reveal {
            visible: 1,
            emphasised: Some(0),
        };
        let segments = vec![vec![(b, 40), (a, 9)], vec![(a, 100)], vec![(a, 1)]];
        let fades: Vec<u64> = shots(&segments, 8).iter().map(|s| s.fade).collect();
        assert_eq!(
            fades,
            [0, 4, 8, 0],
            "first: none; 9 frames: 4; 1 frame: none"
        );
        let cut: Vec<u64> = shots(&segments, 0).iter().map(|s| s.fade).collect();
        assert_eq!(cut, [0, 0, 0, 0]);
        let s = shots(&segments, 8);
        assert_eq!(
            s.iter().map(|s| (s.segment, s.frames)).collect::<Vec<_>>(),
            [(0, 40), (0, 9), (1, 100), (2, 1)],
            "frames and order as given: a fade adds none"
        );
    }

    #[test]
    fn beats_split_a_segments_frames_without_moving_its_ends() {
        // Two segments: one of three beats, one of one.
        let beats = vec![vec![11_025, 22_271, 5_000], vec![30_000]];
        let per_beat = beat_frames(&beats, 22_050, 25);
        let per_segment = frame_counts(&[38_296, 30_000], 22_050, 25);
        assert_eq!(per_beat[0].iter().sum::<u64>(), per_segment[0]);
        assert_eq!(per_beat[1], [per_segment[1]]);
        assert_eq!(per_beat[0][0], 13, "0.5 s = 12.5 frames, rounded half up");
    }

    #[test]
    fn pictures_merge_equal_neighbours_and_drop_empty_beats() {
        let a = Reveal::all();
        let b = Reveal {
            visible: 1,
            emphasised: Some(0),
        };
        assert_eq!(pictures(&[a, b, a, a], &[5, 0, 3, 2]), [(a, 10)]);
        assert_eq!(pictures(&[a, b], &[5, 4]), [(a, 5), (b, 4)]);
        assert_eq!(pictures(&[b, a], &[0, 0]), [(b, 0)]);
    }
}
