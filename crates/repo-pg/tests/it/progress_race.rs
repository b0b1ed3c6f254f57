//! Two progress writes that overlap on Postgres under READ COMMITTED: the monotonic guard
//! must hold on the locked row, not on each statement's snapshot.
//!
//! A third session holds the row lock in an open transaction while writes of 60 and 50 are
//! issued on two other connections; both take their snapshot (percent 40) and wait. When the
//! holder commits they run one after the other, in either order: the bar must end at 60.

use std::time::Duration;

use domain::{
    AcquireOutcome, AcquireRequest, InstanceId, JobId, JobRepository, Lease, NewJob, Percent,
    ProgressOutcome, ProgressReport, Stage,
};
use repo_pg::PgRepository;
use sqlx::PgPool;

use crate::common;

fn report(percent: u8) -> ProgressReport {
    ProgressReport::new(Stage::Render, Percent::new(percent).unwrap(), None, None).unwrap()
}

async fn running_job(repo: &PgRepository) -> Lease {
    let id = JobId::new();
    let input = serde_json::json!({});
    repo.create(NewJob { id, input }).await.unwrap();
    let request = AcquireRequest {
        job_id: id,
        holder: InstanceId::new("a").unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session: None,
    };
    let AcquireOutcome::Acquired { lease, .. } = repo.acquire(&request).await.unwrap() else {
        panic!("not acquired");
    };
    assert_eq!(
        repo.report_progress(&lease, &report(40)).await.unwrap(),
        ProgressOutcome::Applied
    );
    lease
}

/// Waits until `n` sessions of this database wait for a lock.
async fn until_waiting(pool: &PgPool, n: i64) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Issues `first` then `second` while the row is locked, releases it, and returns both
/// outcomes and the stored percent.
async fn race(first: u8, second: u8) -> (ProgressOutcome, ProgressOutcome, i16) {
    let db = common::migrated_database().await;
    let repo = PgRepository::new(db.pool.clone());
    let lease = running_job(&repo).await;
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM video_jobs WHERE id = $1 FOR UPDATE")
        .bind(lease.job_id.as_uuid())
        .execute(&mut *holder)
        .await
        .unwrap();
    let write = |percent: u8| {
        let (repo, lease) = (repo.clone(), lease.clone());
        tokio::spawn(async move { repo.report_progress(&lease, &report(percent)).await })
    };
    let a = write(first);
    until_waiting(&db.pool, 1).await;
    let b = write(second);
    until_waiting(&db.pool, 2).await;
    holder.commit().await.unwrap();
    let a = a.await.unwrap().unwrap();
    let b = b.await.unwrap().unwrap();
    let stored: i16 = sqlx::query_scalar("SELECT progress_percent FROM video_jobs WHERE id = $1")
        .bind(lease.job_id.as_uuid())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    (a, b, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_write_that_waited_behind_a_higher_one_is_refused() {
    let (higher, lower, stored) = race(60, 50).await;
    assert_eq!(stored, 60, "the bar moved back");
    assert_eq!(higher, ProgressOutcome::Applied);
    assert_eq!(
        lower,
        ProgressOutcome::Regressed {
            current: Percent::new(60).unwrap()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_write_that_waited_behind_a_lower_one_still_applies() {
    let (lower, higher, stored) = race(50, 60).await;
    assert_eq!(stored, 60);
    assert_eq!(
        (lower, higher),
        (ProgressOutcome::Applied, ProgressOutcome::Applied)
    );
}
