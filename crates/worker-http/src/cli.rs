//! Operator commands against the jobs API: `submit`, `status`, `cancel`, `list`.
//! `VIDEO_API_URL` (default `http://127.0.0.1:8081`) and `VIDEO_API_KEY` say where and who.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::{CancelView, JobList, JobView};

/// A client of the jobs API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// From `VIDEO_API_URL` and `VIDEO_API_KEY`.
    pub fn from_env() -> anyhow::Result<Self> {
        let base =
            std::env::var("VIDEO_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".into());
        let key = std::env::var("VIDEO_API_KEY")
            .context("VIDEO_API_KEY: required (one of the API's VIDEO_API_KEYS)")?;
        Ok(Self::new(base, key))
    }

    /// A client of the API at `base` with `key`.
    pub fn new(base: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            key: key.into(),
            http: reqwest::Client::new(),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> anyhow::Result<T> {
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() && status.as_u16() != 202 {
            let body: serde_json::Value =
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()));
            let mut message = format!("{status}: {}", body["message"].as_str().unwrap_or(&text));
            for f in body["fields"].as_array().into_iter().flatten() {
                message.push_str(&format!(
                    "\n  {}: {}",
                    f["field"].as_str().unwrap_or(""),
                    f["reason"].as_str().unwrap_or("")
                ));
            }
            bail!(message);
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    /// `POST /v1/jobs`.
    pub async fn submit(&self, storyboard: serde_json::Value) -> anyhow::Result<JobView> {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(&self.key)
            .json(&serde_json::json!({ "storyboard": storyboard }))
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.base))?;
        Self::json(r).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn status(&self, id: &str) -> anyhow::Result<JobView> {
        let r = self
            .http
            .get(format!("{}/v1/jobs/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        Self::json(r).await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> anyhow::Result<CancelView> {
        let r = self
            .http
            .post(format!("{}/v1/jobs/{id}/cancel", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        Self::json(r).await
    }

    /// `GET /v1/jobs`.
    pub async fn list(&self, status: Option<&str>, limit: u32) -> anyhow::Result<JobList> {
        let mut request = self
            .http
            .get(format!("{}/v1/jobs", self.base))
            .bearer_auth(&self.key)
            .query(&[("limit", limit.to_string())]);
        if let Some(s) = status {
            request = request.query(&[("status", s)]);
        }
        Self::json(request.send().await?).await
    }

    /// Follows `GET /v1/jobs/{id}/events` until the `done` event; calls `on_event` with each
    /// job view. Returns the final view.
    pub async fn follow(
        &self,
        id: &str,
        mut on_event: impl FnMut(&JobView),
    ) -> anyhow::Result<JobView> {
        let response = self
            .http
            .get(format!("{}/v1/jobs/{id}/events", self.base))
            .bearer_auth(&self.key)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        if !response.status().is_success() {
            let _: serde_json::Value = Self::json(response).await?;
            bail!("the event stream was refused");
        }
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let (mut event, mut data) = (String::new(), String::new());
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = buffer.find('\n') {
                let line = buffer[..end].trim_end_matches('\r').to_owned();
                buffer.drain(..=end);
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let view: JobView = serde_json::from_str(&data)?;
                    on_event(&view);
                    if event == "done" {
                        return Ok(view);
                    }
                    data.clear();
                    event.clear();
                }
            }
        }
        bail!("the event stream ended before the job did")
    }
}

/// Prints a job in a few lines.
pub fn print_job(job: &JobView) {
    println!("job       {}", job.id);
    println!("status    {}", job.status);
    // A finished job has no stage in progress (the API leaves it out once succeeded).
    match &job.stage {
        Some(stage) => {
            let segment = match (job.segment_index, job.segment_total) {
                (Some(i), Some(n)) => format!(" (segment {} of {n})", i + 1),
                _ => String::new(),
            };
            println!("progress  {}% {stage}{segment}", job.percent);
        }
        None => println!("progress  {}%", job.percent),
    }
    if let Some(url) = &job.artifact_url {
        println!("artifact  {url}");
    }
    if let (Some(code), Some(message)) = (&job.error_code, &job.error_message) {
        println!("error     {code}: {message}");
    }
}

/// Follows a job with a progress bar until it ends.
pub async fn follow_with_bar(client: &ApiClient, id: &str) -> anyhow::Result<JobView> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("[{bar:40.green/white}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let last = client
        .follow(id, |job| {
            bar.set_position(u64::from(job.percent));
            bar.set_message(format!(
                "{} {}",
                job.status,
                job.message.clone().unwrap_or_default()
            ));
        })
        .await;
    bar.finish_and_clear();
    last
}

/// Reads a storyboard file.
pub fn read_storyboard(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}
