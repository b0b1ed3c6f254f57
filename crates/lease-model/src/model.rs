//! The world of one job: workers, the queue, the sweeper, the API and the clock.
//!
//! **The row.** [`Row`] keeps the fields of `domain::Job` that the transitions decide on —
//! status, epoch, holder, lease expiry, cancel flag, attempts, progress, outcome. Every step
//! that touches the job turns the row into a `domain::Job` ([`Row::to_job`]), calls the real
//! transition, and turns the answer back ([`Row::from_job`]). Time is kept *relative*: the
//! model's "now" is always [`T0`] and a tick moves every deadline one second closer, down to
//! a floor below which all comparisons the protocol makes come out the same. So time can
//! always pass, and the state space stays finite.
//!
//! **The actors.**
//! - Workers follow the runner: a delivery calls acquire; a holder heartbeats (which carries
//!   the cancel flag), writes progress, and ends with one closing write — finalize, or
//!   release for a retryable failure. A holder trusts its lease until `TTL − margin` after
//!   its last heartbeat was sent; past that it writes nothing until a heartbeat says the
//!   lease is still its own (a paused worker resuming), or gives the delivery up (503).
//! - The queue holds at most one task for the job and may dispatch it again at any time
//!   (a duplicate delivery, or a redelivery after its dispatch deadline). Only the answer to
//!   the latest dispatch counts, as in Cloud Tasks: a 2xx deletes the task, anything else
//!   keeps it for a retry.
//! - The sweeper requeues (or fails, or cancels) a running job whose lease expired long ago,
//!   and enqueues a task for a queued job only when the queue holds none.
//! - The API may request cancel; the clock ticks.
//!
//! **Sessions.** Each worker holds one long-lived database connection (its `LISTEN`
//! connection), whose session is its liveness handle: recorded on every lease it takes.
//! The session dies with the worker (a crash), or drops alone (a network blip, a fault) while
//! the worker lives on; the connection then comes back under a new session, which the
//! worker re-registers on the lease it holds (fenced) before its next heartbeat. Acquire and
//! the sweeper may take over a lease whose recorded session is gone before it expires —
//! through the real `Job::acquire` and `Job::sweep`, told whether the holder is gone.
//!
//! **Faults**, from one budget shared by all kinds (so every pair of faults meets): a worker
//! crash at any point (it comes back as a new instance), a closing write that commits but
//! whose reply is lost (the runner retries, is refused, and reads the row back — or cannot,
//! and answers 503), a progress write delayed in the network until after a takeover, a
//! heartbeat reply that arrives late, the queue losing the task. A paused worker needs
//! no fault of its own: any actor may stay idle while the clock ticks.

use std::time::Duration;

use domain::{
    AcquireOutcome, AcquireRequest, ErrorCode, FinalOutcome, HolderSession, InstanceId, Job,
    JobError, JobId, JobStatus, Lease, LeaseEpoch, LeaseState, Percent, ProgressOutcome,
    ProgressReport, Stage, SweepPolicy, Timestamp,
};

use crate::checker::{Invariant, Model};

/// The lease's time to live, in ticks (seconds).
pub const TTL: i8 = 3;
/// How much earlier than the database a holder stops trusting its lease.
pub const MARGIN: i8 = 1;
/// How long past expiry the sweeper waits before it moves a running job.
pub const EXPIRED_FOR: i8 = 1;
/// Below this, every lease comparison the protocol makes has the same answer.
const FLOOR: i8 = -EXPIRED_FOR - 1;
/// The progress a holder reports, in order.
const STEPS: [u8; 2] = [40, 80];

/// The model's "now": the fixed instant all offsets count from.
pub fn t0() -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn job_id() -> JobId {
    JobId::from_uuid(uuid::Uuid::from_u128(1))
}

fn code(code: &'static str) -> ErrorCode {
    ErrorCode::new(code).unwrap_or_else(|_| unreachable!("{code} is a valid error code"))
}

fn secs(ticks: i8) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(i64::from(ticks))
}

/// A guard the model breaks on purpose, to show the checker catches the bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The real protocol.
    None,
    /// Progress fenced by the job id only: the write is made as if it carried the current
    /// lease, whatever epoch it really carries.
    ProgressIgnoresEpoch,
    /// Finalize does not look at the cancel flag.
    FinalizeIgnoresCancel,
    /// Acquire takes over a live lease as if it had expired.
    AcquireIgnoresLiveLease,
    /// The runner trusts its lease for the whole TTL after a heartbeat *answered*, not
    /// TTL − margin after it was sent: a slow heartbeat reply stretches its trust.
    TrustFromReply,
    /// The sweeper never enqueues a task: a job whose task was lost stays queued forever.
    SweeperNeverEnqueues,
    /// A worker that finds its lease gone answers `superseded` (2xx) without looking at the
    /// job, even when the sweeper requeued it and nobody holds it.
    SupersededWithoutLooking,
    /// Acquire counts a session it cannot see as gone (as Postgres shows another role's
    /// session with `backend_start` NULL): a live holder is taken over before expiry.
    HiddenSessionCountsAsGone,
}

/// The size of the world and its fault budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Worker processes, 1 to [`MAX_WORKERS`].
    pub workers: u8,
    /// `VIDEO_JOB_MAX_ATTEMPTS`.
    pub max_attempts: u8,
    /// Faults per run, of any kinds: crashes, lost replies, delayed writes, lost tasks,
    /// slow heartbeat replies.
    pub faults: u8,
    /// The guard broken on purpose, if any.
    pub mutation: Mutation,
}

impl Config {
    /// The bounds CI checks first: 2 workers, any 2 faults, 3 attempts.
    pub const fn standard() -> Self {
        Self {
            workers: 2,
            max_attempts: 3,
            faults: 2,
            mutation: Mutation::None,
        }
    }

    /// Three workers racing, any single fault.
    pub const fn wide() -> Self {
        Self {
            workers: 3,
            faults: 1,
            ..Self::standard()
        }
    }

    /// These bounds with `mutation` applied.
    #[must_use]
    pub const fn with(self, mutation: Mutation) -> Self {
        Self { mutation, ..self }
    }
}

/// The most workers a model may have.
pub const MAX_WORKERS: usize = 3;

/// An instance id: worker slot and incarnation (a crashed worker restarts as a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The worker slot.
    pub worker: u8,
    /// Its incarnation.
    pub incarnation: u8,
}

impl Holder {
    fn instance_id(self) -> InstanceId {
        InstanceId::new(format!("w{}.{}", self.worker, self.incarnation))
            .unwrap_or_else(|_| unreachable!("a short ascii id is valid"))
    }

    /// This incarnation's session of generation `generation` (a reconnect is a new one).
    fn session(self, generation: u8) -> HolderSession {
        HolderSession {
            pid: i32::from(self.worker) * 10_000
                + i32::from(self.incarnation) * 100
                + i32::from(generation),
            backend_start: t0(),
        }
    }

    fn parse(id: &InstanceId) -> Option<Self> {
        let (worker, incarnation) = id.as_str().strip_prefix('w')?.split_once('.')?;
        Some(Self {
            worker: worker.parse().ok()?,
            incarnation: incarnation.parse().ok()?,
        })
    }
}

/// Why a job failed, as far as the model tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `attempts_exhausted`.
    AttemptsExhausted,
    /// `lease_expired`.
    LeaseExpired,
    /// The pipeline's permanent failure.
    Permanent,
    /// The pipeline's retryable failure (on a released job).
    Retryable,
    /// `worker_gone`: the sweeper requeued a job whose holder's session was gone.
    WorkerGone,
}

impl ErrorKind {
    fn of(error: &JobError) -> Self {
        match error.code.as_str() {
            ErrorCode::ATTEMPTS_EXHAUSTED => Self::AttemptsExhausted,
            ErrorCode::LEASE_EXPIRED => Self::LeaseExpired,
            ErrorCode::WORKER_GONE => Self::WorkerGone,
            "render_failed" => Self::Permanent,
            _ => Self::Retryable,
        }
    }

    fn to_error(self) -> JobError {
        let c = match self {
            Self::AttemptsExhausted => ErrorCode::ATTEMPTS_EXHAUSTED,
            Self::LeaseExpired => ErrorCode::LEASE_EXPIRED,
            Self::WorkerGone => ErrorCode::WORKER_GONE,
            Self::Permanent => "render_failed",
            Self::Retryable => "tts_unavailable",
        };
        JobError::new(code(c), "model")
    }
}

/// The job row, reduced to what the transitions decide on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Row {
    /// Status.
    pub status: JobStatus,
    /// `lease_epoch`.
    pub epoch: u8,
    /// `lease_holder`, while running.
    pub holder: Option<Holder>,
    /// The generation of the holder's session recorded on the lease, if it gave one.
    pub session: Option<u8>,
    /// `lease_expires_at − now` in ticks, floored.
    pub expires: i8,
    /// Whether cancel was requested.
    pub cancel: bool,
    /// Acquisitions so far.
    pub attempts: u8,
    /// The progress shown.
    pub percent: u8,
    /// Whether an artifact is recorded.
    pub artifact: bool,
    /// The recorded error, if any.
    pub error: Option<ErrorKind>,
}

impl Row {
    fn new() -> Self {
        Self {
            status: JobStatus::Queued,
            epoch: 0,
            holder: None,
            session: None,
            expires: 0,
            cancel: false,
            attempts: 0,
            percent: 0,
            artifact: false,
            error: None,
        }
    }

    /// The `domain::Job` this row stands for, at time [`t0`].
    pub fn to_job(&self) -> Job {
        let now = t0();
        let mut job = Job::new(job_id(), serde_json::Value::Null, now);
        job.status = self.status;
        job.lease_epoch = LeaseEpoch::new(i64::from(self.epoch))
            .unwrap_or_else(|_| unreachable!("a small epoch is valid"));
        job.lease = self.holder.map(|h| LeaseState {
            holder: h.instance_id(),
            session: self.session.map(|g| h.session(g)),
            heartbeat_at: now,
            expires_at: now + secs(self.expires),
        });
        job.cancel_requested_at = self.cancel.then_some(now);
        job.attempts = u32::from(self.attempts);
        job.progress = (self.percent > 0).then(|| report(self.percent));
        job.artifact_key = self.artifact.then(|| "artifact".to_owned());
        job.error = self.error.map(ErrorKind::to_error);
        if self.status.is_terminal() {
            job.finished_at = Some(now);
        }
        job
    }

    /// The row a transition left, read back from its `domain::Job`.
    pub fn from_job(job: &Job) -> Self {
        let expires = job.lease.as_ref().map_or(0, |l| {
            let ticks = (l.expires_at - t0()).num_seconds();
            i8::try_from(ticks.clamp(i64::from(FLOOR), i64::from(TTL))).unwrap_or(FLOOR)
        });
        Self {
            status: job.status,
            epoch: u8::try_from(job.lease_epoch.get()).unwrap_or(u8::MAX),
            holder: job.lease.as_ref().and_then(|l| Holder::parse(&l.holder)),
            session: job
                .lease
                .as_ref()
                .and_then(|l| l.session)
                .and_then(|s| u8::try_from(s.pid % 100).ok()),
            expires,
            cancel: job.cancel_requested_at.is_some(),
            attempts: u8::try_from(job.attempts).unwrap_or(u8::MAX),
            percent: job.percent().get(),
            artifact: job.artifact_key.is_some(),
            error: job.error.as_ref().map(ErrorKind::of),
        }
    }
}

fn report(percent: u8) -> ProgressReport {
    let percent = Percent::new(percent).unwrap_or(Percent::ZERO);
    ProgressReport::new(Stage::Render, percent, None, None)
        .unwrap_or_else(|_| unreachable!("a report without a message is valid"))
}

/// How a holder's attempt ends, when it is not told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// The pipeline published the film: finalize `succeeded`.
    Succeed,
    /// A permanent error: finalize `failed`.
    Fail,
    /// A retryable error: release, so the job is queued again.
    Retry,
    /// Cancel was seen: finalize `canceled`.
    Cancel,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No job.
    Idle,
    /// Holding a lease and running the pipeline.
    Holding {
        /// The lease's epoch.
        epoch: u8,
        /// Ticks left until the worker stops trusting its lease (0: it no longer does).
        trust: i8,
        /// Progress reports made so far.
        step: u8,
        /// Whether it learned that cancel was requested.
        cancel_seen: bool,
        /// A heartbeat that reached the database but whose reply is still on its way.
        beat: Option<Beat>,
        /// The generation of its session recorded on the lease, if any.
        registered: Option<u8>,
    },
    /// A closing write committed, but its reply was lost; the runner will retry it.
    Closing {
        /// The lease's epoch.
        epoch: u8,
        /// The write.
        ending: Ending,
    },
}

/// A heartbeat answered by the database, its reply not yet read by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Beat {
    /// The trust the reply restores: TTL − margin from when the call was sent, counting
    /// down while the reply travels.
    pub restores: i8,
    /// What the database answered: `Some(cancel requested)`, or `None` for `LeaseLost`.
    pub answer: Option<bool>,
}

/// A worker's long-lived connection: its session is the liveness handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conn {
    /// Which session of this incarnation (each reconnect makes a new one).
    pub generation: u8,
    /// Whether the connection is up (its session exists).
    pub up: bool,
}

impl Conn {
    const FRESH: Self = Self {
        generation: 0,
        up: true,
    };
}

/// A worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Worker {
    /// Its current incarnation.
    pub incarnation: u8,
    /// Its `LISTEN` connection.
    pub conn: Conn,
    /// Whether it serves the queue's latest dispatch of the task (only that answer counts).
    pub current: bool,
    /// What it is doing.
    pub phase: Phase,
}

/// A progress write still in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InFlight {
    /// Who sent it.
    pub holder: Holder,
    /// Under which epoch.
    pub epoch: u8,
    /// What it says.
    pub percent: u8,
}

/// What the properties look at, kept up to date on every change of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ghost {
    /// Transitions of the row into a terminal status.
    pub terminal_writes: u8,
    /// A terminal row was changed.
    pub terminal_changed: bool,
    /// A worker write was applied under an epoch other than the row's.
    pub stale_write_accepted: bool,
    /// The row became terminal with cancel requested, and not as `canceled`.
    pub cancel_lost: bool,
    /// The shown progress went down.
    pub progress_decreased: bool,
    /// A 2xx made the queue forget the task while the job was queued: nothing but the
    /// sweeper's next pass would deliver it.
    stranded_by_2xx: bool,
}

/// The whole world at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// The job row.
    pub row: Row,
    /// The workers; slots past `Config::workers` stay idle.
    pub workers: [Worker; MAX_WORKERS],
    /// Whether the queue holds a task for the job.
    pub task: bool,
    /// A delayed progress write, if any.
    pub in_flight: Option<InFlight>,
    /// Faults left in this run.
    pub faults: u8,
    /// Whether the API may still ask for cancel (once per run).
    pub cancel_left: bool,
    /// Property bookkeeping.
    pub ghost: Ghost,
}

/// A step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// One second passes.
    Tick,
    /// The queue dispatches the task to an idle worker, which calls acquire.
    Deliver(u8),
    /// A holder heartbeats (also the check a worker makes after it stopped trusting).
    Heartbeat(u8),
    /// A holder sends a heartbeat whose reply is slow to arrive.
    SlowHeartbeat(u8),
    /// That slow heartbeat's reply arrives, a tick after it was sent.
    HeartbeatReply(u8),
    /// The `NOTIFY` of a cancel reaches a holder.
    NotifyCancel(u8),
    /// A holder writes its next progress report.
    Progress(u8),
    /// A holder's next progress report gets stuck in the network; the holder goes on.
    DelayProgress(u8),
    /// The stuck progress write reaches the database.
    ApplyDelayed,
    /// A holder ends its attempt with one closing write.
    Finish(u8, Ending),
    /// The same, but the reply is lost after the write committed.
    FinishReplyLost(u8, Ending),
    /// The runner retries a closing write whose reply was lost, then reads the row back.
    RetryClosing(u8),
    /// The read-back after a lost reply fails too: 503.
    ReadBackFails(u8),
    /// A holder that stopped trusting its lease gives the delivery up: 503.
    Abandon(u8),
    /// A worker process dies (and its session with it).
    Crash(u8),
    /// A worker's connection drops; the process lives on.
    DropSession(u8),
    /// The dropped connection comes back under a new session.
    Reconnect(u8),
    /// A holder re-registers its new session on its lease.
    Register(u8),
    /// The API asks for cancel.
    Cancel,
    /// The sweeper runs once.
    Sweep,
    /// The queue loses the task.
    LoseTask,
}

/// The model: a [`Config`] is the world's size.
#[derive(Debug, Clone, Copy)]
pub struct LeaseModel {
    /// Bounds and the mutation.
    pub config: Config,
}

impl LeaseModel {
    /// The model of `config`.
    pub const fn new(config: Config) -> Self {
        Self { config }
    }

    fn ttl() -> Duration {
        Duration::from_secs(TTL.unsigned_abs().into())
    }

    fn lease(holder: Holder, epoch: u8) -> Lease {
        Lease {
            job_id: job_id(),
            holder: holder.instance_id(),
            epoch: LeaseEpoch::new(i64::from(epoch))
                .unwrap_or_else(|_| unreachable!("a small epoch is valid")),
            expires_at: t0(),
            attempt: 0,
        }
    }

    /// Whether the session of generation `generation` of `holder` exists.
    fn session_alive(s: &State, holder: Holder, generation: u8) -> bool {
        s.workers.get(usize::from(holder.worker)).is_some_and(|w| {
            w.incarnation == holder.incarnation && w.conn.up && w.conn.generation == generation
        })
    }

    /// Whether the running lease's holder is gone in the database's view: it recorded a
    /// session, and that session no longer exists.
    fn holder_gone(&self, s: &State) -> bool {
        let (Some(holder), Some(generation)) = (s.row.holder, s.row.session) else {
            return false;
        };
        s.row.status == JobStatus::Running
            && (self.config.mutation == Mutation::HiddenSessionCountsAsGone
                || !Self::session_alive(s, holder, generation))
    }

    /// The session a worker gives now: its connection's, if up.
    fn current_session(s: &State, w: u8) -> Option<u8> {
        let conn = s.workers[usize::from(w)].conn;
        conn.up.then_some(conn.generation)
    }

    /// Whether a holder must re-register before its next heartbeat.
    fn must_register(s: &State, w: u8) -> bool {
        match s.workers[usize::from(w)].phase {
            Phase::Holding { registered, .. } => {
                Self::current_session(s, w).is_some_and(|g| registered != Some(g))
            }
            _ => false,
        }
    }

    fn holder(s: &State, w: u8) -> Holder {
        Holder {
            worker: w,
            incarnation: s.workers[usize::from(w)].incarnation,
        }
    }

    /// Stores the row a transition decided, keeping the ghost variables. `writer` is the
    /// epoch of a worker write (heartbeat, progress, closing write), `None` otherwise.
    fn commit(s: &mut State, next: Option<&Job>, writer: Option<u8>) {
        let Some(next) = next else { return };
        let old = s.row.clone();
        let new = Row::from_job(next);
        if new == old {
            return;
        }
        if old.status.is_terminal() {
            s.ghost.terminal_changed = true;
        }
        if !old.status.is_terminal() && new.status.is_terminal() {
            s.ghost.terminal_writes = s.ghost.terminal_writes.saturating_add(1);
            if old.cancel && new.status != JobStatus::Canceled {
                s.ghost.cancel_lost = true;
            }
        }
        if new.percent < old.percent {
            s.ghost.progress_decreased = true;
        }
        if writer.is_some_and(|epoch| epoch != old.epoch) {
            s.ghost.stale_write_accepted = true;
        }
        s.row = new;
    }

    /// The worker answers its delivery: only the latest dispatch's answer counts.
    fn answer(s: &mut State, w: u8, success: bool) {
        let worker = &mut s.workers[usize::from(w)];
        if worker.current && success {
            s.task = false;
            if s.row.status == JobStatus::Queued {
                s.ghost.stranded_by_2xx = true;
            }
        }
        worker.current = false;
        worker.phase = Phase::Idle;
    }

    fn acquire(&self, s: &mut State, w: u8) {
        for other in &mut s.workers {
            other.current = false;
        }
        s.workers[usize::from(w)].current = true;
        let holder = Self::holder(s, w);
        let session = Self::current_session(s, w);
        let request = AcquireRequest {
            job_id: job_id(),
            holder: holder.instance_id(),
            ttl: Self::ttl(),
            max_attempts: u32::from(self.config.max_attempts),
            session: session.map(|g| holder.session(g)),
        };
        let gone = self.holder_gone(s);
        let now = match self.config.mutation {
            // Every lease looks expired: the live one too.
            Mutation::AcquireIgnoresLiveLease => t0() + secs(TTL + 1),
            _ => t0(),
        };
        let mut decision = s.row.to_job().acquire(&request, now, gone);

        if self.config.mutation == Mutation::AcquireIgnoresLiveLease
            && let Some(next) = decision.next.as_mut()
            && let Some(lease) = next.lease.as_mut()
        {
            // Decided in the future; stored as of now.
            lease.expires_at = t0() + secs(TTL);
        }
        Self::commit(s, decision.next.as_ref(), None);
        match decision.answer {
            AcquireOutcome::Acquired { lease, .. } => {
                s.workers[usize::from(w)].phase = Phase::Holding {
                    epoch: u8::try_from(lease.epoch.get()).unwrap_or(u8::MAX),
                    trust: TTL - MARGIN,
                    step: 0,
                    cancel_seen: false,
                    beat: None,
                    registered: session,
                };
            }
            // 409: the queue retries later.
            AcquireOutcome::Busy { .. } => Self::answer(s, w, false),
            AcquireOutcome::NotFound
            | AcquireOutcome::Terminal(_)
            | AcquireOutcome::Canceled
            | AcquireOutcome::AttemptsExhausted => Self::answer(s, w, true),
            // Only a repository that cannot decode its row answers this; the transition
            // works on a decoded job.
            AcquireOutcome::AcquiredUndecodable { .. } => {
                unreachable!("Job::acquire never answers AcquiredUndecodable")
            }
        }
    }

    /// A heartbeat reaches the database; its answer, `Some(cancel requested)` or `None`
    /// for `LeaseLost`.
    fn beat(s: &mut State, w: u8) -> Option<Option<bool>> {
        let Phase::Holding { epoch, .. } = s.workers[usize::from(w)].phase else {
            return None;
        };
        let lease = Self::lease(Self::holder(s, w), epoch);
        let decision = s.row.to_job().heartbeat(&lease, Self::ttl(), t0());
        Self::commit(s, decision.next.as_ref(), Some(epoch));
        Some(match decision.answer {
            Ok(ack) => Some(ack.cancel_requested),
            Err(_) => None,
        })
    }

    /// The worker reads a heartbeat's answer: trust restored (as of the sending), or —
    /// however it learns the lease is gone — 200 `superseded` and nothing more written.
    fn read_beat(&self, s: &mut State, w: u8, answer: Option<bool>, restores: i8) {
        match answer {
            Some(cancel) => {
                if let Phase::Holding {
                    trust,
                    cancel_seen,
                    beat,
                    ..
                } = &mut s.workers[usize::from(w)].phase
                {
                    *trust = restores;
                    *cancel_seen |= cancel;
                    *beat = None;
                }
            }
            None => self.lease_lost(s, w),
        }
    }

    fn progress(&self, s: &mut State, holder: Holder, epoch: u8, percent: u8) -> bool {
        let mut lease = Self::lease(holder, epoch);
        if self.config.mutation == Mutation::ProgressIgnoresEpoch
            && let Some(current) = s.row.holder
        {
            // Fenced by the job id alone: the write passes as the current lease's.
            lease = Self::lease(current, s.row.epoch);
        }
        let decision = s
            .row
            .to_job()
            .report_progress(&lease, &report(percent), t0());
        Self::commit(s, decision.next.as_ref(), Some(epoch));
        match decision.answer {
            Ok(ProgressOutcome::Applied | ProgressOutcome::Regressed { .. }) => true,
            Err(_) => false,
        }
    }

    /// The closing write; `Ok(status)` as the database answered it, `Err` on `LeaseLost`.
    fn closing_write(&self, s: &mut State, w: u8, epoch: u8, ending: Ending) -> Option<JobStatus> {
        let lease = Self::lease(Self::holder(s, w), epoch);
        let mut job = s.row.to_job();
        let cancel_at = job.cancel_requested_at;
        if self.config.mutation == Mutation::FinalizeIgnoresCancel && ending != Ending::Retry {
            job.cancel_requested_at = None;
        }
        let decision = match ending {
            Ending::Retry => job.release(&lease, Some(&ErrorKind::Retryable.to_error()), t0()),
            Ending::Succeed => job.finalize(
                &lease,
                &FinalOutcome::Succeeded {
                    artifact_key: "artifact".into(),
                },
                t0(),
            ),
            Ending::Fail => job.finalize(
                &lease,
                &FinalOutcome::Failed(ErrorKind::Permanent.to_error()),
                t0(),
            ),
            Ending::Cancel => job.finalize(&lease, &FinalOutcome::Canceled, t0()),
        };
        let mut next = decision.next;
        if let Some(next) = next.as_mut() {
            next.cancel_requested_at = cancel_at;
        }
        Self::commit(s, next.as_ref(), Some(epoch));
        decision.answer.ok()
    }

    /// The lease is gone: 200 `superseded` if another holds the job or it ended; a retry if
    /// the sweeper requeued it and nobody holds it (the runner reads the job to tell).
    fn lease_lost(&self, s: &mut State, w: u8) {
        let requeued = s.row.status == JobStatus::Queued
            && self.config.mutation != Mutation::SupersededWithoutLooking;
        Self::answer(s, w, !requeued);
    }

    /// How the runner answers the queue after its closing write ended with `status`.
    fn answer_for(status: JobStatus) -> bool {
        // Released (`queued`): 500, the queue retries. Terminal: 200.
        status.is_terminal()
    }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let c = self.config;
        vec![State {
            row: Row::new(),
            workers: [Worker {
                incarnation: 0,
                conn: Conn::FRESH,
                current: false,
                phase: Phase::Idle,
            }; MAX_WORKERS],
            // The API stores the job, then enqueues its task.
            task: true,
            in_flight: None,
            faults: c.faults,
            cancel_left: true,
            ghost: Ghost::default(),
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        out.push(Action::Tick);
        out.push(Action::Sweep);
        if s.cancel_left {
            out.push(Action::Cancel);
        }
        if s.task && s.faults > 0 {
            out.push(Action::LoseTask);
        }
        if s.in_flight.is_some() {
            out.push(Action::ApplyDelayed);
        }
        let active = usize::from(self.config.workers).min(MAX_WORKERS);
        for (i, worker) in s.workers[..active].iter().enumerate() {
            let w = u8::try_from(i).unwrap_or(u8::MAX);
            if !worker.conn.up {
                out.push(Action::Reconnect(w));
            }
            match worker.phase {
                Phase::Idle => {
                    if s.task {
                        out.push(Action::Deliver(w));
                    }
                }
                Phase::Holding {
                    trust,
                    step,
                    cancel_seen,
                    beat,
                    ..
                } => {
                    if s.faults > 0 {
                        out.push(Action::Crash(w));
                        if worker.conn.up {
                            out.push(Action::DropSession(w));
                        }
                    }
                    if beat.is_some() {
                        // The loop goes on serving cancel and its deadline meanwhile.
                        out.push(Action::HeartbeatReply(w));
                    } else if Self::must_register(s, w) {
                        // A new session is registered before the next heartbeat.
                        out.push(Action::Register(w));
                    } else {
                        out.push(Action::Heartbeat(w));
                        if s.faults > 0 {
                            out.push(Action::SlowHeartbeat(w));
                        }
                    }
                    if s.row.cancel && !cancel_seen {
                        out.push(Action::NotifyCancel(w));
                    }
                    if trust <= 0 {
                        out.push(Action::Abandon(w));
                        continue;
                    }
                    if !cancel_seen && usize::from(step) < STEPS.len() {
                        out.push(Action::Progress(w));
                        if s.faults > 0 && s.in_flight.is_none() {
                            out.push(Action::DelayProgress(w));
                        }
                    }
                    let endings: &[Ending] = if cancel_seen {
                        &[Ending::Cancel]
                    } else {
                        &[Ending::Succeed, Ending::Fail, Ending::Retry]
                    };
                    for &ending in endings {
                        out.push(Action::Finish(w, ending));
                        if s.faults > 0 {
                            out.push(Action::FinishReplyLost(w, ending));
                        }
                    }
                }
                Phase::Closing { .. } => {
                    if s.faults > 0 {
                        out.push(Action::Crash(w));
                    }
                    out.push(Action::RetryClosing(w));
                    out.push(Action::ReadBackFails(w));
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: &Action) -> Option<State> {
        let mut s = last.clone();
        match *action {
            Action::Tick => {
                if s.row.status == JobStatus::Running {
                    s.row.expires = (s.row.expires - 1).max(FLOOR);
                }
                for worker in &mut s.workers {
                    if let Phase::Holding { trust, beat, .. } = &mut worker.phase {
                        *trust = (*trust - 1).max(0);
                        if let Some(beat) = beat {
                            beat.restores = (beat.restores - 1).max(0);
                        }
                    }
                }
            }
            Action::Deliver(w) => self.acquire(&mut s, w),
            Action::Heartbeat(w) => {
                let answer = Self::beat(&mut s, w)?;
                self.read_beat(&mut s, w, answer, TTL - MARGIN);
            }
            Action::SlowHeartbeat(w) => {
                s.faults -= 1;
                let answer = Self::beat(&mut s, w)?;
                if let Phase::Holding { beat, .. } = &mut s.workers[usize::from(w)].phase {
                    *beat = Some(Beat {
                        restores: TTL - MARGIN,
                        answer,
                    });
                }
            }
            Action::HeartbeatReply(w) => {
                let Phase::Holding {
                    beat: Some(beat), ..
                } = s.workers[usize::from(w)].phase
                else {
                    return None;
                };
                let restores = match self.config.mutation {
                    // Trust counted from the reply: the time it travelled is forgotten.
                    Mutation::TrustFromReply => TTL - MARGIN,
                    _ => beat.restores,
                };
                self.read_beat(&mut s, w, beat.answer, restores);
            }
            Action::NotifyCancel(w) => {
                if let Phase::Holding { cancel_seen, .. } = &mut s.workers[usize::from(w)].phase {
                    *cancel_seen = true;
                }
            }
            Action::Progress(w) => {
                let Phase::Holding { epoch, step, .. } = s.workers[usize::from(w)].phase else {
                    return None;
                };
                let holder = Self::holder(&s, w);
                if self.progress(&mut s, holder, epoch, STEPS[usize::from(step)]) {
                    if let Phase::Holding { step, .. } = &mut s.workers[usize::from(w)].phase {
                        *step += 1;
                    }
                } else {
                    self.lease_lost(&mut s, w);
                }
            }
            Action::DelayProgress(w) => {
                let Phase::Holding { epoch, step, .. } = s.workers[usize::from(w)].phase else {
                    return None;
                };
                s.faults -= 1;
                s.in_flight = Some(InFlight {
                    holder: Self::holder(&s, w),
                    epoch,
                    percent: STEPS[usize::from(step)],
                });
                if let Phase::Holding { step, .. } = &mut s.workers[usize::from(w)].phase {
                    *step += 1;
                }
            }
            Action::ApplyDelayed => {
                let write = s.in_flight.take()?;
                // Its answer reaches nobody: the sender moved on long ago.
                let _ = self.progress(&mut s, write.holder, write.epoch, write.percent);
            }
            Action::Finish(w, ending) | Action::FinishReplyLost(w, ending) => {
                let Phase::Holding { epoch, .. } = s.workers[usize::from(w)].phase else {
                    return None;
                };
                let lost = matches!(action, Action::FinishReplyLost(..));
                match self.closing_write(&mut s, w, epoch, ending) {
                    Some(_) if lost => {
                        s.faults -= 1;
                        s.workers[usize::from(w)].phase = Phase::Closing { epoch, ending };
                    }
                    Some(status) => Self::answer(&mut s, w, Self::answer_for(status)),
                    None => self.lease_lost(&mut s, w),
                }
            }
            Action::RetryClosing(w) => {
                let Phase::Closing { epoch, ending } = s.workers[usize::from(w)].phase else {
                    return None;
                };
                match self.closing_write(&mut s, w, epoch, ending) {
                    Some(status) => Self::answer(&mut s, w, Self::answer_for(status)),
                    // Refused: an earlier try may have committed. The row tells.
                    None if s.row.epoch == epoch && s.row.status != JobStatus::Running => {
                        let status = s.row.status;
                        Self::answer(&mut s, w, Self::answer_for(status));
                    }
                    None => self.lease_lost(&mut s, w),
                }
            }
            Action::ReadBackFails(w) | Action::Abandon(w) => Self::answer(&mut s, w, false),
            Action::Crash(w) => {
                s.faults -= 1;
                let worker = &mut s.workers[usize::from(w)];
                worker.incarnation += 1;
                // The kernel closed its sockets: its session is gone; the new process
                // opens its own.
                worker.conn = Conn::FRESH;
                worker.current = false;
                worker.phase = Phase::Idle;
            }
            Action::DropSession(w) => {
                s.faults -= 1;
                s.workers[usize::from(w)].conn.up = false;
            }
            Action::Reconnect(w) => {
                let conn = &mut s.workers[usize::from(w)].conn;
                conn.generation += 1;
                conn.up = true;
            }
            Action::Register(w) => {
                let Phase::Holding { epoch, .. } = s.workers[usize::from(w)].phase else {
                    return None;
                };
                let generation = Self::current_session(&s, w)?;
                let holder = Self::holder(&s, w);
                let lease = Self::lease(holder, epoch);
                let decision =
                    s.row
                        .to_job()
                        .register_session(&lease, holder.session(generation), t0());
                Self::commit(&mut s, decision.next.as_ref(), Some(epoch));
                match decision.answer {
                    Ok(()) => {
                        if let Phase::Holding { registered, .. } =
                            &mut s.workers[usize::from(w)].phase
                        {
                            *registered = Some(generation);
                        }
                    }
                    Err(_) => self.lease_lost(&mut s, w),
                }
            }
            Action::Cancel => {
                s.cancel_left = false;
                let decision = s.row.to_job().request_cancel(t0());
                Self::commit(&mut s, decision.next.as_ref(), None);
            }
            Action::Sweep => {
                let policy = SweepPolicy {
                    expired_for: Duration::from_secs(EXPIRED_FOR.unsigned_abs().into()),
                    max_attempts: u32::from(self.config.max_attempts),
                    queued_for: None,
                    queued_limit: u32::MAX,
                };
                let gone = self.holder_gone(&s);
                let decision = s.row.to_job().sweep(&policy, t0(), gone);
                Self::commit(&mut s, decision.next.as_ref(), None);
                // Re-enqueue only when the queue holds no task for the job.
                if s.row.status == JobStatus::Queued
                    && !s.task
                    && self.config.mutation != Mutation::SweeperNeverEnqueues
                {
                    s.task = true;
                }
            }
            Action::LoseTask => {
                s.faults -= 1;
                s.task = false;
            }
        }
        Some(s)
    }

    fn invariants(&self) -> Vec<Invariant<State>> {
        let max_attempts = self.config.max_attempts;
        let mut list = vec![
            Invariant::new(
                "at most one live holder, and no worker whose session lives trusts a lease it lost",
                |s: &State| {
                    s.workers.iter().enumerate().all(|(i, w)| match w.phase {
                        // A live worker whose recorded session dropped may be taken over
                        // while it still trusts its lease: what holds for it is that nothing
                        // it writes is accepted ("no write accepted from a stale epoch").
                        Phase::Holding {
                            epoch,
                            trust,
                            registered,
                            ..
                        } if trust > 0
                            && registered.is_none_or(|g| w.conn.up && w.conn.generation == g) =>
                        {
                            s.row.status == JobStatus::Running
                                && s.row.epoch == epoch
                                && s.row.holder.map(|h| usize::from(h.worker)) == Some(i)
                        }
                        _ => true,
                    })
                },
            ),
            Invariant::new("no write accepted from a stale epoch", |s: &State| {
                !s.ghost.stale_write_accepted
            }),
            Invariant::new(
                "exactly one terminal write: a terminal job never changes",
                |s: &State| s.ghost.terminal_writes <= 1 && !s.ghost.terminal_changed,
            ),
            Invariant::new(
                "a cancel requested before the terminal write ends canceled",
                |s: &State| !s.ghost.cancel_lost,
            ),
            Invariant::new(
                "a 2xx never leaves a queued job without a task",
                |s: &State| !s.ghost.stranded_by_2xx,
            ),
            Invariant::new("progress never decreases", |s: &State| {
                !s.ghost.progress_decreased
            }),
            Invariant::new("the row is one the transitions can make", |s: &State| {
                (s.row.status == JobStatus::Running) == s.row.holder.is_some()
                    && (s.row.status == JobStatus::Succeeded) == s.row.artifact
            }),
        ];
        list.push(Invariant::new(
            "attempts never exceed the limit",
            move |s: &State| s.row.attempts <= max_attempts,
        ));
        list
    }

    fn goal(&self, s: &State) -> bool {
        s.row.status.is_terminal()
    }

    fn fair(&self, action: &Action) -> bool {
        match action {
            Action::Tick
            | Action::Deliver(_)
            | Action::Heartbeat(_)
            | Action::HeartbeatReply(_)
            | Action::NotifyCancel(_)
            | Action::Progress(_)
            | Action::ApplyDelayed
            | Action::Finish(..)
            | Action::RetryClosing(_)
            | Action::Abandon(_)
            | Action::Reconnect(_)
            | Action::Register(_)
            | Action::Sweep => true,
            Action::SlowHeartbeat(_)
            | Action::DelayProgress(_)
            | Action::FinishReplyLost(..)
            | Action::ReadBackFails(_)
            | Action::Crash(_)
            | Action::DropSession(_)
            | Action::Cancel
            | Action::LoseTask => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_trip_through_a_domain_job() {
        let row = Row {
            status: JobStatus::Running,
            epoch: 2,
            holder: Some(Holder {
                worker: 1,
                incarnation: 3,
            }),
            session: Some(2),
            expires: -2,
            cancel: true,
            attempts: 2,
            percent: 40,
            artifact: false,
            error: Some(ErrorKind::LeaseExpired),
        };
        assert_eq!(Row::from_job(&row.to_job()), row);
        assert_eq!(Row::from_job(&Row::new().to_job()), Row::new());
    }
}
