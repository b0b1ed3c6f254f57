//! The conformance cases. Each takes a fresh [`Harness`] and asserts one rule of SPEC §3.

use std::sync::Arc;
use std::time::Duration;

use domain::{
    AcquireOutcome, CancelEvent, CancelOutcome, ErrorCode, FencedError, FinalOutcome, JobError,
    JobStatus, LeaseEpoch, ListQuery, Percent, ProgressOutcome, ProgressReport, RepoError, Segment,
    Stage, SweepPolicy,
};
use futures_util::StreamExt;

use crate::{Harness, MAX_ATTEMPTS, TTL};

// The idempotent-create cases live in their own module; the suite finds every case here.
pub use crate::idempotency::*;
// So do the liveness cases.
pub use crate::liveness::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn report(stage: Stage, percent: u8) -> ProgressReport {
    ProgressReport::new(
        stage,
        Percent::new(percent).unwrap(),
        Some(Segment::new(0, 4).unwrap()),
        Some(format!("{stage} at {percent}")),
    )
    .unwrap()
}

fn succeeded() -> FinalOutcome {
    FinalOutcome::Succeeded {
        artifact_key: "video-jobs/x/final.mp4".into(),
    }
}

fn assert_lost<T: std::fmt::Debug>(result: Result<T, FencedError>, what: &str) {
    assert!(
        matches!(result, Err(FencedError::LeaseLost)),
        "{what}: expected LeaseLost, got {result:?}"
    );
}

pub async fn acquire_on_queued_job_grants_the_first_epoch(h: &Harness) {
    let id = h.new_job().await;
    let outcome = h.repo.acquire(&Harness::request(id, "a")).await.unwrap();
    let AcquireOutcome::Acquired { lease, job } = outcome else {
        panic!("expected Acquired, got {outcome:?}");
    };
    assert_eq!(lease.epoch, LeaseEpoch::NEVER.next());
    assert_eq!(lease.attempt, 1);
    assert_eq!(lease.holder.as_str(), "a");
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.input["title"], "conformance");
    let stored = h.job(id).await;
    assert_eq!(stored, *job);
    let state = stored.lease.expect("running job has a lease");
    assert_eq!(state.expires_at, lease.expires_at);
    assert_eq!(
        (state.expires_at - state.heartbeat_at).num_seconds(),
        60,
        "lease lives TTL from its heartbeat"
    );
    assert!(stored.started_at.is_some());
}

pub async fn acquire_of_unknown_job_is_not_found(h: &Harness) {
    let outcome = h
        .repo
        .acquire(&Harness::request(domain::JobId::new(), "a"))
        .await
        .unwrap();
    assert_eq!(outcome, AcquireOutcome::NotFound);
}

pub async fn second_acquire_while_live_is_busy_with_the_time_left(h: &Harness) {
    let id = h.new_job().await;
    h.acquire(id, "a").await;
    h.advance(secs(40)).await;
    let before = h.job(id).await;
    let outcome = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
    let AcquireOutcome::Busy {
        holder,
        retry_after,
    } = outcome
    else {
        panic!("expected Busy, got {outcome:?}");
    };
    assert_eq!(holder.as_str(), "a");
    assert!(
        (secs(19)..=secs(21)).contains(&retry_after),
        "20 s of a 60 s lease are left, got {retry_after:?}"
    );
    assert_eq!(h.job(id).await, before, "a refused acquire changes nothing");
}

pub async fn duplicate_acquire_by_the_same_instance_is_busy(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    let outcome = h.repo.acquire(&Harness::request(id, "a")).await.unwrap();
    assert!(
        matches!(&outcome, AcquireOutcome::Busy { holder, .. } if holder.as_str() == "a"),
        "a duplicate delivery must not start a second run, got {outcome:?}"
    );
    assert_eq!(h.job(id).await.lease_epoch, lease.epoch);
}

pub async fn stale_lease_is_taken_over_with_the_next_epoch(h: &Harness) {
    let id = h.new_job().await;
    let first = h.acquire(id, "a").await;
    h.advance(TTL + secs(1)).await;
    let second = h.acquire(id, "b").await;
    assert_eq!(second.epoch, first.epoch.next());
    assert_eq!(second.attempt, 2);
    let job = h.job(id).await;
    assert_eq!(job.lease.unwrap().holder.as_str(), "b");
    assert_eq!(job.attempts, 2);
}

pub async fn old_holder_is_fenced_after_takeover_and_changes_nothing(h: &Harness) {
    let id = h.new_job().await;
    let old = h.acquire(id, "a").await;
    h.advance(TTL + secs(1)).await;
    let new = h.acquire(id, "b").await;
    h.repo
        .report_progress(&new, &report(Stage::Tts, 10))
        .await
        .unwrap();
    let before = h.job(id).await;

    assert_lost(h.repo.heartbeat(&old, TTL).await, "heartbeat");
    assert_lost(
        h.repo
            .report_progress(&old, &report(Stage::Render, 90))
            .await,
        "progress",
    );
    assert_lost(h.repo.release(&old, None).await, "release");
    assert_lost(h.repo.finalize(&old, &succeeded()).await, "finalize");
    let failed = FinalOutcome::Failed(JobError::new(ErrorCode::new("boom").unwrap(), "x"));
    assert_lost(h.repo.finalize(&old, &failed).await, "finalize failed");

    assert_eq!(
        h.job(id).await,
        before,
        "the fenced-out writes changed nothing"
    );
    h.repo
        .heartbeat(&new, TTL)
        .await
        .expect("new holder keeps its lease");
}

pub async fn heartbeat_extends_the_lease(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.advance(secs(45)).await;
    let ack = h.repo.heartbeat(&lease, TTL).await.unwrap();
    assert!(!ack.cancel_requested);
    let state = h.job(id).await.lease.unwrap();
    assert_eq!(state.expires_at, ack.expires_at);
    assert_eq!((state.expires_at - state.heartbeat_at).num_seconds(), 60);
    h.advance(secs(45)).await;
    // 90 s after acquisition, 45 s after the heartbeat: still live.
    let outcome = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "{outcome:?}"
    );
}

pub async fn heartbeat_of_an_expired_lease_nobody_took_keeps_it(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.advance(TTL + secs(5)).await;
    // Fencing is by epoch: the lease is stale but nobody took over, so it is still ours.
    h.repo.heartbeat(&lease, TTL).await.unwrap();
    let outcome = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "{outcome:?}"
    );
}

pub async fn progress_never_goes_backwards(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    let r = h
        .repo
        .report_progress(&lease, &report(Stage::Tts, 30))
        .await;
    assert_eq!(r.unwrap(), ProgressOutcome::Applied);
    let before = h.job(id).await;
    let r = h
        .repo
        .report_progress(&lease, &report(Stage::Tts, 20))
        .await;
    assert_eq!(
        r.unwrap(),
        ProgressOutcome::Regressed {
            current: Percent::new(30).unwrap()
        }
    );
    assert_eq!(
        h.job(id).await,
        before,
        "a regressing write changes nothing"
    );
    let r = h
        .repo
        .report_progress(&lease, &report(Stage::Render, 30))
        .await;
    assert_eq!(
        r.unwrap(),
        ProgressOutcome::Applied,
        "equal percent moves the stage"
    );
    let progress = h.job(id).await.progress.unwrap();
    assert_eq!(progress.stage, Stage::Render);
    assert_eq!(progress.segment, Some(Segment::new(0, 4).unwrap()));
    assert_eq!(progress.message.as_deref(), Some("render at 30"));
}

pub async fn progress_from_an_older_epoch_is_refused(h: &Harness) {
    let id = h.new_job().await;
    let first = h.acquire(id, "a").await;
    h.repo.release(&first, None).await.unwrap();
    let second = h.acquire(id, "a").await;
    assert_eq!(second.epoch, first.epoch.next());
    let before = h.job(id).await;
    assert_lost(
        h.repo
            .report_progress(&first, &report(Stage::Tts, 50))
            .await,
        "progress at the older epoch",
    );
    assert_eq!(h.job(id).await, before);
}

pub async fn progress_does_not_touch_the_lease(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.advance(secs(50)).await;
    let before = h.job(id).await.lease.unwrap();
    h.repo
        .report_progress(&lease, &report(Stage::Render, 60))
        .await
        .unwrap();
    let job = h.job(id).await;
    assert_eq!(job.lease.unwrap(), before, "progress is not a heartbeat");
    assert!(job.progress_updated_at.unwrap() > before.heartbeat_at);
    h.advance(secs(11)).await;
    let taken = h.acquire(id, "b").await;
    assert_eq!(
        taken.epoch,
        lease.epoch.next(),
        "the lease went stale despite progress"
    );
}

pub async fn cancel_on_queued_job_cancels_it_at_once(h: &Harness) {
    let id = h.new_job().await;
    assert_eq!(
        h.repo.request_cancel(id).await.unwrap(),
        CancelOutcome::Canceled
    );
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Canceled);
    assert!(job.finished_at.is_some() && job.cancel_requested_at.is_some());
    let outcome = h.repo.acquire(&Harness::request(id, "a")).await.unwrap();
    assert_eq!(outcome, AcquireOutcome::Terminal(JobStatus::Canceled));
}

pub async fn cancel_on_running_job_sets_the_flag_without_touching_lease_or_progress(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo
        .report_progress(&lease, &report(Stage::Tts, 5))
        .await
        .unwrap();
    h.advance(secs(10)).await;
    let before = h.job(id).await;
    assert_eq!(
        h.repo.request_cancel(id).await.unwrap(),
        CancelOutcome::Requested { first: true }
    );
    let after = h.job(id).await;
    assert_eq!(after.status, JobStatus::Running);
    assert!(after.cancel_requested_at.is_some());
    assert_eq!(
        after.lease, before.lease,
        "cancel never refreshes the lease"
    );
    assert_eq!(after.progress_updated_at, before.progress_updated_at);
    assert_eq!(after.progress, before.progress);

    assert_eq!(
        h.repo.request_cancel(id).await.unwrap(),
        CancelOutcome::Requested { first: false }
    );
    assert_eq!(h.job(id).await, after, "a repeated cancel is a no-op");
}

pub async fn cancel_on_terminal_job_changes_nothing(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo.finalize(&lease, &succeeded()).await.unwrap();
    let before = h.job(id).await;
    assert_eq!(
        h.repo.request_cancel(id).await.unwrap(),
        CancelOutcome::AlreadyTerminal(JobStatus::Succeeded)
    );
    assert_eq!(h.job(id).await, before);
}

pub async fn cancel_of_unknown_job_is_not_found(h: &Harness) {
    let outcome = h.repo.request_cancel(domain::JobId::new()).await.unwrap();
    assert_eq!(outcome, CancelOutcome::NotFound);
}

pub async fn dead_workers_lease_goes_stale_after_a_cancel_request(h: &Harness) {
    // The seed bug: request_cancel refreshed the timestamp the lease check used, so a dead
    // worker's job never became stale and stayed `running` forever.
    let id = h.new_job().await;
    h.acquire(id, "dead").await;
    h.advance(secs(50)).await;
    h.repo.request_cancel(id).await.unwrap();
    h.advance(secs(11)).await;
    let outcome = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
    assert_eq!(
        outcome,
        AcquireOutcome::Canceled,
        "a stale job with a cancel request ends"
    );
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.lease, None);
}

pub async fn heartbeat_reports_a_cancel_request(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    assert!(
        !h.repo
            .heartbeat(&lease, TTL)
            .await
            .unwrap()
            .cancel_requested
    );
    h.repo.request_cancel(id).await.unwrap();
    assert!(
        h.repo
            .heartbeat(&lease, TTL)
            .await
            .unwrap()
            .cancel_requested
    );
}

pub async fn finalize_after_cancel_request_ends_canceled(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo.request_cancel(id).await.unwrap();
    let status = h.repo.finalize(&lease, &succeeded()).await.unwrap();
    assert_eq!(
        status,
        JobStatus::Canceled,
        "cancel at the last stage is not ignored"
    );
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(
        job.artifact_key, None,
        "a canceled job points at no artifact"
    );
}

pub async fn finalize_is_atomic_with_release(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo
        .report_progress(&lease, &report(Stage::Publish, 95))
        .await
        .unwrap();
    let status = h.repo.finalize(&lease, &succeeded()).await.unwrap();
    assert_eq!(status, JobStatus::Succeeded);
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(
        job.lease, None,
        "finalize clears the lease in the same step"
    );
    assert_eq!(job.artifact_key.as_deref(), Some("video-jobs/x/final.mp4"));
    assert!(job.finished_at.is_some());
    assert_eq!(job.percent(), Percent::FULL);
    assert_eq!(
        job.lease_epoch, lease.epoch,
        "the epoch stays as the record of the attempt"
    );
    assert_lost(
        h.repo.finalize(&lease, &succeeded()).await,
        "second finalize",
    );

    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    let error = JobError::new(
        ErrorCode::new("invalid_input").unwrap(),
        "segments[0]: empty",
    );
    let status = h
        .repo
        .finalize(&lease, &FinalOutcome::Failed(error.clone()))
        .await
        .unwrap();
    assert_eq!(status, JobStatus::Failed);
    let job = h.job(id).await;
    assert_eq!(
        (job.status, job.error, job.lease),
        (JobStatus::Failed, Some(error), None)
    );
}

pub async fn terminal_state_is_absorbing(h: &Harness) {
    for outcome in [
        succeeded(),
        FinalOutcome::Failed(JobError::new(ErrorCode::new("bad").unwrap(), "bad")),
        FinalOutcome::Canceled,
    ] {
        let id = h.new_job().await;
        let lease = h.acquire(id, "a").await;
        let status = h.repo.finalize(&lease, &outcome).await.unwrap();
        assert_eq!(status, outcome.status());
        let before = h.job(id).await;
        h.advance(TTL * 3).await;
        let acquired = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
        assert_eq!(acquired, AcquireOutcome::Terminal(status));
        assert_eq!(
            h.repo.request_cancel(id).await.unwrap(),
            CancelOutcome::AlreadyTerminal(status)
        );
        assert_lost(h.repo.heartbeat(&lease, TTL).await, "heartbeat");
        assert_lost(
            h.repo
                .report_progress(&lease, &report(Stage::Tts, 100))
                .await,
            "progress",
        );
        assert_lost(h.repo.release(&lease, None).await, "release");
        let policy = SweepPolicy {
            expired_for: secs(1),
            max_attempts: MAX_ATTEMPTS,
            queued_for: None,
            queued_limit: u32::MAX,
        };
        assert!(
            h.repo
                .sweep(&policy)
                .await
                .unwrap()
                .iter()
                .all(|s| s.id != id)
        );
        let after = h.job(id).await;
        assert_eq!(
            (
                after.status,
                &after.progress,
                &after.artifact_key,
                &after.error,
                after.lease_epoch
            ),
            (
                before.status,
                &before.progress,
                &before.artifact_key,
                &before.error,
                before.lease_epoch
            ),
        );
        assert_eq!(after.finished_at.is_some(), before.finished_at.is_some());
    }
}

pub async fn release_requeues_at_once_for_the_next_attempt(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    let error = JobError::new(ErrorCode::new("tts_unavailable").unwrap(), "503 from TTS");
    let status = h.repo.release(&lease, Some(error.clone())).await.unwrap();
    assert_eq!(status, JobStatus::Queued);
    let job = h.job(id).await;
    assert_eq!(
        (job.status, job.lease, job.error),
        (JobStatus::Queued, None, Some(error))
    );
    // No waiting for the TTL: the retry takes it at once.
    let next = h.acquire(id, "b").await;
    assert_eq!(next.epoch, lease.epoch.next());
    assert_lost(h.repo.heartbeat(&lease, TTL).await, "released lease");
}

pub async fn release_after_cancel_request_ends_canceled(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo.request_cancel(id).await.unwrap();
    assert_eq!(
        h.repo.release(&lease, None).await.unwrap(),
        JobStatus::Canceled
    );
    assert_eq!(h.job(id).await.status, JobStatus::Canceled);
}

pub async fn attempts_are_bounded(h: &Harness) {
    let id = h.new_job().await;
    for attempt in 1..=MAX_ATTEMPTS {
        let lease = h.acquire(id, &format!("w{attempt}")).await;
        assert_eq!(lease.attempt, attempt);
        h.advance(TTL + secs(1)).await;
    }
    let outcome = h.repo.acquire(&Harness::request(id, "last")).await.unwrap();
    assert_eq!(outcome, AcquireOutcome::AttemptsExhausted);
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.unwrap().code.as_str(),
        ErrorCode::ATTEMPTS_EXHAUSTED
    );
    assert_eq!(job.lease, None);
    assert_eq!(job.attempts, MAX_ATTEMPTS);
}

pub async fn sweep_requeues_fails_or_cancels_stuck_jobs_only(h: &Harness) {
    let policy = SweepPolicy {
        expired_for: secs(300),
        max_attempts: 2,
        queued_for: None,
        queued_limit: u32::MAX,
    };
    let exhausted = h.new_job().await;
    h.acquire(exhausted, "dead-1").await;
    h.advance(TTL + secs(1)).await;
    h.acquire(exhausted, "dead-2").await;
    let requeue = h.new_job().await;
    h.acquire(requeue, "dead").await;
    let cancel = h.new_job().await;
    h.acquire(cancel, "dead").await;
    h.repo.request_cancel(cancel).await.unwrap();
    let queued = h.new_job().await;
    h.advance(TTL + secs(200)).await;
    let recent = h.new_job().await;
    h.acquire(recent, "dead").await; // expired after the next step, but not long enough ago
    h.advance(secs(101)).await;
    let live = h.new_job().await;
    let live_lease = h.acquire(live, "alive").await;

    let mut swept = h.repo.sweep(&policy).await.unwrap();
    swept.sort_by_key(|s| s.id);
    let mut expected = vec![
        domain::SweptJob {
            id: requeue,
            status: JobStatus::Queued,
            from: JobStatus::Running,
        },
        domain::SweptJob {
            id: exhausted,
            status: JobStatus::Failed,
            from: JobStatus::Running,
        },
        domain::SweptJob {
            id: cancel,
            status: JobStatus::Canceled,
            from: JobStatus::Running,
        },
    ];
    expected.sort_by_key(|s| s.id);
    assert_eq!(swept, expected);
    for (id, status) in [
        (requeue, JobStatus::Queued),
        (exhausted, JobStatus::Failed),
        (cancel, JobStatus::Canceled),
        (queued, JobStatus::Queued),
        (recent, JobStatus::Running),
        (live, JobStatus::Running),
    ] {
        let job = h.job(id).await;
        assert_eq!(job.status, status, "job {id}");
        assert_eq!(
            job.lease.is_some(),
            status == JobStatus::Running,
            "job {id}"
        );
    }
    assert_eq!(
        h.job(requeue).await.error.unwrap().code.as_str(),
        ErrorCode::LEASE_EXPIRED
    );
    assert_eq!(
        h.job(exhausted).await.error.unwrap().code.as_str(),
        ErrorCode::ATTEMPTS_EXHAUSTED
    );
    h.repo.heartbeat(&live_lease, TTL).await.unwrap();

    // The requeued job comes back for its second attempt; a second sweep finds nothing new.
    let again = h.acquire(requeue, "b").await;
    assert_eq!(again.attempt, 2);
    assert!(h.repo.sweep(&policy).await.unwrap().is_empty());
}

pub async fn list_pages_newest_first_and_filters_by_status(h: &Harness) {
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(h.new_job().await);
        h.advance(secs(1)).await;
    }
    // Two made in the same instant still get a stable order (by id).
    ids.push(h.new_job().await);
    ids.push(h.new_job().await);
    let lease = h.acquire(ids[2], "a").await;
    h.repo.finalize(&lease, &succeeded()).await.unwrap();
    h.repo.request_cancel(ids[4]).await.unwrap();

    let mut seen = Vec::new();
    let mut query = ListQuery::new(None, 4).unwrap();
    loop {
        let page = h.repo.list(&query).await.unwrap();
        assert!(page.jobs.len() <= 4);
        seen.extend(page.jobs.iter().map(|j| (j.created_at, j.id)));
        match page.next {
            Some(cursor) => query = query.after(Some(cursor)),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        ids.len(),
        "every job once, none twice: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    let mut all: Vec<_> = seen.iter().map(|(_, id)| *id).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);

    let queued = h
        .repo
        .list(&ListQuery::new(Some(JobStatus::Queued), 100).unwrap())
        .await
        .unwrap();
    assert_eq!(queued.jobs.len(), 7);
    assert_eq!(queued.next, None);
    let done = h
        .repo
        .list(&ListQuery::new(Some(JobStatus::Succeeded), 100).unwrap())
        .await
        .unwrap();
    assert_eq!(
        done.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    let exact = h
        .repo
        .list(&ListQuery::new(Some(JobStatus::Queued), 7).unwrap())
        .await
        .unwrap();
    assert_eq!(exact.jobs.len(), 7);
    assert_eq!(exact.next, None, "a full last page has no next cursor");
    assert!(ListQuery::new(None, 0).is_err());
    assert!(ListQuery::new(None, ListQuery::MAX_LIMIT + 1).is_err());
}

pub async fn create_refuses_a_duplicate_id(h: &Harness) {
    let id = h.new_job().await;
    let before = h.job(id).await;
    let again = h
        .repo
        .create(domain::NewJob {
            id,
            input: serde_json::json!({"other": true}),
        })
        .await;
    assert!(
        matches!(again, Err(RepoError::AlreadyExists(dup)) if dup == id),
        "{again:?}"
    );
    assert_eq!(h.job(id).await, before);
}

pub async fn cancel_notification_reaches_an_earlier_subscriber(h: &Harness) {
    let id = h.new_job().await;
    let other = h.new_job().await;
    h.acquire(id, "a").await;
    h.acquire(other, "a").await;
    let mut stream = h.repo.cancel_notifications().await.unwrap().events;
    h.repo.request_cancel(other).await.unwrap();
    h.repo.request_cancel(id).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(secs(5), stream.next()).await;
        got.push(next.expect("notification within 5 s").expect("stream open"));
    }
    assert_eq!(
        got,
        vec![CancelEvent::Cancel(other), CancelEvent::Cancel(id)]
    );
    // A repeated request for the same job does not notify again.
    h.repo.request_cancel(id).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(quiet.is_err(), "no second notification, got {quiet:?}");
}

pub async fn late_subscriber_learns_of_cancel_from_its_next_heartbeat(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo.request_cancel(id).await.unwrap();
    let mut stream = h.repo.cancel_notifications().await.unwrap().events;
    let missed = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(
        missed.is_err(),
        "a notification before subscribing is gone: {missed:?}"
    );
    let ack = h.repo.heartbeat(&lease, TTL).await.unwrap();
    assert!(ack.cancel_requested, "the heartbeat is the fallback");
}

pub async fn racing_acquires_have_exactly_one_winner(h: &Harness) {
    const RACERS: usize = 32;
    for _round in 0..10 {
        let id = h.new_job().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let repo = h.repo.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    repo.acquire(&Harness::request(id, &format!("racer-{i}")))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                AcquireOutcome::Acquired { lease, .. } => winners.push(lease),
                AcquireOutcome::Busy { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
        let job = h.job(id).await;
        assert_eq!(job.lease_epoch, winners[0].epoch);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.lease.unwrap().holder, winners[0].holder);
    }
}

pub async fn takeover_racing_old_holders_finalize_has_one_outcome(h: &Harness) {
    for _round in 0..10 {
        let id = h.new_job().await;
        let old = h.acquire(id, "old").await;
        h.advance(TTL + secs(1)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (repo, b) = (h.repo.clone(), barrier.clone());
        let finalize = tokio::spawn(async move {
            b.wait().await;
            repo.finalize(&old, &succeeded()).await
        });
        let (repo, b) = (h.repo.clone(), barrier.clone());
        let takeover = tokio::spawn(async move {
            b.wait().await;
            repo.acquire(&Harness::request(id, "new")).await.unwrap()
        });
        let finalized = finalize.await.unwrap();
        let taken = takeover.await.unwrap();
        let job = h.job(id).await;
        match (finalized, taken) {
            (Ok(JobStatus::Succeeded), AcquireOutcome::Terminal(JobStatus::Succeeded)) => {
                assert_eq!(job.status, JobStatus::Succeeded);
                assert_eq!(job.lease, None);
            }
            (Err(FencedError::LeaseLost), AcquireOutcome::Acquired { lease, .. }) => {
                assert_eq!(job.status, JobStatus::Running);
                assert_eq!(job.lease_epoch, lease.epoch);
                assert_eq!(job.artifact_key, None);
            }
            other => panic!("both or neither won: {other:?}"),
        }
    }
}

pub async fn invalid_progress_report_is_refused_without_a_write(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    let before = h.job(id).await;
    // Built field by field, bypassing ProgressReport::new.
    let long = ProgressReport {
        stage: Stage::Tts,
        percent: Percent::new(10).unwrap(),
        segment: None,
        message: Some("x".repeat(ProgressReport::MAX_MESSAGE_LEN + 1)),
    };
    let result = h.repo.report_progress(&lease, &long).await;
    assert!(
        matches!(result, Err(FencedError::Repo(RepoError::Invalid(_)))),
        "{result:?}"
    );
    assert_eq!(h.job(id).await, before);
}

pub async fn visible_changes_are_published_to_update_subscribers(h: &Harness) {
    let id = h.new_job().await;
    let mut updates = h.repo.job_updates().await.unwrap();
    let lease = h.acquire(id, "a").await;
    h.repo.heartbeat(&lease, TTL).await.unwrap();
    h.repo
        .report_progress(&lease, &report(Stage::Tts, 40))
        .await
        .unwrap();
    h.repo.finalize(&lease, &succeeded()).await.unwrap();
    let mut seen = 0;
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(500), updates.next()).await
    {
        assert_eq!(got, id);
        seen += 1;
    }
    // acquire (running), progress, finalize (succeeded); heartbeats are not news.
    assert_eq!(seen, 3, "one notification per visible change");
}

pub async fn fail_unstarted_only_fails_a_job_no_worker_took(h: &Harness) {
    let error = JobError::new(ErrorCode::new("enqueue_failed").unwrap(), "queue refused");
    let fresh = h.new_job().await;
    assert!(h.repo.fail_unstarted(fresh, error.clone()).await.unwrap());
    let job = h.job(fresh).await;
    assert_eq!(
        (job.status, job.error.as_ref()),
        (JobStatus::Failed, Some(&error))
    );
    assert!(job.finished_at.is_some());

    let started = h.new_job().await;
    let lease = h.acquire(started, "a").await;
    h.repo.release(&lease, None).await.unwrap();
    let before = h.job(started).await;
    assert!(!h.repo.fail_unstarted(started, error.clone()).await.unwrap());
    assert_eq!(
        h.job(started).await,
        before,
        "a job that ran once is not touched"
    );
    assert!(
        !h.repo
            .fail_unstarted(domain::JobId::new(), error)
            .await
            .unwrap()
    );
}

pub async fn sweep_reports_a_long_queued_job_once_per_period(h: &Harness) {
    let policy = SweepPolicy {
        expired_for: secs(300),
        max_attempts: MAX_ATTEMPTS,
        queued_for: Some(secs(600)),
        queued_limit: u32::MAX,
    };
    let stale = h.new_job().await;
    h.advance(secs(601)).await;
    let fresh = h.new_job().await;
    let swept = h.repo.sweep(&policy).await.unwrap();
    assert_eq!(
        swept,
        vec![domain::SweptJob {
            id: stale,
            status: JobStatus::Queued,
            from: JobStatus::Queued,
        }]
    );
    assert_eq!(h.job(stale).await.status, JobStatus::Queued);
    assert!(
        h.repo.sweep(&policy).await.unwrap().is_empty(),
        "touched: not again at once"
    );
    h.advance(secs(601)).await;
    let mut again: Vec<_> = h
        .repo
        .sweep(&policy)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    again.sort();
    let mut both = vec![stale, fresh];
    both.sort();
    assert_eq!(again, both);
}

pub async fn sweep_reports_at_most_the_limit_of_queued_jobs_longest_untouched_first(h: &Harness) {
    let policy = SweepPolicy {
        expired_for: secs(300),
        max_attempts: MAX_ATTEMPTS,
        queued_for: Some(secs(600)),
        queued_limit: 2,
    };
    let mut backlog = Vec::new();
    for _ in 0..5 {
        backlog.push(h.new_job().await);
        h.advance(secs(1)).await;
    }
    // A dead holder's job is never held back by the limit.
    let stuck = h.new_job().await;
    h.acquire(stuck, "w1").await;
    h.advance(secs(601)).await;

    let ids = |swept: Vec<domain::SweptJob>| -> Vec<domain::JobId> {
        swept.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    let first = ids(h.repo.sweep(&policy).await.unwrap());
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.contains(&stuck), "the stuck job is always taken");
    assert!(
        first.contains(&backlog[0]) && first.contains(&backlog[1]),
        "oldest first"
    );
    assert_eq!(h.job(stuck).await.status, JobStatus::Queued);

    // Reported jobs were touched: the next pass takes the next two of the backlog.
    let second = ids(h.repo.sweep(&policy).await.unwrap());
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.contains(&backlog[2]) && second.contains(&backlog[3]));
    let third = ids(h.repo.sweep(&policy).await.unwrap());
    assert_eq!(third, vec![backlog[4]]);
    assert!(h.repo.sweep(&policy).await.unwrap().is_empty());
}

pub async fn concurrent_sweeps_move_each_job_once(h: &Harness) {
    let policy = SweepPolicy {
        expired_for: secs(10),
        max_attempts: MAX_ATTEMPTS,
        queued_for: None,
        queued_limit: u32::MAX,
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = h.new_job().await;
        h.acquire(id, "dead").await;
        ids.push(id);
    }
    h.advance(TTL + secs(11)).await;
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let (repo, policy) = (h.repo.clone(), policy.clone());
            tokio::spawn(async move { repo.sweep(&policy).await.unwrap() })
        })
        .collect();
    let mut moved = Vec::new();
    for s in sweeps {
        moved.extend(s.await.unwrap().into_iter().map(|j| j.id));
    }
    moved.sort();
    ids.sort();
    assert_eq!(moved, ids, "every stuck job moved exactly once");
}

/// The sweeper's compare-and-set: a queued job's delivery generation moves from the value the
/// caller saw to the next, once; a stale `from`, a running or a terminal job changes nothing.
pub async fn delivery_generation_advances_once_per_generation_and_only_while_queued(h: &Harness) {
    let id = h.new_job().await;
    assert_eq!(
        h.job(id).await.delivery_generation,
        0,
        "a new job is generation 0"
    );
    let repo = h.repo.clone();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.advance_delivery_generation(id, 0).await.unwrap() })
        })
        .collect();
    let mut won = Vec::new();
    for r in racers {
        won.extend(r.await.unwrap());
    }
    assert_eq!(
        won,
        vec![1],
        "exactly one of four racing sweepers advances 0 → 1"
    );
    let job = h.job(id).await;
    assert_eq!(
        (job.status, job.delivery_generation),
        (JobStatus::Queued, 1)
    );
    assert_eq!(
        h.repo.advance_delivery_generation(id, 0).await.unwrap(),
        None,
        "a stale generation is refused"
    );
    assert_eq!(
        h.repo.advance_delivery_generation(id, 1).await.unwrap(),
        Some(2)
    );

    let lease = h.acquire(id, "a").await;
    let before = h.job(id).await;
    assert_eq!(
        h.repo.advance_delivery_generation(id, 2).await.unwrap(),
        None,
        "a running job keeps its generation"
    );
    assert_eq!(h.job(id).await, before);
    h.repo
        .finalize(&lease, &domain::FinalOutcome::Canceled)
        .await
        .unwrap();
    let before = h.job(id).await;
    assert_eq!(
        h.repo.advance_delivery_generation(id, 2).await.unwrap(),
        None
    );
    assert_eq!(h.job(id).await, before, "a terminal job is not touched");
    assert_eq!(
        h.repo
            .advance_delivery_generation(domain::JobId::new(), 0)
            .await
            .unwrap(),
        None
    );
}

pub async fn an_equal_percent_at_an_earlier_stage_is_refused(h: &Harness) {
    let id = h.new_job().await;
    let lease = h.acquire(id, "a").await;
    h.repo
        .report_progress(&lease, &report(Stage::Render, 30))
        .await
        .unwrap();
    let before = h.job(id).await;
    let r = h
        .repo
        .report_progress(&lease, &report(Stage::Tts, 30))
        .await
        .unwrap();
    assert_eq!(
        r,
        ProgressOutcome::Regressed {
            current: Percent::new(30).unwrap()
        }
    );
    assert_eq!(
        h.job(id).await,
        before,
        "the stage label does not move back"
    );
    let r = h
        .repo
        .report_progress(&lease, &report(Stage::Compose, 30))
        .await
        .unwrap();
    assert_eq!(r, ProgressOutcome::Applied);
    assert_eq!(h.job(id).await.progress.unwrap().stage, Stage::Compose);
}
