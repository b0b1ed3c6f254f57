//! The runner's settings.

use std::path::PathBuf;
use std::time::Duration;

use domain::InstanceId;

/// How the runner leases and runs jobs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This process start's id, the lease holder.
    pub instance_id: InstanceId,
    /// Lease lifetime without a heartbeat.
    pub lease_ttl: Duration,
    /// Heartbeat period (the runner uses at most a third of the TTL, with jitter).
    pub heartbeat_interval: Duration,
    /// Hard execution limit of one attempt, separate from the lease.
    pub max_runtime: Duration,
    /// Acquisitions before a job fails.
    pub max_attempts: u32,
    /// How long a stopping job may take to reach its checkpoint before it is aborted.
    pub drain_grace: Duration,
    /// At most one segment progress write per this period (stage boundaries always go).
    pub progress_interval: Duration,
    /// Where per-job working directories live.
    pub work_root: PathBuf,
}

impl RunnerConfig {
    /// The heartbeat period actually used: the configured interval, but at most TTL/3, so
    /// two heartbeats can fail before the lease expires.
    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat_interval
            .min(self.lease_ttl / 3)
            .max(Duration::from_millis(10))
    }

    /// The bound on one heartbeat call, well under the period: a call that hangs (a dead
    /// pooled connection, a stalled server) is given up and tried again on a fresh connection
    /// while the lease lasts, instead of using up the lease in one wait.
    pub fn heartbeat_call_timeout(&self) -> Duration {
        (self.heartbeat_period() / 3).max(Duration::from_millis(10))
    }

    /// How soon a failed heartbeat is tried again: a few times per period, so one dead
    /// connection costs a fraction of the lease, not a whole period.
    pub fn heartbeat_retry_delay(&self) -> Duration {
        (self.heartbeat_period() / 10).max(Duration::from_millis(10))
    }

    /// The next heartbeat delay: the period minus up to 10 % jitter, so instances started
    /// together do not heartbeat in lockstep.
    pub fn jittered_heartbeat(&self) -> Duration {
        let period = self.heartbeat_period();
        period.mul_f64(1.0 - fastrand::f64() * 0.1)
    }
}
