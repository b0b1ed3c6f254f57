//! What the repository's tests on Postgres share: a fresh migrated database, and the
//! sessions that leases record (reading one, ending one).

use std::time::Duration;

use domain::HolderSession;
use sqlx::{PgConnection, PgPool};

/// A fresh database of its own, with the schema applied.
pub async fn migrated_database() -> test_pg::TestDb {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    db
}

/// The session `conn` runs in, as a lease records it.
pub async fn session_of(conn: &mut PgConnection) -> HolderSession {
    let (pid, backend_start) = sqlx::query_as::<_, (i32, chrono::DateTime<chrono::Utc>)>(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
    .unwrap();
    HolderSession { pid, backend_start }
}

/// Terminates `session` and waits until the server no longer lists it.
pub async fn end_session(pool: &PgPool, session: HolderSession) {
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(session.pid)
        .execute(pool)
        .await
        .unwrap();
    // The backend leaves pg_stat_activity a moment after the signal.
    for _ in 0..500 {
        let there: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE pid = $1 AND backend_start = $2)",
        )
        .bind(session.pid)
        .bind(session.backend_start)
        .fetch_one(pool)
        .await
        .unwrap();
        if !there {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {session:?} still exists 5 s after pg_terminate_backend");
}
