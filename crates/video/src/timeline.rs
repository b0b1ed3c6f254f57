//! When each beat's picture shows: frames per beat from the audio, and the pictures of a
//! segment as `(reveal, frames)` runs.
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
/// first picture (with 0 frames), so it still has something to draw.
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

#[cfg(test)]
mod tests {
    use super::*;

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
