//! The chaos suite (`scripts/chaos`): real `video-worker serve` processes share jobs pushed by
//! a retrying queue while the harness kills workers, restarts Postgres, terminates backends,
//! stalls and drops the network between workers and Postgres, and pauses a worker past its
//! lease. Afterwards it checks, from the database's own record of every write, that no job
//! was lost or stuck, none finalized twice and no stale write was accepted; it prints one
//! summary line and exits non-zero if any of those is not 0.
//!
//! Settings: `CHAOS_SEED` (reruns a schedule; printed at start), `CHAOS_WORKER_BIN` (the
//! `video-worker` binary; default: next to this one). Everything listens on 127.0.0.1;
//! the Postgres cluster, the worker processes and the scratch directory are removed on
//! every exit path (a watchdog covers this process being killed).

mod audit;
mod fleet;
mod proxy;
mod queue;
mod stop;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;

use crate::fleet::{Fleet, FleetConfig};
use crate::proxy::Proxy;
use crate::queue::Queue;

const WORKERS: usize = 3;
const JOBS: usize = 50;
const KILLS: usize = 20;
const PURGES: usize = 2;
/// Lease TTL and heartbeat: short, so takeovers happen within the run.
const TTL: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The in-process sweeper's period, and how long past expiry it requeues a lease.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
const SWEEP_EXPIRED_FOR: Duration = Duration::from_secs(1);
/// High enough that the faults alone do not exhaust a job.
const MAX_ATTEMPTS: u32 = 25;
/// Jobs are pushed within `PUSH_WINDOW` after the workers are up, and faults happen within
/// `FAULT_WINDOW`, which ends a little earlier: the last jobs then run after the last fault,
/// so the stuck deadline also checks that a healthy system finishes them promptly.
const PUSH_WINDOW: Duration = Duration::from_secs(80);
const FAULT_WINDOW: Duration = Duration::from_secs(76);
/// The queue's dispatch deadline (Cloud Tasks' default is 10 minutes; ours only needs to
/// outlast the longest job and the pause).
const DISPATCH_DEADLINE: Duration = Duration::from_secs(30);
/// Scheduling slack for process start-up and a loaded 2-core machine, added to the stuck
/// deadline.
const SLACK: Duration = Duration::from_secs(2);
const DATABASE: &str = "chaos";
const TOKEN: &str = "chaos-shared-token-0123456789";

#[tokio::main]
async fn main() -> ExitCode {
    let seed = match std::env::var("CHAOS_SEED") {
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(seed) => seed,
            Err(_) => {
                eprintln!("chaos: CHAOS_SEED={s:?} is not a whole number");
                return ExitCode::from(2);
            }
        },
        Err(_) => fastrand::u64(..),
    };
    println!("chaos: seed {seed} (rerun with CHAOS_SEED={seed})");
    // A signal ends the run through the same path as an error, so cleanup runs.
    let interrupted = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let outcome = tokio::select! {
        r = run(seed) => r,
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: the run could not complete: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Restart,
    Purge,
    Stall,
    Stop,
}

/// A job as pushed.
#[derive(Debug, Clone)]
struct Pushed {
    id: uuid::Uuid,
    at: DateTime<Utc>,
    nominal: Duration,
}

/// The scratch directory; removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CHAOS_WORKER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("video-worker");
    if !bin.is_file() {
        bail!(
            "no video-worker next to {}: run `cargo build -p worker-http` or set CHAOS_WORKER_BIN",
            me.display()
        );
    }
    Ok(bin)
}

/// The whole run; `Ok(false)` when a property does not hold.
async fn run(seed: u64) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let binary = worker_binary()?;
    let scratch =
        Scratch(std::env::temp_dir().join(format!("vw-chaos-{}", uuid::Uuid::new_v4().simple())));
    std::fs::create_dir_all(&scratch.0)?;
    fleet::spawn_watchdog(&scratch.0)?;

    // --- Postgres, the schema, the audit trigger --------------------------------------
    let cluster = Arc::new(tokio::task::spawn_blocking(test_pg::Cluster::start).await??);
    let admin = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&cluster.url())
        .await?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let direct = format!(
        "postgres://postgres@127.0.0.1:{}/{DATABASE}",
        cluster.port()
    );
    let status = tokio::process::Command::new(&binary)
        .arg("migrate")
        .env("DATABASE_URL", &direct)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("video-worker migrate failed ({status})");
    }
    let db = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&direct)
        .await?;
    sqlx::raw_sql(audit::INSTALL).execute(&db).await?;

    // --- proxy, queue, workers ------------------------------------------------------------
    let upstream = format!("127.0.0.1:{}", cluster.port()).parse()?;
    let proxy = Proxy::new(upstream);
    let targets = Arc::new(Mutex::new(Vec::new()));
    let queue = Queue::new(targets.clone(), TOKEN.into(), DISPATCH_DEADLINE)?;
    let ingress_port = queue.ingress().await?;
    let env = [
        ("VIDEO_WORKER_PIPELINE", "noop".to_owned()),
        ("VIDEO_JOB_LEASE_TTL_SECONDS", TTL.as_secs().to_string()),
        (
            "VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS",
            HEARTBEAT.as_secs().to_string(),
        ),
        (
            "VIDEO_SWEEP_INTERVAL_SECONDS",
            SWEEP_INTERVAL.as_secs().to_string(),
        ),
        (
            "VIDEO_SWEEP_EXPIRED_FOR_SECONDS",
            SWEEP_EXPIRED_FOR.as_secs().to_string(),
        ),
        ("VIDEO_JOB_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        ("VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS", "2".to_owned()),
        ("VIDEO_WORKER_LOG_FORMAT", "text".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut fleet = Fleet::new(
        FleetConfig {
            binary,
            dir: scratch.0.clone(),
            database: DATABASE.into(),
            token: TOKEN.into(),
            ingress_port,
            env,
        },
        proxy.clone(),
        targets,
        WORKERS,
    );
    let rig = Rig {
        cluster: &cluster,
        db: &db,
        proxy: &proxy,
        queue: &queue,
    };
    let outcome = drive(&mut rng, rig, &mut fleet, started).await;
    queue.stop();
    fleet.kill_all().await;
    let outcome = outcome?;

    // --- what the database saw ------------------------------------------------------------
    let events = audit::read(&db).await?;
    let findings = audit::analyse(&events, &proxy.sessions(), SWEEP_EXPIRED_FOR);
    let latencies = audit::takeover_latencies(&events, &outcome.kills);
    // Clean up before the report, so the wall time counts it.
    db.close().await;
    drop(cluster);
    drop(scratch);
    Ok(report(&Run {
        outcome,
        findings,
        latencies,
        queue: queue.stats(),
        wall: started.elapsed(),
    }))
}

/// Everything the report is made of.
struct Run {
    outcome: Outcome,
    findings: audit::Findings,
    /// `kill -9` → takeover, one per kill that was taken over.
    latencies: Vec<Duration>,
    queue: queue::Stats,
    wall: Duration,
}

/// What the run did and how the jobs ended.
#[derive(Debug, Default)]
struct Outcome {
    /// `(process label, when)` of each `kill -9`.
    kills: Vec<(String, DateTime<Utc>)>,
    restarts: usize,
    purges: usize,
    backends_terminated: i64,
    stalls: usize,
    stops: usize,
    jobs: usize,
    /// Not present or not terminal at the end.
    lost: Vec<String>,
    /// Not terminal by its deadline.
    stuck: Vec<String>,
    /// Terminal status → count.
    outcomes: std::collections::BTreeMap<String, usize>,
    last_fault_end: Option<Duration>,
    max_attempts_seen: i32,
    /// The stuck budget after a job's start point (see `drive`).
    grace: Duration,
    /// The least time any terminal job had left before its deadline, in seconds.
    least_margin: Option<f64>,
}

/// What a run drives: the database (and the proxy in front of it) and the queue.
#[derive(Clone, Copy)]
struct Rig<'a> {
    cluster: &'a Arc<test_pg::Cluster>,
    db: &'a sqlx::PgPool,
    proxy: &'a Proxy,
    queue: &'a Queue,
}

/// Pushes the jobs and runs the fault schedule at the same time, then waits for the jobs.
async fn drive(
    rng: &mut fastrand::Rng,
    rig: Rig<'_>,
    fleet: &mut Fleet,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let Rig {
        cluster,
        db,
        proxy,
        queue,
    } = rig;
    for slot in 0..fleet.len() {
        fleet.start(slot).await?;
    }
    println!(
        "chaos: cluster on 127.0.0.1:{}, {WORKERS} workers up after {:.1} s",
        cluster.port(),
        started.elapsed().as_secs_f64()
    );

    // The schedule, all from the seed.
    let jobs: Vec<(Duration, uuid::Uuid, u64, u64)> = {
        let mut at: Vec<Duration> = (0..JOBS).map(|_| PUSH_WINDOW.mul_f64(rng.f64())).collect();
        at.sort();
        at.into_iter()
            .map(|t| {
                let id = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid();
                (t, id, rng.u64(4..=20), rng.u64(200..=600))
            })
            .collect()
    };
    let mut faults: Vec<(Duration, Fault)> = Vec::new();
    let at = |rng: &mut fastrand::Rng, from: f64, to: f64| {
        FAULT_WINDOW.mul_f64(from + (to - from) * rng.f64())
    };
    for _ in 0..KILLS {
        faults.push((at(rng, 0.02, 1.0), Fault::Kill));
    }
    faults.push((at(rng, 0.3, 0.7), Fault::Restart));
    for _ in 0..PURGES {
        faults.push((at(rng, 0.05, 0.95), Fault::Purge));
    }
    faults.push((at(rng, 0.1, 0.9), Fault::Stall));
    faults.push((at(rng, 0.1, 0.9), Fault::Stop));
    faults.sort_by_key(|f| f.0);
    let fault_seed = rng.u64(..);

    let origin = tokio::time::Instant::now();
    let pusher = {
        let db = db.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut pushed = Vec::new();
            for (t, id, segments, segment_ms) in jobs {
                tokio::time::sleep_until(origin + t).await;
                let input =
                    serde_json::json!({"noop": {"segments": segments, "segment_ms": segment_ms}});
                // The product's create: the row, then the task. Retried while Postgres
                // restarts (bounded).
                let mut tries = 0;
                loop {
                    let r = sqlx::query("INSERT INTO video_jobs (id, input) VALUES ($1, $2)")
                        .bind(id)
                        .bind(&input)
                        .execute(&db)
                        .await;
                    match r {
                        Ok(_) => break,
                        Err(_) if tries < 60 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => return Err(anyhow::Error::from(e).context("creating a job")),
                    }
                }
                queue.push(id, false);
                pushed.push(Pushed {
                    id,
                    at: Utc::now(),
                    nominal: Duration::from_millis(segments * segment_ms),
                });
            }
            Ok::<_, anyhow::Error>(pushed)
        })
    };

    let mut outcome = Outcome::default();
    let mut frng = fastrand::Rng::with_seed(fault_seed);
    for (t, fault) in faults {
        tokio::time::sleep_until(origin + t).await;
        let when = origin.elapsed().as_secs_f64();
        match fault {
            Fault::Kill => {
                let slot = frng.usize(..fleet.len());
                let killed_at = Utc::now();
                let label = fleet.kill(slot).await?;
                outcome.kills.push((label.clone(), killed_at));
                fleet.start(slot).await?;
                println!(
                    "chaos: {when:6.1} s  kill -9 {label} (#{}), replaced by {}",
                    outcome.kills.len(),
                    fleet.label(slot).unwrap_or("?")
                );
            }
            Fault::Restart => {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.restart_fast()).await??;
                outcome.restarts += 1;
                println!("chaos: {when:6.1} s  pg_ctl restart -m fast");
            }
            Fault::Purge => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND application_name = 'video-worker'",
                )
                .bind(DATABASE)
                .fetch_one(db)
                .await?;
                outcome.purges += 1;
                outcome.backends_terminated += n;
                println!("chaos: {when:6.1} s  pg_terminate_backend of {n} worker connections");
            }
            Fault::Stall => {
                proxy.stall();
                tokio::time::sleep(TTL + Duration::from_secs(1)).await;
                proxy.drop_all_and_release();
                outcome.stalls += 1;
                println!(
                    "chaos: {when:6.1} s  proxy stalled {} s, then dropped every connection",
                    (TTL + Duration::from_secs(1)).as_secs()
                );
            }
            Fault::Stop => {
                let slot = busiest(db, fleet, &mut frng).await;
                fleet.signal(slot, "STOP").await?;
                tokio::time::sleep(TTL + Duration::from_secs(2)).await;
                fleet.signal(slot, "CONT").await?;
                outcome.stops += 1;
                println!(
                    "chaos: {when:6.1} s  SIGSTOP {} for {} s (TTL {} s), then SIGCONT",
                    fleet.label(slot).unwrap_or("?"),
                    (TTL + Duration::from_secs(2)).as_secs(),
                    TTL.as_secs()
                );
            }
        }
    }
    let last_fault_end = Utc::now();
    outcome.last_fault_end = Some(started.elapsed());
    let pushed = pusher.await??;
    outcome.jobs = pushed.len();

    // Each job's deadline: from the later of its push and the last fault, its own run time
    // plus one TTL (a dead holder's lease), one sweep period and the queue's longest wait.
    let grace = TTL + SWEEP_INTERVAL + queue.max_backoff + SLACK;
    let deadline_of = |p: &Pushed| {
        p.at.max(last_fault_end) + chrono::Duration::from_std(p.nominal + grace).unwrap_or_default()
    };
    outcome.grace = grace;
    let last_deadline = pushed
        .iter()
        .map(deadline_of)
        .max()
        .unwrap_or(last_fault_end);
    // Wait (bounded) for every job to end; past the last deadline only to tell stuck from lost.
    let hard_stop = last_deadline + chrono::Duration::seconds(30);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM video_jobs WHERE status NOT IN ('succeeded', 'failed', 'canceled')",
        )
        .fetch_one(db)
        .await?;
        if open == 0 || Utc::now() > hard_stop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rows = sqlx::query_as::<_, (uuid::Uuid, String, Option<DateTime<Utc>>, i32)>(
        "SELECT id, status::text, finished_at, attempts FROM video_jobs",
    )
    .fetch_all(db)
    .await?;
    let rows: std::collections::HashMap<_, _> = rows
        .into_iter()
        .map(|(id, s, f, a)| (id, (s, f, a)))
        .collect();
    for p in &pushed {
        match rows.get(&p.id) {
            None => outcome.lost.push(format!("{}: not in the table", p.id)),
            Some((status, finished, attempts)) => {
                outcome.max_attempts_seen = outcome.max_attempts_seen.max(*attempts);
                if !audit::terminal(status) {
                    outcome.lost.push(format!(
                        "{}: still {status} after {attempts} attempts",
                        p.id
                    ));
                    outcome.stuck.push(format!("{}: not terminal", p.id));
                    continue;
                }
                *outcome.outcomes.entry(status.clone()).or_default() += 1;
                if let Some(f) = finished {
                    let margin = (deadline_of(p) - *f).num_milliseconds() as f64 / 1000.0;
                    outcome.least_margin =
                        Some(outcome.least_margin.map_or(margin, |m: f64| m.min(margin)));
                }
                if finished.is_none_or(|f| f > deadline_of(p)) {
                    outcome.stuck.push(format!(
                        "{}: {status} at {:?}, deadline {}",
                        p.id,
                        finished.map(|f| f.format("%H:%M:%S%.3f").to_string()),
                        deadline_of(p).format("%H:%M:%S%.3f")
                    ));
                }
            }
        }
    }
    Ok(outcome)
}

/// The slot whose process holds the most leases now (ties and none: at random).
async fn busiest(db: &sqlx::PgPool, fleet: &Fleet, rng: &mut fastrand::Rng) -> usize {
    let holders: Vec<String> =
        sqlx::query_scalar("SELECT lease_holder FROM video_jobs WHERE status = 'running'")
            .fetch_all(db)
            .await
            .unwrap_or_default();
    let mut best = (0usize, rng.usize(..fleet.len()));
    for slot in 0..fleet.len() {
        let n = holders
            .iter()
            .filter(|h| Some(audit::process_of(h)) == fleet.label(slot))
            .count();
        if n > best.0 {
            best = (n, slot);
        }
    }
    best.1
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".into(), |d| format!("{} ms", d.as_millis()))
}

/// Prints the figures and the summary line; true when every count that must be 0 is.
fn report(run: &Run) -> bool {
    let Run {
        outcome: o,
        findings: f,
        latencies,
        queue: q,
        wall,
    } = run;
    let wall = *wall;
    for line in o.lost.iter().take(10) {
        println!("chaos: LOST {line}");
    }
    for line in o.stuck.iter().take(10) {
        println!("chaos: STUCK {line}");
    }
    for (job, n) in f.double_finalize.iter().take(10) {
        println!("chaos: DOUBLE FINALIZE job {job}: {n} transitions into a terminal status");
    }
    for line in f.stale_writes.iter().take(20) {
        println!("chaos: STALE WRITE {line}");
    }
    println!(
        "chaos: outcomes {:?}; most attempts by one job {}; last fault ended at {:.1} s",
        o.outcomes,
        o.max_attempts_seen,
        o.last_fault_end.unwrap_or_default().as_secs_f64()
    );
    println!(
        "chaos: stuck deadline per job: the later of its push and the last fault, plus its own run time, \
         TTL, one sweep period, the queue's longest wait and slack ({:.0} s in all); the closest job ended {} before it",
        o.grace.as_secs_f64(),
        o.least_margin
            .map_or_else(|| "n/a".into(), |m| format!("{m:.1} s")),
    );
    println!(
        "chaos: queue: {} tasks ({} re-enqueued by a sweeper), answers {:?}, {} undelivered at stop",
        q.tasks, q.reenqueued, q.answers, q.undelivered
    );
    println!(
        "chaos: audit: {} writes, {} attributed to a worker process; {} backends terminated",
        f.writes, f.attributed, o.backends_terminated
    );
    println!(
        "chaos: takeover after kill -9 (kill to next epoch's acquire, {} leases): p50 {}, p99 {}, max {}",
        latencies.len(),
        ms(audit::percentile(latencies, 50.0)),
        ms(audit::percentile(latencies, 99.0)),
        ms(latencies.last().copied())
    );
    if f.attributed < f.writes {
        println!(
            "chaos: WARNING {} writes could not be traced to a process; the other-process check skipped them",
            f.writes - f.attributed
        );
    }
    println!("chaos: wall time {:.1} s", wall.as_secs_f64());
    let (lost, stuck, double, stale) = (
        o.lost.len(),
        o.stuck.len(),
        f.double_finalize.len(),
        f.stale_writes.len(),
    );
    println!(
        "chaos: {} kills, {} restart, {} backend purges, {} proxy stall, {} stop, {} jobs, {lost} lost, {stuck} stuck, {double} double finalize, {stale} stale writes accepted",
        o.kills.len(),
        o.restarts,
        o.purges,
        o.stalls,
        o.stops,
        o.jobs,
    );
    lost + stuck + double + stale == 0
}
