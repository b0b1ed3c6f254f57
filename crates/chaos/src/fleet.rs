//! The worker processes: real `video-worker serve` children, one per slot, each connecting to
//! Postgres through its own proxy listener. A slot's process can be killed (`SIGKILL`) and
//! replaced by a new one with a new instance id, or paused (`SIGSTOP`) and resumed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::proxy::Proxy;
use crate::queue::Targets;

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The `video-worker` binary.
    pub binary: PathBuf,
    /// Logs, work dirs and the pid file live here.
    pub dir: PathBuf,
    /// The database name (reached through the proxy).
    pub database: String,
    /// The shared push token.
    pub token: String,
    /// Where the sweeper's loopback queue pushes re-enqueues.
    pub ingress_port: u16,
    /// The worker settings (`VIDEO_*`), beyond the per-process ones.
    pub env: Vec<(String, String)>,
}

/// One running worker process.
#[derive(Debug)]
struct Process {
    child: Child,
    pid: u32,
    label: String,
    accept: JoinHandle<()>,
}

/// The workers.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    proxy: Proxy,
    targets: Targets,
    slots: Vec<Option<Process>>,
    starts: u32,
    http: reqwest::Client,
}

impl Fleet {
    /// A fleet of `slots` (none started yet).
    pub fn new(config: FleetConfig, proxy: Proxy, targets: Targets, slots: usize) -> Self {
        if let Ok(mut t) = targets.lock() {
            *t = vec![None; slots];
        }
        Self {
            config,
            proxy,
            targets,
            slots: (0..slots).map(|_| None).collect(),
            starts: 0,
            http: reqwest::Client::new(),
        }
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Starts a new process in `slot` (with a new instance id) and waits until it answers
    /// `/health`; the queue routes to it from then on.
    pub async fn start(&mut self, slot: usize) -> anyhow::Result<()> {
        self.starts += 1;
        // The worker appends a random suffix; this prefix names the process in the audit.
        let label = format!("chaos-w{slot}-{}", self.starts);
        let (db_port, accept) = self.proxy.listen(label.clone()).await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(self.config.dir.join(format!("{label}.log")))?;
        let mut command = Command::new(&self.config.binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env(
                "DATABASE_URL",
                format!(
                    "postgres://postgres@127.0.0.1:{db_port}/{}",
                    self.config.database
                ),
            )
            .env("VIDEO_WORKER_INSTANCE_ID", &label)
            .env("VIDEO_WORKER_AUTH_TOKEN", &self.config.token)
            .env("VIDEO_QUEUE", "loopback")
            .env(
                "VIDEO_WORKER_URL",
                format!("http://127.0.0.1:{}", self.config.ingress_port),
            )
            .env(
                "VIDEO_WORKER_WORK_DIR",
                self.config.dir.join(format!("work-{slot}")),
            )
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.config.binary.display()))?;
        let pid = child.id().context("the worker exited at once")?;
        self.slots[slot] = Some(Process {
            child,
            pid,
            label: label.clone(),
            accept,
        });
        self.write_pids()?;
        let started = Instant::now();
        loop {
            let url = format!("http://127.0.0.1:{port}/health");
            if self
                .http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if let Some(p) = self.slots[slot].as_mut()
                && let Ok(Some(status)) = p.child.try_wait()
            {
                bail!(
                    "worker {label} exited ({status}); see its log in {}",
                    self.config.dir.display()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("worker {label} did not answer /health within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(mut t) = self.targets.lock() {
            t[slot] = Some(port);
        }
        Ok(())
    }

    /// `SIGKILL` of the process in `slot`: returns its label once it is reaped.
    pub async fn kill(&mut self, slot: usize) -> anyhow::Result<String> {
        if let Ok(mut t) = self.targets.lock() {
            t[slot] = None;
        }
        let mut process = self.slots[slot]
            .take()
            .with_context(|| format!("slot {slot} has no process"))?;
        process.child.start_kill()?;
        let _ = process.child.wait().await;
        process.accept.abort();
        self.write_pids()?;
        Ok(process.label)
    }

    /// The label of the process in `slot`.
    pub fn label(&self, slot: usize) -> Option<&str> {
        self.slots[slot].as_ref().map(|p| p.label.as_str())
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process in `slot`.
    pub async fn signal(&self, slot: usize, signal: &str) -> anyhow::Result<()> {
        let process = self.slots[slot]
            .as_ref()
            .with_context(|| format!("slot {slot} has no process"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(process.pid.to_string())
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {} failed", process.pid);
        }
        Ok(())
    }

    /// Kills every process (end of run).
    pub async fn kill_all(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                let _ = self.kill(slot).await;
            }
        }
    }

    /// The pid file the watchdog reads if the harness itself dies.
    fn write_pids(&self) -> anyhow::Result<()> {
        let pids: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .map(|p| p.pid.to_string())
            .collect();
        std::fs::write(pid_file(&self.config.dir), pids.join(" "))?;
        Ok(())
    }
}

/// Where the live workers' pids are listed.
pub fn pid_file(dir: &Path) -> PathBuf {
    dir.join("workers.pid")
}

/// Starts a shell that, once this process is gone (even by `SIGKILL`), kills the workers
/// listed in the pid file and removes `dir`. On a normal exit the harness removes `dir`
/// first, so the watchdog finds nothing to kill.
pub fn spawn_watchdog(dir: &Path) -> anyhow::Result<()> {
    let me = std::process::id();
    let pids = pid_file(dir);
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         [ -f {pids} ] && kill -9 $(cat {pids}) 2>/dev/null; rm -rf {dir}",
        pids = pids.display(),
        dir = dir.display()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the watchdog")?;
    Ok(())
}
