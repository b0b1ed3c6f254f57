//! Conformance cases of idempotent creation (`JobRepository::create_idempotent`): one job per
//! key and request, a key reused with another request refused, keys scoped to their caller,
//! one winner among racing creates, and keys forgotten after their retention.

use std::sync::Arc;
use std::time::Duration;

use domain::{
    IdempotencyKey, IdempotentOutcome, IdempotentRequest, JobId, JobStatus, ListQuery, NewJob,
};

use crate::Harness;

/// The retention the cases use: the API's.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

fn request(scope: u8, key: &str, fingerprint: u8) -> IdempotentRequest {
    IdempotentRequest {
        scope: [scope; 32],
        key: IdempotencyKey::new(key).unwrap(),
        fingerprint: [fingerprint; 32],
        retention: RETENTION,
    }
}

fn new_job() -> NewJob {
    NewJob {
        id: JobId::new(),
        input: serde_json::json!({"title": "idempotent", "segments": []}),
    }
}

async fn jobs(h: &Harness) -> Vec<JobId> {
    let page = h
        .repo
        .list(&ListQuery::new(None, ListQuery::MAX_LIMIT).unwrap())
        .await
        .unwrap();
    page.jobs.iter().map(|j| j.id).collect()
}

async fn create(h: &Harness, request: &IdempotentRequest) -> IdempotentOutcome {
    h.repo.create_idempotent(new_job(), request).await.unwrap()
}

fn created(outcome: IdempotentOutcome) -> JobId {
    match outcome {
        IdempotentOutcome::Created(job) => {
            assert_eq!(job.status, JobStatus::Queued);
            job.id
        }
        other => panic!("expected Created, got {other:?}"),
    }
}

pub async fn a_retried_idempotent_create_answers_the_first_job_as_it_is_now(h: &Harness) {
    let key = request(1, "order-42", 7);
    let first = created(create(h, &key).await);
    assert_eq!(h.job(first).await.input["title"], "idempotent");
    h.acquire(first, "a").await;
    let again = create(h, &key).await;
    let IdempotentOutcome::Existing(job) = again else {
        panic!("expected Existing, got {again:?}");
    };
    assert_eq!(job.id, first);
    assert_eq!(
        job.status,
        JobStatus::Running,
        "the job as it is now, not as created"
    );
    assert_eq!(jobs(h).await, vec![first], "no second job");
}

pub async fn an_idempotency_key_reused_with_another_request_is_refused(h: &Harness) {
    let first = created(create(h, &request(1, "order-42", 7)).await);
    let other = create(h, &request(1, "order-42", 8)).await;
    assert_eq!(other, IdempotentOutcome::KeyReused { job_id: first });
    assert_eq!(jobs(h).await, vec![first], "nothing was created");
    // The refusal changed nothing: the first request still finds its job.
    assert!(matches!(
        create(h, &request(1, "order-42", 7)).await,
        IdempotentOutcome::Existing(job) if job.id == first
    ));
}

pub async fn idempotency_keys_belong_to_their_caller(h: &Harness) {
    let mine = created(create(h, &request(1, "order-42", 7)).await);
    let theirs = created(create(h, &request(2, "order-42", 7)).await);
    let another = created(create(h, &request(1, "order-43", 7)).await);
    assert_ne!(
        mine, theirs,
        "the same key of another caller is another key"
    );
    assert_ne!(mine, another);
    assert_eq!(jobs(h).await.len(), 3);
}

pub async fn racing_idempotent_creates_with_one_key_make_one_job(h: &Harness) {
    let key = Arc::new(request(1, "race", 7));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let (repo, key, barrier) = (h.repo.clone(), key.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                repo.create_idempotent(new_job(), &key).await.unwrap()
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut named = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            IdempotentOutcome::Created(job) => {
                created.push(job.id);
                named.push(job.id);
            }
            IdempotentOutcome::Existing(job) => named.push(job.id),
            other @ IdempotentOutcome::KeyReused { .. } => panic!("same request: {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one racer creates: {created:?}");
    assert!(named.iter().all(|id| *id == created[0]), "{named:?}");
    assert_eq!(jobs(h).await, created);
}

pub async fn an_idempotency_key_is_kept_for_its_retention_then_forgotten(h: &Harness) {
    let key = request(1, "order-42", 7);
    let first = created(create(h, &key).await);
    h.advance(RETENTION - Duration::from_secs(5)).await;
    assert!(
        matches!(create(h, &key).await, IdempotentOutcome::Existing(job) if job.id == first),
        "kept for the whole retention"
    );
    h.advance(Duration::from_secs(10)).await;
    // Forgotten: even another request may use it now, and it names the new job from then on.
    let second = created(create(h, &request(1, "order-42", 8)).await);
    assert_ne!(second, first);
    assert!(matches!(
        create(h, &request(1, "order-42", 8)).await,
        IdempotentOutcome::Existing(job) if job.id == second
    ));
    assert_eq!(
        create(h, &key).await,
        IdempotentOutcome::KeyReused { job_id: second }
    );
    assert_eq!(
        h.job(first).await.status,
        JobStatus::Queued,
        "forgetting a key leaves its job alone"
    );
}
