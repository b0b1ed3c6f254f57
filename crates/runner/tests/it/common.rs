//! What the runner's tests share: the lease timings, a repository clock that follows tokio's
//! paused time, and a runner configuration with those timings.

use std::path::PathBuf;
use std::time::Duration;

use domain::{Clock, InstanceId, Timestamp};
use runner::RunnerConfig;

pub const TTL: Duration = Duration::from_secs(60);
pub const BEAT: Duration = Duration::from_secs(15);

/// Repository time that follows tokio's (paused) clock, so leases expire as tokio time moves.
#[derive(Debug)]
pub struct TokioClock {
    pub base: Timestamp,
    pub start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base + chrono::TimeDelta::from_std(self.start.elapsed()).unwrap()
    }
}

/// Scratch root `<tmp>/<name>-<pid>`: one per test module, so one module's checks of what is
/// left there are not disturbed by another's attempts.
pub fn work_root(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
}

/// The runner of instance `instance` with a TTL of [`TTL`], a heartbeat every [`BEAT`], and its
/// scratch under `work_root`.
pub fn config(instance: &str, work_root: PathBuf) -> RunnerConfig {
    RunnerConfig {
        instance_id: InstanceId::new(instance).unwrap(),
        lease_ttl: TTL,
        heartbeat_interval: BEAT,
        max_runtime: Duration::from_secs(1200),
        max_attempts: 5,
        drain_grace: Duration::from_secs(8),
        progress_interval: Duration::from_millis(500),
        work_root,
    }
}
