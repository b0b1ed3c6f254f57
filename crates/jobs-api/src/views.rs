//! What the API sends and takes (its DTOs), converted from the domain's types explicitly.

use domain::{Job, JobStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job as the product sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id (uuid).
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The stage in progress: `plan`, `tts`, `render`, `compose`, `publish`. For a failed or
    /// canceled job, the stage it stopped in. Absent before the first progress report and
    /// once the job succeeded (every stage is then done; none is in progress).
    pub stage: Option<String>,
    /// 0–100; never goes back. 100 once succeeded.
    pub percent: u8,
    /// The segment last finished, from 0; absent when `stage` is.
    pub segment_index: Option<u32>,
    /// Segments of the stage; absent when `stage` is.
    pub segment_total: Option<u32>,
    /// A line for the user about the stage (`render: 3 of 10 segments`); absent when
    /// `stage` is.
    pub message: Option<String>,
    /// Whether cancel was requested.
    pub cancel_requested: bool,
    /// Acquisitions by workers so far.
    pub attempts: u32,
    /// Where the MP4 is (object-store key), once succeeded.
    pub artifact_key: Option<String>,
    /// The download path, once succeeded.
    pub artifact_url: Option<String>,
    /// Why it failed.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let succeeded = job.status == JobStatus::Succeeded;
        // The last report names the stage that was running; once the job succeeded that
        // label is stale (a client would show "100% compose"), so it is not repeated.
        let progress = job.progress.as_ref().filter(|_| !succeeded);
        Self {
            id: job.id.to_string(),
            status: job.status.as_str().into(),
            stage: progress.map(|p| p.stage.as_str().into()),
            percent: job.percent().get(),
            segment_index: progress.and_then(|p| p.segment).map(|s| s.index()),
            segment_total: progress.and_then(|p| p.segment).map(|s| s.total()),
            message: progress.and_then(|p| p.message.clone()),
            cancel_requested: job.cancel_requested_at.is_some(),
            attempts: job.attempts,
            artifact_key: job.artifact_key.clone().filter(|_| succeeded),
            artifact_url: succeeded.then(|| format!("/v1/jobs/{}/artifact", job.id)),
            error_code: job.error.as_ref().map(|e| e.code.to_string()),
            error_message: job.error.as_ref().map(|e| e.message.clone()),
            created_at: job.created_at.to_rfc3339(),
            started_at: job.started_at.map(|t| t.to_rfc3339()),
            finished_at: job.finished_at.map(|t| t.to_rfc3339()),
            updated_at: job.updated_at.to_rfc3339(),
        }
    }
}

/// `POST /v1/jobs` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The storyboard (schema version 1, or 2 with beats: a segment's narration in parts,
    /// each revealing the next bullet or highlighting one; slide text may hold LaTeX
    /// formulas, `$…$` and `$$…$$`; `frame.transition` is `"fade"` or `"cut"`; see the
    /// README).
    #[schema(value_type = Object)]
    pub storyboard: serde_json::Value,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The answer to a cancel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    /// `canceled` (it was queued), `cancel_requested` (the worker stops at its next
    /// checkpoint), `already_requested`, or `already_finished`.
    pub outcome: String,
    /// The job now.
    pub job: JobView,
}

/// Whether two views of a job show a client the same thing. `updated_at` moves with every
/// heartbeat, and a re-read after a notification or the periodic poll finds it changed
/// when nothing else did: no news, so no event.
pub(crate) fn shows_the_same(a: &JobView, b: &JobView) -> bool {
    let same_time = |v: &JobView| JobView {
        updated_at: String::new(),
        ..v.clone()
    };
    same_time(a) == same_time(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::JobId;

    fn job_at(status: JobStatus) -> Job {
        let mut job = Job::new(JobId::new(), serde_json::json!({}), chrono::Utc::now());
        job.status = status;
        job.progress = Some(domain::ProgressReport {
            stage: domain::Stage::Render,
            percent: domain::Percent::new(40).unwrap(),
            segment: Some(domain::Segment::new(3, 10).unwrap()),
            message: Some("render: 4 of 10 segments".into()),
        });
        job
    }

    #[test]
    fn a_succeeded_job_shows_no_stage_and_a_stopped_one_shows_where_it_stopped() {
        let mut done = job_at(JobStatus::Succeeded);
        if let Some(p) = done.progress.as_mut() {
            p.percent = domain::Percent::FULL;
        }
        let view = JobView::from(&done);
        assert_eq!(
            (
                view.percent,
                view.stage,
                view.segment_index,
                view.segment_total,
                view.message
            ),
            (100, None, None, None, None)
        );
        for status in [JobStatus::Running, JobStatus::Failed, JobStatus::Canceled] {
            let view = JobView::from(&job_at(status));
            assert_eq!(
                (
                    view.percent,
                    view.stage.as_deref(),
                    view.segment_index,
                    view.segment_total
                ),
                (40, Some("render"), Some(3), Some(10)),
                "{status}"
            );
        }
    }

    #[test]
    fn views_that_differ_only_in_updated_at_show_the_same() {
        let job = job_at(JobStatus::Running);
        let a = JobView::from(&job);
        let mut later = job.clone();
        later.updated_at += chrono::Duration::seconds(5);
        assert!(shows_the_same(&a, &JobView::from(&later)));
        let mut moved = later;
        moved.progress = Some(domain::ProgressReport {
            stage: domain::Stage::Render,
            percent: domain::Percent::new(41).unwrap(),
            segment: Some(domain::Segment::new(4, 10).unwrap()),
            message: None,
        });
        assert!(!shows_the_same(&a, &JobView::from(&moved)));
    }
}
