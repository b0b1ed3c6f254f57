//! A `video-worker` child process serving on a loopback port: `serve` with the test
//! defaults (the `noop` pipeline, lease TTL 3 s, heartbeat 1 s, the shared [`TOKEN`]), or
//! another subcommand such as `api`; a work dir of its own (two `serve` processes may not
//! share one); its stderr inherited, discarded or captured as log lines. Killed and reaped
//! on drop.
//!
//! The tests reach it through `common`; `benches/worker.rs` includes this file by path, so it
//! uses nothing else of the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each includer uses a part

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use domain::JobId;

/// The push token every test process and application accepts.
pub const TOKEN: &str = "test-shared-token-0123456789";

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What becomes of the process's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stderr {
    Inherit,
    Discard,
    Capture,
}

/// How to start a [`ServeProcess`]: the subcommand, its environment, its port. Later
/// settings override earlier ones, the defaults included.
pub struct Launch {
    command: Command,
    label: String,
    port: u16,
    stderr: Stderr,
    work: tempfile::TempDir,
}

impl Launch {
    /// `video-worker serve` on `database_url` as instance `name`, with the test defaults.
    pub fn serve(database_url: &str, name: &str) -> Self {
        Self::subcommand("serve", database_url, name)
            .env("VIDEO_WORKER_AUTH_TOKEN", TOKEN)
            .env("VIDEO_WORKER_INSTANCE_ID", name)
            .env("VIDEO_WORKER_PIPELINE", "noop")
            .env("VIDEO_JOB_LEASE_TTL_SECONDS", "3")
            .env("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "1")
            .env("VIDEO_WORKER_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
    }

    /// `video-worker SUBCOMMAND` (e.g. `api`) on `database_url`, with only the database, the
    /// port and a work dir set; `label` names it in a failure.
    pub fn subcommand(subcommand: &str, database_url: &str, label: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_video-worker"));
        command
            .arg(subcommand)
            .env("VIDEO_WORKER_WORK_DIR", work.path())
            .env("DATABASE_URL", database_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Self {
            command,
            label: label.to_owned(),
            port: free_port(),
            stderr: Stderr::Inherit,
            work,
        }
    }

    /// Listens on `port` (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        self.command.envs(vars.iter().copied());
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Stderr discarded.
    pub fn quiet(mut self) -> Self {
        self.stderr = Stderr::Discard;
        self
    }

    /// Stderr kept, for [`ServeProcess::kill_and_read_logs`] and
    /// [`ServeProcess::terminate_and_read_logs`].
    pub fn capture_stderr(mut self) -> Self {
        self.stderr = Stderr::Capture;
        self
    }

    /// Starts the process and waits until its `/ready` answers.
    pub async fn start(mut self) -> ServeProcess {
        let stderr = match self.stderr {
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Discard => Stdio::null(),
            Stderr::Capture => Stdio::piped(),
        };
        #[allow(clippy::zombie_processes)] // owned by a value whose Drop kills and reaps it
        let child = self
            .command
            .env("PORT", self.port.to_string())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let process = ServeProcess {
            child,
            base: format!("http://127.0.0.1:{}", self.port),
            _work: self.work,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/ready", process.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not become ready", self.label);
    }
}

/// A running `video-worker` process (see [`Launch`]).
pub struct ServeProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _work: tempfile::TempDir,
}

impl ServeProcess {
    /// `serve` as instance `name` on `port`, with the test defaults; `env` adds settings or
    /// overrides them.
    pub async fn start(database_url: &str, name: &str, port: u16, env: &[(&str, &str)]) -> Self {
        Launch::serve(database_url, name)
            .port(port)
            .envs(env)
            .start()
            .await
    }

    /// A push of `id` to its `/jobs/run`.
    pub fn push(&self, id: JobId) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(format!("{}/jobs/run", self.base))
            .bearer_auth(TOKEN)
            .body(serde_json::json!({ "job_id": id }).to_string())
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, …) with `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
    }

    /// Kills the process (SIGKILL); every line of its captured stderr, parsed as JSON.
    pub fn kill_and_read_logs(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.kill();
        self.read_logs()
    }

    /// Stops the process as Cloud Run does (SIGTERM) and waits for it to exit by itself;
    /// every line of its captured stderr, parsed as JSON.
    pub fn terminate_and_read_logs(mut self) -> Vec<serde_json::Value> {
        self.signal("-TERM");
        self.read_logs()
    }

    fn read_logs(&mut self) -> Vec<serde_json::Value> {
        let _ = self.child.wait();
        let mut text = String::new();
        self.child
            .stderr
            .take()
            .expect("stderr captured (Launch::capture_stderr)")
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
