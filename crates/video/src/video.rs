//! The real pipeline: plan → TTS → render → compose → publish.
//!
//! - **plan** parses and validates the storyboard (a failure is permanent: `invalid_input`);
//! - **tts** speaks each sentence of each beat of each segment into its own WAV (a version 1
//!   segment is one beat): the sentences not cached are handed to the backend in batches
//!   (one sentence each, or as many as it takes at once: Piper speaks a job's English
//!   sentences in one run), as many at once as it says, each kept as soon as it is spoken;
//!   then it starts joining and encoding the narration to AAC in the background —
//!   overlapped with render;
//! - **render** draws each picture of a slide (one per beat that changes it) in Rust and
//!   encodes it once into a one-second clip and a clip of the frames left, joined by stream
//!   copy into exactly as many frames as its beats' narration needs (at most as many ffmpeg
//!   processes as cores, across the whole job);
//! - **compose** concatenates the segment videos without re-encoding and muxes the AAC and
//!   the captions (a `mov_text` track, from the WebVTT made of the spoken sentences), in one
//!   ffmpeg run;
//! - **publish** uploads the MP4 and `captions.vtt` beside it under a per-attempt key.
//!
//! Scratch (segment files being made, concat lists, the final MP4) lives in the attempt's
//! own work dir, which the runner removes when the attempt ends. Finished speech and segment
//! videos are kept by content in the process's [`SegmentCache`] (bounded, shared by all jobs)
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
use crate::render::{Beat, ENCODING_SCHEME, Encoder, Geometry, SegmentEncode, VIDEO_ARGS};
use crate::storyboard::Storyboard;
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
    /// Segment videos encoded.
    pub videos_encoded: AtomicUsize,
    /// Segment videos taken from the cache.
    pub videos_reused: AtomicUsize,
    /// Of the reused speech, segments downloaded from the object store (a local miss).
    pub speech_from_store: AtomicUsize,
    /// Of the reused videos, segments downloaded from the object store (a local miss).
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

/// The segment videos, in order.
#[derive(Debug)]
struct SegmentVideos(Vec<PathBuf>);

/// Slide video per segment.
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
        let frames = beat_frames(&speech.beat_samples(), speech.sample_rate, frame.fps);
        let segments = Segments::new(shared, ctx);
        let dir = scratch(ctx);
        let encoder = Encoder::new(&shared.config.ffmpeg, shared.slots.clone());
        let total = board.segments.len();
        let items: Vec<(usize, crate::storyboard::Segment)> =
            board.segments.iter().cloned().enumerate().collect();
        let jobs = items.into_iter().map(|(i, segment)| {
            let segments = segments.clone();
            let path = dir.join(format!("video-{i}.mp4"));
            let encoder = encoder.clone();
            let title = board.title.clone();
            let beat_frames = frames.get(i).cloned().unwrap_or_default();
            async move {
                let pictures = pictures(&segment.reveals(), &beat_frames);
                let n: u64 = pictures.iter().map(|(_, n)| n).sum();
                let slide_json = serde_json::to_vec(&segment.slide).unwrap_or_default();
                // A segment of one whole picture is keyed as before beats existed (its frames and the
                // encoding scheme still are in the key).
                let shown = match pictures.as_slice() {
                    [(reveal, _)] if *reveal == Reveal::all() => String::new(),
                    _ => format!(" pictures={pictures:?}"),
                };
                let k = key(&[
                    b"video",
                    &slide_json,
                    title.as_bytes(),
                    format!(
                        "{i}/{total} {}x{}@{} n={n}{shown}",
                        frame.width, frame.height, frame.fps
                    )
                    .as_bytes(),
                    SlideRenderer::fingerprint().as_bytes(),
                    VIDEO_ARGS.join(" ").as_bytes(),
                    ENCODING_SCHEME.as_bytes(),
                    shared.config.ffmpeg_version.as_bytes(),
                ]);
                if let Some(source) = segments.find(&k, "mp4", &path).await {
                    PipelineStats::bump(&shared.stats.videos_reused);
                    if source == Source::Store {
                        PipelineStats::bump(&shared.stats.videos_from_store);
                    }
                    return Ok((i, path));
                }
                // Each picture drawn, then encoded once for its frames and joined by stream
                // copy into the segment.
                let tmp = ctx.work_dir.join("tmp");
                let mut stills = Vec::with_capacity(pictures.len());
                let mut drawn = Ok(());
                for (j, (reveal, _)) in pictures.iter().enumerate() {
                    let picture = SlideJob {
                        title: title.clone(),
                        slide: segment.slide.clone(),
                        reveal: *reveal,
                        index: i,
                        total,
                        width: frame.width,
                        height: frame.height,
                    };
                    let still = tmp.join(format!("slide-{i}-{j}.rgba"));
                    drawn = match self.draw(picture).await {
                        Ok(rgba) => tokio::fs::write(&still, rgba)
                            .await
                            .map_err(|e| io("slide file", e)),
                        Err(e) => Err(e),
                    };
                    stills.push(still);
                    if drawn.is_err() {
                        break;
                    }
                }
                let encoded = match drawn {
                    Ok(()) => {
                        let beats: Vec<Beat<'_>> = stills
                            .iter()
                            .zip(&pictures)
                            .map(|(still, (_, frames))| Beat {
                                rgba: still,
                                frames: *frames,
                            })
                            .collect();
                        let job = SegmentEncode {
                            beats: &beats,
                            geometry: Geometry {
                                width: frame.width,
                                height: frame.height,
                                fps: frame.fps,
                            },
                            scratch: &tmp,
                            out: &path,
                        };
                        encoder.encode_segment(&job, ctx.cancel_token()).await
                    }
                    Err(e) => Err(e),
                };
                for still in &stills {
                    let _ = tokio::fs::remove_file(still).await;
                }
                if let Err(e) = encoded {
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(e);
                }
                segments.keep(&path, &k, "mp4").await;
                PipelineStats::bump(&shared.stats.videos_encoded);
                Ok::<_, StageError>((i, path))
            }
        });
        let mut done =
            futures_util::stream::iter(jobs).buffer_unordered(shared.config.max_encoders.max(1));
        let mut videos = vec![PathBuf::new(); total];
        while let Some(result) = done.next().await {
            let (i, path) = result?;
            ctx.segment_done(StageName::Render, count(i), count(total))?;
            videos[i] = path;
        }
        drop(done);
        data.insert(SegmentVideos(videos));
        Ok(())
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
        let videos = data
            .take::<SegmentVideos>()
            .ok_or_else(|| StageError::permanent("internal", "no segment videos"))?;
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
        let language = crate::captions::iso639_2(&board(data)?.voice.language);
        let film = tmp.join("final.mp4");
        let job = crate::compose::FilmMux {
            ffmpeg,
            videos: &videos.0,
            audio: &audio,
            list: &tmp.join("segments.txt"),
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
