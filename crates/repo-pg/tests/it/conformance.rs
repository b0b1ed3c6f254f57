//! The repository conformance suite on `repo-pg`, one fresh database per test.
//!
//! Postgres reads time from `now()`, which a test cannot stop; [`PgTime`] moves the clock
//! forward instead by making every stored timestamp older by the same amount, which is the
//! same thing to every rule that compares them.

use std::sync::Arc;
use std::time::Duration;

use domain::HolderSession;
use repo_conformance::{Harness, SessionControl, TimeTravel};
use repo_pg::PgRepository;
use sqlx::{Connection, PgConnection, PgPool};

use crate::common;

struct PgTime(PgPool);

#[async_trait::async_trait]
impl TimeTravel for PgTime {
    async fn advance(&self, by: Duration) {
        sqlx::query(
            "UPDATE video_jobs SET
                created_at = created_at - $1, updated_at = updated_at - $1,
                started_at = started_at - $1, finished_at = finished_at - $1,
                progress_updated_at = progress_updated_at - $1,
                lease_heartbeat_at = lease_heartbeat_at - $1,
                lease_expires_at = lease_expires_at - $1,
                cancel_requested_at = cancel_requested_at - $1",
        )
        .bind(by)
        .execute(&self.0)
        .await
        .unwrap();
        sqlx::query("UPDATE video_job_idempotency_keys SET created_at = created_at - $1")
            .bind(by)
            .execute(&self.0)
            .await
            .unwrap();
    }
}

/// Real sessions: a connection each, ended by `pg_terminate_backend` — which is also what
/// ends a cancel subscription's connection, so its listener really reconnects.
struct PgSessions {
    url: String,
    pool: PgPool,
    open: tokio::sync::Mutex<Vec<PgConnection>>,
}

#[async_trait::async_trait]
impl SessionControl for PgSessions {
    async fn open(&self) -> HolderSession {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        let session = common::session_of(&mut conn).await;
        self.open.lock().await.push(conn);
        session
    }

    async fn end(&self, session: HolderSession) {
        common::end_session(&self.pool, session).await;
    }
}

async fn harness() -> Harness {
    let db = common::migrated_database().await;
    Harness {
        repo: Arc::new(PgRepository::new(db.pool.clone())),
        time: Arc::new(PgTime(db.pool.clone())),
        sessions: Arc::new(PgSessions {
            url: db.url.clone(),
            pool: db.pool.clone(),
            open: tokio::sync::Mutex::default(),
        }),
        guard: Some(Arc::new(db)),
    }
}

repo_conformance::conformance_suite!(harness());

#[test]
fn state_machine_matches_the_reference_model() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let harness = runtime.block_on(harness());
    // Fewer cases than on repo-mem: each step is a few round trips.
    repo_conformance::model::run_property(&runtime, &harness, 64, 40);
}

/// Expired idempotency keys are purged by the creates that add keys, a batch at a time, so
/// the table stays bounded with no process of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_idempotent_create_purges_a_batch_of_expired_keys() {
    use domain::{IdempotencyKey, IdempotentRequest, JobId, NewJob};
    let h = harness().await;
    let db = h
        .guard
        .as_ref()
        .and_then(|g| g.downcast_ref::<test_pg::TestDb>())
        .unwrap();
    let create = |key: String| {
        let repo = h.repo.clone();
        async move {
            let request = IdempotentRequest {
                scope: [1; 32],
                key: IdempotencyKey::new(key).unwrap(),
                fingerprint: [7; 32],
                retention: Duration::from_secs(24 * 3600),
            };
            let job = NewJob {
                id: JobId::new(),
                input: serde_json::json!({}),
            };
            repo.create_idempotent(job, &request).await.unwrap();
        }
    };
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM video_job_idempotency_keys")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    for i in 0..20 {
        create(format!("old-{i}")).await;
    }
    h.advance(Duration::from_secs(24 * 3600 - 60)).await;
    create("fresh-1".into()).await;
    assert_eq!(rows().await, 21, "nothing is purged before its retention");
    h.advance(Duration::from_secs(120)).await;
    create("fresh-2".into()).await;
    assert_eq!(
        rows().await,
        22 - repo_pg::sql::IDEMPOTENCY_PURGE_BATCH,
        "one create purges one batch, oldest first"
    );
    create("fresh-3".into()).await;
    assert_eq!(
        rows().await,
        3,
        "the rest of the expired keys, and only those"
    );
}
