//! The pipeline contract: what a stage is, what it is given, what it reports.
//!
//! A [`Pipeline`] runs [`Stage`]s in order. Each stage gets a [`StageContext`] — the job's
//! input, a working directory, a progress sink and a cancellation token — and a
//! [`StageData`] map in which stages hand typed results to later ones (speech files to the
//! renderer, the composed film to the publisher). Stages report [`ProgressEvent`]s; a
//! [`ProgressTracker`] turns them into one user-facing percentage by stage weights. The
//! orchestrator checks the token before and after every stage, and stages check it at every
//! segment through [`StageContext::segment_done`].
//!
//! The runner owns the other side: it turns progress into fenced writes and cancels the
//! token on cancel, lease loss, deadline or shutdown.

mod context;
mod data;
mod error;
pub mod noop;
mod progress;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use context::{Attempt, ProgressReceiver, ProgressSink, StageContext};
pub use data::StageData;
pub use error::StageError;
pub use progress::{ProgressEvent, ProgressTracker, TrackedReport};

use async_trait::async_trait;

/// One step of the pipeline.
#[async_trait]
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// Which stage this is, for progress and logs.
    fn stage(&self) -> domain::Stage;

    /// Its share of the progress bar, relative to the other stages' weights.
    fn weight(&self) -> u32 {
        1
    }

    /// Does the work. Reads what earlier stages left in `data`, leaves its own results there.
    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError>;
}

/// What the publish stage leaves behind: where the artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The object-store key of the final MP4.
    pub artifact_key: String,
}

/// What stages keep across attempts (the video stages' segment cache), held to a budget by
/// the runner after every attempt whatever its outcome. The contract names no cache type,
/// so the runner needs none of the crates a real cache is built from.
#[async_trait]
pub trait ScratchBudget: Send + Sync + std::fmt::Debug {
    /// Trims what is kept to the budget.
    async fn enforce(&self) -> std::io::Result<()>;
}

/// Stages in order, and the segment cache they keep results in, if any.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
    cache: Option<Arc<dyn ScratchBudget>>,
}

impl Pipeline {
    /// A pipeline of `stages`, run in the given order.
    pub fn new(stages: Vec<Arc<dyn Stage>>) -> Self {
        Self {
            stages,
            cache: None,
        }
    }

    /// The same, keeping finished segments in `cache`: the runner holds it to its budget
    /// after every attempt.
    pub fn with_cache(mut self, cache: Arc<dyn ScratchBudget>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The segment cache the stages fill, if they keep one.
    pub fn cache(&self) -> Option<&dyn ScratchBudget> {
        self.cache.as_deref()
    }

    /// Each stage with its weight, for a [`ProgressTracker`].
    pub fn weights(&self) -> Vec<(domain::Stage, u32)> {
        self.stages
            .iter()
            .map(|s| (s.stage(), s.weight()))
            .collect()
    }

    /// Runs every stage in order; the last must leave a [`Published`] in the data.
    pub async fn run(&self, ctx: &StageContext) -> Result<Published, StageError> {
        let mut data = StageData::default();
        for stage in &self.stages {
            ctx.checkpoint()?;
            let name = stage.stage();
            ctx.emit(ProgressEvent::StageStarted { stage: name });
            let started = std::time::Instant::now();
            stage.run(ctx, &mut data).await?;
            tracing::debug!(stage = %name, duration_ms = started.elapsed().as_millis(), "stage finished");
            ctx.checkpoint()?;
            ctx.emit(ProgressEvent::StageFinished {
                stage: name,
                duration: started.elapsed(),
            });
        }
        data.take::<Published>().ok_or_else(|| {
            StageError::permanent("no_artifact", "the pipeline ended without publishing")
        })
    }
}
