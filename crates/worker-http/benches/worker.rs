//! The worker's own costs on Postgres, each next to its reference:
//!
//! 1. no-op jobs per second through the full HTTP path (auth, router, runner, repository),
//!    and per job: transactions counted by Postgres itself (`xact_commit` of the test
//!    database), statements and round trips counted on the wire by a proxy between the
//!    worker's connections and Postgres (`test_pg::wire`; a statement is one round trip,
//!    plus one to prepare it the first time a connection runs it);
//! 2. cancel latency, p50/p99, with `LISTEN/NOTIFY` and with heartbeats only (reference: the
//!    heartbeat period);
//! 3. takeover latency after a SIGKILL at the default TTL of 60 s: the dead worker's `LISTEN`
//!    session is gone, so its lease is taken over at the queue's next retry (target: p99 ≤
//!    1.5 s with a retry every second); and, for reference, the TTL-only path of a worker
//!    frozen with SIGSTOP (its session lives, so only the lease's expiry frees the job).
//!
//! Run: `cargo bench -p worker-http --bench worker` (needs `DATABASE_URL` or `initdb`).
//! `BENCH_JOBS` (default 400) and `BENCH_SAMPLES` (default 20) size it; `BENCH_ONLY=throughput`
//! runs part 1 alone, `BENCH_ONLY=takeover` part 3 alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: fail loudly

/// The tests' `video-worker` process wrapper (`Launch`, `ServeProcess`), shared by path.
#[path = "../tests/it/common/serve.rs"]
mod serve;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{InstanceId, JobId, JobRepository, NewJob};
use repo_pg::PgRepository;
use runner::RunnerConfig;
use serde_json::json;
use worker_http::{AppParts, Application, Readiness};

use serve::{Launch, ServeProcess, TOKEN};

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(heartbeat: Duration, ttl: Duration) -> RunnerConfig {
    RunnerConfig {
        instance_id: InstanceId::new("bench").unwrap(),
        lease_ttl: ttl,
        heartbeat_interval: heartbeat,
        max_runtime: Duration::from_secs(600),
        max_attempts: 5,
        drain_grace: Duration::from_secs(2),
        progress_interval: Duration::from_millis(500),
        work_root: std::env::temp_dir().join("video-worker-bench"),
    }
}

async fn app(
    repo: Arc<PgRepository>,
    runner: RunnerConfig,
    listen: bool,
) -> (String, tokio_util::sync::CancellationToken) {
    let auth = push_auth::Authenticator::new(
        push_auth::AuthConfig {
            shared_token: Some(TOKEN.into()),
            oidc: None,
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let parts = AppParts {
        repo,
        pipeline: pipeline::noop::noop_pipeline(),
        auth,
        runner,
        readiness: Readiness::Always,
        max_body_bytes: 4096,
        listen_for_cancels: listen,
    };
    let app = Application::build(parts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let token = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    (base, token)
}

async fn new_job(repo: &PgRepository, input: serde_json::Value) -> JobId {
    let id = JobId::new();
    repo.create(NewJob { id, input }).await.unwrap();
    id
}

async fn push(client: &reqwest::Client, base: &str, id: JobId) -> u16 {
    client
        .post(format!("{base}/jobs/run"))
        .bearer_auth(TOKEN)
        .body(json!({ "job_id": id }).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `xact_commit` of the database, read on a connection of its own that is then closed. A
/// backend reports its counts when it exits (or idles for a while), so every pool whose
/// statements are counted is closed before reading; the reader's own transaction is counted
/// by the next read.
async fn commits(url: &str) -> i64 {
    use sqlx::Connection;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn throughput(db: &test_pg::TestDb, jobs: usize) {
    const WARMUP: usize = 10;
    // With and without the worker's LISTEN connection: Postgres wakes every listening
    // session of the database for every NOTIFY (the update trigger fires on each status
    // change), and each wake-up is a transaction of that session.
    for (clients, listen) in [(1usize, true), (4, true), (1, false)] {
        // Jobs are created on a pool of their own, closed before counting starts.
        let creator = PgRepository::new(
            repo_pg::connect_lazy(&db.url, &repo_pg::PoolConfig::default()).unwrap(),
        );
        let mut ids = Vec::with_capacity(jobs + WARMUP);
        for _ in 0..jobs + WARMUP {
            ids.push(new_job(&creator, json!({})).await);
        }
        creator.close().await;
        let before = commits(&db.url).await;

        // The worker's pool, as `serve` builds it, through the counting proxy if it can.
        let proxied = test_pg::wire::through_proxy(&db.url).await;
        let url = proxied
            .as_ref()
            .map_or(db.url.as_str(), |(u, _)| u.as_str());
        let trips = proxied.as_ref().map(|(_, c)| c.clone());
        let pool = repo_pg::connect_lazy(url, &repo_pg::PoolConfig::default()).unwrap();
        let repo = Arc::new(PgRepository::new(pool));
        let (base, stop) = app(
            repo.clone(),
            config(Duration::from_secs(15), Duration::from_secs(60)),
            listen,
        )
        .await;
        let client = reqwest::Client::new();
        let measured = ids.split_off(WARMUP);
        for id in ids {
            assert_eq!(push(&client, &base, id).await, 200);
        }
        let wire_before = trips.as_ref().map(|w| w.read());
        let started = Instant::now();
        let chunks: Vec<Vec<JobId>> = measured
            .chunks(jobs.div_ceil(clients))
            .map(<[JobId]>::to_vec)
            .collect();
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    for id in chunk {
                        assert_eq!(push(&client, &base, id).await, 200);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        // Read once the last answer is in: a write the answer did not wait for (a progress
        // report) may still be on the wire.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let wire = trips.as_ref().zip(wire_before).map(|(w, (s0, r0))| {
            let (s, r) = w.read();
            (s - s0, r - r0)
        });
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        repo.close().await;
        // Less the previous reader's one transaction and the worker's one LISTEN.
        let statements = commits(&db.url).await - before - 1 - i64::from(listen);
        let per_job = |n: u64| format!("{:.2}", n as f64 / jobs as f64);
        let (on_wire, round_trips) = wire.map_or_else(
            || ("n/a".to_owned(), "n/a".to_owned()),
            |(s, r)| (per_job(s), per_job(r)),
        );
        println!(
            "| {clients} | {} | {jobs} | {:.0} | {:.2} | {on_wire} | {round_trips} |",
            if listen { "yes" } else { "no" },
            jobs as f64 / elapsed.as_secs_f64(),
            statements as f64 / (jobs + WARMUP) as f64
        );
    }
}

async fn cancel_latency(db: &test_pg::TestDb, samples: usize, listen: bool) -> Vec<Duration> {
    let repo = Arc::new(PgRepository::new(db.pool.clone()));
    let (base, stop) = app(
        repo.clone(),
        config(Duration::from_secs(1), Duration::from_secs(6)),
        listen,
    )
    .await;
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..samples {
        let id = new_job(&repo, json!({"noop": {"segments": 1000, "segment_ms": 50}})).await;
        let running = tokio::spawn({
            let (client, base) = (client.clone(), base.clone());
            async move { push(&client, &base, id).await }
        });
        while repo.get(id).await.unwrap().unwrap().progress.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Cancel at a random point of the heartbeat cycle.
        tokio::time::sleep(Duration::from_millis(fastrand_ms())).await;
        let asked = Instant::now();
        repo.request_cancel(id).await.unwrap();
        assert_eq!(running.await.unwrap(), 200);
        out.push(asked.elapsed());
    }
    stop.cancel();
    out.sort();
    out
}

fn fastrand_ms() -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 1000)
        .into()
}

/// How the first worker stops in a takeover sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: the process and its sockets are gone, so is its `LISTEN` session.
    Kill,
    /// SIGSTOP: the process is frozen but its session lives — the TTL-only path.
    Pause,
}

/// One takeover path's samples: kill → epoch 2 on the row, and kill → the first worker's
/// session gone from `pg_stat_activity` (never, for a pause).
struct Takeovers {
    taken: Vec<Duration>,
    session_gone: Vec<Duration>,
}

/// `samples` times: two worker processes with `ttl_s`; the first is stopped mid-job by
/// `stop`; the queue's delivery to it fails, and the queue retries every `retry` on the
/// second, which answers 409 until it can take the job over.
async fn takeover(
    db: &test_pg::TestDb,
    samples: usize,
    stop: Stop,
    ttl_s: u64,
    retry: Duration,
) -> Takeovers {
    let repo = PgRepository::new(db.pool.clone());
    let mut taken = Vec::new();
    let mut session_gone = Vec::new();
    for i in 0..samples {
        let mut first = worker(&db.url, &format!("first-{stop:?}-{i}"), ttl_s).await;
        let second = worker(&db.url, &format!("second-{stop:?}-{i}"), ttl_s).await;
        let client = reqwest::Client::new();
        let id = new_job(&repo, json!({"noop": {"segments": 100, "segment_ms": 100}})).await;
        let doomed = tokio::spawn({
            let (client, base) = (client.clone(), first.base.clone());
            async move {
                client
                    .post(format!("{base}/jobs/run"))
                    .bearer_auth(TOKEN)
                    .body(json!({"job_id": id}).to_string())
                    .send()
                    .await
            }
        });
        let held = loop {
            let job = repo.get(id).await.unwrap().unwrap();
            if job.progress.is_some() {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Anywhere in the heartbeat cycle.
        tokio::time::sleep(Duration::from_millis(fastrand_ms())).await;
        let session = held
            .lease
            .unwrap()
            .session
            .expect("the lease names a session");
        let killed = Instant::now();
        match stop {
            Stop::Kill => {
                first.child.kill().unwrap();
                first.child.wait().unwrap();
            }
            Stop::Pause => first.signal("-STOP"),
        }
        let gone = tokio::spawn({
            let pool = db.pool.clone();
            async move {
                loop {
                    let there: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2)",
                    )
                    .bind(session.pid)
                    .bind(session.backend_start)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    if !there {
                        return killed.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        if stop == Stop::Kill {
            // The delivery to the dead worker fails (connection reset): the queue retries
            // after its backoff.
            let _ = doomed.await;
        }
        // Each retry: the push is answered 409 (try again after `retry`), or the second worker
        // takes the job — seen on the row, polled every millisecond while the push runs.
        'retries: loop {
            tokio::time::sleep(retry).await;
            let push = tokio::spawn({
                let (client, base) = (client.clone(), second.base.clone());
                async move {
                    client
                        .post(format!("{base}/jobs/run"))
                        .bearer_auth(TOKEN)
                        .body(json!({ "job_id": id }).to_string())
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                }
            });
            loop {
                if repo.get(id).await.unwrap().unwrap().lease_epoch.get() >= 2 {
                    break 'retries;
                }
                if push.is_finished() {
                    if let Ok(Ok(409)) = push.await {
                        continue 'retries;
                    }
                    panic!("the second worker neither refused nor took the job");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        taken.push(killed.elapsed());
        if stop == Stop::Kill {
            session_gone.push(gone.await.unwrap());
        } else {
            gone.abort();
            first.signal("-CONT");
        }
        drop((first, second));
    }
    taken.sort();
    session_gone.sort();
    Takeovers {
        taken,
        session_gone,
    }
}

/// A `serve` process with lease TTL `ttl_s`, its stderr discarded, ready.
async fn worker(url: &str, name: &str, ttl_s: u64) -> ServeProcess {
    Launch::serve(url, name)
        .env("VIDEO_JOB_LEASE_TTL_SECONDS", ttl_s.to_string())
        .env("RUST_LOG", "error")
        .quiet()
        .start()
        .await
}

fn row(name: &str, xs: &[Duration], reference: &str) {
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {reference} |",
        xs.len(),
        percentile(xs, 0.5).as_secs_f64() * 1000.0,
        percentile(xs, 0.99).as_secs_f64() * 1000.0,
        xs.last().unwrap().as_secs_f64() * 1000.0,
    );
}

fn main() {
    let jobs = env_usize("BENCH_JOBS", 400);
    let samples = env_usize("BENCH_SAMPLES", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = test_pg::fresh_database().await.unwrap();
        repo_pg::migrate(&db.pool).await.unwrap();
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "throughput" {
            println!("## no-op jobs through POST /jobs/run (Postgres on loopback)\n");
            println!(
                "| concurrent pushers | LISTEN | jobs | jobs/s | transactions per job (xact_commit) | statements per job (wire) | round trips per job (wire) |"
            );
            println!("|---:|---|---:|---:|---:|---:|---:|");
            throughput(&db, jobs).await;
        }
        if only == "throughput" {
            return;
        }
        if only.is_empty() || only == "takeover" {
            takeovers(&db, samples).await;
        }
        if only == "takeover" {
            return;
        }

        println!("\n## cancel latency: request_cancel → push answered `canceled`\n");
        println!("| path | samples | p50 ms | p99 ms | max ms | reference |");
        println!("|---|---:|---:|---:|---:|---|");
        let notify = cancel_latency(&db, samples, true).await;
        row("LISTEN/NOTIFY", &notify, "heartbeat period 1000 ms");
        let beat = cancel_latency(&db, samples, false).await;
        row("heartbeat only", &beat, "heartbeat period 1000 ms");
    });
}

async fn takeovers(db: &test_pg::TestDb, samples: usize) {
    println!("\n## takeover: the first worker stops mid-job → second worker holds epoch 2\n");
    println!("| path | samples | p50 ms | p99 ms | max ms | reference |");
    println!("|---|---:|---:|---:|---:|---|");
    let killed = takeover(db, samples, Stop::Kill, 60, Duration::from_secs(1)).await;
    row(
        "SIGKILL, TTL 60 s, queue retry every 1 s: kill → epoch 2",
        &killed.taken,
        "target p99 ≤ 1500 ms; TTL-only: 60 000 ms + retry",
    );
    row(
        "  of which: kill → session gone from pg_stat_activity",
        &killed.session_gone,
        "—",
    );
    let paused = takeover(
        db,
        samples.min(5),
        Stop::Pause,
        3,
        Duration::from_millis(100),
    )
    .await;
    row(
        "SIGSTOP (session lives), TTL 3 s, retry every 100 ms: TTL-only path",
        &paused.taken,
        "lease TTL 3000 ms",
    );
}
