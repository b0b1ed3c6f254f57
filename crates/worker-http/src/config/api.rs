//! What `api` reads.

use secrecy::SecretString;

use super::{ConfigError, Env, QueueSettings, err, get, number};

/// Everything `api` reads.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`.
    pub database_url: SecretString,
    /// `VIDEO_API_KEYS`.
    pub api_keys: Vec<SecretString>,
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
        let api_keys = api_keys.into_iter().map(SecretString::from).collect();
        let queue = QueueSettings::from_env(env, true)?
            .ok_or_else(|| err("VIDEO_QUEUE", "required for api"))?;
        let json_logs = !matches!(get(env, "VIDEO_WORKER_LOG_FORMAT").as_deref(), Some("text"));
        Ok(Self {
            port,
            database_url: database_url.into(),
            api_keys,
            queue,
            artifact_store_url: get(env, "VIDEO_ARTIFACT_STORE_URL")
                .unwrap_or_else(|| "./artifacts".into()),
            json_logs,
        })
    }
}
