//! The liveness rule where the project runs: workers that connect as a role without
//! superuser or `pg_read_all_stats` see other roles' sessions in `pg_stat_activity` with
//! `backend_start` NULL. Such a session must count as alive (the TTL then applies), never
//! as gone; a session of the worker's own role is seen in full, so the rule works there.

use std::time::Duration;

use domain::{
    AcquireOutcome, AcquireRequest, HolderSession, InstanceId, JobId, JobRepository, NewJob,
};
use repo_pg::PgRepository;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

use crate::common::{self, end_session, session_of};

fn request(job_id: JobId, holder: &str, session: Option<HolderSession>) -> AcquireRequest {
    AcquireRequest {
        job_id,
        holder: InstanceId::new(holder).unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session,
    }
}

async fn new_job(repo: &PgRepository) -> JobId {
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: serde_json::json!({}),
    })
    .await
    .unwrap();
    id
}

/// `url` with its user replaced by `role`.
fn as_role(url: &str, role: &str) -> String {
    let rest = url.split_once('@').map_or(url, |(_, rest)| rest);
    format!("postgres://{role}@{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_hidden_from_the_workers_role_counts_as_alive() {
    let db = common::migrated_database().await;
    let role = format!(
        "vw_worker_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    for statement in [
        format!("CREATE ROLE {role} LOGIN NOSUPERUSER"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON video_jobs TO {role}"),
    ] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }
    let role_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&as_role(&db.url, &role))
        .await
        .unwrap();
    let admin = PgRepository::new(db.pool.clone());
    let worker = PgRepository::new(role_pool.clone());

    // A holder connected as another role (the superuser here).
    let mut other_conn = PgConnection::connect(&db.url).await.unwrap();
    let other = session_of(&mut other_conn).await;
    let hidden: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT backend_start FROM pg_stat_activity WHERE pid = $1")
            .bind(other.pid)
            .fetch_one(&role_pool)
            .await
            .unwrap();
    assert_eq!(hidden, None, "the worker's role cannot see the start of it");

    let id = new_job(&admin).await;
    let held = admin.acquire(&request(id, "a", Some(other))).await.unwrap();
    assert!(matches!(held, AcquireOutcome::Acquired { .. }), "{held:?}");
    let outcome = worker.acquire(&request(id, "b", None)).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "a session whose start is hidden is alive, not gone: {outcome:?}"
    );
    // Even a pid that looks reused cannot be told from a live one: alive, the TTL applies.
    let reused = HolderSession {
        pid: other.pid,
        backend_start: other.backend_start - chrono::TimeDelta::hours(1),
    };
    let id2 = new_job(&admin).await;
    admin
        .acquire(&request(id2, "a", Some(reused)))
        .await
        .unwrap();
    let outcome = worker.acquire(&request(id2, "b", None)).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "{outcome:?}"
    );
    let swept = worker
        .sweep(&domain::SweepPolicy {
            expired_for: Duration::from_secs(300),
            max_attempts: 5,
            queued_for: None,
            queued_limit: u32::MAX,
        })
        .await
        .unwrap();
    assert!(
        swept.is_empty(),
        "nor does the sweeper move them: {swept:?}"
    );

    // Once the pid is gone altogether, the hidden session is gone too.
    end_session(&db.pool, other).await;
    let outcome = worker.acquire(&request(id, "b", None)).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Acquired { .. }),
        "{outcome:?}"
    );

    // A session of the worker's own role is seen in full: the rule works between workers
    // that share a role.
    let mut own_conn = PgConnection::connect(&as_role(&db.url, &role))
        .await
        .unwrap();
    let own = session_of(&mut own_conn).await;
    let id3 = new_job(&admin).await;
    worker.acquire(&request(id3, "c", Some(own))).await.unwrap();
    let outcome = worker.acquire(&request(id3, "d", None)).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "{outcome:?}"
    );
    end_session(&db.pool, own).await;
    let outcome = worker.acquire(&request(id3, "d", None)).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Acquired { .. }),
        "a gone session of the same role is taken over before expiry: {outcome:?}"
    );

    // With pg_read_all_stats, a role sees other roles' sessions in full.
    sqlx::query(&format!("GRANT pg_read_all_stats TO {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    let mut seen_conn = PgConnection::connect(&as_role(&db.url, &role))
        .await
        .unwrap();
    let mut other_conn2 = PgConnection::connect(&db.url).await.unwrap();
    let other2 = session_of(&mut other_conn2).await;
    let seen: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT backend_start FROM pg_stat_activity WHERE pid = $1")
            .bind(other2.pid)
            .fetch_one(&mut seen_conn)
            .await
            .unwrap();
    assert_eq!(seen, Some(other2.backend_start));

    drop((own_conn, other_conn, other_conn2));
    seen_conn.close().await.unwrap();
    role_pool.close().await;
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    // The role is the cluster's: dropped from another database than the one it has rights in.
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let mut maintenance = PgConnection::connect(&db.url.replace(&current, "postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut maintenance)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cancel_listener_whose_session_is_ended_reports_it_lost_then_the_new_one() {
    use futures_util::StreamExt;
    let db = common::migrated_database().await;
    let repo = PgRepository::new(db.pool.clone());
    let subscription = repo.cancel_notifications().await.unwrap();
    let first = subscription.session.unwrap();
    let mut events = subscription.events;
    end_session(&db.pool, first).await;
    let lost = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the loss is reported at once");
    assert!(
        matches!(lost, Some(domain::CancelEvent::SessionLost)),
        "{lost:?}"
    );
    let next = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a new session within 10 s");
    let Some(domain::CancelEvent::Session(second)) = next else {
        panic!("expected the new session, got {next:?}");
    };
    assert_ne!(second, first);
    // The new connection listens: a cancel reaches it.
    let id = new_job(&repo).await;
    let acquired = repo
        .acquire(&AcquireRequest {
            job_id: id,
            holder: InstanceId::new("w").unwrap(),
            ttl: Duration::from_secs(60),
            max_attempts: 5,
            session: Some(second),
        })
        .await
        .unwrap();
    assert!(matches!(acquired, AcquireOutcome::Acquired { .. }));
    repo.request_cancel(id).await.unwrap();
    let cancel = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the cancel arrives");
    assert!(
        matches!(cancel, Some(domain::CancelEvent::Cancel(got)) if got == id),
        "{cancel:?}"
    );
}

#[tokio::test]
async fn a_session_from_before_the_server_started_is_left_to_the_ttl() {
    let db = common::migrated_database().await;
    let repo = PgRepository::new(db.pool.clone());
    let server_start: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT pg_postmaster_start_time()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // What a lease holds after a restart: a session the new server never listed. (A pid
    // no backend has: Linux pids stay below 2^22.)
    let before_restart = HolderSession {
        pid: 2_000_000_000,
        backend_start: server_start - chrono::Duration::minutes(5),
    };
    let request = |holder: &str, session| AcquireRequest {
        job_id: JobId::new(),
        holder: InstanceId::new(holder).unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session,
    };
    let id = new_job(&repo).await;
    let first = AcquireRequest {
        job_id: id,
        ..request("a", Some(before_restart))
    };
    assert!(matches!(
        repo.acquire(&first).await.unwrap(),
        AcquireOutcome::Acquired { .. }
    ));
    let second = AcquireRequest {
        job_id: id,
        ..request("b", None)
    };
    let outcome = repo.acquire(&second).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Busy { .. }),
        "a restart is not a dead worker: {outcome:?}"
    );

    // The same missing pid with a start after the server's (and before the statements
    // that judge it) is a dead worker.
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let gone = HolderSession {
        pid: 2_000_000_000,
        backend_start: now,
    };
    let other = new_job(&repo).await;
    let first = AcquireRequest {
        job_id: other,
        ..request("a", Some(gone))
    };
    assert!(matches!(
        repo.acquire(&first).await.unwrap(),
        AcquireOutcome::Acquired { .. }
    ));
    let taken = AcquireRequest {
        job_id: other,
        ..request("b", None)
    };
    let outcome = repo.acquire(&taken).await.unwrap();
    assert!(
        matches!(outcome, AcquireOutcome::Acquired { .. }),
        "{outcome:?}"
    );
}
