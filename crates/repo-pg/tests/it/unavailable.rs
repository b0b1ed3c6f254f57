//! A database that cannot be reached is a retryable failure, not a refusal or a panic.

use std::time::Duration;

use domain::{AcquireRequest, InstanceId, JobId, JobRepository};
use repo_pg::{PgRepository, PoolConfig};

#[tokio::test]
async fn unreachable_database_is_a_retryable_error() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let pool = repo_pg::connect_lazy(&format!("postgres://nobody@127.0.0.1:{port}/none"), &config)
        .unwrap();
    let repo = PgRepository::new(pool);
    let request = AcquireRequest {
        job_id: JobId::new(),
        holder: InstanceId::new("w").unwrap(),
        ttl: Duration::from_secs(60),
        max_attempts: 5,
        session: None,
    };
    let error = repo.acquire(&request).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    let error = repo.get(JobId::new()).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[test]
fn malformed_url_is_refused_up_front() {
    assert!(repo_pg::connect_lazy("not a url", &PoolConfig::default()).is_err());
}
