//! The no-op job cycle on Postgres, next to `pgbench` running the same statements.
//!
//! A cycle is what the worker does for a job whose pipeline does nothing: create (the API
//! side), acquire and finalize — three statements. We run it through `PgRepository` with 1 and
//! 8 concurrent workers, then hand the very same SQL text (`repo_pg::sql`) to `pgbench` with
//! the same concurrency, in the same run, on the same database, so the ratio says what the
//! Rust side (sqlx, tokio, row decoding) costs on top of the statements themselves.
//!
//! Run: `cargo bench -p repo-pg --bench noop_cycle` (needs `DATABASE_URL` or `initdb`, and
//! `pgbench` on PATH; `BENCH_SECONDS` sets the length of each measurement, default 5).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: fail loudly

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain::{
    AcquireOutcome, AcquireRequest, FinalOutcome, InstanceId, JobId, JobRepository, NewJob,
};
use repo_pg::{PgRepository, sql};

const TTL_S: u64 = 60;
const MAX_ATTEMPTS: u32 = 5;

async fn cycle(repo: &PgRepository, holder: &InstanceId) {
    let id = JobId::new();
    repo.create(NewJob {
        id,
        input: serde_json::json!({}),
    })
    .await
    .unwrap();
    let request = AcquireRequest {
        job_id: id,
        holder: holder.clone(),
        ttl: Duration::from_secs(TTL_S),
        max_attempts: MAX_ATTEMPTS,
        session: None,
    };
    let AcquireOutcome::Acquired { lease, .. } = repo.acquire(&request).await.unwrap() else {
        panic!("a fresh job must be acquired");
    };
    let outcome = FinalOutcome::Succeeded {
        artifact_key: "k".into(),
    };
    repo.finalize(&lease, &outcome).await.unwrap();
}

async fn ours(url: &str, workers: usize, secs: u64) -> f64 {
    let config = repo_pg::PoolConfig {
        max_connections: u32::try_from(workers).unwrap(),
        ..repo_pg::PoolConfig::default()
    };
    let repo = Arc::new(PgRepository::new(
        repo_pg::connect_lazy(url, &config).unwrap(),
    ));
    // Warm the pool and the statement caches.
    for _ in 0..(workers * 20) {
        cycle(&repo, &InstanceId::new("warmup").unwrap()).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (repo, done) = (repo.clone(), done.clone());
            tokio::spawn(async move {
                let holder = InstanceId::new(format!("bench-{w}")).unwrap();
                while Instant::now() < deadline {
                    cycle(&repo, &holder).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The pgbench script: the same three statements, with the bound values written in.
fn pgbench_script() -> String {
    let subst = |text: &str, values: &[&str]| {
        let mut out = text.to_owned();
        // Highest first, so `$1` does not eat the start of `$10`.
        for (i, v) in values.iter().enumerate().rev() {
            out = out.replace(&format!("${}", i + 1), v);
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let create = subst(sql::CREATE, &["gen_random_uuid()", "'{}'::jsonb"]);
    let acquire = subst(
        sql::ACQUIRE,
        &[
            ":id",
            "'pgbench'",
            &MAX_ATTEMPTS.to_string(),
            &TTL_S.to_string(),
        ],
    );
    let finalize = subst(
        sql::FINALIZE,
        &[
            ":id",
            "1",
            "'pgbench'",
            "'succeeded'",
            "'k'",
            "NULL",
            "NULL",
        ],
    );
    // \gset keeps the new id in :id for the next two statements.
    format!("{create} \\gset\n{acquire};\n{finalize};\n")
}

fn pgbench(url: &str, clients: usize, secs: u64) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("noop-cycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let script = dir.join("cycle.sql");
    std::fs::write(&script, pgbench_script()).ok()?;
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j"])
        .arg(clients.min(2).to_string())
        .args(["-T", &secs.to_string(), "-f"])
        .arg(&script)
        .arg(url)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("pgbench not run: {e} (install postgresql-contrib or postgresql-client)");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "pgbench failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(test_pg::fresh_database()).unwrap();
    runtime.block_on(repo_pg::migrate(&db.pool)).unwrap();
    println!(
        "no-op job cycle (create + acquire + finalize), {secs} s per row, database {}",
        db.url.split('@').next_back().unwrap_or("")
    );
    println!();
    println!("| workers | repo-pg cycles/s | pgbench cycles/s (same SQL) | repo-pg / pgbench |");
    println!("|--------:|-----------------:|----------------------------:|------------------:|");
    for workers in [1, 8] {
        let ours = runtime.block_on(ours(&db.url, workers, secs));
        let theirs = pgbench(&db.url, workers, secs);
        let (theirs_s, ratio) = match theirs {
            Some(t) => (format!("{t:.0}"), format!("{:.2}", ours / t)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!("| {workers} | {ours:.0} | {theirs_s} | {ratio} |");
    }
    // Every cycle, ours and pgbench's, must have ended a job as succeeded at epoch 1;
    // anything else means a statement silently did nothing and the figures are void.
    let (wrong, total): (i64, i64) = runtime
        .block_on(
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status <> 'succeeded' OR lease_epoch <> 1), count(*)
                 FROM video_jobs",
            )
            .fetch_one(&db.pool),
        )
        .unwrap();
    assert_eq!(wrong, 0, "{wrong} of {total} jobs did not complete a cycle");
    println!();
    println!("checked: all {total} jobs ended succeeded at epoch 1");
    drop(db);
}
