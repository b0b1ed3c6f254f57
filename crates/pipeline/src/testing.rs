//! Scripted stages for the tests of the crates built on the pipeline (runner, worker):
//! work that takes time a segment at a time, a publish that can be held, a failure, a stage
//! that ignores its token. Compiled only with the `testing` feature, which only
//! dev-dependencies turn on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::Stage as StageName;
use tokio::sync::Notify;

use crate::{Published, Stage, StageContext, StageData, StageError};

/// `count` segments of `each`, stopping at the token.
#[derive(Debug)]
pub struct Segments {
    /// The stage it reports as.
    pub stage: StageName,
    /// How many segments.
    pub count: u32,
    /// How long each takes.
    pub each: Duration,
}

#[async_trait]
impl Stage for Segments {
    fn stage(&self) -> StageName {
        self.stage
    }

    async fn run(&self, ctx: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        for i in 0..self.count {
            tokio::select! {
                () = tokio::time::sleep(self.each) => {}
                () = ctx.cancel_token().cancelled() => return Err(StageError::Canceled),
            }
            ctx.segment_done(self.stage, i, self.count)?;
        }
        Ok(())
    }
}

/// Publishes `video-jobs/{job}/attempts/{epoch}/final.mp4`. If given, it says it started
/// and waits for `go` first, ignoring the token (a cancel that lands during the last stage
/// must still win).
#[derive(Debug, Default)]
pub struct Publish {
    /// Notified when the stage starts.
    pub started: Option<Arc<Notify>>,
    /// Awaited before publishing.
    pub go: Option<Arc<Notify>>,
}

#[async_trait]
impl Stage for Publish {
    fn stage(&self) -> StageName {
        StageName::Publish
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        if let Some(started) = &self.started {
            started.notify_one();
        }
        if let Some(go) = &self.go {
            go.notified().await;
        }
        data.insert(Published {
            artifact_key: format!("video-jobs/{}/attempts/{}/final.mp4", ctx.job_id, ctx.epoch),
        });
        Ok(())
    }
}

/// Says it started, then waits for `release` or the token.
#[derive(Debug, Default)]
pub struct Gate {
    /// Notified when the stage starts.
    pub started: Arc<Notify>,
    /// Lets the stage finish.
    pub release: Arc<Notify>,
}

#[async_trait]
impl Stage for Gate {
    fn stage(&self) -> StageName {
        StageName::Compose
    }

    async fn run(&self, ctx: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        self.started.notify_one();
        tokio::select! {
            () = self.release.notified() => Ok(()),
            () = ctx.cancel_token().cancelled() => Err(StageError::Canceled),
        }
    }
}

/// Fails with the given error, as the render stage.
#[derive(Debug)]
pub struct Fail(pub StageError);

#[async_trait]
impl Stage for Fail {
    fn stage(&self) -> StageName {
        StageName::Render
    }

    async fn run(&self, _: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        Err(self.0.clone())
    }
}

/// Runs for an hour and never looks at its token.
#[derive(Debug)]
pub struct Stubborn;

#[async_trait]
impl Stage for Stubborn {
    fn stage(&self) -> StageName {
        StageName::Render
    }

    async fn run(&self, _: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}
