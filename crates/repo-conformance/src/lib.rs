//! The repository conformance suite: the rules of SPEC §3, written once, run on every
//! [`JobRepository`] (`repo-mem` and `repo-pg`).
//!
//! A backend's test file builds a [`Harness`] — the repository plus a way to move its clock —
//! and invokes [`conformance_suite!`], which expands to one `#[tokio::test]` per case in
//! [`cases`]. [`model`] holds the property test: random operations from several instances,
//! checked step by step against a small reference model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

pub mod cases;
pub mod idempotency;
pub mod liveness;
pub mod model;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, HolderSession, InstanceId, Job, JobId, JobRepository, Lease,
    ManualClock, NewJob,
};

/// Moves a repository's clock forward.
#[async_trait]
pub trait TimeTravel: Send + Sync {
    /// Makes every stored time `by` older, as if `by` had passed.
    async fn advance(&self, by: Duration);
}

#[async_trait]
impl TimeTravel for ManualClock {
    async fn advance(&self, by: Duration) {
        ManualClock::advance(self, by);
    }
}

/// Opens and ends the store's sessions, as workers' connections would.
#[async_trait]
pub trait SessionControl: Send + Sync {
    /// Opens a session that lives until [`SessionControl::end`] (a worker's connection).
    async fn open(&self) -> HolderSession;
    /// Ends `session` — its process died, or its connection dropped — and returns once the
    /// store no longer has it. A cancel subscription whose session it was reconnects under
    /// a new one and reports it.
    async fn end(&self, session: HolderSession);
}

/// A repository under test and its clock.
#[derive(Clone)]
pub struct Harness {
    /// The repository.
    pub repo: Arc<dyn JobRepository>,
    /// Its clock.
    pub time: Arc<dyn TimeTravel>,
    /// Its sessions.
    pub sessions: Arc<dyn SessionControl>,
    /// Whatever must live as long as the test (a test database that is dropped after it).
    pub guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

/// The lease lifetime the cases use.
pub const TTL: Duration = Duration::from_secs(60);
/// The attempt limit the cases use.
pub const MAX_ATTEMPTS: u32 = 3;

impl Harness {
    /// Creates a queued job with a small storyboard.
    pub async fn new_job(&self) -> JobId {
        let id = JobId::new();
        self.repo
            .create(NewJob {
                id,
                input: serde_json::json!({"title": "conformance", "segments": []}),
            })
            .await
            .unwrap();
        id
    }

    /// The acquire request of `holder` for `job_id`, with the suite's TTL and limit.
    pub fn request(job_id: JobId, holder: &str) -> AcquireRequest {
        AcquireRequest {
            job_id,
            holder: InstanceId::new(holder).unwrap(),
            ttl: TTL,
            max_attempts: MAX_ATTEMPTS,
            session: None,
        }
    }

    /// Acquires `job_id` for `holder` under `session`, which must succeed.
    pub async fn acquire_in(
        &self,
        job_id: JobId,
        holder: &str,
        session: Option<HolderSession>,
    ) -> Lease {
        let mut request = Self::request(job_id, holder);
        request.session = session;
        match self.repo.acquire(&request).await.unwrap() {
            AcquireOutcome::Acquired { lease, .. } => lease,
            other => panic!("expected Acquired for {holder}, got {other:?}"),
        }
    }

    /// Acquires `job_id` for `holder`, which must succeed.
    pub async fn acquire(&self, job_id: JobId, holder: &str) -> Lease {
        match self
            .repo
            .acquire(&Self::request(job_id, holder))
            .await
            .unwrap()
        {
            AcquireOutcome::Acquired { lease, .. } => lease,
            other => panic!("expected Acquired for {holder}, got {other:?}"),
        }
    }

    /// The stored job, which must exist.
    pub async fn job(&self, id: JobId) -> Job {
        self.repo.get(id).await.unwrap().expect("job exists")
    }

    /// Moves the clock forward.
    pub async fn advance(&self, by: Duration) {
        self.time.advance(by).await;
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh harness from
/// `$make` (an async expression yielding a [`Harness`]).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            a_retried_idempotent_create_answers_the_first_job_as_it_is_now,
            an_idempotency_key_reused_with_another_request_is_refused,
            idempotency_keys_belong_to_their_caller,
            racing_idempotent_creates_with_one_key_make_one_job,
            an_idempotency_key_is_kept_for_its_retention_then_forgotten
        );
        $crate::conformance_suite!(@cases $make;
            acquire_on_queued_job_grants_the_first_epoch,
            acquire_of_unknown_job_is_not_found,
            second_acquire_while_live_is_busy_with_the_time_left,
            duplicate_acquire_by_the_same_instance_is_busy,
            stale_lease_is_taken_over_with_the_next_epoch,
            old_holder_is_fenced_after_takeover_and_changes_nothing,
            heartbeat_extends_the_lease,
            heartbeat_of_an_expired_lease_nobody_took_keeps_it,
            progress_never_goes_backwards,
            progress_from_an_older_epoch_is_refused,
            progress_does_not_touch_the_lease,
            cancel_on_queued_job_cancels_it_at_once,
            cancel_on_running_job_sets_the_flag_without_touching_lease_or_progress,
            cancel_on_terminal_job_changes_nothing,
            cancel_of_unknown_job_is_not_found,
            dead_workers_lease_goes_stale_after_a_cancel_request,
            heartbeat_reports_a_cancel_request,
            finalize_after_cancel_request_ends_canceled,
            finalize_is_atomic_with_release,
            terminal_state_is_absorbing,
            release_requeues_at_once_for_the_next_attempt,
            release_after_cancel_request_ends_canceled,
            attempts_are_bounded,
            sweep_requeues_fails_or_cancels_stuck_jobs_only,
            list_pages_newest_first_and_filters_by_status,
            create_refuses_a_duplicate_id,
            cancel_notification_reaches_an_earlier_subscriber,
            late_subscriber_learns_of_cancel_from_its_next_heartbeat,
            racing_acquires_have_exactly_one_winner,
            takeover_racing_old_holders_finalize_has_one_outcome,
            invalid_progress_report_is_refused_without_a_write,
            visible_changes_are_published_to_update_subscribers,
            fail_unstarted_only_fails_a_job_no_worker_took,
            delivery_generation_advances_once_per_generation_and_only_while_queued,
            sweep_reports_a_long_queued_job_once_per_period,
            sweep_reports_at_most_the_limit_of_queued_jobs_longest_untouched_first,
            concurrent_sweeps_move_each_job_once,
            an_equal_percent_at_an_earlier_stage_is_refused
        );
        $crate::conformance_suite!(@cases $make;
            a_gone_holders_lease_is_taken_over_before_it_expires,
            a_live_holders_lease_is_not_taken_over_before_it_expires,
            a_reused_pid_with_another_start_counts_as_gone,
            a_holder_whose_session_dropped_is_fenced_at_its_next_write,
            a_reconnected_listener_re_registers_its_session,
            register_session_is_fenced,
            sweep_requeues_a_gone_holders_job_at_once
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness: $crate::Harness = $make.await;
                $crate::cases::$case(&harness).await;
            }
        )*
    };
}
