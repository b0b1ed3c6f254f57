//! Rows as Postgres returns them, and their explicit conversion into domain types.

use chrono::{DateTime, Utc};
use domain::{
    ErrorCode, HolderSession, InstanceId, Job, JobError, JobId, JobStatus, LeaseEpoch, LeaseState,
    Percent, ProgressReport, RepoError, Segment, Stage,
};

/// One `video_jobs` row, read by the columns of `sql::job_columns!`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    id: uuid::Uuid,
    input: serde_json::Value,
    status: String,
    stage: Option<String>,
    progress_percent: i16,
    segment_index: Option<i32>,
    segment_total: Option<i32>,
    progress_message: Option<String>,
    progress_updated_at: Option<DateTime<Utc>>,
    lease_holder: Option<String>,
    lease_epoch: i64,
    lease_heartbeat_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    lease_holder_pid: Option<i32>,
    lease_holder_backend_start: Option<DateTime<Utc>>,
    cancel_requested_at: Option<DateTime<Utc>>,
    attempts: i32,
    artifact_key: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    delivery_generation: i32,
}

fn corrupt(id: uuid::Uuid, what: impl std::fmt::Display) -> RepoError {
    RepoError::Corrupt(format!("video_jobs row {id}: {what}"))
}

impl TryFrom<JobRow> for Job {
    type Error = RepoError;

    fn try_from(row: JobRow) -> Result<Self, Self::Error> {
        let id = row.id;
        let status: JobStatus = row.status.parse().map_err(|e| corrupt(id, e))?;
        let progress = match row.stage {
            None => None,
            Some(stage) => {
                let stage: Stage = stage.parse().map_err(|e| corrupt(id, e))?;
                let percent = u8::try_from(row.progress_percent)
                    .map_err(|e| corrupt(id, e))
                    .and_then(|p| Percent::new(p).map_err(|e| corrupt(id, e)))?;
                let segment = match (row.segment_index, row.segment_total) {
                    (Some(index), Some(total)) => {
                        let index = u32::try_from(index).map_err(|e| corrupt(id, e))?;
                        let total = u32::try_from(total).map_err(|e| corrupt(id, e))?;
                        Some(Segment::new(index, total).map_err(|e| corrupt(id, e))?)
                    }
                    _ => None,
                };
                Some(
                    ProgressReport::new(stage, percent, segment, row.progress_message)
                        .map_err(|e| corrupt(id, e))?,
                )
            }
        };
        let session = match (row.lease_holder_pid, row.lease_holder_backend_start) {
            (Some(pid), Some(backend_start)) => Some(HolderSession { pid, backend_start }),
            (None, None) => None,
            _ => return Err(corrupt(id, "lease session columns partly set")),
        };
        let lease = match (
            row.lease_holder,
            row.lease_heartbeat_at,
            row.lease_expires_at,
        ) {
            (Some(holder), Some(heartbeat_at), Some(expires_at)) => Some(LeaseState {
                holder: InstanceId::new(holder).map_err(|e| corrupt(id, e))?,
                session,
                heartbeat_at,
                expires_at,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt(id, "lease columns partly set")),
        };
        let error = match row.error_code {
            Some(code) => Some(JobError::new(
                ErrorCode::new(code).map_err(|e| corrupt(id, e))?,
                row.error_message.unwrap_or_default(),
            )),
            None => None,
        };
        Ok(Job {
            id: JobId::from_uuid(id),
            input: row.input,
            status,
            progress,
            progress_updated_at: row.progress_updated_at,
            lease_epoch: LeaseEpoch::new(row.lease_epoch).map_err(|e| corrupt(id, e))?,
            lease,
            cancel_requested_at: row.cancel_requested_at,
            attempts: u32::try_from(row.attempts).map_err(|e| corrupt(id, e))?,
            delivery_generation: u32::try_from(row.delivery_generation)
                .map_err(|e| corrupt(id, e))?,
            artifact_key: row.artifact_key,
            error,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
        })
    }
}
