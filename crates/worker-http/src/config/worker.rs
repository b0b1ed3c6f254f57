//! What `serve` reads: the worker's listener, database, auth, lease timing, sweeper and
//! media settings.

use std::path::PathBuf;
use std::time::Duration;

use domain::InstanceId;
use queue::SweepSettings;
use queue::sweep::{DEFAULT_QUEUED_BATCH, DEFAULT_QUEUED_FOR_SECONDS};
use secrecy::{ExposeSecret, SecretString};

use super::{
    ConfigError, DEFAULT_SCRATCH_MAX_BYTES, Env, MediaSettings, PipelineKind, QueueSettings,
    default_instance_id, err, get, number, seconds, secret,
};

/// Everything `serve` reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`.
    pub database_url: SecretString,
    /// `VIDEO_WORKER_INSTANCE_ID`.
    pub instance_id: InstanceId,
    /// `VIDEO_WORKER_AUTH_TOKEN`.
    pub auth_token: Option<SecretString>,
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
        let auth_token = secret(env, "VIDEO_WORKER_AUTH_TOKEN");
        if auth_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
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
        let sweep = sweep_settings(env)?;
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
            database_url: database_url.into(),
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

/// Reads the sweeper's settings.
pub fn sweep_settings(env: Env<'_>) -> Result<SweepSettings, ConfigError> {
    Ok(SweepSettings {
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

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
