//! Scratch within a budget: whatever ends an attempt — a retryable failure, SIGTERM, a
//! takeover, or the attempt's future being dropped — its scratch directory is gone, and the
//! segment cache is back within its budget, least recently used entries evicted first.
//! Real time, real files, `repo-mem` with a hand-moved clock for the takeover.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, InstanceId, JobId, JobRepository, ManualClock, NewJob,
};
use pipeline::testing::{Fail, Gate};
use pipeline::{Pipeline, Stage, StageContext, StageData, StageError};
use repo_mem::MemRepository;
use runner::{CancelHub, RunOutcome, Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;
use video::cache::SegmentCache;

use crate::common::TTL;

/// Each attempt keeps one entry of this size; the budget holds three.
const ENTRY: usize = 1000;
const BUDGET: u64 = 3500;

/// Leaves what a real stage leaves mid-job: `bytes` of scratch in the attempt's work dir and
/// as many in `cache`, under a key of this attempt's own (`{job}-{epoch}`).
#[derive(Debug)]
struct KeepScratch {
    /// Where finished segments go.
    cache: SegmentCache,
    /// Bytes per file.
    bytes: usize,
}

#[async_trait]
impl Stage for KeepScratch {
    fn stage(&self) -> domain::Stage {
        domain::Stage::Tts
    }

    async fn run(&self, ctx: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        let io = |e: std::io::Error| StageError::retryable("io_failed", e.to_string());
        let file = ctx.work_dir.join("segment.bin");
        tokio::fs::write(&file, vec![7u8; self.bytes])
            .await
            .map_err(io)?;
        let key = format!("{}-{}", ctx.job_id, ctx.epoch);
        self.cache.insert(&file, &key, "bin").await.map_err(io)
    }
}

struct World {
    repo: Arc<MemRepository>,
    clock: Arc<ManualClock>,
    hub: CancelHub,
    work: tempfile::TempDir,
    cache: SegmentCache,
    gate: Arc<Gate>,
}

impl World {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::default());
        let work = tempfile::tempdir().unwrap();
        let cache = SegmentCache::new(work.path().join("cache"), BUDGET);
        Self {
            repo: Arc::new(MemRepository::with_clock(clock.clone())),
            clock,
            hub: CancelHub::new(),
            work,
            cache,
            gate: Arc::new(Gate::default()),
        }
    }

    fn runner(&self, last: Arc<dyn pipeline::Stage>) -> Runner {
        let stages: Vec<Arc<dyn pipeline::Stage>> = vec![
            Arc::new(KeepScratch {
                cache: self.cache.clone(),
                bytes: ENTRY,
            }),
            last,
        ];
        let config = RunnerConfig {
            instance_id: InstanceId::new("w").unwrap(),
            lease_ttl: TTL,
            // Often, so a takeover is noticed at once in real time.
            heartbeat_interval: Duration::from_millis(20),
            max_runtime: Duration::from_secs(600),
            max_attempts: 5,
            drain_grace: Duration::from_secs(8),
            progress_interval: Duration::from_millis(500),
            work_root: self.work.path().to_owned(),
        };
        let repo: Arc<dyn JobRepository> = self.repo.clone();
        Runner::new(
            repo,
            Pipeline::new(stages).with_cache(Arc::new(self.cache.clone())),
            self.hub.clone(),
            config,
        )
    }

    async fn job(&self) -> JobId {
        let id = JobId::new();
        self.repo
            .create(NewJob {
                id,
                input: serde_json::json!({}),
            })
            .await
            .unwrap();
        id
    }

    /// Another worker takes the job over once this one's lease has expired.
    async fn take_over(&self, id: JobId) {
        self.clock.advance(TTL + Duration::from_secs(1));
        let request = AcquireRequest {
            job_id: id,
            holder: InstanceId::new("other").unwrap(),
            ttl: TTL,
            max_attempts: 5,
            session: None,
        };
        let outcome = self.repo.acquire(&request).await.unwrap();
        assert!(
            matches!(outcome, AcquireOutcome::Acquired { .. }),
            "{outcome:?}"
        );
    }

    fn attempt_dirs(&self) -> Vec<String> {
        names(&self.work.path().join("attempts"))
    }

    fn cache_bytes(&self) -> u64 {
        std::fs::read_dir(self.cache.dir())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_attempts_ended_every_way_leave_no_scratch_and_a_cache_within_budget() {
    let w = World::new();
    let failing = w.runner(Arc::new(Fail(StageError::retryable("tts_failed", "503"))));
    let gated = w.runner(w.gate.clone());
    let mut last_keys = Vec::new();
    for i in 0..20 {
        let id = w.job().await;
        let outcome = match i % 3 {
            0 => failing.run(id, &CancellationToken::new()).await,
            kind => {
                let sigterm = CancellationToken::new();
                let run = {
                    let (runner, sigterm) = (gated.clone(), sigterm.clone());
                    tokio::spawn(async move { runner.run(id, &sigterm).await })
                };
                w.gate.started.notified().await;
                // The attempt is mid-job: its scratch is there.
                assert_eq!(w.attempt_dirs(), [format!("{id}-1")]);
                if kind == 1 {
                    sigterm.cancel();
                } else {
                    w.take_over(id).await;
                }
                run.await.unwrap()
            }
        };
        let expected = match i % 3 {
            0 => matches!(outcome, RunOutcome::Retry { .. }),
            1 => outcome == RunOutcome::ShuttingDown,
            _ => outcome == RunOutcome::Superseded,
        };
        assert!(expected, "attempt {i}: {outcome:?}");
        assert!(w.attempt_dirs().is_empty(), "attempt {i} left scratch");
        assert!(w.cache_bytes() <= BUDGET, "attempt {i}: over budget");
        last_keys.push(format!("{id}-1.bin"));
    }
    // What is kept is the three most recently used entries.
    let mut newest: Vec<String> = last_keys[17..].to_vec();
    newest.sort();
    assert_eq!(names(w.cache.dir()), newest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_future_is_dropped_leaves_no_scratch() {
    let w = World::new();
    let runner = w.runner(w.gate.clone());
    let id = w.job().await;
    let run = {
        let runner = runner.clone();
        tokio::spawn(async move { runner.run(id, &CancellationToken::new()).await })
    };
    w.gate.started.notified().await;
    assert_eq!(w.attempt_dirs().len(), 1);
    // The request handler is dropped mid-job (the server's task aborted).
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    assert!(w.attempt_dirs().is_empty(), "the drop guard removed it");
}
