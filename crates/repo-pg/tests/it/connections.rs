//! What the repository's statements cost and leave behind on a real server: one round trip
//! per statement (no connection check on return), and no session left running a statement
//! whose caller gave up.

use std::time::{Duration, Instant};

use domain::{
    AcquireOutcome, AcquireRequest, FinalOutcome, InstanceId, JobId, JobRepository, NewJob,
};
use repo_pg::{PgRepository, PoolConfig};
use serde_json::json;

use crate::common;

fn request(id: JobId) -> AcquireRequest {
    AcquireRequest {
        job_id: id,
        holder: InstanceId::new("w1").unwrap(),
        max_attempts: 5,
        ttl: Duration::from_secs(60),
        session: None,
    }
}

/// Creates, acquires, heartbeats and finalizes one job; the lease of the acquire.
async fn one_job(repo: &PgRepository) {
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: json!({}),
    })
    .await
    .unwrap();
    let AcquireOutcome::Acquired { lease, .. } = repo.acquire(&request(id)).await.unwrap() else {
        panic!("a fresh job is acquired");
    };
    repo.heartbeat(&lease, Duration::from_secs(60))
        .await
        .unwrap();
    repo.finalize(&lease, &FinalOutcome::Canceled)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_statement_costs_one_round_trip_once_its_connection_has_prepared_it() {
    let db = common::migrated_database().await;
    let Some((url, wire)) = test_pg::wire::through_proxy(&db.url).await else {
        panic!(
            "DATABASE_URL must name a TCP host and port for this test: {}",
            db.url
        );
    };
    let repo = PgRepository::new(repo_pg::connect_lazy(&url, &PoolConfig::default()).unwrap());
    // The first job opens the connection and prepares each statement on it.
    one_job(&repo).await;
    let (statements0, trips0) = wire.read();

    one_job(&repo).await;
    one_job(&repo).await;
    // Anything sent after a reply (sqlx's pool pinged each connection it took back) would
    // have arrived by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (statements, trips) = wire.read();
    assert_eq!(statements - statements0, 8, "4 statements per job");
    assert_eq!(
        trips - trips0,
        8,
        "one round trip per statement, nothing else"
    );
    repo.close().await;
}

/// Sessions of `db` other than the caller's that are running a statement.
async fn busy_sessions(db: &test_pg::TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_statement_whose_caller_gave_up_is_ended_by_the_server_and_its_connection_closed() {
    let db = common::migrated_database().await;
    let repo = PgRepository::new(repo_pg::connect_lazy(&db.url, &PoolConfig::default()).unwrap());
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: json!({}),
    })
    .await
    .unwrap();
    let AcquireOutcome::Acquired { lease, .. } = repo.acquire(&request(id)).await.unwrap() else {
        panic!("a fresh job is acquired");
    };

    // Another session holds the row, so the heartbeat waits on its lock.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM video_jobs WHERE id = $1 FOR UPDATE")
        .bind(id.as_uuid())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        repo.heartbeat(&lease, Duration::from_secs(60)),
    )
    .await;
    assert!(gave_up.is_err(), "the heartbeat waits on the lock");

    // The abandoned statement's session ends long before the 10 s statement timeout, while
    // the lock it waited for is still held.
    let started = Instant::now();
    while busy_sessions(&db).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the server still runs a statement nobody waits for"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its connection was closed and a replacement opened in the background, so the
    // caller's retry does not pay for a new connection on its short bound.
    let started = Instant::now();
    loop {
        let idle: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'video-worker'
               AND state = 'idle'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if idle == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{idle} idle connections, not one replacement"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    blocker.rollback().await.unwrap();

    // The next statement runs on a fresh connection and sees the lease intact.
    let ack = repo
        .heartbeat(&lease, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!ack.cancel_requested);
    repo.close().await;
}

#[tokio::test]
async fn open_connections_never_exceed_the_configured_maximum() {
    let db = common::migrated_database().await;
    let config = PoolConfig {
        max_connections: 2,
        ..PoolConfig::default()
    };
    let repo = PgRepository::new(repo_pg::connect_lazy(&db.url, &config).unwrap());
    let ids: Vec<JobId> = (0..12).map(|_| JobId::new()).collect();
    let creates = ids.iter().map(|id| {
        repo.create(NewJob {
            id: *id,
            input: json!({}),
        })
    });
    for created in futures_util::future::join_all(creates).await {
        created.unwrap();
    }
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'video-worker'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!((1..=2).contains(&open), "{open} connections open");
    for id in ids {
        assert!(repo.get(id).await.unwrap().is_some());
    }
    repo.close().await;
}
