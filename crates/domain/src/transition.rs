//! The transitions of a job, as pure functions: `(job, request, now) → Decision`.
//!
//! Each function returns the job's next state (or `None` when nothing may change) and the
//! answer to give. `repo-mem` applies these directly; `repo-pg` states the same rules as
//! single SQL statements, and the conformance suite checks the two agree.
//!
//! The rules, by operation:
//! - **acquire** — terminal → `Terminal`; a live lease → `Busy` (also for our own duplicate
//!   delivery) — live meaning unexpired *and* its holder's session not known to be gone
//!   (`holder_gone`, the store's view); cancel requested → `canceled`; attempts used up → `failed`
//!   (`attempts_exhausted`); otherwise `running` under a new lease, epoch + 1.
//! - **fenced writes** (heartbeat, progress, release, finalize) — apply only while the job is
//!   `running` at the writer's epoch and holder; otherwise `LeaseLost` and no change.
//!   Only heartbeat and acquire move the lease's timestamps.
//! - **progress** — percent never decreases; a lower one, or an equal one at an earlier
//!   stage, is refused.
//! - **release** — back to `queued` with the lease cleared, or `canceled` if requested.
//! - **finalize** — terminal status, artifact or error, `finished_at`, lease cleared, at
//!   once; a pending cancel request turns any outcome into `canceled`.
//! - **cancel** — queued → `canceled`; running → flag set once, lease untouched;
//!   terminal → no-op.
//! - **sweep** — a running job whose lease expired long ago, or whose holder's session is
//!   gone, is requeued, failed or canceled.
//! - **register session** — fenced like a write; replaces the lease's liveness handle.

use std::time::Duration;

use crate::clock::to_delta;
use crate::repository::{
    AcquireOutcome, AcquireRequest, CancelOutcome, HeartbeatAck, ProgressOutcome, SweepPolicy,
};
use crate::{
    ErrorCode, FencedError, FinalOutcome, HolderSession, Job, JobError, JobStatus, Lease,
    LeaseState, Percent, ProgressReport, Timestamp,
};

/// The result of a transition: the job's next state, if it changes, and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<T> {
    /// The job to store; `None` leaves the stored job exactly as it was.
    pub next: Option<Job>,
    /// What to tell the caller.
    pub answer: T,
}

impl<T> Decision<T> {
    fn keep(answer: T) -> Self {
        Self { next: None, answer }
    }

    fn write(next: Job, answer: T) -> Self {
        Self {
            next: Some(next),
            answer,
        }
    }
}

/// The time left until `expires_at`, rounded up to whole seconds, at least one second.
pub fn retry_after(expires_at: Timestamp, now: Timestamp) -> Duration {
    let left_ms = (expires_at - now).num_milliseconds().max(0);
    let secs = u64::try_from(left_ms).unwrap_or(0).div_ceil(1000).max(1);
    Duration::from_secs(secs)
}

impl Job {
    /// The running lease's liveness handle, if its holder gave one.
    pub fn holder_session(&self) -> Option<HolderSession> {
        self.lease
            .as_ref()
            .filter(|_| self.status == JobStatus::Running)
            .and_then(|l| l.session)
    }

    /// Whether the running lease's holder is known to be gone: it gave a session and
    /// `alive` (the store's view of sessions) says that session no longer exists. A lease
    /// without a session is never known gone; only its expiry ends it.
    pub fn holder_gone(&self, alive: impl FnOnce(&HolderSession) -> bool) -> bool {
        self.holder_session().is_some_and(|s| !alive(&s))
    }

    /// Acquire (or take over) the job for `request.holder`. `holder_gone`: the current
    /// holder's session no longer exists (see [`Job::holder_gone`]), so its lease may be
    /// taken over before it expires — safe, because the takeover bumps the epoch.
    pub fn acquire(
        &self,
        request: &AcquireRequest,
        now: Timestamp,
        holder_gone: bool,
    ) -> Decision<AcquireOutcome> {
        if self.status.is_terminal() {
            return Decision::keep(AcquireOutcome::Terminal(self.status));
        }
        if let (JobStatus::Running, Some(lease)) = (self.status, &self.lease)
            && lease.expires_at > now
            && !holder_gone
        {
            return Decision::keep(AcquireOutcome::Busy {
                holder: lease.holder.clone(),
                retry_after: retry_after(lease.expires_at, now),
            });
        }
        // Queued, or running under a stale lease or a gone holder: this attempt may start
        // unless the job must end first.
        if self.cancel_requested_at.is_some() {
            return Decision::write(self.end(JobStatus::Canceled, now), AcquireOutcome::Canceled);
        }
        if self.attempts >= request.max_attempts {
            let mut next = self.end(JobStatus::Failed, now);
            next.error = Some(JobError::known(
                ErrorCode::ATTEMPTS_EXHAUSTED,
                format!(
                    "acquired {} times, the limit is {}",
                    self.attempts, request.max_attempts
                ),
            ));
            return Decision::write(next, AcquireOutcome::AttemptsExhausted);
        }
        let epoch = self.lease_epoch.next();
        let expires_at = now + to_delta(request.ttl);
        let mut next = self.clone();
        next.status = JobStatus::Running;
        next.lease_epoch = epoch;
        next.attempts = self.attempts.saturating_add(1);
        next.lease = Some(LeaseState {
            holder: request.holder.clone(),
            session: request.session,
            heartbeat_at: now,
            expires_at,
        });
        next.started_at = Some(self.started_at.unwrap_or(now));
        next.updated_at = now;
        let lease = Lease {
            job_id: self.id,
            holder: request.holder.clone(),
            epoch,
            expires_at,
            attempt: next.attempts,
        };
        let job = Box::new(next.clone());
        Decision::write(next, AcquireOutcome::Acquired { lease, job })
    }

    /// Whether `lease` is the job's live fence: running, same epoch, same holder.
    pub fn is_fenced_by(&self, lease: &Lease) -> bool {
        self.id == lease.job_id
            && self.status == JobStatus::Running
            && self.lease_epoch == lease.epoch
            && self
                .lease
                .as_ref()
                .is_some_and(|l| l.holder == lease.holder)
    }

    /// Extend the lease by `ttl` from `now`.
    pub fn heartbeat(
        &self,
        lease: &Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> Decision<Result<HeartbeatAck, FencedError>> {
        let Some(state) = self.lease.as_ref().filter(|_| self.is_fenced_by(lease)) else {
            return Decision::keep(Err(FencedError::LeaseLost));
        };
        let expires_at = now + to_delta(ttl);
        let mut next = self.clone();
        next.lease = Some(LeaseState {
            holder: state.holder.clone(),
            session: state.session,
            heartbeat_at: now,
            expires_at,
        });
        next.updated_at = now;
        let ack = HeartbeatAck {
            cancel_requested: self.cancel_requested_at.is_some(),
            expires_at,
        };
        Decision::write(next, Ok(ack))
    }

    /// Record `session` as the holder's liveness handle (its subscription reconnected).
    /// Fenced; the expiry stays, and nothing a watcher sees changes.
    pub fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
        now: Timestamp,
    ) -> Decision<Result<(), FencedError>> {
        let Some(state) = self.lease.as_ref().filter(|_| self.is_fenced_by(lease)) else {
            return Decision::keep(Err(FencedError::LeaseLost));
        };
        if state.session == Some(session) {
            return Decision::keep(Ok(()));
        }
        let mut next = self.clone();
        next.lease = Some(LeaseState {
            session: Some(session),
            ..state.clone()
        });
        next.updated_at = now;
        Decision::write(next, Ok(()))
    }

    /// Write a progress report from the lease holder; never backwards.
    pub fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
        now: Timestamp,
    ) -> Decision<Result<ProgressOutcome, FencedError>> {
        if !self.is_fenced_by(lease) {
            return Decision::keep(Err(FencedError::LeaseLost));
        }
        let current = self.percent();
        // Backwards is a lower percent, or the same percent at an earlier stage (a retried
        // attempt catching up must not move the label back either).
        let earlier_stage = self
            .progress
            .as_ref()
            .is_some_and(|p| report.stage.rank() < p.stage.rank());
        if report.percent < current || (report.percent == current && earlier_stage) {
            return Decision::keep(Ok(ProgressOutcome::Regressed { current }));
        }
        let mut next = self.clone();
        next.progress = Some(report.clone());
        next.progress_updated_at = Some(now);
        next.updated_at = now;
        Decision::write(next, Ok(ProgressOutcome::Applied))
    }

    /// Give the job back unfinished.
    pub fn release(
        &self,
        lease: &Lease,
        error: Option<&JobError>,
        now: Timestamp,
    ) -> Decision<Result<JobStatus, FencedError>> {
        if !self.is_fenced_by(lease) {
            return Decision::keep(Err(FencedError::LeaseLost));
        }
        let mut next = if self.cancel_requested_at.is_some() {
            self.end(JobStatus::Canceled, now)
        } else {
            self.requeued(now)
        };
        if let Some(error) = error {
            next.error = Some(error.clone());
        }
        let status = next.status;
        Decision::write(next, Ok(status))
    }

    /// End the job, atomically with releasing its lease.
    pub fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
        now: Timestamp,
    ) -> Decision<Result<JobStatus, FencedError>> {
        if !self.is_fenced_by(lease) {
            return Decision::keep(Err(FencedError::LeaseLost));
        }
        let status = if self.cancel_requested_at.is_some() {
            JobStatus::Canceled
        } else {
            outcome.status()
        };
        let mut next = self.end(status, now);
        match outcome {
            FinalOutcome::Succeeded { artifact_key } if status == JobStatus::Succeeded => {
                next.artifact_key = Some(artifact_key.clone());
                next.error = None;
                if let Some(progress) = next.progress.as_mut() {
                    progress.percent = Percent::FULL;
                }
            }
            FinalOutcome::Failed(error) if status == JobStatus::Failed => {
                next.error = Some(error.clone());
            }
            _ => {}
        }
        Decision::write(next, Ok(status))
    }

    /// Ask for the job to be canceled.
    pub fn request_cancel(&self, now: Timestamp) -> Decision<CancelOutcome> {
        match self.status {
            status if status.is_terminal() => {
                Decision::keep(CancelOutcome::AlreadyTerminal(status))
            }
            JobStatus::Queued => {
                let mut next = self.end(JobStatus::Canceled, now);
                next.cancel_requested_at = Some(now);
                Decision::write(next, CancelOutcome::Canceled)
            }
            _ if self.cancel_requested_at.is_some() => {
                Decision::keep(CancelOutcome::Requested { first: false })
            }
            _ => {
                // Only the flag and `updated_at`: the lease and progress timestamps stay, so
                // a dead worker's lease still goes stale.
                let mut next = self.clone();
                next.cancel_requested_at = Some(now);
                next.updated_at = now;
                Decision::write(next, CancelOutcome::Requested { first: true })
            }
        }
    }

    /// Fail a job no worker ever started.
    pub fn fail_unstarted(&self, error: &JobError, now: Timestamp) -> Decision<bool> {
        if self.status != JobStatus::Queued || self.attempts > 0 {
            return Decision::keep(false);
        }
        let mut next = self.end(JobStatus::Failed, now);
        next.error = Some(error.clone());
        Decision::write(next, true)
    }

    /// Advance the delivery generation from `from` to `from + 1`, only while the job is still
    /// queued at `from` (a compare-and-set: of two sweepers that both found the task gone,
    /// one wins and enqueues). Answers the new generation, or `None` if the job moved on.
    pub fn advance_delivery(&self, from: u32, now: Timestamp) -> Decision<Option<u32>> {
        if self.status != JobStatus::Queued || self.delivery_generation != from {
            return Decision::keep(None);
        }
        let Some(generation) = from.checked_add(1) else {
            return Decision::keep(None);
        };
        let mut next = self.clone();
        next.delivery_generation = generation;
        next.updated_at = now;
        Decision::write(next, Some(generation))
    }

    /// Whether `next` differs from this job in what a watcher of progress sees.
    pub fn visibly_differs(&self, next: &Job) -> bool {
        self.status != next.status
            || self.progress != next.progress
            || self.cancel_requested_at != next.cancel_requested_at
    }

    /// Move a running job whose lease expired at least `policy.expired_for` ago, or whose
    /// holder is gone (`holder_gone`, see [`Job::holder_gone`]) at once; report a queued
    /// job untouched for `policy.queued_for`.
    pub fn sweep(
        &self,
        policy: &SweepPolicy,
        now: Timestamp,
        holder_gone: bool,
    ) -> Decision<Option<JobStatus>> {
        if let (JobStatus::Queued, Some(after)) = (self.status, policy.queued_for)
            && self.updated_at + to_delta(after) <= now
        {
            let mut next = self.clone();
            next.updated_at = now;
            return Decision::write(next, Some(JobStatus::Queued));
        }
        let expired = self.status == JobStatus::Running
            && self
                .lease
                .as_ref()
                .is_some_and(|l| l.expires_at + to_delta(policy.expired_for) <= now);
        let gone = self.status == JobStatus::Running && holder_gone;
        if !expired && !gone {
            return Decision::keep(None);
        }
        let next = if self.cancel_requested_at.is_some() {
            self.end(JobStatus::Canceled, now)
        } else if self.attempts >= policy.max_attempts {
            let mut next = self.end(JobStatus::Failed, now);
            next.error = Some(JobError::known(
                ErrorCode::ATTEMPTS_EXHAUSTED,
                if expired {
                    format!("lease expired after the last of {} attempts", self.attempts)
                } else {
                    format!(
                        "the worker's session ended in the last of {} attempts",
                        self.attempts
                    )
                },
            ));
            next
        } else if expired {
            let mut next = self.requeued(now);
            next.error = Some(JobError::known(
                ErrorCode::LEASE_EXPIRED,
                "the worker stopped heartbeating; requeued by the sweeper",
            ));
            next
        } else {
            let mut next = self.requeued(now);
            next.error = Some(JobError::known(
                ErrorCode::WORKER_GONE,
                "the worker's database session ended; requeued by the sweeper",
            ));
            next
        };
        let status = next.status;
        Decision::write(next, Some(status))
    }

    /// This job, terminal with `status`, lease cleared.
    fn end(&self, status: JobStatus, now: Timestamp) -> Job {
        debug_assert!(status.is_terminal());
        let mut next = self.clone();
        next.status = status;
        next.lease = None;
        next.finished_at = Some(now);
        next.updated_at = now;
        next
    }

    /// This job, queued again, lease cleared (the epoch stays: the next acquire bumps it).
    fn requeued(&self, now: Timestamp) -> Job {
        let mut next = self.clone();
        next.status = JobStatus::Queued;
        next.lease = None;
        next.updated_at = now;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceId, JobId, Stage};

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn req(holder: &str) -> AcquireRequest {
        AcquireRequest {
            job_id: JobId::new(),
            holder: InstanceId::new(holder).unwrap(),
            ttl: Duration::from_secs(60),
            max_attempts: 3,
            session: None,
        }
    }

    fn acquired(job: &Job, holder: &str, now: Timestamp) -> (Job, Lease) {
        let d = job.acquire(&req(holder), now, false);
        match d.answer {
            AcquireOutcome::Acquired { lease, .. } => (d.next.unwrap(), lease),
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let now = t0();
        assert_eq!(retry_after(now, now), Duration::from_secs(1));
        assert_eq!(
            retry_after(now - to_delta(Duration::from_secs(5)), now),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after(now + chrono::TimeDelta::milliseconds(1500), now),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn fenced_writes_check_the_holder_as_well_as_the_epoch() {
        let job = Job::new(JobId::new(), serde_json::json!({}), t0());
        let (running, mut lease) = acquired(&job, "a", t0());
        lease.holder = InstanceId::new("b").unwrap();
        assert!(matches!(
            running
                .heartbeat(&lease, Duration::from_secs(60), t0())
                .answer,
            Err(FencedError::LeaseLost)
        ));
    }

    #[test]
    fn succeeded_finalize_fills_the_bar_and_clears_a_previous_error() {
        let job = Job::new(JobId::new(), serde_json::json!({}), t0());
        let (running, lease) = acquired(&job, "a", t0());
        let report =
            ProgressReport::new(Stage::Publish, Percent::new(97).unwrap(), None, None).unwrap();
        let mut running = running.report_progress(&lease, &report, t0()).next.unwrap();
        running.error = Some(JobError::known(ErrorCode::LEASE_EXPIRED, "earlier"));
        let outcome = FinalOutcome::Succeeded {
            artifact_key: "k".into(),
        };
        let done = running.finalize(&lease, &outcome, t0()).next.unwrap();
        assert_eq!(done.percent(), Percent::FULL);
        assert_eq!(done.error, None);
        assert_eq!(done.artifact_key.as_deref(), Some("k"));
    }

    #[test]
    fn failed_finalize_after_cancel_request_ends_canceled_without_error() {
        let job = Job::new(JobId::new(), serde_json::json!({}), t0());
        let (running, lease) = acquired(&job, "a", t0());
        let running = running.request_cancel(t0()).next.unwrap();
        let err = JobError::new(ErrorCode::new("boom").unwrap(), "x");
        let d = running.finalize(&lease, &FinalOutcome::Failed(err), t0());
        assert_eq!(d.answer.unwrap(), JobStatus::Canceled);
        assert_eq!(d.next.unwrap().error, None);
    }
}
