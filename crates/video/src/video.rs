//! The real pipeline: plan → TTS → render → compose → publish.
//!
//! - **plan** parses and validates the storyboard (a failure is permanent: `invalid_input`);
//! - **tts** speaks each sentence of each beat of each segment into its own WAV (a version 1
//!   segment is one beat): the sentences not cached are handed to the backend in batches
//!   (one sentence each, or as many as it takes at once: Piper speaks a job's English
//!   sentences in one run), as many at once as it says, each kept as soon as it is spoken;
//!   then it starts joining and encoding the narration to AAC in the background —
//!   overlapped with render;
//! - **render** draws each picture of the film (one per beat that changes a slide) in Rust,
//!   in film order, and encodes it once — a head clip of its fade from the picture before
//!   (`frame.transition`, default `"fade"`) and the frames left over, and a one-second clip
//!   of the still to be repeated — into exactly as many frames as its beats' narration
//!   needs (at most as many ffmpeg processes as cores, across the whole job);
//! - **compose** joins every clip of the film without re-encoding (raw H.264, byte for byte)
//!   and muxes it with the AAC and the captions (a `mov_text` track, from the WebVTT made of
//!   the spoken sentences), in one ffmpeg run;
//! - **publish** uploads the MP4 and `captions.vtt` beside it under a per-attempt key.
//!
//! Scratch (clips being made, the joined stream, the final MP4) lives in the attempt's own
//! work dir, which the runner removes when the attempt ends. Finished speech and video clips
//! are kept by content in the process's [`SegmentCache`] (bounded, shared by all jobs)
//! and in the object store under `video-jobs/{job}/segments/{hash}.{ext}`, so a retried job
//! redoes only what is missing — on this instance or any other. A reused file is checked
//! first; a bad one is evicted and redone. Keeping a copy never fails the job: a store that
//! is briefly down costs only the resume. [`PipelineStats`] counts what was made and what
//! was reused; `video_worker_segment_cache_hits_total{source}` says from where.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use domain::Stage as StageName;
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use crate::cache::{SegmentCache, key};
use crate::render::slide::{Reveal, SlideFrame, SlideRenderer};
use crate::render::{
    Clip, ENCODING_SCHEME, Encoder, Geometry, ShotEncode, ShotPlan, VIDEO_ARGS, fade_frames,
    shot_plan,
};
use crate::storyboard::{Storyboard, Transition};
use crate::timeline::{beat_frames, pictures};
use crate::tts::{TtsBackend, Utterance, plan_batches};
use crate::{Pipeline, Published, Stage, StageContext, StageData, StageError};

/// What the real pipeline needs from outside.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// The speech engine.
    pub tts: Arc<dyn TtsBackend>,
    /// Where finished films go.
    pub store: Arc<dyn ObjectStore>,
    /// The `ffmpeg` binary.
    pub ffmpeg: PathBuf,
    /// Its version line (cache keys: another encoder makes other bytes).
    pub ffmpeg_version: String,
    /// ffmpeg processes at once, per job (default: the number of cores).
    pub max_encoders: usize,
    /// Finished segments on the local disk, shared by every job of the process.
    pub cache: SegmentCache,
}

impl VideoConfig {
    /// The number of cores, for [`VideoConfig::max_encoders`].
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(2, usize::from)
    }
}

/// Counts of segment work done and reused, for tests and logs.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Sentences spoken.
    pub speech_made: AtomicUsize,
    /// Sentences whose speech came from the cache.
    pub speech_reused: AtomicUsize,
    /// Segments whose video was (at least in part) encoded.
    pub videos_encoded: AtomicUsize,
    /// Segments whose video clips all came from the cache.
    pub videos_reused: AtomicUsize,
    /// Video clips encoded (a picture's head and one-second clips count as two).
    pub clips_encoded: AtomicUsize,
    /// Video clips taken from the cache.
    pub clips_reused: AtomicUsize,
    /// Of the reused speech, segments downloaded from the object store (a local miss).
    pub speech_from_store: AtomicUsize,
    /// Of the reused segment videos, those with a clip downloaded from the object store (a
    /// local miss).
    pub videos_from_store: AtomicUsize,
}

impl PipelineStats {
    fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shared by the stages of one pipeline (and so by every job it runs).
#[derive(Debug)]
struct Shared {
    config: VideoConfig,
    stats: Arc<PipelineStats>,
    /// ffmpeg slots: encodes and the AAC encode together never exceed this.
    slots: Arc<Semaphore>,
    /// Building a renderer parses the fonts; one is kept and lent out, or a new one made
    /// when it is busy.
    renderers: Mutex<Vec<SlideRenderer>>,
}

/// The real pipeline, reporting into `stats`.
pub fn video_pipeline(config: VideoConfig, stats: Arc<PipelineStats>) -> Pipeline {
    let slots = Arc::new(Semaphore::new(config.max_encoders.max(1)));
    let cache = config.cache.clone();
    let shared = Arc::new(Shared {
        config,
        stats,
        slots,
        renderers: Mutex::new(Vec::new()),
    });
    Pipeline::new(vec![
        Arc::new(Plan),
        Arc::new(Tts(shared.clone())),
        Arc::new(Render(shared.clone())),
        Arc::new(Compose(shared.clone())),
        Arc::new(Publish(shared)),
    ])
    .with_cache(Arc::new(cache))
}

fn io(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::retryable("io_failed", format!("{what}: {e}"))
}

/// How long one segment's store upload or download may take: past it the store counts as
/// down for that segment (the job goes on without it).
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a reused segment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Local,
    Store,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Store => "store",
        }
    }
}

/// Finished segments of one job: the local cache first, then the object store.
#[derive(Debug, Clone)]
struct Segments {
    cache: SegmentCache,
    store: Arc<dyn ObjectStore>,
    job: domain::JobId,
}

impl Segments {
    fn new(shared: &Shared, ctx: &StageContext) -> Self {
        Self {
            cache: shared.config.cache.clone(),
            store: shared.config.store.clone(),
            job: ctx.job_id,
        }
    }

    fn store_path(&self, key: &str, ext: &str) -> Option<StorePath> {
        StorePath::parse(format!("video-jobs/{}/segments/{key}.{ext}", self.job)).ok()
    }

    /// Puts a checked, finished segment for `key` at `dest`, if one exists anywhere.
    async fn find(&self, key: &str, ext: &str, dest: &Path) -> Option<Source> {
        let source = if self.cache.get(key, ext, dest).await.is_some() {
            Source::Local
        } else if self.fetch(key, ext, dest).await {
            if let Err(e) = self.cache.insert(dest, key, ext).await {
                tracing::warn!(error = %e, "a downloaded segment was not cached locally");
            }
            Source::Store
        } else {
            return None;
        };
        metrics::counter!("video_worker_segment_cache_hits_total", "source" => source.label())
            .increment(1);
        Some(source)
    }

    /// Downloads the store's copy to `dest`; `false` when there is none, the store does not
    /// answer, or the copy is not whole (then it is deleted, so the redo replaces it).
    async fn fetch(&self, key: &str, ext: &str, dest: &Path) -> bool {
        let Some(path) = self.store_path(key, ext) else {
            return false;
        };
        let got = tokio::time::timeout(STORE_TIMEOUT, async {
            self.store.get(&path).await?.bytes().await
        })
        .await;
        let bytes = match got {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(object_store::Error::NotFound { .. })) => return false,
            Ok(Err(e)) => {
                tracing::warn!(key = %path, error = %e, "segment download failed; redoing it");
                return false;
            }
            Err(_) => {
                tracing::warn!(key = %path, "segment download timed out; redoing it");
                return false;
            }
        };
        if let Err(e) = write_synced(dest, &bytes).await {
            tracing::warn!(error = %e, "a downloaded segment could not be written; redoing it");
            return false;
        }
        let (file, ext_owned) = (dest.to_owned(), ext.to_owned());
        let whole =
            tokio::task::spawn_blocking(move || crate::cache::looks_whole(&file, &ext_owned))
                .await
                .unwrap_or(false);
        if !whole {
            tracing::warn!(key = %path, "the store's copy of a segment is damaged; deleting it and redoing the segment");
            let _ = tokio::fs::remove_file(dest).await;
            if let Err(e) = self.store.delete(&path).await {
                tracing::warn!(key = %path, error = %e, "the damaged copy was not deleted");
            }
            return false;
        }
        true
    }

    /// Keeps a finished segment locally and in the store. Neither failure fails the job:
    /// the segment is made; only a later resume would miss it.
    /// Drops every copy of `key` — `dest`, the local cache's, the store's — so the segment
    /// is made again and the good copy replaces them.
    async fn discard(&self, key: &str, ext: &str, dest: &Path) {
        for local in [dest.to_path_buf(), self.cache.path(key, ext)] {
            if let Err(e) = tokio::fs::remove_file(&local).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %local.display(), error = %e, "a bad segment copy was not removed");
            }
        }
        if let Some(path) = self.store_path(key, ext)
            && let Ok(Err(e)) = tokio::time::timeout(STORE_TIMEOUT, self.store.delete(&path)).await
        {
            tracing::warn!(key = %path, error = %e, "a bad stored segment was not deleted");
        }
    }

    async fn keep(&self, file: &Path, key: &str, ext: &str) {
        if let Err(e) = self.cache.insert(file, key, ext).await {
            tracing::warn!(error = %e, "a finished segment was not cached locally");
        }
        let Some(path) = self.store_path(key, ext) else {
            return;
        };
        let put = async {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "local file",
                    source: Box::new(e),
                })?;
            self.store.put(&path, bytes.into()).await
        };
        match tokio::time::timeout(STORE_TIMEOUT, put).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(key = %path, error = %e, "segment upload failed; going on without it");
            }
            Err(_) => tracing::warn!(key = %path, "segment upload timed out; going on without it"),
        }
    }
}

/// Writes `bytes` to `path` and fsyncs it.
async fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(bytes).await?;
    file.sync_all().await
}

/// The attempt's directory for segment files.
fn scratch(ctx: &StageContext) -> PathBuf {
    ctx.work_dir.join("segments")
}

fn board(data: &StageData) -> Result<&Storyboard, StageError> {
    data.get::<Storyboard>().ok_or_else(|| {
        StageError::permanent("internal", "no storyboard: the plan stage did not run")
    })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Validates the storyboard.
#[derive(Debug)]
struct Plan;

#[async_trait]
impl Stage for Plan {
    fn stage(&self) -> StageName {
        StageName::Plan
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        // Validation lays out every slide: kept off the async workers, which heartbeat.
        let input = ctx.input.clone();
        let board = tokio::task::spawn_blocking(move || Storyboard::from_json(&input))
            .await
            .map_err(|e| StageError::retryable("internal", format!("validation task: {e}")))?
            .map_err(|e| StageError::permanent("invalid_input", e.to_string()))?;
        for dir in [ctx.work_dir.join("tmp"), scratch(ctx)] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io("work dir", e))?;
        }
        data.insert(board);
        Ok(())
    }
}

/// The spoken narration: one WAV per sentence, in film order.
#[derive(Debug, Clone)]
struct Speech {
    wavs: Vec<PathBuf>,
    samples: Vec<u64>,
    /// Each sentence's text, for the captions.
    texts: Vec<String>,
    /// Per segment, per beat: its sentences' indices into `wavs`.
    beats: Vec<Vec<std::ops::Range<usize>>>,
    sample_rate: u32,
    key: String,
}

impl Speech {
    /// Samples per beat, per segment.
    fn beat_samples(&self) -> Vec<Vec<u64>> {
        self.beats
            .iter()
            .map(|beats| {
                beats
                    .iter()
                    .map(|range| self.samples[range.clone()].iter().sum())
                    .collect()
            })
            .collect()
    }

    /// The captions of the whole narration.
    fn captions(&self) -> String {
        let spoken: Vec<(String, u64)> = self
            .texts
            .iter()
            .cloned()
            .zip(self.samples.iter().copied())
            .collect();
        crate::captions::to_vtt(&crate::captions::cues(&spoken), self.sample_rate)
    }
}

/// The narration's AAC, being encoded in the background.
#[derive(Debug)]
struct PendingAudio(AbortOnDropHandle<Result<PathBuf, StageError>>);

/// Speech per sentence: each beat's narration split into sentences, each spoken into a file
/// of its own, so every beat and every caption starts at an exact sample. Cached sentences
/// are reused; the rest go to the backend in the batches [`plan_batches`] makes. A failure
/// names the segment and the sentence.
#[derive(Debug)]
struct Tts(Arc<Shared>);

/// A speech file's samples and rate, if it is what every backend promises
/// ([`crate::tts::wav::check_spec`]).
fn wav_info(path: &Path) -> Result<(u64, u32), StageError> {
    let bad = |e: &dyn std::fmt::Display| {
        StageError::retryable("tts_bad_audio", format!("{}: {e}", path.display()))
    };
    let reader = hound::WavReader::open(path).map_err(|e| bad(&e))?;
    let spec = reader.spec();
    crate::tts::wav::check_spec(spec).map_err(|e| bad(&e))?;
    Ok((u64::from(reader.duration()), spec.sample_rate))
}

/// Store (and local cache) lookups or uploads of sentences at once.
const STORE_CALLS: usize = 4;

/// A sentence spoken before, put at `path` from this instance's cache or the store, and
/// checked: its samples and rate. A copy the decoder refuses is evicted and the sentence
/// spoken again, never retried into `attempts_exhausted`.
async fn reuse_speech(
    segments: &Segments,
    k: &str,
    path: &Path,
    stats: &PipelineStats,
) -> Option<(u64, u32)> {
    let source = segments.find(k, "wav", path).await?;
    match wav_info(path) {
        Ok(info) => {
            PipelineStats::bump(&stats.speech_reused);
            if source == Source::Store {
                PipelineStats::bump(&stats.speech_from_store);
            }
            Some(info)
        }
        Err(error) => {
            tracing::warn!(key = k, %error, "a reused narration does not decode; evicted, speaking it again");
            segments.discard(k, "wav", path).await;
            None
        }
    }
}

/// A sentence just spoken to `path`, checked and kept: its samples and rate.
async fn keep_speech(segments: &Segments, k: &str, path: &Path) -> Result<(u64, u32), StageError> {
    match wav_info(path) {
        Ok(info) => {
            segments.keep(path, k, "wav").await;
            Ok(info)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(path).await;
            Err(e)
        }
    }
}

/// `e`, saying which segment's sentence it happened on (canceling stays canceling).
fn in_segment(e: StageError, segment: usize, sentence: &str) -> StageError {
    const SHOWN: usize = 60;
    let shown: String = sentence.chars().take(SHOWN).collect();
    let ellipsis = if sentence.chars().nth(SHOWN).is_some() {
        "…"
    } else {
        ""
    };
    let say = |error: domain::JobError| {
        domain::JobError::new(
            error.code,
            format!(
                "segments[{segment}], speaking \"{shown}{ellipsis}\": {}",
                error.message
            ),
        )
    };
    match e {
        StageError::Retryable(error) => StageError::Retryable(say(error)),
        StageError::Permanent(error) => StageError::Permanent(say(error)),
        StageError::Canceled => StageError::Canceled,
    }
}

#[async_trait]
impl Stage for Tts {
    fn stage(&self) -> StageName {
        StageName::Tts
    }

    fn weight(&self) -> u32 {
        25
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        let board = board(data)?.clone();
        let shared = &self.0;
        let tts = &shared.config.tts;
        let fingerprint = tts.fingerprint(&board.voice);
        let segments = Segments::new(shared, ctx);
        let dir = scratch(ctx);
        let total = count(board.segments.len());
        // Every sentence of every beat, in film order, with its segment.
        let mut texts = Vec::new();
        let mut owner = Vec::new();
        let mut beats = Vec::with_capacity(board.segments.len());
        for (i, segment) in board.segments.iter().enumerate() {
            let mut ranges = Vec::new();
            for beat in segment.spoken_beats() {
                let start = texts.len();
                for sentence in crate::captions::sentences(&beat.narration) {
                    texts.push(sentence);
                    owner.push(i);
                }
                ranges.push(start..texts.len());
            }
            beats.push(ranges);
        }
        let keys: Vec<String> = texts
            .iter()
            .map(|t| key(&[b"tts", fingerprint.as_bytes(), t.as_bytes()]))
            .collect();
        let mut left = vec![0usize; board.segments.len()];
        for &i in &owner {
            left[i] += 1;
        }
        let n = texts.len();
        let wavs: Vec<PathBuf> = (0..n)
            .map(|u| dir.join(format!("speech-{u}.wav")))
            .collect();
        let mut samples = vec![0; n];
        let mut rates = Vec::with_capacity(n);
        // A sentence is done: its length noted, and its segment counted if it was the last.
        let mut done = |u: usize, (len, rate): (u64, u32)| -> Result<(), StageError> {
            samples[u] = len;
            rates.push(rate);
            let i = owner[u];
            left[i] -= 1;
            if left[i] == 0 {
                ctx.segment_done(StageName::Tts, count(i), total)?;
            }
            Ok(())
        };
        // Sentences spoken before (this instance's cache, or the store) are reused, never
        // spoken again.
        let lookups = (0..n).map(|u| {
            let segments = segments.clone();
            let (k, path) = (keys[u].clone(), wavs[u].clone());
            async move { (u, reuse_speech(&segments, &k, &path, &shared.stats).await) }
        });
        let mut found = futures_util::stream::iter(lookups).buffer_unordered(STORE_CALLS);
        let mut missing = Vec::new();
        while let Some((u, reused)) = found.next().await {
            match reused {
                Some(info) => done(u, info)?,
                None => missing.push(u),
            }
        }
        drop(found);
        missing.sort_unstable();
        // The rest in batches (one sentence each unless the backend's calls have a fixed
        // cost worth sharing), as many at once as the backend's schedule says. Each
        // sentence is checked, kept and counted as soon as the backend reports it, while
        // the others are spoken.
        let schedule = tts.schedule(&board.voice);
        let workers = schedule.workers.max(1);
        let lengths: Vec<usize> = missing.iter().map(|&u| texts[u].len()).collect();
        let (report, mut reported) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let calls: Vec<_> = plan_batches(&lengths, workers, schedule.max_batch)
            .into_iter()
            .map(|range| {
                let ids = missing[range].to_vec();
                let batch: Vec<Utterance> = ids
                    .iter()
                    .map(|&u| Utterance {
                        text: texts[u].clone(),
                        out: wavs[u].clone(),
                    })
                    .collect();
                let report = report.clone();
                let voice = board.voice.clone();
                async move {
                    let spoken = |j: usize| {
                        if let Some(&u) = ids.get(j) {
                            let _ = report.send(u);
                        }
                    };
                    tts.synthesize_batch(&batch, &voice, ctx.cancel_token(), &spoken)
                        .await
                        .map_err(|e| {
                            let u = ids.get(e.index).or(ids.last()).copied().unwrap_or(0);
                            (u, e.error)
                        })
                }
            })
            .collect();
        // The channel closes when the last batch ends.
        drop(report);
        // The futures borrow what the speech is made of: done with them before it is.
        let outcome: Result<(), (usize, StageError)> = {
            // Its batches (and their ends of the channel) are dropped when it returns.
            let speak = async {
                let mut running = futures_util::stream::iter(calls).buffer_unordered(workers);
                while let Some(result) = running.next().await {
                    result?;
                }
                Ok(())
            };
            let keep = async {
                let mut kept = futures_util::stream::poll_fn(|cx| reported.poll_recv(cx))
                    .map(|u| {
                        let segments = segments.clone();
                        let (k, path) = (keys[u].clone(), wavs[u].clone());
                        async move { (u, keep_speech(&segments, &k, &path).await) }
                    })
                    .buffer_unordered(STORE_CALLS);
                while let Some((u, info)) = kept.next().await {
                    let info = info.map_err(|e| (u, e))?;
                    PipelineStats::bump(&shared.stats.speech_made);
                    done(u, info).map_err(|e| (u, e))?;
                }
                Ok(())
            };
            // A failed batch ends the speaking, but what was reported before it is still kept,
            // so a retry does not speak it again; a failure to keep ends the speaking.
            tokio::pin!(speak, keep);
            tokio::select! {
                spoke = &mut speak => {
                    let kept = (&mut keep).await;
                    spoke.and(kept)
                }
                kept = &mut keep => match kept {
                    Ok(()) => (&mut speak).await,
                    Err(e) => Err(e),
                },
            }
        };
        outcome.map_err(|(u, e)| in_segment(e, owner[u], &texts[u]))?;
        let sample_rate = rates.first().copied().unwrap_or(0);
        if rates.iter().any(|r| *r != sample_rate) {
            return Err(StageError::retryable(
                "tts_bad_audio",
                "segments have different sample rates",
            ));
        }
        let speech = Speech {
            key: key(&keys.iter().map(String::as_bytes).collect::<Vec<_>>()),
            wavs,
            samples,
            texts,
            beats,
            sample_rate,
        };
        // The AAC encode overlaps the render stage; compose waits for it.
        let audio = tokio::spawn(encode_narration(
            shared.clone(),
            speech.clone(),
            ctx.work_dir.join("tmp"),
            ctx.cancel_token().clone(),
        ));
        data.insert(PendingAudio(AbortOnDropHandle::new(audio)));
        data.insert(speech);
        Ok(())
    }
}

async fn encode_narration(
    shared: Arc<Shared>,
    speech: Speech,
    tmp: PathBuf,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<PathBuf, StageError> {
    let k = key(&[
        b"aac",
        speech.key.as_bytes(),
        shared.config.ffmpeg_version.as_bytes(),
    ]);
    // Local only: the AAC is one cheap encode of what the store already holds as WAVs.
    let cache = &shared.config.cache;
    let aac = tmp.join("narration.m4a");
    if cache.get(&k, "m4a", &aac).await.is_some() {
        return Ok(aac);
    }
    let joined = tmp.join("narration.wav");
    crate::compose::join_wavs(speech.wavs.clone(), joined.clone()).await?;
    crate::compose::encode_aac(
        &shared.config.ffmpeg,
        [&joined, &aac],
        &cancel,
        &shared.slots,
    )
    .await?;
    let _ = tokio::fs::remove_file(&joined).await;
    if let Err(e) = cache.insert(&aac, &k, "m4a").await {
        tracing::warn!(error = %e, "the narration was not cached locally");
    }
    Ok(aac)
}

/// The film's video clips, in order, each with the times it is shown.
#[derive(Debug)]
struct FilmClips {
    clips: Vec<Clip>,
    /// Frames the clips must hold together: what the shots were planned to show.
    frames: u64,
}

/// Slide video: every picture of the film drawn and encoded once, fading in from the one
/// before.
#[derive(Debug)]
struct Render(Arc<Shared>);

/// One picture to draw: a slide as its beat shows it.
#[derive(Debug)]
struct SlideJob {
    title: String,
    slide: crate::storyboard::Slide,
    reveal: Reveal,
    /// Which slide of how many, for the footer.
    index: usize,
    total: usize,
    width: u32,
    height: u32,
}

impl Render {
    /// Draws one picture on a blocking thread with a pooled renderer.
    async fn draw(&self, job: SlideJob) -> Result<Vec<u8>, StageError> {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let taken = shared
                .renderers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut renderer = taken.unwrap_or_default();
            let rgba = renderer.draw(&SlideFrame {
                title: &job.title,
                slide: &job.slide,
                index: job.index,
                total: job.total,
                width: job.width,
                height: job.height,
                reveal: job.reveal,
            });
            shared
                .renderers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(renderer);
            rgba
        })
        .await
        .map_err(|e| StageError::retryable("internal", format!("slide drawing failed: {e}")))
    }
}

/// A clip of a shot: its cache key, its scratch file, and whether a finished copy was
/// found.
#[derive(Debug, Clone)]
struct ClipSlot {
    key: String,
    file: PathBuf,
    found: Option<Source>,
}

/// A shot of the film as the render stage handles it.
#[derive(Debug, Clone)]
struct ShotWork {
    shot: crate::timeline::Shot,
    plan: ShotPlan,
    head: Option<ClipSlot>,
    second: Option<ClipSlot>,
}

impl ShotWork {
    fn slots(&self) -> impl Iterator<Item = &ClipSlot> {
        self.head.iter().chain(&self.second)
    }

    /// Whether a clip of it must be encoded.
    fn missing(&self) -> bool {
        self.slots().any(|c| c.found.is_none())
    }

    /// Whether its head must be encoded with a fade (so the picture before is needed).
    fn fades_in(&self) -> bool {
        self.plan.fade > 0 && self.head.as_ref().is_some_and(|c| c.found.is_none())
    }
}

/// How one segment's shots went, for its progress event and the stats.
#[derive(Debug, Default, Clone, Copy)]
struct SegmentTally {
    left: usize,
    encoded: bool,
    from_store: bool,
}

/// Every segment's tally, shared with the tasks that keep clips: a shot is counted in the
/// same step as its last clip is kept (no await between), so a job stopped at any point
/// has counted exactly the segments whose clips a retry will find.
#[derive(Debug, Clone)]
struct Tallies {
    /// A plain mutex: held for a few assignments, never across an await.
    segments: Arc<Mutex<Vec<SegmentTally>>>,
    stats: Arc<PipelineStats>,
}

impl Tallies {
    /// Counts a finished shot of `segment`; true when it was the segment's last.
    fn shot_done(&self, segment: usize, encoded: bool, from_store: bool) -> bool {
        let mut all = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = all.get_mut(segment) else {
            return false;
        };
        t.left = t.left.saturating_sub(1);
        t.encoded |= encoded;
        t.from_store |= from_store;
        if t.left > 0 {
            return false;
        }
        if t.encoded {
            PipelineStats::bump(&self.stats.videos_encoded);
        } else {
            PipelineStats::bump(&self.stats.videos_reused);
            if t.from_store {
                PipelineStats::bump(&self.stats.videos_from_store);
            }
        }
        true
    }
}

#[async_trait]
impl Stage for Render {
    fn stage(&self) -> StageName {
        StageName::Render
    }

    fn weight(&self) -> u32 {
        50
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        let board = board(data)?.clone();
        let speech = data
            .get::<Speech>()
            .ok_or_else(|| {
                StageError::permanent("internal", "no speech: the tts stage did not run")
            })?
            .clone();
        let shared = &self.0;
        let frame = board.frame;
        let geometry = Geometry {
            width: frame.width,
            height: frame.height,
            fps: frame.fps,
        };
        let frames = beat_frames(&speech.beat_samples(), speech.sample_rate, frame.fps);
        let per_segment: Vec<Vec<(Reveal, u64)>> = board
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| pictures(&s.reveals(), frames.get(i).map_or(&[], Vec::as_slice)))
            .collect();
        let fade = match frame.transition {
            Transition::Cut => 0,
            Transition::Fade | Transition::Unknown => fade_frames(frame.fps),
        };
        let shots = crate::timeline::shots(&per_segment, fade);
        let segments = Segments::new(shared, ctx);
        let dir = scratch(ctx);
        let total = board.segments.len();
        let encoder_tag = [
            VIDEO_ARGS.join(" "),
            ENCODING_SCHEME.to_owned(),
            shared.config.ffmpeg_version.clone(),
        ]
        .join("\n");
        // What each picture is: everything its pixels depend on.
        let picture_keys: Vec<String> = shots
            .iter()
            .map(|shot| {
                let segment = &board.segments[shot.segment];
                key(&[
                    b"picture",
                    &serde_json::to_vec(&segment.slide).unwrap_or_default(),
                    board.title.as_bytes(),
                    format!(
                        "{}/{total} {}x{} {:?}",
                        shot.segment, frame.width, frame.height, shot.reveal
                    )
                    .as_bytes(),
                    SlideRenderer::fingerprint().as_bytes(),
                ])
            })
            .collect();
        // Each shot's clips, keyed by what makes their bytes: the one-second clip by its
        // picture alone (reused whatever the timing), the head also by its frames and, when
        // it fades, the picture it fades from.
        let mut work: Vec<ShotWork> = shots
            .iter()
            .enumerate()
            .map(|(n, shot)| {
                let plan = shot_plan(shot.frames, shot.fade, frame.fps);
                let picture = picture_keys[n].as_bytes();
                // The picture on screen before: the last earlier shot that shows at all.
                let shown_before = shots[..n].iter().rposition(|s| s.frames > 0);
                let from = match shown_before {
                    Some(p) if plan.fade > 0 => picture_keys[p].as_bytes(),
                    _ => b"",
                };
                let head = (plan.head > 0).then(|| ClipSlot {
                    key: key(&[
                        b"head",
                        picture,
                        from,
                        format!("fade={} head={} fps={}", plan.fade, plan.head, frame.fps)
                            .as_bytes(),
                        encoder_tag.as_bytes(),
                    ]),
                    file: dir.join(format!("clip-{n}-head.h264")),
                    found: None,
                });
                let second = (plan.seconds > 0).then(|| ClipSlot {
                    key: key(&[
                        b"second",
                        picture,
                        format!("fps={}", frame.fps).as_bytes(),
                        encoder_tag.as_bytes(),
                    ]),
                    file: dir.join(format!("clip-{n}-second.h264")),
                    found: None,
                });
                ShotWork {
                    shot: *shot,
                    plan,
                    head,
                    second,
                }
            })
            .collect();
        // Finished clips, looked up together (a store lookup is a round trip).
        let lookups: Vec<(usize, bool, ClipSlot)> = work
            .iter()
            .enumerate()
            .flat_map(|(n, w)| {
                let head = w.head.clone().map(|c| (n, true, c));
                head.into_iter()
                    .chain(w.second.clone().map(|c| (n, false, c)))
            })
            .collect();
        let mut found = futures_util::stream::iter(lookups)
            .map(|(n, is_head, slot)| {
                let segments = segments.clone();
                async move {
                    let source = segments.find(&slot.key, "h264", &slot.file).await;
                    (n, is_head, source)
                }
            })
            .buffer_unordered(8);
        let cancel = ctx.cancel_token().clone();
        loop {
            // A lookup may wait on the store for its timeout: a cancel does not.
            let next = tokio::select! {
                next = found.next() => next,
                () = cancel.cancelled() => return Err(StageError::Canceled),
            };
            let Some((n, is_head, source)) = next else {
                break;
            };
            let slot = if is_head {
                work[n].head.as_mut()
            } else {
                work[n].second.as_mut()
            };
            if let Some(slot) = slot {
                slot.found = source;
            }
            if source.is_some() {
                PipelineStats::bump(&shared.stats.clips_reused);
            }
        }
        drop(found);

        let mut tally = vec![SegmentTally::default(); total];
        for w in &work {
            tally[w.shot.segment].left += 1;
        }
        let tallies = Tallies {
            segments: Arc::new(Mutex::new(tally)),
            stats: shared.stats.clone(),
        };
        let from_store = |w: &ShotWork| w.slots().any(|c| c.found == Some(Source::Store));
        let report =
            |segment: usize| ctx.segment_done(StageName::Render, count(segment), count(total));

        // In film order: each picture drawn once, when it or the next shot's fade needs it,
        // and its missing clips encoded in a task of their own, at most a few at once
        // (ffmpeg itself is bounded by the job's slots).
        let encoder = Encoder::new(&shared.config.ffmpeg, shared.slots.clone());
        // One shot more than there are encoder slots: its frames are blended while the
        // others encode. Keeping finished clips (fsyncs, uploads) is a task of its own, so
        // waiting on storage never holds an encoder back.
        let in_flight = shared.config.max_encoders.max(1) + 1;
        let mut tasks: tokio::task::JoinSet<Result<Done, StageError>> = tokio::task::JoinSet::new();
        let mut encoding = 0usize;
        let finish = |tasks: &mut tokio::task::JoinSet<Result<Done, StageError>>,
                      encoding: &mut usize,
                      joined: Result<Result<Done, StageError>, tokio::task::JoinError>|
         -> Result<(), StageError> {
            let done = joined.map_err(|e| {
                StageError::retryable("internal", format!("an encode task failed: {e}"))
            })??;
            match done {
                Done::Encoded(n) => {
                    *encoding -= 1;
                    let slots: Vec<ClipSlot> = work[n]
                        .slots()
                        .filter(|c| c.found.is_none())
                        .cloned()
                        .collect();
                    let (segments, tallies) = (segments.clone(), tallies.clone());
                    let (segment, stored) = (work[n].shot.segment, from_store(&work[n]));
                    tasks.spawn(async move {
                        for slot in slots {
                            segments.keep(&slot.file, &slot.key, "h264").await;
                            PipelineStats::bump(&tallies.stats.clips_encoded);
                        }
                        let last = tallies.shot_done(segment, true, stored);
                        Ok(Done::Kept { segment, last })
                    });
                    Ok(())
                }
                Done::Kept { segment, last } => {
                    if last {
                        report(segment)?;
                    }
                    Ok(())
                }
            }
        };
        let mut encodes: Vec<tokio::task::AbortHandle> = Vec::new();
        let rendered = async {
            let mut previous: Option<Arc<Vec<u8>>> = None;
            for n in 0..work.len() {
                let w = work[n].clone();
                if w.plan.frames() == 0 {
                    // Never on screen (its speech rounds to no frame): nothing to draw or
                    // encode, and the next shot fades from the picture before it.
                    if tallies.shot_done(w.shot.segment, false, false) {
                        report(w.shot.segment)?;
                    }
                    continue;
                }
                let next_fades = work[n + 1..]
                    .iter()
                    .find(|next| next.plan.frames() > 0)
                    .is_some_and(ShotWork::fades_in);
                let picture = if w.missing() || next_fades {
                    let segment = &board.segments[w.shot.segment];
                    let rgba = self
                        .draw(SlideJob {
                            title: board.title.clone(),
                            slide: segment.slide.clone(),
                            reveal: w.shot.reveal,
                            index: w.shot.segment,
                            total,
                            width: frame.width,
                            height: frame.height,
                        })
                        .await?;
                    Some(Arc::new(rgba))
                } else {
                    None
                };
                match &picture {
                    Some(rgba) if w.missing() => {
                        while encoding >= in_flight {
                            if let Some(joined) = tasks.join_next().await {
                                finish(&mut tasks, &mut encoding, joined)?;
                            }
                        }
                        let from = if w.fades_in() { previous.clone() } else { None };
                        let job = EncodeTask {
                            n,
                            work: w,
                            picture: rgba.clone(),
                            from,
                            geometry,
                            encoder: encoder.clone(),
                            cancel: ctx.cancel_token().clone(),
                        };
                        encoding += 1;
                        encodes.push(tasks.spawn(job.run()));
                    }
                    _ => {
                        if tallies.shot_done(w.shot.segment, false, from_store(&w)) {
                            report(w.shot.segment)?;
                        }
                    }
                }
                previous = picture;
            }
            while let Some(joined) = tasks.join_next().await {
                finish(&mut tasks, &mut encoding, joined)?;
            }
            Ok::<(), StageError>(())
        };
        // Waiting on drawing, encodes or keeping clips, a cancel is seen at once (and takes
        // the same way out as a failure: encodes stopped, kept clips let finish briefly).
        let rendered = tokio::select! {
            rendered = rendered => rendered,
            () = cancel.cancelled() => Err(StageError::Canceled),
        };
        if let Err(e) = rendered {
            // Encodes stop; clips already being kept are let finish (briefly), so what a
            // retry finds stored is what this attempt counted.
            for handle in &encodes {
                handle.abort();
            }
            let drain = async { while tasks.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
            return Err(e);
        }
        let clips = work
            .iter()
            .flat_map(|w| {
                let head = w.head.as_ref().map(|c| Clip {
                    file: c.file.clone(),
                    times: 1,
                });
                let second = w.second.as_ref().map(|c| Clip {
                    file: c.file.clone(),
                    times: w.plan.seconds,
                });
                head.into_iter().chain(second)
            })
            .collect();
        let frames = work.iter().map(|w| w.plan.frames()).sum();
        data.insert(FilmClips { clips, frames });
        Ok(())
    }
}

/// What a render task finished.
#[derive(Debug)]
enum Done {
    /// Shot `n`'s missing clips are made (in scratch).
    Encoded(usize),
    /// And kept in the cache and the store; `last`: its segment's last shot.
    Kept { segment: usize, last: bool },
}

/// The missing clips of one shot, encoded.
struct EncodeTask {
    n: usize,
    work: ShotWork,
    picture: Arc<Vec<u8>>,
    from: Option<Arc<Vec<u8>>>,
    geometry: Geometry,
    encoder: Encoder,
    cancel: tokio_util::sync::CancellationToken,
}

impl EncodeTask {
    async fn run(self) -> Result<Done, StageError> {
        let w = &self.work;
        let wanted = |slot: &Option<ClipSlot>| {
            slot.as_ref()
                .filter(|c| c.found.is_none())
                .map(|c| c.file.clone())
        };
        let (head, second) = (wanted(&w.head), wanted(&w.second));
        let job = ShotEncode {
            picture: &self.picture,
            from: self.from.as_deref().map(Vec::as_slice),
            plan: w.plan,
            geometry: self.geometry,
            head: head.as_deref(),
            second: second.as_deref(),
        };
        if let Err(e) = self.encoder.encode_shot(&job, &self.cancel).await {
            for file in head.iter().chain(&second) {
                let _ = tokio::fs::remove_file(file).await;
            }
            return Err(e);
        }
        Ok(Done::Encoded(self.n))
    }
}

/// The final film and its captions, before upload.
#[derive(Debug)]
struct Film {
    film: PathBuf,
    captions: PathBuf,
}

/// One MP4.
#[derive(Debug)]
struct Compose(Arc<Shared>);

#[async_trait]
impl Stage for Compose {
    fn stage(&self) -> StageName {
        StageName::Compose
    }

    fn weight(&self) -> u32 {
        15
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        let ffmpeg = &self.0.config.ffmpeg;
        let clips = data
            .take::<FilmClips>()
            .ok_or_else(|| StageError::permanent("internal", "no video clips"))?;
        let PendingAudio(audio) = data
            .take::<PendingAudio>()
            .ok_or_else(|| StageError::permanent("internal", "no narration audio"))?;
        let tmp = ctx.work_dir.join("tmp");
        let audio = tokio::select! {
            joined = audio => joined.map_err(|e| StageError::retryable("internal", format!("audio task: {e}")))??,
            () = ctx.cancel_token().cancelled() => return Err(StageError::Canceled),
        };
        let speech = data
            .get::<Speech>()
            .ok_or_else(|| StageError::permanent("internal", "no speech"))?;
        let captions = tmp.join("captions.vtt");
        tokio::fs::write(&captions, speech.captions())
            .await
            .map_err(|e| io("captions file", e))?;
        let board = board(data)?;
        let language = crate::captions::iso639_2(&board.voice.language);
        let film = tmp.join("final.mp4");
        let job = crate::compose::FilmMux {
            ffmpeg,
            clips: &clips.clips,
            frames: clips.frames,
            fps: board.frame.fps,
            audio: &audio,
            stream: &tmp.join("video.h264"),
            captions: Some(crate::compose::FilmCaptions {
                vtt: &captions,
                language,
            }),
            out: &film,
        };
        crate::compose::mux_film(&job, ctx.cancel_token()).await?;
        data.insert(Film { film, captions });
        Ok(())
    }
}

/// Upload.
#[derive(Debug)]
struct Publish(Arc<Shared>);

#[async_trait]
impl Stage for Publish {
    fn stage(&self) -> StageName {
        StageName::Publish
    }

    fn weight(&self) -> u32 {
        9
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        let film = data
            .take::<Film>()
            .ok_or_else(|| StageError::permanent("internal", "no film to publish"))?;
        let artifact_key = format!("video-jobs/{}/attempts/{}/final.mp4", ctx.job_id, ctx.epoch);
        let store = &self.0.config.store;
        let captions_key = crate::publish::captions_key(&artifact_key);
        crate::publish::upload(store, &captions_key, &film.captions, ctx.cancel_token()).await?;
        crate::publish::upload(store, &artifact_key, &film.film, ctx.cancel_token()).await?;
        data.insert(Published { artifact_key });
        Ok(())
    }
}
