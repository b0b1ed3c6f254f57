//! The Postgres [`JobRepository`], on sqlx.
//!
//! Every operation is one SQL statement ([`sql`]), so it is atomic without a client-side
//! transaction and costs one round trip. Time is the database's `now()`, never this
//! process's clock. Cancel requests `NOTIFY` (a trigger in the migrations); the worker
//! `LISTEN`s through [`JobRepository::cancel_notifications`].

mod connections;
mod row;
pub mod sql;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    AcquireOutcome, AcquireRequest, CancelEvent, CancelOutcome, CancelSubscription, FencedError,
    FinalOutcome, HeartbeatAck, HolderSession, IdempotentOutcome, IdempotentRequest, InstanceId,
    Job, JobError, JobId, JobIdStream, JobPage, JobRepository, JobStatus, Lease, ListCursor,
    ListQuery, NewJob, Percent, ProgressOutcome, ProgressReport, RepoError, SweepPolicy, SweptJob,
};
use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{FromRow, PgPool, Row};

use crate::connections::Connections;
use crate::row::JobRow;

pub use crate::connections::CLIENT_CHECK_INTERVAL;

/// The migrations of `migrations/`, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// How the connection pool behaves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections at most.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the call fails as unavailable.
    pub acquire_timeout: Duration,
    /// The server-side limit on one statement.
    pub statement_timeout: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Opens a pool to `url` with `config`. Fails fast on a malformed URL; the first connection
/// is made lazily, so a database that is down shows as `Unavailable` on first use.
pub fn connect_lazy(url: &str, config: &PoolConfig) -> Result<PgPool, sqlx::Error> {
    let options = connections::connect_options(
        PgConnectOptions::from_str(url)?.application_name("video-worker"),
        config.statement_timeout,
    );
    // The pool serves migrations, listeners and readiness checks; the repository's
    // statements run on [`Connections`] of the same size and timeouts, which need no ping.
    Ok(PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .connect_lazy_with(options))
}

/// Jobs in Postgres.
#[derive(Debug, Clone)]
pub struct PgRepository {
    /// Migrations, listeners and readiness checks.
    pool: PgPool,
    /// Every repository statement: one round trip each (no ping on return).
    conns: Connections,
}

impl PgRepository {
    /// A repository on `pool` (migrated already).
    pub fn new(pool: PgPool) -> Self {
        let conns = Connections::like(&pool);
        Self { pool, conns }
    }

    /// Job ids notified on `channel`. LISTEN is in place when this returns, so an event
    /// after it is not missed. If the connection drops, PgListener reconnects; what was sent
    /// meanwhile is lost (the heartbeat, or a re-read, covers it).
    async fn listen(&self, channel: &str) -> Result<JobIdStream, RepoError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(storage)?;
        listener.listen(channel).await.map_err(storage)?;
        let stream = listener.into_stream().filter_map(|item| async move {
            match item {
                Ok(note) => note.payload().parse::<JobId>().ok(),
                Err(error) => {
                    tracing::warn!(%error, "notification listener failed; reconnecting");
                    None
                }
            }
        });
        Ok(Box::pin(stream))
    }

    /// Closes every connection: the statements' and the pool's. Statements running finish;
    /// later ones fail as unavailable.
    pub async fn close(&self) {
        self.conns.close().await;
        self.pool.close().await;
    }

    /// Cancel events on a dedicated `LISTEN` connection, whose session is this process's
    /// liveness handle. The session is read on that very connection before this returns.
    /// When the connection is lost — however it shows: a closed socket, any error, or a
    /// check that fails after [`LISTENER_CHECK_EVERY`] of silence — the listener is dropped
    /// and [`CancelEvent::SessionLost`] sent; a new connection is then made (with backoff),
    /// and its session reported as [`CancelEvent::Session`], so the worker re-registers it
    /// on the leases it holds. Notifications sent meanwhile are lost (the heartbeat reports
    /// the cancel).
    async fn listen_for_cancels(&self) -> Result<CancelSubscription, RepoError> {
        let (listener, session) = connect_cancel_listener(&self.pool).await.map_err(storage)?;
        let state = CancelListen {
            pool: self.pool.clone(),
            listener: Some(listener),
            session: Some(session),
            retry_in: Duration::ZERO,
        };
        let events = futures_util::stream::unfold(state, |mut state| async move {
            let event = state.next_event().await;
            Some((event, state))
        });
        Ok(CancelSubscription {
            session: Some(session),
            events: Box::pin(events),
        })
    }

    /// The pool, for readiness checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The session of the connection `executor` runs on (for a listener: reconnecting first if
/// its connection was lost).
async fn own_session<'c, E>(executor: E) -> Result<HolderSession, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let row = sqlx::query(sql::OWN_SESSION).fetch_one(executor).await?;
    Ok(HolderSession {
        pid: row.try_get("pid")?,
        backend_start: row.try_get("backend_start")?,
    })
}

/// How long the cancel listener may be silent before its connection is checked (one
/// statement on it). A connection that died without closing (a half-open TCP path) shows
/// only this way, and until it shows, the session it reports is stale.
pub const LISTENER_CHECK_EVERY: Duration = Duration::from_secs(30);

/// A fresh `LISTEN` connection on the cancel channel, and its session.
async fn connect_cancel_listener(
    pool: &PgPool,
) -> Result<(PgListener, HolderSession), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(sql::CANCEL_CHANNEL).await?;
    let session = own_session(&mut listener).await?;
    Ok((listener, session))
}

/// A cancel subscription's listener, and what it knows of its own session.
struct CancelListen {
    pool: PgPool,
    /// `None` after its connection was lost, until a new one is made.
    listener: Option<PgListener>,
    /// The session last reported.
    session: Option<HolderSession>,
    /// How long to wait before the next try after a failure.
    retry_in: Duration,
}

impl CancelListen {
    /// The next cancel or session event; never ends (it retries with backoff while the
    /// database is unreachable).
    async fn next_event(&mut self) -> CancelEvent {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                if !self.retry_in.is_zero() {
                    tokio::time::sleep(self.retry_in).await;
                }
                // A listener of our own rather than sqlx's reconnect: sqlx keeps a
                // connection that failed with anything but a few I/O errors, and every
                // later use of it fails the same way.
                match connect_cancel_listener(&self.pool).await {
                    Ok((listener, session)) => {
                        self.listener = Some(listener);
                        self.session = Some(session);
                        self.retry_in = Duration::ZERO;
                        tracing::info!(
                            pid = session.pid,
                            "cancel listener reconnected under a new session"
                        );
                        return CancelEvent::Session(session);
                    }
                    Err(error) => {
                        self.backoff();
                        tracing::warn!(%error, "cancel listener cannot reconnect; retrying");
                        continue;
                    }
                }
            };
            // The timeout may drop `try_recv` between its reads; a notification it had
            // half read would then be lost, which the heartbeat covers, and a stream left
            // out of step fails its next read, which reconnects.
            match tokio::time::timeout(LISTENER_CHECK_EVERY, listener.try_recv()).await {
                Ok(Ok(Some(note))) => {
                    if let Ok(id) = note.payload().parse::<JobId>() {
                        return CancelEvent::Cancel(id);
                    }
                }
                Ok(Ok(None)) => return self.lost("the connection closed"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cancel listener failed");
                    self.backoff();
                    return self.lost("the connection failed");
                }
                Err(_silent) => match own_session(&mut *listener).await {
                    Ok(session) if Some(session) == self.session => {}
                    Ok(session) => {
                        self.session = Some(session);
                        return CancelEvent::Session(session);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cancel listener's connection check failed");
                        return self.lost("the connection check failed");
                    }
                },
            }
        }
    }

    /// Drops the listener: its session is gone, so acquires must not record it.
    fn lost(&mut self, why: &'static str) -> CancelEvent {
        tracing::warn!(why, "cancel listener lost its session; reconnecting");
        self.listener = None;
        self.session = None;
        CancelEvent::SessionLost
    }

    fn backoff(&mut self) {
        self.retry_in =
            (self.retry_in * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
    }
}

/// Maps a driver error: connection trouble and transient server states are retryable.
fn storage(e: sqlx::Error) -> RepoError {
    use sqlx::Error as E;
    match e {
        E::Database(db) => {
            // Retryable: 08 connection, 40 rollback (serialization, deadlock), 53 resources,
            // 57 operator intervention (shutdown, statement timeout), 58 system, 25006 a
            // read-only standby during failover — and what a deployment fix cures without
            // touching the job: 28 bad credentials, 3D missing database, 42 missing table
            // (migrations not applied). The rest (22 data, 23 constraints) is about the row.
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let class = code.get(..2).unwrap_or_default();
            if matches!(class, "08" | "40" | "53" | "57" | "58" | "28" | "3D" | "42")
                || code == "25006"
            {
                RepoError::Unavailable(db.into())
            } else {
                RepoError::Corrupt(db.to_string())
            }
        }
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => RepoError::Unavailable(Box::new(e)),
        other => RepoError::Corrupt(other.to_string()),
    }
}

fn job_from(row: &PgRow) -> Result<Job, RepoError> {
    JobRow::from_row(row).map_err(storage)?.try_into()
}

/// The lease an acquire just wrote, from its own columns alone (the holder and id are the
/// request's): what the worker needs to end a job whose other columns do not decode.
fn lease_from(row: &PgRow, request: &AcquireRequest) -> Result<Lease, RepoError> {
    let epoch: i64 = row.try_get("lease_epoch").map_err(storage)?;
    let expires_at = row.try_get("lease_expires_at").map_err(storage)?;
    let attempts: i32 = row.try_get("attempts").map_err(storage)?;
    Ok(Lease {
        job_id: request.job_id,
        holder: request.holder.clone(),
        epoch: domain::LeaseEpoch::new(epoch)?,
        expires_at,
        attempt: u32::try_from(attempts)
            .map_err(|_| RepoError::Corrupt(format!("attempts {attempts}")))?,
    })
}

fn status_from(text: &str) -> Result<JobStatus, RepoError> {
    text.parse()
        .map_err(|e| RepoError::Corrupt(format!("status: {e}")))
}

fn secs_f64(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn epoch_of(lease: &Lease) -> i64 {
    lease.epoch.get()
}

fn i32_of(n: u32, field: &'static str) -> Result<i32, RepoError> {
    i32::try_from(n).map_err(|_| domain::ValidationError::new(field, "too large").into())
}

/// An insert's failure: a job with that id exists already, or the store failed.
fn insert_error(e: sqlx::Error, id: JobId) -> RepoError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => RepoError::AlreadyExists(id),
        other => storage(other),
    }
}

#[async_trait]
impl JobRepository for PgRepository {
    async fn create(&self, new: NewJob) -> Result<Job, RepoError> {
        let row = self
            .conns
            .fetch_one(
                sqlx::query(sql::CREATE)
                    .bind(new.id.as_uuid())
                    .bind(&new.input),
            )
            .await
            .map_err(|e| insert_error(e, new.id))?;
        job_from(&row)
    }

    async fn create_idempotent(
        &self,
        new: NewJob,
        request: &IdempotentRequest,
    ) -> Result<IdempotentOutcome, RepoError> {
        let row = self
            .conns
            .fetch_one(
                sqlx::query(sql::CREATE_IDEMPOTENT)
                    .bind(new.id.as_uuid())
                    .bind(&new.input)
                    .bind(request.scope.as_slice())
                    .bind(request.key.as_str())
                    .bind(request.fingerprint.as_slice())
                    .bind(secs_f64(request.retention))
                    .bind(sql::IDEMPOTENCY_PURGE_BATCH),
            )
            .await
            .map_err(|e| insert_error(e, new.id))?;
        if row.try_get::<bool, _>("created").map_err(storage)? {
            return Ok(IdempotentOutcome::Created(job_from(&row)?));
        }
        let named = JobId::from_uuid(row.try_get("key_job_id").map_err(storage)?);
        if !row.try_get::<bool, _>("same_request").map_err(storage)? {
            return Ok(IdempotentOutcome::KeyReused { job_id: named });
        }
        // A statement of its own: the job may have been committed by a concurrent create
        // after the first statement's snapshot was taken.
        let job = self.get(named).await?.ok_or_else(|| {
            RepoError::Corrupt(format!("idempotency key names missing job {named}"))
        })?;
        Ok(IdempotentOutcome::Existing(job))
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        let row = self
            .conns
            .fetch_optional(sqlx::query(sql::GET).bind(id.as_uuid()))
            .await
            .map_err(storage)?;
        row.as_ref().map(job_from).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<JobPage, RepoError> {
        let limit = i64::from(query.limit());
        let rows = self
            .conns
            .fetch_all(
                sqlx::query(sql::LIST)
                    .bind(query.status.map(JobStatus::as_str))
                    .bind(query.after.map(|c| c.created_at))
                    .bind(query.after.map(|c| c.id.as_uuid()))
                    .bind(limit + 1),
            )
            .await
            .map_err(storage)?;
        let mut jobs = rows.iter().map(job_from).collect::<Result<Vec<_>, _>>()?;
        let more = jobs.len() > usize::try_from(query.limit()).unwrap_or(usize::MAX);
        jobs.truncate(usize::try_from(query.limit()).unwrap_or(usize::MAX));
        let next = if more {
            jobs.last().map(|j| ListCursor {
                created_at: j.created_at,
                id: j.id,
            })
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    async fn acquire(&self, request: &AcquireRequest) -> Result<AcquireOutcome, RepoError> {
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::ACQUIRE)
                    .bind(request.job_id.as_uuid())
                    .bind(request.holder.as_str())
                    .bind(i32_of(request.max_attempts, "max_attempts")?)
                    .bind(secs_f64(request.ttl))
                    .bind(request.session.map(|s| s.pid))
                    .bind(request.session.map(|s| s.backend_start)),
            )
            .await
            .map_err(storage)?;
        let Some(row) = row else {
            return Ok(AcquireOutcome::NotFound);
        };
        let verdict: String = row.try_get("verdict").map_err(storage)?;
        Ok(match verdict.as_str() {
            "acquired" => {
                let job = match job_from(&row) {
                    Ok(job) => job,
                    // The lease committed: hand it back so the job can be ended, fenced.
                    Err(RepoError::Corrupt(reason)) => {
                        return Ok(AcquireOutcome::AcquiredUndecodable {
                            lease: lease_from(&row, request)?,
                            reason,
                        });
                    }
                    Err(other) => return Err(other),
                };
                let state = job
                    .lease
                    .clone()
                    .ok_or_else(|| RepoError::Corrupt("acquired job has no lease".into()))?;
                let lease = Lease {
                    job_id: job.id,
                    holder: state.holder,
                    epoch: job.lease_epoch,
                    expires_at: state.expires_at,
                    attempt: job.attempts,
                };
                AcquireOutcome::Acquired {
                    lease,
                    job: Box::new(job),
                }
            }
            "terminal" => {
                let status: String = row.try_get("cur_status").map_err(storage)?;
                AcquireOutcome::Terminal(status_from(&status)?)
            }
            "busy" => {
                let holder: String = row.try_get("busy_holder").map_err(storage)?;
                let secs: i64 = row.try_get("retry_after_s").map_err(storage)?;
                AcquireOutcome::Busy {
                    holder: InstanceId::new(holder)?,
                    retry_after: Duration::from_secs(u64::try_from(secs).unwrap_or(1)),
                }
            }
            "canceled" => AcquireOutcome::Canceled,
            "exhausted" => AcquireOutcome::AttemptsExhausted,
            other => return Err(RepoError::Corrupt(format!("acquire verdict {other:?}"))),
        })
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<HeartbeatAck, FencedError> {
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::HEARTBEAT)
                    .bind(lease.job_id.as_uuid())
                    .bind(epoch_of(lease))
                    .bind(lease.holder.as_str())
                    .bind(secs_f64(ttl)),
            )
            .await
            .map_err(storage)?
            .ok_or(FencedError::LeaseLost)?;
        Ok(HeartbeatAck {
            cancel_requested: row.try_get("cancel_requested").map_err(storage)?,
            expires_at: row.try_get("lease_expires_at").map_err(storage)?,
        })
    }

    async fn register_session(
        &self,
        lease: &Lease,
        session: HolderSession,
    ) -> Result<(), FencedError> {
        self.conns
            .fetch_optional(
                sqlx::query(sql::REGISTER_SESSION)
                    .bind(lease.job_id.as_uuid())
                    .bind(epoch_of(lease))
                    .bind(lease.holder.as_str())
                    .bind(session.pid)
                    .bind(session.backend_start),
            )
            .await
            .map_err(storage)?
            .ok_or(FencedError::LeaseLost)?;
        Ok(())
    }

    async fn report_progress(
        &self,
        lease: &Lease,
        report: &ProgressReport,
    ) -> Result<ProgressOutcome, FencedError> {
        report.validate().map_err(RepoError::from)?;
        let segment_index = report
            .segment
            .map(|s| i32_of(s.index(), "segment_index"))
            .transpose()?;
        let segment_total = report
            .segment
            .map(|s| i32_of(s.total(), "segment_total"))
            .transpose()?;
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::REPORT_PROGRESS)
                    .bind(lease.job_id.as_uuid())
                    .bind(epoch_of(lease))
                    .bind(lease.holder.as_str())
                    .bind(report.stage.as_str())
                    .bind(i16::from(report.percent.get()))
                    .bind(segment_index)
                    .bind(segment_total)
                    .bind(report.message.as_deref()),
            )
            .await
            .map_err(storage)?
            .ok_or(FencedError::LeaseLost)?;
        let applied: i64 = row.try_get("applied").map_err(storage)?;
        let fenced: Option<bool> = row.try_get("fenced").map_err(storage)?;
        let current: i16 = row.try_get("progress_percent").map_err(storage)?;
        if applied == 1 {
            return Ok(ProgressOutcome::Applied);
        }
        let current = u8::try_from(current)
            .ok()
            .and_then(|p| Percent::new(p).ok())
            .ok_or_else(|| RepoError::Corrupt(format!("progress_percent {current}")))?;
        // Not applied: backwards if we still hold the lease and the row shows more; any other
        // reason (the lease moved on, possibly concurrently) is a lost lease.
        let behind: Option<bool> = row.try_get("behind").map_err(storage)?;
        if fenced == Some(true) && behind == Some(true) {
            Ok(ProgressOutcome::Regressed { current })
        } else {
            Err(FencedError::LeaseLost)
        }
    }

    async fn release(
        &self,
        lease: &Lease,
        error: Option<JobError>,
    ) -> Result<JobStatus, FencedError> {
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::RELEASE)
                    .bind(lease.job_id.as_uuid())
                    .bind(epoch_of(lease))
                    .bind(lease.holder.as_str())
                    .bind(error.as_ref().map(|e| e.code.as_str()))
                    .bind(error.as_ref().map(|e| e.message.as_str())),
            )
            .await
            .map_err(storage)?
            .ok_or(FencedError::LeaseLost)?;
        let status: String = row.try_get("status").map_err(storage)?;
        Ok(status_from(&status)?)
    }

    async fn finalize(
        &self,
        lease: &Lease,
        outcome: &FinalOutcome,
    ) -> Result<JobStatus, FencedError> {
        let (artifact, error) = match outcome {
            FinalOutcome::Succeeded { artifact_key } => (Some(artifact_key.as_str()), None),
            FinalOutcome::Failed(error) => (None, Some(error)),
            FinalOutcome::Canceled => (None, None),
        };
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::FINALIZE)
                    .bind(lease.job_id.as_uuid())
                    .bind(epoch_of(lease))
                    .bind(lease.holder.as_str())
                    .bind(outcome.status().as_str())
                    .bind(artifact)
                    .bind(error.map(|e| e.code.as_str()))
                    .bind(error.map(|e| e.message.as_str())),
            )
            .await
            .map_err(storage)?
            .ok_or(FencedError::LeaseLost)?;
        let status: String = row.try_get("status").map_err(storage)?;
        Ok(status_from(&status)?)
    }

    async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, RepoError> {
        let row = self
            .conns
            .fetch_optional(sqlx::query(sql::REQUEST_CANCEL).bind(id.as_uuid()))
            .await
            .map_err(storage)?;
        let Some(row) = row else {
            return Ok(CancelOutcome::NotFound);
        };
        let status: String = row.try_get("status").map_err(storage)?;
        let already: bool = row.try_get("already").map_err(storage)?;
        Ok(match status_from(&status)? {
            JobStatus::Queued => CancelOutcome::Canceled,
            JobStatus::Running => CancelOutcome::Requested { first: !already },
            terminal => CancelOutcome::AlreadyTerminal(terminal),
        })
    }

    async fn cancel_notifications(&self) -> Result<CancelSubscription, RepoError> {
        self.listen_for_cancels().await
    }

    async fn job_updates(&self) -> Result<JobIdStream, RepoError> {
        self.listen(sql::UPDATE_CHANNEL).await
    }

    async fn fail_unstarted(&self, id: JobId, error: JobError) -> Result<bool, RepoError> {
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::FAIL_UNSTARTED)
                    .bind(id.as_uuid())
                    .bind(error.code.as_str())
                    .bind(&error.message),
            )
            .await
            .map_err(storage)?;
        Ok(row.is_some())
    }

    async fn advance_delivery_generation(
        &self,
        id: JobId,
        from: u32,
    ) -> Result<Option<u32>, RepoError> {
        let row = self
            .conns
            .fetch_optional(
                sqlx::query(sql::ADVANCE_DELIVERY_GENERATION)
                    .bind(id.as_uuid())
                    .bind(i32_of(from, "delivery_generation")?),
            )
            .await
            .map_err(storage)?;
        row.map(|row| {
            let generation: i32 = row.try_get("delivery_generation").map_err(storage)?;
            u32::try_from(generation)
                .map_err(|e| RepoError::Corrupt(format!("video_jobs row {id}: {e}")))
        })
        .transpose()
    }

    async fn sweep(&self, policy: &SweepPolicy) -> Result<Vec<SweptJob>, RepoError> {
        let rows = self
            .conns
            .fetch_all(
                sqlx::query(sql::SWEEP)
                    .bind(secs_f64(policy.expired_for))
                    .bind(i32_of(policy.max_attempts, "max_attempts")?)
                    .bind(policy.queued_for.map(secs_f64))
                    .bind(i64::from(policy.queued_limit)),
            )
            .await
            .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let id: uuid::Uuid = row.try_get("id").map_err(storage)?;
                let status: String = row.try_get("status").map_err(storage)?;
                let from: String = row.try_get("from_status").map_err(storage)?;
                Ok(SweptJob {
                    id: JobId::from_uuid(id),
                    status: status_from(&status)?,
                    from: status_from(&from)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sql_stage_order_is_the_domains() {
        let domain: Vec<&str> = domain::Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(domain, super::sql::STAGE_ORDER);
        let literal = format!("ARRAY['{}']", super::sql::STAGE_ORDER.join("','"));
        assert_eq!(super::sql::REPORT_PROGRESS.matches(&literal).count(), 2);
    }
}
