//! Where deliveries are enqueued: `VIDEO_QUEUE` and the queue's own settings.

use secrecy::SecretString;

use super::{ConfigError, Env, err, get, seconds, secret};

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
        token: Option<SecretString>,
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
                    token: secret(env, "VIDEO_WORKER_AUTH_TOKEN"),
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
                let target = queue::cloud_tasks::QueueTarget {
                    project: need("VIDEO_TASKS_PROJECT")?,
                    location: need("VIDEO_TASKS_LOCATION")?,
                    queue: need("VIDEO_TASKS_QUEUE")?,
                    worker_url,
                    service_account_email: need("VIDEO_TASKS_SERVICE_ACCOUNT")?,
                };
                let mut config = queue::cloud_tasks::CloudTasksConfig::new(target, limit, deadline)
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
