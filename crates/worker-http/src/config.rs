//! Settings from the environment, validated at start with errors that name the variable.
//!
//! The names are the original product's where the meaning is the same, so an existing Cloud
//! Run configuration carries over. README "Settings" documents every one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::InstanceId;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Which pipeline the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// The real one: TTS, render, compose, publish.
    Video,
    /// No media work; for measuring the worker's own overhead and for lease tests.
    Noop,
}

/// The speech engine and where the films go: what the `video` pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// `VIDEO_ARTIFACT_STORE_URL`.
    pub artifact_store_url: String,
    /// `VIDEO_TTS_BACKEND`: `espeak`, `piper`, `google` or `openai`.
    pub tts_backend: String,
    /// `VIDEO_TTS_URL` (empty: the provider's public endpoint).
    pub tts_url: String,
    /// `VIDEO_TTS_API_KEY`.
    pub tts_api_key: Option<String>,
    /// `VIDEO_TTS_VOICE`.
    pub tts_voice: Option<String>,
    /// `VIDEO_TTS_MODEL`.
    pub tts_model: Option<String>,
    /// `VIDEO_PIPER_BIN`: the `piper` program of the `piper` backend.
    pub piper_bin: PathBuf,
    /// `VIDEO_PIPER_MODEL`: its voice, a `*.onnx` with its `*.onnx.json` beside it.
    pub piper_model: PathBuf,
}

impl MediaSettings {
    /// Reads the media settings (also used by `demo`, which needs no other setting).
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let tts_backend = get(env, "VIDEO_TTS_BACKEND").unwrap_or_else(|| "espeak".into());
        if !matches!(
            tts_backend.as_str(),
            "espeak" | "piper" | "google" | "openai"
        ) {
            return Err(err(
                "VIDEO_TTS_BACKEND",
                format!("{tts_backend:?}: use espeak, piper, google or openai"),
            ));
        }
        let (piper_bin, piper_model) = Self::piper_paths(env);
        Ok(Self {
            artifact_store_url: get(env, "VIDEO_ARTIFACT_STORE_URL")
                .unwrap_or_else(|| "./artifacts".into()),
            tts_backend,
            tts_url: get(env, "VIDEO_TTS_URL").unwrap_or_default(),
            tts_api_key: get(env, "VIDEO_TTS_API_KEY"),
            tts_voice: get(env, "VIDEO_TTS_VOICE"),
            tts_model: get(env, "VIDEO_TTS_MODEL"),
            piper_bin,
            piper_model,
        })
    }

    /// `VIDEO_PIPER_BIN` and `VIDEO_PIPER_MODEL`, by default where `scripts/setup --voices`
    /// installs them (`.voices/`, relative to the working directory).
    pub fn piper_paths(env: Env<'_>) -> (PathBuf, PathBuf) {
        let (bin, model) = pipeline::tts::piper::installed_paths(Path::new(""));
        (
            get(env, "VIDEO_PIPER_BIN").map_or(bin, PathBuf::from),
            get(env, "VIDEO_PIPER_MODEL").map_or(model, PathBuf::from),
        )
    }
}

/// `VIDEO_WORKER_SCRATCH_MAX_BYTES` when unset: 512 MiB.
pub const DEFAULT_SCRATCH_MAX_BYTES: u64 = 512 << 20;

/// Everything `serve` reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `VIDEO_WORKER_INSTANCE_ID`.
    pub instance_id: InstanceId,
    /// `VIDEO_WORKER_AUTH_TOKEN`.
    pub auth_token: Option<String>,
    /// `VIDEO_WORKER_OIDC_*`.
    pub oidc: Option<push_auth::OidcConfig>,
    /// `VIDEO_JOB_LEASE_TTL_SECONDS`.
    pub lease_ttl: Duration,
    /// `VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS`.
    pub heartbeat_interval: Duration,
    /// `VIDEO_JOB_MAX_RUNTIME_SECONDS`.
    pub max_runtime: Duration,
    /// `VIDEO_JOB_MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// `VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS`.
    pub shutdown_grace: Duration,
    /// `VIDEO_WORKER_WORK_DIR`.
    pub work_dir: PathBuf,
    /// `VIDEO_WORKER_SCRATCH_MAX_BYTES`: the segment cache's budget.
    pub scratch_max_bytes: u64,
    /// `VIDEO_WORKER_PIPELINE`.
    pub pipeline: PipelineKind,
    /// `VIDEO_ARTIFACT_STORE_URL`, `VIDEO_TTS_*`.
    pub media: MediaSettings,
    /// `VIDEO_SWEEP_*`.
    pub sweep: SweepSettings,
    /// `VIDEO_QUEUE` and its settings, for the sweeper's re-enqueues (optional).
    pub queue: Option<QueueSettings>,
    /// `VIDEO_WORKER_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `VIDEO_WORKER_LOG_FORMAT` is `json`.
    pub json_logs: bool,
}

/// Reads one variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn get(env: Env<'_>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn number<T>(
    env: Env<'_>,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = get(env, var) else {
        return Ok(default);
    };
    let value: T = text
        .parse()
        .map_err(|_| err(var, format!("{text:?} is not a whole number")))?;
    if !range.contains(&value) {
        return Err(err(
            var,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

fn seconds(
    env: Env<'_>,
    var: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(env, var, default, range).map(Duration::from_secs)
}

/// The default lease holder: the Cloud Run revision (or host name) plus a random suffix,
/// unique per process start.
pub fn default_instance_id(env: Env<'_>) -> InstanceId {
    let base = get(env, "K_REVISION")
        .or_else(|| get(env, "HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "video-worker".into());
    let base: String = base
        .chars()
        .filter(char::is_ascii_graphic)
        .take(100)
        .collect();
    let suffix = format!("{:08x}", fastrand::u32(..));
    InstanceId::new(format!("{base}-{suffix}")).unwrap_or_else(|_| {
        InstanceId::new(format!("video-worker-{suffix}")).unwrap_or_else(|_| unreachable!())
    })
}

impl Settings {
    /// Reads and validates every setting.
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let port = number(env, "PORT", 8080u16, 1..=65535)?;
        let database_url = get(env, "DATABASE_URL").ok_or_else(|| {
            err(
                "DATABASE_URL",
                "required for serve (there is no in-memory fallback); e.g. postgres://user@host:5432/db",
            )
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(err("DATABASE_URL", "must be a postgres:// URL"));
        }
        // A configured id is the same on every instance of a revision, so it gets the random
        // suffix too: the lease holder must be unique per process start.
        let instance_id = match get(env, "VIDEO_WORKER_INSTANCE_ID") {
            Some(id) => {
                InstanceId::new(id.clone())
                    .map_err(|e| err("VIDEO_WORKER_INSTANCE_ID", e.reason))?;
                let base: String = id.chars().take(InstanceId::MAX_LEN - 9).collect();
                InstanceId::new(format!("{base}-{:08x}", fastrand::u32(..)))
                    .map_err(|e| err("VIDEO_WORKER_INSTANCE_ID", e.reason))?
            }
            None => default_instance_id(env),
        };
        let auth_token = get(env, "VIDEO_WORKER_AUTH_TOKEN");
        if auth_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(err(
                "VIDEO_WORKER_AUTH_TOKEN",
                "must be at least 16 characters",
            ));
        }
        let oidc = match get(env, "VIDEO_WORKER_OIDC_AUDIENCE") {
            None => None,
            Some(audience) => {
                let list = |var| -> Vec<String> {
                    get(env, var)
                        .map(|v| {
                            v.split(',')
                                .map(|s| s.trim().to_owned())
                                .filter(|s| !s.is_empty())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let allowed_emails = list("VIDEO_WORKER_OIDC_ALLOWED_EMAILS");
                if allowed_emails.is_empty() {
                    return Err(err(
                        "VIDEO_WORKER_OIDC_ALLOWED_EMAILS",
                        "required with VIDEO_WORKER_OIDC_AUDIENCE: the queue's service account(s), comma-separated",
                    ));
                }
                let issuers = list("VIDEO_WORKER_OIDC_ISSUERS");
                Some(push_auth::OidcConfig {
                    audience,
                    allowed_emails,
                    jwks_url: get(env, "VIDEO_WORKER_OIDC_JWKS_URL")
                        .unwrap_or_else(|| push_auth::OidcConfig::GOOGLE_JWKS_URL.to_owned()),
                    issuers: if issuers.is_empty() {
                        push_auth::OidcConfig::google_issuers()
                    } else {
                        issuers
                    },
                })
            }
        };
        if auth_token.is_none() && oidc.is_none() {
            return Err(err(
                "VIDEO_WORKER_AUTH_TOKEN",
                "serve needs VIDEO_WORKER_AUTH_TOKEN or VIDEO_WORKER_OIDC_AUDIENCE (+ _ALLOWED_EMAILS): \
                 the push endpoint never runs unauthenticated",
            ));
        }
        let lease_ttl = seconds(env, "VIDEO_JOB_LEASE_TTL_SECONDS", 60, 2..=3600)?;
        let heartbeat_interval =
            seconds(env, "VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", 15, 1..=1800)?;
        if heartbeat_interval * 2 >= lease_ttl {
            return Err(err(
                "VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS",
                format!(
                    "must be below half of VIDEO_JOB_LEASE_TTL_SECONDS ({} s), got {} s",
                    lease_ttl.as_secs(),
                    heartbeat_interval.as_secs()
                ),
            ));
        }
        let max_runtime = seconds(env, "VIDEO_JOB_MAX_RUNTIME_SECONDS", 1200, 1..=1790)?;
        let max_attempts = number(env, "VIDEO_JOB_MAX_ATTEMPTS", 5u32, 1..=100)?;
        // Cloud Run sends SIGKILL 10 s after SIGTERM; the drain must end before that.
        let shutdown_grace = seconds(env, "VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS", 8, 2..=9)?;
        let work_dir = get(env, "VIDEO_WORKER_WORK_DIR")
            .map_or_else(|| std::env::temp_dir().join("video-worker"), PathBuf::from);
        // Cloud Run's /tmp is memory: a quarter of a 2 GiB instance leaves room for the
        // attempt's own scratch, ffmpeg and the process.
        let scratch_max_bytes = number(
            env,
            "VIDEO_WORKER_SCRATCH_MAX_BYTES",
            DEFAULT_SCRATCH_MAX_BYTES,
            (16 << 20)..=(1 << 40),
        )?;
        let pipeline = match get(env, "VIDEO_WORKER_PIPELINE").as_deref() {
            None | Some("video") => PipelineKind::Video,
            Some("noop") => PipelineKind::Noop,
            Some(other) => {
                return Err(err(
                    "VIDEO_WORKER_PIPELINE",
                    format!("unknown pipeline {other:?}; known: video, noop"),
                ));
            }
        };
        let media = MediaSettings::from_env(env)?;
        let sweep = SweepSettings::from_env(env)?;
        let queue = QueueSettings::from_env(env, false)?;
        let max_body_bytes = number(
            env,
            "VIDEO_WORKER_MAX_BODY_BYTES",
            65_536usize,
            64..=16 << 20,
        )?;
        let json_logs = match get(env, "VIDEO_WORKER_LOG_FORMAT").as_deref() {
            None | Some("json") => true,
            Some("text") => false,
            Some(other) => {
                return Err(err(
                    "VIDEO_WORKER_LOG_FORMAT",
                    format!("{other:?}: use json or text"),
                ));
            }
        };
        Ok(Self {
            port,
            database_url,
            instance_id,
            auth_token,
            oidc,
            lease_ttl,
            heartbeat_interval,
            max_runtime,
            max_attempts,
            shutdown_grace,
            work_dir,
            scratch_max_bytes,
            pipeline,
            media,
            sweep,
            queue,
            max_body_bytes,
            json_logs,
        })
    }

    /// The runner's part of the settings.
    pub fn runner_config(&self) -> runner::RunnerConfig {
        runner::RunnerConfig {
            instance_id: self.instance_id.clone(),
            lease_ttl: self.lease_ttl,
            heartbeat_interval: self.heartbeat_interval,
            max_runtime: self.max_runtime,
            max_attempts: self.max_attempts,
            drain_grace: self.shutdown_grace,
            progress_interval: Duration::from_millis(500),
            work_root: self.work_dir.clone(),
        }
    }
}

/// Where job deliveries are enqueued: `VIDEO_QUEUE` and its settings.
#[derive(Debug, Clone)]
pub enum QueueSettings {
    /// Google Cloud Tasks (`VIDEO_TASKS_*`).
    CloudTasks(queue::cloud_tasks::CloudTasksConfig),
    /// Push straight to the worker (`VIDEO_WORKER_URL`) with Cloud Tasks semantics, from this
    /// process: for local setups and the compose file.
    Loopback {
        /// The worker's base URL.
        worker_url: String,
        /// The worker's shared token, sent as a bearer.
        token: Option<String>,
    },
}

impl QueueSettings {
    /// Reads `VIDEO_QUEUE` (`cloud-tasks` or `loopback`). `None` when unset and not
    /// `required` (the sweeper then cannot re-enqueue).
    pub fn from_env(env: Env<'_>, required: bool) -> Result<Option<Self>, ConfigError> {
        let kind = match get(env, "VIDEO_QUEUE") {
            Some(kind) => kind,
            None if required => "cloud-tasks".into(),
            None => return Ok(None),
        };
        let need = |var: &'static str| {
            get(env, var).ok_or_else(|| err(var, format!("required with VIDEO_QUEUE={kind}")))
        };
        match kind.as_str() {
            "loopback" => {
                let worker_url = need("VIDEO_WORKER_URL")?;
                url_ok("VIDEO_WORKER_URL", &worker_url)?;
                Ok(Some(Self::Loopback {
                    worker_url: worker_url.trim_end_matches('/').to_owned(),
                    token: get(env, "VIDEO_WORKER_AUTH_TOKEN"),
                }))
            }
            "cloud-tasks" => {
                let worker_url = need("VIDEO_WORKER_URL")?;
                url_ok("VIDEO_WORKER_URL", &worker_url)?;
                let deadline = seconds(
                    env,
                    "VIDEO_TASKS_DISPATCH_DEADLINE_SECONDS",
                    1500,
                    15..=1800,
                )?;
                let limit = seconds(env, "VIDEO_JOB_MAX_RUNTIME_SECONDS", 1200, 1..=1790)?;
                let mut config = queue::cloud_tasks::CloudTasksConfig::new(
                    need("VIDEO_TASKS_PROJECT")?,
                    need("VIDEO_TASKS_LOCATION")?,
                    need("VIDEO_TASKS_QUEUE")?,
                    worker_url,
                    need("VIDEO_TASKS_SERVICE_ACCOUNT")?,
                    limit,
                    deadline,
                )
                .map_err(|e| err("VIDEO_TASKS_DISPATCH_DEADLINE_SECONDS", e.to_string()))?;
                if let Some(audience) = get(env, "VIDEO_TASKS_AUDIENCE") {
                    config = config.with_audience(audience);
                }
                Ok(Some(Self::CloudTasks(config)))
            }
            other => Err(err(
                "VIDEO_QUEUE",
                format!("{other:?}: use cloud-tasks or loopback"),
            )),
        }
    }

    /// The enqueuer these settings describe.
    pub fn enqueuer(&self) -> Result<std::sync::Arc<dyn queue::Enqueuer>, ConfigError> {
        Ok(match self {
            Self::CloudTasks(config) => std::sync::Arc::new(
                queue::cloud_tasks::CloudTasks::new(config.clone(), reqwest::Client::new())
                    .map_err(|e| err("VIDEO_TASKS_DISPATCH_DEADLINE_SECONDS", e.to_string()))?,
            ),
            Self::Loopback { worker_url, token } => {
                let mut q = queue::loopback::LoopbackQueue::new(format!("{worker_url}/jobs/run"));
                q.bearer = token.clone();
                std::sync::Arc::new(q)
            }
        })
    }
}

fn url_ok(var: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(err(var, format!("{url:?} is not an http(s) URL")))
    }
}

/// Everything `api` reads.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `VIDEO_API_KEYS`.
    pub api_keys: Vec<String>,
    /// `VIDEO_QUEUE` and its settings.
    pub queue: QueueSettings,
    /// `VIDEO_ARTIFACT_STORE_URL`.
    pub artifact_store_url: String,
    /// `VIDEO_WORKER_LOG_FORMAT` is `json`.
    pub json_logs: bool,
}

impl ApiSettings {
    /// Reads and validates the API's settings.
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let port = number(env, "PORT", 8081u16, 1..=65535)?;
        let database_url =
            get(env, "DATABASE_URL").ok_or_else(|| err("DATABASE_URL", "required for api"))?;
        let api_keys: Vec<String> = get(env, "VIDEO_API_KEYS")
            .map(|v| {
                v.split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if api_keys.is_empty() {
            return Err(err(
                "VIDEO_API_KEYS",
                "required: comma-separated bearer keys for the product side",
            ));
        }
        if api_keys.iter().any(|k| k.len() < 16) {
            return Err(err(
                "VIDEO_API_KEYS",
                "every key must be at least 16 characters",
            ));
        }
        let queue = QueueSettings::from_env(env, true)?
            .ok_or_else(|| err("VIDEO_QUEUE", "required for api"))?;
        let json_logs = !matches!(get(env, "VIDEO_WORKER_LOG_FORMAT").as_deref(), Some("text"));
        Ok(Self {
            port,
            database_url,
            api_keys,
            queue,
            artifact_store_url: get(env, "VIDEO_ARTIFACT_STORE_URL")
                .unwrap_or_else(|| "./artifacts".into()),
            json_logs,
        })
    }
}

/// The sweeper's settings (it runs in `serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// `VIDEO_SWEEP_INTERVAL_SECONDS`; zero disables the sweeper.
    pub interval: Duration,
    /// `VIDEO_SWEEP_EXPIRED_FOR_SECONDS`.
    pub expired_for: Duration,
    /// `VIDEO_SWEEP_QUEUED_FOR_SECONDS`.
    pub queued_for: Duration,
    /// `VIDEO_SWEEP_QUEUED_BATCH`: queued jobs checked per pass at most.
    pub queued_batch: u32,
}

impl Default for SweepSettings {
    /// The documented defaults (README, settings table).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            expired_for: Duration::from_secs(900),
            queued_for: Duration::from_secs(DEFAULT_QUEUED_FOR_SECONDS),
            queued_batch: DEFAULT_QUEUED_BATCH,
        }
    }
}

/// `VIDEO_SWEEP_QUEUED_FOR_SECONDS` by default. A pass asks the queue about each queued job
/// this old (one `tasks.get` each), so this is the trade between how soon a lost task is
/// noticed and how many questions a backlog costs per minute.
const DEFAULT_QUEUED_FOR_SECONDS: u64 = 300;

/// `VIDEO_SWEEP_QUEUED_BATCH` by default: 500 questions to the queue, four at a time, take a
/// few seconds — well inside the scheduler's 180 s deadline for `POST /sweep` — and, with
/// a check touching the job, a backlog of N jobs is covered in N / 500 passes.
pub const DEFAULT_QUEUED_BATCH: u32 = 500;

impl SweepSettings {
    /// Reads the sweeper's settings.
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: seconds(env, "VIDEO_SWEEP_INTERVAL_SECONDS", 60, 0..=86_400)?,
            expired_for: seconds(env, "VIDEO_SWEEP_EXPIRED_FOR_SECONDS", 900, 1..=604_800)?,
            queued_for: seconds(
                env,
                "VIDEO_SWEEP_QUEUED_FOR_SECONDS",
                DEFAULT_QUEUED_FOR_SECONDS,
                1..=604_800,
            )?,
            queued_batch: number(
                env,
                "VIDEO_SWEEP_QUEUED_BATCH",
                DEFAULT_QUEUED_BATCH,
                1..=100_000,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(&move |k: &str| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("DATABASE_URL", "postgres://u@h/db"),
        ("VIDEO_WORKER_AUTH_TOKEN", "0123456789abcdef"),
    ];

    #[test]
    fn defaults_match_the_documented_table() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.lease_ttl, Duration::from_secs(60));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(s.max_runtime, Duration::from_secs(1200));
        assert_eq!(s.max_attempts, 5);
        assert_eq!(s.shutdown_grace, Duration::from_secs(8));
    }

    #[test]
    fn the_piper_backend_defaults_to_the_setup_scripts_install_and_takes_other_paths() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.media.tts_backend, "espeak", "espeak-ng needs nothing");
        assert_eq!(s.media.piper_bin, Path::new(".voices/bin/piper"));
        assert_eq!(
            s.media.piper_model,
            Path::new(".voices/en_US-joe-medium.onnx")
        );
        let mut vars = BASE.to_vec();
        vars.extend([
            ("VIDEO_TTS_BACKEND", "piper"),
            ("VIDEO_PIPER_BIN", "/opt/voices/bin/piper"),
            ("VIDEO_PIPER_MODEL", "/v/x.onnx"),
        ]);
        let s = settings(&vars).unwrap();
        assert_eq!(s.media.tts_backend, "piper");
        assert_eq!(s.media.piper_bin, Path::new("/opt/voices/bin/piper"));
        assert_eq!(s.media.piper_model, Path::new("/v/x.onnx"));
        vars[2] = ("VIDEO_TTS_BACKEND", "festival");
        assert_eq!(settings(&vars).unwrap_err().var, "VIDEO_TTS_BACKEND");
    }

    #[test]
    fn database_url_is_required_with_no_in_memory_fallback() {
        let e = settings(&[BASE[1]]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
        let e = settings(&[("DATABASE_URL", "mysql://x"), BASE[1]]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
    }

    #[test]
    fn serve_refuses_to_start_without_auth() {
        let e = settings(&[BASE[0]]).unwrap_err();
        assert_eq!(e.var, "VIDEO_WORKER_AUTH_TOKEN");
        let e = settings(&[BASE[0], ("VIDEO_WORKER_OIDC_AUDIENCE", "https://w")]).unwrap_err();
        assert_eq!(e.var, "VIDEO_WORKER_OIDC_ALLOWED_EMAILS");
        let s = settings(&[
            BASE[0],
            ("VIDEO_WORKER_OIDC_AUDIENCE", "https://w"),
            (
                "VIDEO_WORKER_OIDC_ALLOWED_EMAILS",
                "a@x.iam.gserviceaccount.com, b@x",
            ),
        ])
        .unwrap();
        let oidc = s.oidc.unwrap();
        assert_eq!(oidc.allowed_emails, ["a@x.iam.gserviceaccount.com", "b@x"]);
        assert_eq!(oidc.issuers, push_auth::OidcConfig::google_issuers());
    }

    #[test]
    fn heartbeat_must_be_below_half_the_ttl() {
        let mut vars = BASE.to_vec();
        vars.push(("VIDEO_JOB_LEASE_TTL_SECONDS", "30"));
        vars.push(("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "15"));
        assert_eq!(
            settings(&vars).unwrap_err().var,
            "VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS"
        );
        vars.pop();
        vars.push(("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "14"));
        assert!(settings(&vars).is_ok());
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        for (var, value) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("VIDEO_JOB_MAX_ATTEMPTS", "0"),
            ("VIDEO_JOB_MAX_RUNTIME_SECONDS", "-5"),
            ("VIDEO_JOB_LEASE_TTL_SECONDS", "1.5"),
            ("VIDEO_WORKER_PIPELINE", "magic"),
            ("VIDEO_WORKER_INSTANCE_ID", "has space"),
            ("VIDEO_WORKER_AUTH_TOKEN", "short"),
        ] {
            let mut vars = BASE.to_vec();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            assert_eq!(settings(&vars).unwrap_err().var, var, "{var}={value}");
        }
    }

    #[test]
    fn a_configured_instance_id_still_gets_a_suffix_per_start() {
        let mut vars = BASE.to_vec();
        vars.push(("VIDEO_WORKER_INSTANCE_ID", "worker-a"));
        let (a, b) = (settings(&vars).unwrap(), settings(&vars).unwrap());
        assert!(a.instance_id.as_str().starts_with("worker-a-"));
        assert_ne!(a.instance_id, b.instance_id);
        vars.pop();
        vars.push(("VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS", "30"));
        assert_eq!(
            settings(&vars).unwrap_err().var,
            "VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS"
        );
    }

    #[test]
    fn default_instance_ids_differ_per_start() {
        let env = |k: &str| (k == "K_REVISION").then(|| "worker-00042-abc".to_owned());
        let (a, b) = (default_instance_id(&env), default_instance_id(&env));
        assert!(a.as_str().starts_with("worker-00042-abc-"));
        assert_ne!(a, b);
    }

    #[test]
    fn the_scratch_budget_defaults_to_512_mib_and_refuses_what_cannot_work() {
        assert_eq!(settings(&BASE).unwrap().scratch_max_bytes, 512 << 20);
        let mut vars = BASE.to_vec();
        vars.push(("VIDEO_WORKER_SCRATCH_MAX_BYTES", "1073741824"));
        assert_eq!(settings(&vars).unwrap().scratch_max_bytes, 1 << 30);
        for bad in ["1000", "512MiB", "-1"] {
            vars.pop();
            vars.push(("VIDEO_WORKER_SCRATCH_MAX_BYTES", bad));
            assert_eq!(
                settings(&vars).unwrap_err().var,
                "VIDEO_WORKER_SCRATCH_MAX_BYTES",
                "{bad}"
            );
        }
    }
}
