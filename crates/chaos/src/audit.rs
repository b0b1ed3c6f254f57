//! What the database saw: a test-only trigger records every committed UPDATE of
//! `video_jobs` (old and new status, epoch, holder, progress, the lease's expiry, whether
//! the old holder's session was gone, the writer's client port and the transaction's time), and [`analyse`] checks the protocol's
//! safety properties on that record alone — nothing the workers log or answer is trusted.
//!
//! The trigger is installed by the harness after `video-worker migrate`; it is not a
//! migration. An audit row is written in the writer's own transaction, so a rolled-back
//! write leaves none, and writes to one job are recorded in commit order (each UPDATE holds
//! the row lock until it commits, and the trigger runs under that lock).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::proxy::Session;

/// The audit table, its trigger function and the trigger.
pub const INSTALL: &str = "
CREATE TABLE chaos_audit (
    seq            bigserial PRIMARY KEY,
    job_id         uuid NOT NULL,
    at             timestamptz NOT NULL,
    tx_now         timestamptz NOT NULL,
    client_port    integer,
    old_status     text NOT NULL,
    new_status     text NOT NULL,
    old_epoch      bigint NOT NULL,
    new_epoch      bigint NOT NULL,
    old_holder     text,
    new_holder     text,
    old_progress   smallint NOT NULL,
    new_progress   smallint NOT NULL,
    old_expires_at timestamptz,
    old_holder_gone boolean NOT NULL,
    new_error_code text
);
CREATE FUNCTION chaos_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_audit (job_id, at, tx_now, client_port, old_status, new_status,
                             old_epoch, new_epoch, old_holder, new_holder,
                             old_progress, new_progress, old_expires_at, old_holder_gone,
                             new_error_code)
    VALUES (NEW.id, clock_timestamp(), now(), inet_client_port(), OLD.status::text,
            NEW.status::text, OLD.lease_epoch, NEW.lease_epoch, OLD.lease_holder,
            NEW.lease_holder, OLD.progress_percent, NEW.progress_percent,
            OLD.lease_expires_at,
            -- The liveness rule, read in the writer's own transaction (the same view of
            -- pg_stat_activity its statement decided on).
            OLD.lease_holder_pid IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_stat_activity a WHERE a.pid = OLD.lease_holder_pid
                  AND (a.backend_start IS NULL
                       OR a.backend_start = OLD.lease_holder_backend_start)),
            NEW.error_code);
    RETURN NULL;
END
$$;
CREATE TRIGGER chaos_audit AFTER UPDATE ON video_jobs
    FOR EACH ROW EXECUTE FUNCTION chaos_audit_row();
";

/// One recorded write.
#[derive(Debug, Clone)]
pub struct Event {
    /// Order of commit, per job.
    pub seq: i64,
    /// The job.
    pub job: uuid::Uuid,
    /// When the row was written (`clock_timestamp()`).
    pub at: DateTime<Utc>,
    /// The writing transaction's `now()`: what the statement compared the lease with.
    pub tx_now: DateTime<Utc>,
    /// The writer's client port (the proxy's upstream side), which names the process.
    pub client_port: Option<i32>,
    /// Status before and after.
    pub old_status: String,
    /// Status after.
    pub new_status: String,
    /// Lease epoch before.
    pub old_epoch: i64,
    /// Lease epoch after.
    pub new_epoch: i64,
    /// Lease holder before.
    pub old_holder: Option<String>,
    /// Lease holder after.
    pub new_holder: Option<String>,
    /// Progress before.
    pub old_progress: i16,
    /// Progress after.
    pub new_progress: i16,
    /// The lease's expiry before the write.
    pub old_expires_at: Option<DateTime<Utc>>,
    /// Whether the old holder's recorded session was gone when the row was written.
    pub old_holder_gone: bool,
    /// The error code after.
    pub new_error_code: Option<String>,
}

/// Every recorded write, in commit order per job.
pub async fn read(pool: &PgPool) -> anyhow::Result<Vec<Event>> {
    let rows = sqlx::query("SELECT * FROM chaos_audit ORDER BY job_id, seq")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                seq: r.try_get("seq")?,
                job: r.try_get("job_id")?,
                at: r.try_get("at")?,
                tx_now: r.try_get("tx_now")?,
                client_port: r.try_get("client_port")?,
                old_status: r.try_get("old_status")?,
                new_status: r.try_get("new_status")?,
                old_epoch: r.try_get("old_epoch")?,
                new_epoch: r.try_get("new_epoch")?,
                old_holder: r.try_get("old_holder")?,
                new_holder: r.try_get("new_holder")?,
                old_progress: r.try_get("old_progress")?,
                new_progress: r.try_get("new_progress")?,
                old_expires_at: r.try_get("old_expires_at")?,
                old_holder_gone: r.try_get("old_holder_gone")?,
                new_error_code: r.try_get("new_error_code")?,
            })
        })
        .collect()
}

/// Whether `status` is terminal.
pub fn terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

/// The process label in a lease holder: the worker appends `-xxxxxxxx` to the instance id
/// the harness gave it.
pub fn process_of(holder: &str) -> &str {
    holder.rsplit_once('-').map_or(holder, |(base, _)| base)
}

/// What the audit shows.
#[derive(Debug, Default)]
pub struct Findings {
    /// Writes recorded.
    pub writes: usize,
    /// Writes whose writer could be named from its client port.
    pub attributed: usize,
    /// Jobs with more than one transition into a terminal status, and how many.
    pub double_finalize: Vec<(uuid::Uuid, usize)>,
    /// Accepted writes that a fenced protocol must refuse, described.
    pub stale_writes: Vec<String>,
}

/// Checks, per job and in commit order:
/// - more than one transition into a terminal status (double finalize);
/// - a write after the job was terminal, a write whose epoch is lower than one already
///   seen, a progress decrease within an epoch, a lease taken over while still live (unexpired
///   and its holder's session not gone), and a write to a leased row by a process other than
///   the holder, unless the lease had expired or its holder's session was gone and the write
///   ends it as the sweeper or an acquire may (to `queued` only `expired_for` past expiry, or
///   at once as `worker_gone`; to `canceled`, or `failed` with `attempts_exhausted`) — all
///   "stale writes accepted".
pub fn analyse(events: &[Event], sessions: &[Session], expired_for: Duration) -> Findings {
    let mut findings = Findings {
        writes: events.len(),
        ..Findings::default()
    };
    let expired_for = chrono::Duration::from_std(expired_for).unwrap_or_default();
    let mut by_job: BTreeMap<uuid::Uuid, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_job.entry(e.job).or_default().push(e);
    }
    for (job, events) in by_job {
        let mut max_epoch = 0i64;
        let mut finals = 0usize;
        // The highest progress written within the current epoch (its acquire excluded: the
        // row keeps the previous attempt's progress until the new one writes its own).
        let mut epoch_progress: Option<(i64, i16)> = None;
        for e in events {
            let mut stale = |why: &str| {
                findings.stale_writes.push(format!(
                    "job {job} audit #{}: {why} ({})",
                    e.seq,
                    describe(e)
                ));
            };
            if !terminal(&e.old_status) && terminal(&e.new_status) {
                finals += 1;
            }
            if terminal(&e.old_status) {
                stale("a write to a terminal job");
            }
            if e.new_epoch < max_epoch || e.new_epoch < e.old_epoch {
                stale("the epoch went back");
            }
            if e.new_epoch == e.old_epoch && e.new_progress != e.old_progress {
                match epoch_progress {
                    Some((epoch, high)) if epoch == e.new_epoch && e.new_progress < high => {
                        stale("progress decreased within an epoch");
                    }
                    Some((epoch, high)) if epoch == e.new_epoch => {
                        epoch_progress = Some((epoch, high.max(e.new_progress)));
                    }
                    _ => epoch_progress = Some((e.new_epoch, e.new_progress)),
                }
            }
            let writer = e
                .client_port
                .and_then(|port| writer_of(sessions, port, e.at));
            if writer.is_some() {
                findings.attributed += 1;
            }
            if e.old_status == "running" {
                let live = e.old_expires_at.is_some_and(|x| x > e.tx_now) && !e.old_holder_gone;
                if e.new_epoch > e.old_epoch && live {
                    stale("a live lease was taken over");
                }
                let holder = e.old_holder.as_deref().map(process_of);
                if e.new_epoch == e.old_epoch
                    && let (Some(writer), Some(holder)) = (writer, holder)
                    && writer != holder
                {
                    // Only an expired lease may be ended by another process: the sweeper
                    // requeues it past its grace; the sweeper or an acquire ends it
                    // `canceled` (cancel requested) or `failed` (attempts exhausted).
                    let expired_by =
                        |grace| e.old_expires_at.is_some_and(|x| x <= e.tx_now - grace);
                    let gone = e.old_holder_gone;
                    let allowed = e.new_holder.is_none()
                        && match e.new_status.as_str() {
                            "queued" => {
                                expired_by(expired_for)
                                    || (gone && e.new_error_code.as_deref() == Some("worker_gone"))
                            }
                            "canceled" => gone || expired_by(chrono::Duration::zero()),
                            "failed" => {
                                (gone || expired_by(chrono::Duration::zero()))
                                    && e.new_error_code.as_deref() == Some("attempts_exhausted")
                            }
                            _ => false,
                        };
                    if !allowed {
                        stale(&format!(
                            "written by {writer} while {holder} held the lease"
                        ));
                    }
                }
            }
            max_epoch = max_epoch.max(e.new_epoch);
        }
        if finals > 1 {
            findings.double_finalize.push((job, finals));
        }
    }
    findings
}

/// The process whose proxy session had local port `port` at `at`: the latest session on
/// that port opened before `at` (a second of slack for the two clocks' reading order).
fn writer_of(sessions: &[Session], port: i32, at: DateTime<Utc>) -> Option<&str> {
    sessions
        .iter()
        .filter(|s| i32::from(s.port) == port && s.opened <= at + chrono::Duration::seconds(1))
        .max_by_key(|s| s.opened)
        .map(|s| s.label.as_str())
}

fn describe(e: &Event) -> String {
    format!(
        "{}→{}, epoch {}→{}, holder {:?}→{:?}, progress {}→{}, at {}",
        e.old_status,
        e.new_status,
        e.old_epoch,
        e.new_epoch,
        e.old_holder,
        e.new_holder,
        e.old_progress,
        e.new_progress,
        e.at.format("%H:%M:%S%.3f")
    )
}

/// For each `(process, time)` of a `kill -9`: for every job that process held then, the
/// time from the kill to the next epoch's acquire. Jobs never acquired again are skipped.
pub fn takeover_latencies(events: &[Event], kills: &[(String, DateTime<Utc>)]) -> Vec<Duration> {
    let mut by_job: BTreeMap<uuid::Uuid, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_job.entry(e.job).or_default().push(e);
    }
    let mut out = Vec::new();
    for (label, killed_at) in kills {
        for events in by_job.values() {
            let Some(before) = events.iter().rev().find(|e| e.at <= *killed_at) else {
                continue;
            };
            let held = before.new_status == "running"
                && before.new_holder.as_deref().map(process_of) == Some(label.as_str());
            if !held {
                continue;
            }
            if let Some(next) = events
                .iter()
                .find(|e| e.seq > before.seq && e.new_epoch > before.new_epoch)
                && let Ok(d) = (next.at - *killed_at).to_std()
            {
                out.push(d);
            }
        }
    }
    out.sort();
    out
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test
mod tests {
    use super::*;
    use sqlx::Executor;

    const JOB: &str = "00000000-0000-4000-8000-000000000001";

    /// A leased row written by the protocol's own statements shape, through two real
    /// sessions named by their client ports.
    struct Rig {
        db: test_pg::TestDb,
        a: sqlx::pool::PoolConnection<sqlx::Postgres>,
        b: sqlx::pool::PoolConnection<sqlx::Postgres>,
        sessions: Vec<Session>,
    }

    async fn session(
        pool: &PgPool,
        label: &str,
    ) -> (sqlx::pool::PoolConnection<sqlx::Postgres>, Session) {
        let mut conn = pool.acquire().await.unwrap();
        let port: i32 = sqlx::query_scalar("SELECT inet_client_port()")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let s = Session {
            port: u16::try_from(port).unwrap(),
            label: label.into(),
            opened: Utc::now() - chrono::Duration::seconds(5),
        };
        (conn, s)
    }

    async fn rig() -> Rig {
        let db = test_pg::fresh_database().await.unwrap();
        // The table's shape is what matters to the trigger; the migrations make it.
        for file in [
            "0001_video_jobs.sql",
            "0002_progress_message_limit.sql",
            "0003_job_updates.sql",
            "0006_lease_holder_session.sql",
        ] {
            let path = format!("{}/../../migrations/{file}", env!("CARGO_MANIFEST_DIR"));
            let sql = std::fs::read_to_string(&path).unwrap();
            db.pool.execute(sqlx::raw_sql(&sql)).await.unwrap();
        }
        sqlx::raw_sql(INSTALL).execute(&db.pool).await.unwrap();
        sqlx::query("INSERT INTO video_jobs (id, input) VALUES ($1::uuid, '{}')")
            .bind(JOB)
            .execute(&db.pool)
            .await
            .unwrap();
        let (a, sa) = session(&db.pool, "chaos-w0-1").await;
        let (b, sb) = session(&db.pool, "chaos-w1-2").await;
        Rig {
            db,
            a,
            b,
            sessions: vec![sa, sb],
        }
    }

    async fn write(conn: &mut sqlx::PgConnection, sql: &str) {
        let done = sqlx::query(sql)
            .bind(JOB)
            .execute(&mut *conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "{sql}");
    }

    const ACQUIRE: &str = "UPDATE video_jobs SET status = 'running', lease_epoch = lease_epoch + 1,
        attempts = attempts + 1, lease_holder = $2, lease_heartbeat_at = now(),
        lease_expires_at = now() + interval '3 s' WHERE id = $1::uuid";

    async fn acquire(conn: &mut sqlx::PgConnection, holder: &str) {
        let done = sqlx::query(ACQUIRE)
            .bind(JOB)
            .bind(holder)
            .execute(&mut *conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn expire(conn: &mut sqlx::PgConnection) {
        write(
            conn,
            "UPDATE video_jobs SET lease_expires_at = now() - interval '10 s' WHERE id = $1::uuid",
        )
        .await;
    }

    async fn findings(rig: &Rig) -> Findings {
        analyse(
            &read(&rig.db.pool).await.unwrap(),
            &rig.sessions,
            Duration::from_secs(1),
        )
    }

    #[tokio::test]
    async fn a_clean_takeover_and_one_finalize_show_nothing() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET progress_percent = 40 WHERE id = $1::uuid",
        )
        .await;
        expire(&mut r.a).await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        write(
            &mut r.b,
            "UPDATE video_jobs SET progress_percent = 10 WHERE id = $1::uuid",
        )
        .await;
        write(&mut r.b, "UPDATE video_jobs SET status = 'succeeded', lease_holder = NULL,
            lease_heartbeat_at = NULL, lease_expires_at = NULL, finished_at = now() WHERE id = $1::uuid").await;
        let f = findings(&r).await;
        assert_eq!(f.writes, 6);
        assert_eq!(f.attributed, 6);
        assert!(f.stale_writes.is_empty(), "{:?}", f.stale_writes);
        assert!(f.double_finalize.is_empty());
    }

    #[tokio::test]
    async fn a_write_by_a_process_that_lost_its_lease_is_a_stale_write() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        expire(&mut r.a).await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        // An unfenced progress write from the old holder's session.
        write(
            &mut r.a,
            "UPDATE video_jobs SET progress_percent = 50 WHERE id = $1::uuid",
        )
        .await;
        let f = findings(&r).await;
        assert_eq!(f.stale_writes.len(), 1, "{:?}", f.stale_writes);
        assert!(
            f.stale_writes[0].contains("written by chaos-w0-1 while chaos-w1-2 held the lease")
        );
    }

    #[tokio::test]
    async fn an_epoch_going_back_a_progress_decrease_and_a_live_takeover_are_stale_writes() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET progress_percent = 60 WHERE id = $1::uuid",
        )
        .await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET progress_percent = 30 WHERE id = $1::uuid",
        )
        .await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await; // the lease was still live
        write(
            &mut r.b,
            "UPDATE video_jobs SET lease_epoch = 1 WHERE id = $1::uuid",
        )
        .await;
        let f = findings(&r).await;
        let text = f.stale_writes.join("\n");
        assert_eq!(f.stale_writes.len(), 3, "{text}");
        assert!(
            text.contains("progress decreased within an epoch"),
            "{text}"
        );
        assert!(text.contains("a live lease was taken over"), "{text}");
        assert!(text.contains("the epoch went back"), "{text}");
    }

    #[tokio::test]
    async fn a_live_lease_may_be_taken_over_only_when_its_holders_session_is_gone() {
        let mut r = rig().await;
        // The holder records its own session: it lives, so a takeover is a stale write.
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET lease_holder_pid = pg_backend_pid(),
                lease_holder_backend_start = (SELECT backend_start FROM pg_stat_activity
                                              WHERE pid = pg_backend_pid())
             WHERE id = $1::uuid",
        )
        .await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        let f = findings(&r).await;
        assert_eq!(f.stale_writes.len(), 1, "{:?}", f.stale_writes);
        assert!(f.stale_writes[0].contains("a live lease was taken over"));
        // A session that no longer exists (pid 0 is never a backend): the takeover, and the
        // sweeper's requeue of such a lease, are the rule.
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET lease_holder_pid = 0, lease_holder_backend_start = now()
             WHERE id = $1::uuid",
        )
        .await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        write(
            &mut r.b,
            "UPDATE video_jobs SET lease_holder_pid = 0, lease_holder_backend_start = now()
             WHERE id = $1::uuid",
        )
        .await;
        write(
            &mut r.a,
            "UPDATE video_jobs SET status = 'queued', lease_holder = NULL,
            lease_heartbeat_at = NULL, lease_expires_at = NULL, lease_holder_pid = NULL,
            lease_holder_backend_start = NULL, error_code = 'worker_gone' WHERE id = $1::uuid",
        )
        .await;
        let f = findings(&r).await;
        assert!(f.stale_writes.is_empty(), "{:?}", f.stale_writes);
    }

    #[tokio::test]
    async fn two_terminal_transitions_are_a_double_finalize() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        let finish = "UPDATE video_jobs SET status = 'succeeded', lease_holder = NULL,
            lease_heartbeat_at = NULL, lease_expires_at = NULL, finished_at = now() WHERE id = $1::uuid";
        write(&mut r.a, finish).await;
        write(
            &mut r.b,
            "UPDATE video_jobs SET status = 'queued', finished_at = NULL WHERE id = $1::uuid",
        )
        .await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        write(&mut r.b, finish).await;
        let f = findings(&r).await;
        assert_eq!(f.double_finalize.len(), 1);
        assert_eq!(f.double_finalize[0].1, 2);
        assert!(
            f.stale_writes
                .iter()
                .any(|s| s.contains("a write to a terminal job"))
        );
    }

    #[tokio::test]
    async fn the_sweeper_may_requeue_an_expired_lease_it_does_not_hold() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        expire(&mut r.a).await;
        write(&mut r.b, "UPDATE video_jobs SET status = 'queued', lease_holder = NULL,
            lease_heartbeat_at = NULL, lease_expires_at = NULL, error_code = 'lease_expired' WHERE id = $1::uuid").await;
        let f = findings(&r).await;
        assert!(f.stale_writes.is_empty(), "{:?}", f.stale_writes);
    }

    #[tokio::test]
    async fn another_process_may_not_requeue_a_live_lease() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        write(&mut r.b, "UPDATE video_jobs SET status = 'queued', lease_holder = NULL,
            lease_heartbeat_at = NULL, lease_expires_at = NULL, error_code = 'lease_expired' WHERE id = $1::uuid").await;
        let f = findings(&r).await;
        assert_eq!(f.stale_writes.len(), 1, "{:?}", f.stale_writes);
        assert!(
            f.stale_writes[0].contains("written by chaos-w1-2 while chaos-w0-1 held the lease")
        );
    }

    #[tokio::test]
    async fn takeover_latency_runs_from_the_kill_to_the_next_epoch() {
        let mut r = rig().await;
        acquire(&mut r.a, "chaos-w0-1-0000000a").await;
        let killed = Utc::now();
        expire(&mut r.a).await;
        acquire(&mut r.b, "chaos-w1-2-0000000b").await;
        let events = read(&r.db.pool).await.unwrap();
        let took = takeover_latencies(&events, &[("chaos-w0-1".into(), killed)]);
        assert_eq!(took.len(), 1);
        let acquired = events.last().unwrap().at;
        assert_eq!(took[0], (acquired - killed).to_std().unwrap());
        assert!(takeover_latencies(&events, &[("chaos-w2-3".into(), killed)]).is_empty());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_process_is_the_holder_without_the_workers_suffix() {
        assert_eq!(process_of("chaos-w1-12-0a1b2c3d"), "chaos-w1-12");
    }
}
