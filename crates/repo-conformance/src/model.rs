//! The property test: random operations by several instances, with time steps, checked after
//! every step against a small reference model of SPEC §3 and against the invariants: at most
//! one live lease, the epoch only grows (by one per acquisition), terminal is absorbing,
//! progress never decreases, and a refused operation changes nothing.

use std::time::Duration;

use domain::{
    AcquireOutcome, CancelOutcome, ErrorCode, FencedError, FinalOutcome, Job, JobError, JobId,
    JobStatus, Lease, Percent, ProgressOutcome, ProgressReport, Stage, SweepPolicy,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::Harness;

/// Instances taking part.
const INSTANCES: usize = 3;
/// Lease TTL of the model, in seconds. Time steps are multiples of 10 s, so `now` never lands
/// within 5 s of an expiry: the real time a Postgres run takes cannot tip a comparison.
const TTL_S: i64 = 25;
/// How long past expiry the sweeper waits, in seconds (also off the 10 s grid).
const SWEEP_AFTER_S: i64 = 55;
const MAX_ATTEMPTS: u32 = 4;

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Op {
    Acquire(usize),
    Heartbeat(usize),
    Progress(usize, u8),
    Release(usize),
    Finalize(usize, u8),
    Cancel,
    Sweep,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let inst = 0..INSTANCES;
    prop_oneof![
        3 => inst.clone().prop_map(Op::Acquire),
        2 => inst.clone().prop_map(Op::Heartbeat),
        3 => (inst.clone(), 0u8..=100).prop_map(|(i, p)| Op::Progress(i, p)),
        1 => inst.clone().prop_map(Op::Release),
        1 => (inst, 0u8..3).prop_map(|(i, k)| Op::Finalize(i, k)),
        1 => Just(Op::Cancel),
        1 => Just(Op::Sweep),
        3 => prop::sample::select(vec![10u64, 20, 30, 60, 100]).prop_map(Op::Advance),
    ]
}

/// The reference model of one job.
#[derive(Debug, Clone)]
struct Model {
    now: i64,
    status: JobStatus,
    epoch: i64,
    /// `(holder, expires_at)` while running.
    lease: Option<(usize, i64)>,
    cancel: bool,
    attempts: u32,
    percent: u8,
}

impl Model {
    fn live(&self) -> bool {
        self.status == JobStatus::Running && self.lease.is_some_and(|(_, exp)| exp > self.now)
    }

    fn fenced(&self, lease: Option<&Lease>) -> bool {
        self.status == JobStatus::Running && lease.is_some_and(|l| l.epoch.get() == self.epoch)
    }

    fn end(&mut self, status: JobStatus) {
        self.status = status;
        self.lease = None;
    }
}

fn outcome(kind: u8) -> FinalOutcome {
    match kind {
        0 => FinalOutcome::Succeeded {
            artifact_key: "k".into(),
        },
        1 => FinalOutcome::Failed(JobError::new(ErrorCode::new("boom").unwrap(), "x")),
        _ => FinalOutcome::Canceled,
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// Runs one scenario against the harness; `Err` names the first step that broke a rule.
async fn run_scenario(h: &Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    let id: JobId = h.new_job().await;
    let ttl = Duration::from_secs(TTL_S.unsigned_abs());
    let mut m = Model {
        now: 0,
        status: JobStatus::Queued,
        epoch: 0,
        lease: None,
        cancel: false,
        attempts: 0,
        percent: 0,
    };
    let mut leases: [Option<Lease>; INSTANCES] = [None, None, None];
    for (step, op) in ops.iter().enumerate() {
        let before: Job = h.job(id).await;
        // `changed` is what the model says: whether this step may change the row at all.
        let changed: bool;
        match op {
            Op::Acquire(i) => {
                let mut req = Harness::request(id, &format!("inst-{i}"));
                req.ttl = ttl;
                req.max_attempts = MAX_ATTEMPTS;
                let got = h.repo.acquire(&req).await.unwrap();
                let want = if m.status.is_terminal() {
                    "terminal"
                } else if m.live() {
                    "busy"
                } else if m.cancel {
                    m.end(JobStatus::Canceled);
                    "canceled"
                } else if m.attempts >= MAX_ATTEMPTS {
                    m.end(JobStatus::Failed);
                    "exhausted"
                } else {
                    m.status = JobStatus::Running;
                    m.epoch += 1;
                    m.attempts += 1;
                    m.lease = Some((*i, m.now + TTL_S));
                    "acquired"
                };
                let kind = match &got {
                    AcquireOutcome::Acquired { lease, .. } => {
                        check(lease.epoch.get() == m.epoch, || {
                            format!("step {step}: epoch {} != model {}", lease.epoch, m.epoch)
                        })?;
                        leases[*i] = Some(lease.clone());
                        "acquired"
                    }
                    AcquireOutcome::Terminal(s) => {
                        check(*s == m.status, || {
                            format!("step {step}: terminal {s} != {}", m.status)
                        })?;
                        "terminal"
                    }
                    AcquireOutcome::Busy { holder, .. } => {
                        let expected = m.lease.map(|(h, _)| format!("inst-{h}"));
                        check(Some(holder.to_string()) == expected, || {
                            format!("step {step}: busy holder {holder}")
                        })?;
                        "busy"
                    }
                    AcquireOutcome::Canceled => "canceled",
                    AcquireOutcome::AttemptsExhausted => "exhausted",
                    AcquireOutcome::NotFound => "not_found",
                    AcquireOutcome::AcquiredUndecodable { .. } => "undecodable",
                };
                check(kind == want, || {
                    format!("step {step} {op:?}: got {got:?}, model {want}")
                })?;
                changed = !matches!(want, "terminal" | "busy");
            }
            Op::Heartbeat(i) => {
                let lease = leases[*i].as_ref();
                let want = m.fenced(lease);
                let got = match lease {
                    Some(lease) => h.repo.heartbeat(lease, ttl).await,
                    None => Err(FencedError::LeaseLost),
                };
                match (&got, want) {
                    (Ok(ack), true) => {
                        check(ack.cancel_requested == m.cancel, || {
                            format!("step {step}: cancel flag")
                        })?;
                        m.lease = Some((*i, m.now + TTL_S));
                    }
                    (Err(FencedError::LeaseLost), false) => {}
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "step {step} {op:?}: got {got:?}, model fenced={want}"
                        )));
                    }
                }
                changed = want;
            }
            Op::Progress(i, p) => {
                let lease = leases[*i].as_ref();
                let report =
                    ProgressReport::new(Stage::Render, Percent::new(*p).unwrap(), None, None)
                        .unwrap();
                let got = match lease {
                    Some(lease) => h.repo.report_progress(lease, &report).await,
                    None => Err(FencedError::LeaseLost),
                };
                let fenced = m.fenced(lease);
                match (&got, fenced) {
                    (Ok(ProgressOutcome::Applied), true) if *p >= m.percent => m.percent = *p,
                    (Ok(ProgressOutcome::Regressed { current }), true) if *p < m.percent => {
                        check(current.get() == m.percent, || {
                            format!("step {step}: current {current}")
                        })?;
                    }
                    (Err(FencedError::LeaseLost), false) => {}
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "step {step} {op:?}: got {got:?}, model fenced={fenced} percent={}",
                            m.percent
                        )));
                    }
                }
                changed = fenced && *p >= before.percent().get();
            }
            Op::Release(i) | Op::Finalize(i, _) => {
                let lease = leases[*i].as_ref();
                let fenced = m.fenced(lease);
                let got = match (lease, op) {
                    (None, _) => Err(FencedError::LeaseLost),
                    (Some(lease), Op::Finalize(_, k)) => h.repo.finalize(lease, &outcome(*k)).await,
                    (Some(lease), _) => h.repo.release(lease, None).await,
                };
                if fenced {
                    let status = match op {
                        _ if m.cancel => JobStatus::Canceled,
                        Op::Finalize(_, k) => outcome(*k).status(),
                        _ => JobStatus::Queued,
                    };
                    m.end(status);
                    check(matches!(got, Ok(s) if s == status), || {
                        format!("step {step} {op:?}: got {got:?}, model {status}")
                    })?;
                } else {
                    check(matches!(got, Err(FencedError::LeaseLost)), || {
                        format!("step {step} {op:?}: got {got:?}, model LeaseLost")
                    })?;
                }
                changed = fenced;
            }
            Op::Cancel => {
                let got = h.repo.request_cancel(id).await.unwrap();
                let want = match m.status {
                    s if s.is_terminal() => CancelOutcome::AlreadyTerminal(s),
                    JobStatus::Queued => {
                        m.cancel = true;
                        m.end(JobStatus::Canceled);
                        CancelOutcome::Canceled
                    }
                    _ => {
                        let first = !m.cancel;
                        m.cancel = true;
                        CancelOutcome::Requested { first }
                    }
                };
                check(got == want, || {
                    format!("step {step}: cancel got {got:?}, model {want:?}")
                })?;
                changed = matches!(
                    want,
                    CancelOutcome::Canceled | CancelOutcome::Requested { first: true }
                );
            }
            Op::Sweep => {
                let policy = SweepPolicy {
                    expired_for: Duration::from_secs(SWEEP_AFTER_S.unsigned_abs()),
                    max_attempts: MAX_ATTEMPTS,
                    queued_for: None,
                    queued_limit: u32::MAX,
                };
                let got = h.repo.sweep(&policy).await.unwrap();
                let got: Vec<_> = got
                    .into_iter()
                    .filter(|s| s.id == id)
                    .map(|s| s.status)
                    .collect();
                let stuck = m.status == JobStatus::Running
                    && m.lease.is_some_and(|(_, exp)| exp + SWEEP_AFTER_S <= m.now);
                let want: Vec<JobStatus> = if stuck {
                    let status = if m.cancel {
                        JobStatus::Canceled
                    } else if m.attempts >= MAX_ATTEMPTS {
                        JobStatus::Failed
                    } else {
                        JobStatus::Queued
                    };
                    m.end(status);
                    vec![status]
                } else {
                    vec![]
                };
                check(got == want, || {
                    format!("step {step}: sweep got {got:?}, model {want:?}")
                })?;
                changed = stuck;
            }
            Op::Advance(s) => {
                h.advance(Duration::from_secs(*s)).await;
                m.now += i64::try_from(*s).unwrap();
                changed = false;
            }
        }
        let after = h.job(id).await;
        // The row agrees with the model.
        check(after.status == m.status, || {
            format!(
                "step {step} {op:?}: status {} != model {}",
                after.status, m.status
            )
        })?;
        check(after.lease_epoch.get() == m.epoch, || {
            format!(
                "step {step}: epoch {} != model {}",
                after.lease_epoch, m.epoch
            )
        })?;
        check(after.attempts == m.attempts, || {
            format!("step {step}: attempts")
        })?;
        check(after.cancel_requested_at.is_some() == m.cancel, || {
            format!("step {step}: cancel flag")
        })?;
        check(
            after.lease.is_some() == (m.status == JobStatus::Running),
            || format!("step {step}: lease iff running"),
        )?;
        // Invariants.
        let holders = leases
            .iter()
            .flatten()
            .filter(|l| after.is_fenced_by(l))
            .count();
        check(holders <= 1, || {
            format!("step {step}: {holders} instances hold the lease")
        })?;
        check(after.lease_epoch >= before.lease_epoch, || {
            format!("step {step}: epoch went back")
        })?;
        // A time step moves every stored time in Postgres, so rows are compared on the other steps.
        if before.status.is_terminal() && !matches!(op, Op::Advance(_)) {
            check(after == before, || {
                format!("step {step}: a terminal job changed")
            })?;
        }
        if after.status != JobStatus::Succeeded {
            check(after.percent() >= before.percent(), || {
                format!("step {step}: progress went back")
            })?;
        }
        if !changed && !matches!(op, Op::Advance(_)) {
            check(after == before, || {
                format!("step {step} {op:?}: a refused operation changed the row")
            })?;
        }
    }
    Ok(())
}

/// Runs `cases` random scenarios of up to `max_ops` steps on the harness.
pub fn run_property(runtime: &tokio::runtime::Runtime, h: &Harness, cases: u32, max_ops: usize) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..max_ops), |ops| {
        runtime.block_on(run_scenario(h, &ops))
    });
    if let Err(e) = result {
        panic!("state machine property failed: {e}");
    }
}
