//! A pipeline that does no media work: for measuring the worker's own overhead, and for
//! end-to-end tests of leases, crashes and cancels (selected with
//! `VIDEO_WORKER_PIPELINE=noop`).
//!
//! Its input may say how long to pretend: `{"noop": {"segments": 5, "segment_ms": 200}}`
//! (at most 1000 segments of at most 60 s; absent means no pause at all). It publishes
//! nothing; its artifact key names the attempt.

use std::time::Duration;

use async_trait::async_trait;
use domain::Stage as StageName;

use crate::{Pipeline, Published, Stage, StageContext, StageData, StageError};

const MAX_SEGMENTS: u64 = 1000;
const MAX_SEGMENT_MS: u64 = 60_000;

/// The no-op pipeline.
pub fn noop_pipeline() -> Pipeline {
    Pipeline::new(vec![std::sync::Arc::new(Pause), std::sync::Arc::new(Mark)])
}

/// Waits `segments × segment_ms`, a segment at a time, stopping at the token.
#[derive(Debug)]
struct Pause;

fn read(input: &serde_json::Value, field: &'static str, max: u64) -> Result<u64, StageError> {
    match input.get("noop").and_then(|n| n.get(field)) {
        None => Ok(0),
        Some(v) => v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
            StageError::permanent(
                "invalid_input",
                format!("noop.{field}: must be an integer from 0 to {max}"),
            )
        }),
    }
}

#[async_trait]
impl Stage for Pause {
    fn stage(&self) -> StageName {
        StageName::Render
    }

    fn weight(&self) -> u32 {
        9
    }

    async fn run(&self, ctx: &StageContext, _: &mut StageData) -> Result<(), StageError> {
        let segments = read(&ctx.input, "segments", MAX_SEGMENTS)?;
        let each = Duration::from_millis(read(&ctx.input, "segment_ms", MAX_SEGMENT_MS)?);
        let total = u32::try_from(segments).unwrap_or(u32::MAX);
        for index in 0..total {
            tokio::select! {
                () = tokio::time::sleep(each) => {}
                () = ctx.cancel_token().cancelled() => return Err(StageError::Canceled),
            }
            ctx.segment_done(StageName::Render, index, total)?;
        }
        Ok(())
    }
}

/// "Publishes" a key for the attempt.
#[derive(Debug)]
struct Mark;

#[async_trait]
impl Stage for Mark {
    fn stage(&self) -> StageName {
        StageName::Publish
    }

    async fn run(&self, ctx: &StageContext, data: &mut StageData) -> Result<(), StageError> {
        data.insert(Published {
            artifact_key: format!("video-jobs/{}/attempts/{}/noop", ctx.job_id, ctx.epoch),
        });
        Ok(())
    }
}
