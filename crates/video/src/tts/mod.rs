//! Speech per sentence, behind a backend trait.
//!
//! `espeak-ng` (a subprocess, offline) is the default; [`piper`] is a natural offline voice
//! for English (a subprocess too); [`http`] has cloud voices (Google
//! `text:synthesize`, OpenAI-style `/v1/audio/speech`). Every backend writes a mono 16-bit
//! PCM WAV file per sentence; the compose stage joins their samples and encodes AAC once.
//!
//! The TTS stage hands a backend its sentences in batches ([`plan_batches`], as the
//! backend's [`Schedule`] says): one sentence a call for a backend whose calls cost only
//! their sentences (espeak-ng, HTTP: the trait's default), many for one whose every call
//! has a fixed cost (Piper loads its model at each run, so it speaks a job's English
//! sentences in one run).

pub mod espeak;
pub mod http;
pub mod piper;
pub(crate) mod wav;

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::StageError;
use crate::storyboard::Voice;

/// A speech engine.
#[async_trait]
pub trait TtsBackend: Send + Sync + std::fmt::Debug {
    /// Everything about this backend that shapes the audio bytes for `voice` (engine,
    /// version, voice name, rate): part of the segment cache key.
    fn fingerprint(&self, voice: &Voice) -> String;

    /// How many [`TtsBackend::synthesize`] calls may run at once (the workers of the
    /// default [`TtsBackend::schedule`]).
    fn concurrency(&self) -> usize {
        2
    }

    /// How the stage should hand this backend a job's sentences in `voice`. The default:
    /// one sentence a call, [`TtsBackend::concurrency`] calls at once — a batch costs what
    /// its sentences cost one by one.
    fn schedule(&self, voice: &Voice) -> Schedule {
        let _ = voice;
        Schedule {
            workers: self.concurrency(),
            max_batch: 1,
        }
    }

    /// Speaks `text` into a mono 16-bit PCM WAV file at `out`. Stops early (killing any
    /// child process) when `cancel` fires. Network trouble, timeouts, 429 and 5xx are
    /// [`StageError::Retryable`]; a refusal of the input is [`StageError::Permanent`].
    async fn synthesize(
        &self,
        text: &str,
        voice: &Voice,
        out: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), StageError>;

    /// Speaks each of `batch`, in order, into its `out` (as [`TtsBackend::synthesize`]
    /// does), calling `spoken(i)` as soon as `batch[i]`'s file is whole, so the caller can
    /// keep it and count it while the rest is spoken. On failure, says which one it was
    /// speaking; those reported before are whole. The default speaks them one by one.
    async fn synthesize_batch(
        &self,
        batch: &[Utterance],
        voice: &Voice,
        cancel: &CancellationToken,
        spoken: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<(), BatchError> {
        one_by_one(self, batch, voice, cancel, spoken).await
    }
}

/// [`TtsBackend::synthesize_batch`] as one [`TtsBackend::synthesize`] call a sentence.
pub(crate) async fn one_by_one<B: TtsBackend + ?Sized>(
    backend: &B,
    batch: &[Utterance],
    voice: &Voice,
    cancel: &CancellationToken,
    spoken: &(dyn Fn(usize) + Send + Sync),
) -> Result<(), BatchError> {
    for (index, utterance) in batch.iter().enumerate() {
        backend
            .synthesize(&utterance.text, voice, &utterance.out, cancel)
            .await
            .map_err(|error| BatchError { index, error })?;
        spoken(index);
    }
    Ok(())
}

/// How a job's sentences are handed to a backend ([`TtsBackend::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// [`TtsBackend::synthesize_batch`] calls at once.
    pub workers: usize,
    /// Sentences a call, at most.
    pub max_batch: usize,
}

/// One sentence of a batch: what to say, and where its WAV goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// The sentence (one line; the stage's sentences never hold a line break).
    pub text: String,
    /// The WAV file to write.
    pub out: PathBuf,
}

/// Why a batch stopped: the utterance being spoken, and what went wrong.
#[derive(Debug)]
pub struct BatchError {
    /// Its index in the batch.
    pub index: usize,
    /// What went wrong, typed as [`TtsBackend::synthesize`] types it.
    pub error: StageError,
}

/// Splits the sentences to speak, in order (given by their text lengths), into contiguous
/// batches for `workers` calls at once, none longer than `max` sentences: as few batches
/// as that allows but at least one per worker (while there are sentences enough), each
/// about the same length of text, so the workers finish together.
///
/// `max` 1 gives one batch per sentence, the stage's old one-call-a-sentence schedule.
pub fn plan_batches(lengths: &[usize], workers: usize, max: usize) -> Vec<Range<usize>> {
    let n = lengths.len();
    let max = max.max(1);
    let count = n.div_ceil(max).max(workers.max(1).min(n));
    // Every sentence weighs at least 1, so cuts fall between sentences even where the text
    // is short.
    let weight: Vec<usize> = lengths.iter().map(|l| (*l).max(1)).collect();
    let total: usize = weight.iter().sum();
    let mut batches = Vec::with_capacity(count);
    let (mut start, mut done) = (0, 0);
    for b in 0..count {
        let left = count - b; // batches still to make, this one included
        if left == 1 {
            batches.push(start..n);
            break;
        }
        // Leave at least one sentence and at most `max` per later batch.
        let lo = (start + 1).max(n.saturating_sub((left - 1).saturating_mul(max)));
        let hi = start.saturating_add(max).min(n - (left - 1));
        let target = total * (b + 1) / count;
        let mut end = lo;
        let mut weight_to_end = done + weight[start..lo].iter().sum::<usize>();
        while end < hi && weight_to_end < target {
            weight_to_end += weight[end];
            end += 1;
        }
        batches.push(start..end);
        (start, done) = (end, weight_to_end);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches are contiguous, in order, non-empty, and cover every sentence once.
    fn covers(batches: &[Range<usize>], n: usize) -> bool {
        let mut next = 0;
        for b in batches {
            if b.start != next || b.is_empty() {
                return false;
            }
            next = b.end;
        }
        next == n
    }

    #[test]
    fn one_sentence_a_batch_when_batches_are_no_cheaper() {
        let batches = plan_batches(&[10, 20, 30], 2, 1);
        assert_eq!(batches, [0..1, 1..2, 2..3]);
    }

    #[test]
    fn as_many_batches_as_workers_each_about_the_same_length_of_text() {
        // 100 + 100 | 50 + 50 + 50 + 50: equal halves by text, not by count.
        let batches = plan_batches(&[100, 100, 50, 50, 50, 50], 2, usize::MAX);
        assert_eq!(batches, [0..2, 2..6]);
        let one = plan_batches(&[5, 7, 9], 1, usize::MAX);
        assert_eq!(one, vec![0..3]);
        let lengths: Vec<usize> = (0..150).map(|i| 20 + (i * 37) % 90).collect();
        for workers in 1..=5 {
            let batches = plan_batches(&lengths, workers, usize::MAX);
            assert_eq!(batches.len(), workers);
            assert!(covers(&batches, lengths.len()), "{batches:?}");
            let texts: Vec<usize> = batches
                .iter()
                .map(|b| lengths[b.clone()].iter().sum())
                .collect();
            let (least, most) = (texts.iter().min(), texts.iter().max());
            // Off by at most one sentence (at most 110 characters) from even.
            assert!(
                most.zip(least).is_some_and(|(m, l)| m - l <= 2 * 110),
                "{workers} workers: {texts:?}"
            );
        }
    }

    #[test]
    fn a_cap_on_batch_size_makes_more_batches_and_workers_never_outnumber_sentences() {
        let lengths = [10; 10];
        let batches = plan_batches(&lengths, 2, 3);
        assert_eq!(batches.len(), 4);
        assert!(covers(&batches, 10), "{batches:?}");
        assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
        // One sentence cannot feed two workers; no sentence, no batch.
        assert_eq!(plan_batches(&[42], 4, usize::MAX), vec![0..1]);
        assert!(plan_batches(&[], 2, usize::MAX).is_empty());
        // Empty texts still count as sentences.
        assert_eq!(plan_batches(&[0, 0, 0, 0], 2, usize::MAX), [0..2, 2..4]);
        // One very long sentence first: the other worker takes all the rest.
        assert_eq!(plan_batches(&[1000, 1, 1, 1], 2, usize::MAX), [0..1, 1..4]);
    }
}
