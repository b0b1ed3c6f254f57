//! The liveness rule: a lease whose holder's session no longer exists may be taken over
//! before it expires, and the sweeper requeues its job at once. Safety is the epoch's, as
//! for any takeover: the old holder, if it is in fact alive, is fenced at its next write.

use std::time::Duration;

use domain::{
    AcquireOutcome, CancelEvent, ErrorCode, FencedError, FinalOutcome, HolderSession, JobStatus,
    SweepPolicy,
};
use futures_util::StreamExt;

use crate::{Harness, MAX_ATTEMPTS, TTL};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A sweep that would move an expired lease only 5 minutes after expiry.
fn patient_sweep() -> SweepPolicy {
    SweepPolicy {
        expired_for: secs(300),
        max_attempts: MAX_ATTEMPTS,
        queued_for: None,
        queued_limit: u32::MAX,
    }
}

fn assert_lost<T: std::fmt::Debug>(result: Result<T, FencedError>, what: &str) {
    assert!(
        matches!(result, Err(FencedError::LeaseLost)),
        "{what}: expected LeaseLost, got {result:?}"
    );
}

pub async fn a_gone_holders_lease_is_taken_over_before_it_expires(h: &Harness) {
    let id = h.new_job().await;
    let session = h.sessions.open().await;
    let first = h.acquire_in(id, "a", Some(session)).await;
    assert_eq!(
        h.job(id).await.lease.unwrap().session,
        Some(session),
        "the lease records its holder's session"
    );
    h.advance(secs(5)).await;
    h.sessions.end(session).await;
    let second = h.acquire_in(id, "b", None).await;
    assert_eq!(
        second.epoch,
        first.epoch.next(),
        "a takeover bumps the epoch"
    );
    assert_eq!(second.attempt, 2);
    let job = h.job(id).await;
    let state = job.lease.unwrap();
    assert_eq!(state.holder.as_str(), "b");
    assert_eq!(
        state.session, None,
        "the new lease has its own (no) session"
    );
}

pub async fn a_live_holders_lease_is_not_taken_over_before_it_expires(h: &Harness) {
    let id = h.new_job().await;
    let session = h.sessions.open().await;
    let first = h.acquire_in(id, "a", Some(session)).await;
    h.advance(secs(30)).await;
    let before = h.job(id).await;
    let outcome = h.repo.acquire(&Harness::request(id, "b")).await.unwrap();
    assert!(
        matches!(&outcome, AcquireOutcome::Busy { holder, .. } if holder.as_str() == "a"),
        "a live session keeps its unexpired lease, got {outcome:?}"
    );
    assert_eq!(h.job(id).await, before, "a refused acquire changes nothing");
    // The TTL still applies to a holder whose session lives (a paused process).
    h.advance(TTL).await;
    let second = h.acquire_in(id, "b", None).await;
    assert_eq!(second.epoch, first.epoch.next());
    h.sessions.end(session).await;
}

pub async fn a_reused_pid_with_another_start_counts_as_gone(h: &Harness) {
    let id = h.new_job().await;
    let live = h.sessions.open().await;
    // The same pid, an earlier start: the holder's session ended and the pid went to
    // the session that lives now. A millisecond earlier, so that the earlier session still
    // began after the server did (a session older than the server is left to the TTL), even
    // on a server started a moment ago.
    let earlier = HolderSession {
        pid: live.pid,
        backend_start: live.backend_start - chrono::TimeDelta::milliseconds(1),
    };
    let first = h.acquire_in(id, "a", Some(earlier)).await;
    let second = h.acquire_in(id, "b", None).await;
    assert_eq!(second.epoch, first.epoch.next());
    h.sessions.end(live).await;
}

pub async fn a_holder_whose_session_dropped_is_fenced_at_its_next_write(h: &Harness) {
    let id = h.new_job().await;
    let session = h.sessions.open().await;
    let old = h.acquire_in(id, "a", Some(session)).await;
    // Its connection drops, the process lives on: another worker takes the job over.
    h.sessions.end(session).await;
    let new = h.acquire_in(id, "b", None).await;
    let before = h.job(id).await;
    assert_lost(h.repo.heartbeat(&old, TTL).await, "heartbeat");
    let replacement = h.sessions.open().await;
    assert_lost(
        h.repo.register_session(&old, replacement).await,
        "re-registration",
    );
    assert_lost(
        h.repo
            .finalize(
                &old,
                &FinalOutcome::Succeeded {
                    artifact_key: "k".into(),
                },
            )
            .await,
        "finalize",
    );
    assert_lost(h.repo.release(&old, None).await, "release");
    assert_eq!(h.job(id).await, before, "nothing it wrote was accepted");
    h.repo.heartbeat(&new, TTL).await.expect("b holds it");
    h.sessions.end(replacement).await;
}

pub async fn a_reconnected_listener_re_registers_its_session(h: &Harness) {
    let subscription = h.repo.cancel_notifications().await.unwrap();
    let first = subscription
        .session
        .expect("a subscription reports its session");
    let mut events = subscription.events;
    let kept = h.new_job().await;
    let dropped = h.new_job().await;
    let kept_lease = h.acquire_in(kept, "a", Some(first)).await;
    let dropped_lease = h.acquire_in(dropped, "a", Some(first)).await;

    h.sessions.end(first).await;
    let next = tokio::time::timeout(secs(10), async {
        loop {
            match events.next().await {
                Some(CancelEvent::Session(session)) => break session,
                Some(CancelEvent::Cancel(_) | CancelEvent::SessionLost) => continue,
                None => panic!("the subscription ended instead of reconnecting"),
            }
        }
    })
    .await
    .expect("the new session is reported within 10 s");
    assert_ne!(next, first, "a reconnect is a new session");

    h.repo
        .register_session(&kept_lease, next)
        .await
        .expect("the holder re-registers on the lease it holds");
    assert_eq!(h.job(kept).await.lease.unwrap().session, Some(next));
    let outcome = h.repo.acquire(&Harness::request(kept, "b")).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "the re-registered lease lives: {outcome:?}"
    );
    // The lease it did not re-register still names the ended session.
    let taken = h.acquire_in(dropped, "b", None).await;
    assert_eq!(taken.epoch, dropped_lease.epoch.next());
    assert_lost(
        h.repo.register_session(&dropped_lease, next).await,
        "re-registration after a takeover",
    );
    // The cancel feed still works on the new connection.
    h.repo.request_cancel(kept).await.unwrap();
    let cancel = tokio::time::timeout(secs(10), async {
        loop {
            if let Some(CancelEvent::Cancel(id)) = events.next().await {
                break id;
            }
        }
    })
    .await
    .expect("cancel notification on the reconnected listener");
    assert_eq!(cancel, kept);
}

pub async fn register_session_is_fenced(h: &Harness) {
    let id = h.new_job().await;
    let session = h.sessions.open().await;
    let lease = h.acquire_in(id, "a", None).await;
    let before = h.job(id).await;
    h.repo.register_session(&lease, session).await.unwrap();
    let after = h.job(id).await;
    let (was, now) = (before.lease.unwrap(), after.lease.clone().unwrap());
    assert_eq!(now.session, Some(session));
    assert_eq!(
        (now.expires_at, now.heartbeat_at),
        (was.expires_at, was.heartbeat_at),
        "registration does not extend the lease"
    );
    assert_eq!(after.lease_epoch, before.lease_epoch);
    // A write from another holder, or after the end, is refused.
    let mut other = lease.clone();
    other.holder = domain::InstanceId::new("b").unwrap();
    assert_lost(
        h.repo.register_session(&other, session).await,
        "other holder",
    );
    h.repo.release(&lease, None).await.unwrap();
    let queued = h.job(id).await;
    assert_lost(h.repo.register_session(&lease, session).await, "released");
    assert_eq!(h.job(id).await, queued);
    h.sessions.end(session).await;
}

pub async fn sweep_requeues_a_gone_holders_job_at_once(h: &Harness) {
    let gone = h.new_job().await;
    let live = h.new_job().await;
    let last = h.new_job().await;
    let (s1, s2) = (h.sessions.open().await, h.sessions.open().await);
    h.acquire_in(gone, "a", Some(s1)).await;
    h.acquire_in(live, "b", Some(s2)).await;
    // `last` has used its attempts: a gone holder fails it, as an expired lease would.
    for i in 0..MAX_ATTEMPTS {
        let lease = h.acquire_in(last, "c", Some(s1)).await;
        if i + 1 < MAX_ATTEMPTS {
            h.repo.release(&lease, None).await.unwrap();
        }
    }
    assert!(h.repo.sweep(&patient_sweep()).await.unwrap().is_empty());
    h.sessions.end(s1).await;
    let mut swept = h.repo.sweep(&patient_sweep()).await.unwrap();
    swept.sort_by_key(|j| j.id);
    let mut want = vec![(gone, JobStatus::Queued), (last, JobStatus::Failed)];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(
        swept.iter().map(|j| (j.id, j.status)).collect::<Vec<_>>(),
        want
    );
    assert!(swept.iter().all(|j| j.from == JobStatus::Running));
    let requeued = h.job(gone).await;
    assert_eq!(requeued.lease, None);
    assert_eq!(
        requeued.error.unwrap().code.as_str(),
        ErrorCode::WORKER_GONE
    );
    assert_eq!(
        h.job(last).await.error.unwrap().code.as_str(),
        ErrorCode::ATTEMPTS_EXHAUSTED
    );
    assert_eq!(h.job(live).await.status, JobStatus::Running);
    h.sessions.end(s2).await;
}
