//! [`ApiClient`]: the jobs API over HTTP, every failure a [`ClientError`] — what the
//! operator CLI (`video-worker submit`, `status`, …) calls.

use std::path::Path;
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt;

mod error;
mod part_file;

pub use self::error::ClientError;
use self::part_file::PartFile;
use secrecy::{ExposeSecret, SecretString};

use crate::{CancelView, JobList, JobView};

/// A client of the jobs API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    key: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// The API at `url` (`VIDEO_API_URL`) with `key` (`VIDEO_API_KEY`); checks both are usable.
    pub fn configured(url: &str, key: Option<&SecretString>) -> Result<Self, ClientError> {
        let key = key
            .map(|k| k.expose_secret().trim())
            .filter(|k| !k.is_empty());
        let key = key.ok_or(ClientError::MissingKey)?;
        let parsed = reqwest::Url::parse(url.trim()).ok();
        if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
            return Err(ClientError::BadUrl { url: url.into() });
        }
        Ok(Self::new(url.trim(), key))
    }

    /// A client of the API at `base` with `key`.
    pub fn new(base: impl Into<String>, key: impl Into<String>) -> Self {
        // Connecting is bounded; reading is not: an event stream or a download may run long.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            key: SecretString::from(key.into()),
            http,
        }
    }

    /// `{base}/v1/jobs/{id}/{rest…}`, with `id` as one escaped path segment.
    fn job_url(&self, id: &str, rest: &[&str]) -> Result<reqwest::Url, ClientError> {
        let mut url = self.url("/v1/jobs")?;
        url.path_segments_mut()
            .map_err(|()| ClientError::BadUrl {
                url: self.base.clone(),
            })?
            .push(id)
            .extend(rest);
        Ok(url)
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|_| ClientError::BadUrl {
            url: self.base.clone(),
        })
    }

    /// Sends with the key; a transport failure becomes [`ClientError::Unreachable`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        request
            .bearer_auth(self.key.expose_secret())
            .send()
            .await
            .map_err(|e| self.transport(&e))
    }

    fn transport(&self, error: &reqwest::Error) -> ClientError {
        ClientError::of_transport(&self.base, error)
    }

    async fn refusal(&self, response: reqwest::Response) -> ClientError {
        ClientError::of_refusal(&self.base, response).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected(e.to_string()))
    }

    /// `POST /v1/jobs`.
    pub async fn submit(&self, storyboard: serde_json::Value) -> Result<JobView, ClientError> {
        let body = serde_json::json!({ "storyboard": storyboard });
        let request = self.http.post(self.url("/v1/jobs")?).json(&body);
        self.json(self.send(request).await?).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn status(&self, id: &str) -> Result<JobView, ClientError> {
        let request = self.http.get(self.job_url(id, &[])?);
        self.json(self.send(request).await?).await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<CancelView, ClientError> {
        let request = self.http.post(self.job_url(id, &["cancel"])?);
        self.json(self.send(request).await?).await
    }

    /// `GET /v1/jobs`: the first page.
    pub async fn list(&self, status: Option<&str>, limit: u32) -> Result<JobList, ClientError> {
        self.page(status, limit, None).await
    }

    /// `GET /v1/jobs`: one page, from `cursor` (a previous page's `next_cursor`).
    pub async fn page(
        &self,
        status: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobList, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(status.map(|s| ("status", s.to_owned())));
        query.extend(cursor.map(|c| ("cursor", c.to_owned())));
        let request = self.http.get(self.url("/v1/jobs")?).query(&query);
        self.json(self.send(request).await?).await
    }

    /// Every page from `cursor` on, following `next_cursor` to the end; `on_page` sees each
    /// page as it arrives. Returns the number of jobs.
    pub async fn list_all(
        &self,
        status: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
        mut on_page: impl FnMut(&[JobView]),
    ) -> Result<usize, ClientError> {
        let mut cursor = cursor.map(str::to_owned);
        let mut count = 0;
        loop {
            let page = self.page(status, limit, cursor.as_deref()).await?;
            on_page(&page.jobs);
            count += page.jobs.len();
            match page.next_cursor {
                None => return Ok(count),
                // A cursor that does not move would page forever.
                Some(next) if cursor.as_deref() == Some(next.as_str()) || page.jobs.is_empty() => {
                    return Err(ClientError::Unexpected(format!(
                        "the API gave the cursor {next:?} without moving on"
                    )));
                }
                Some(next) => cursor = Some(next),
            }
        }
    }

    /// `GET /v1/jobs/{id}/artifact` into `out`: written to a temporary file beside it and
    /// renamed into place once complete, so `out` is never a partial film. An answer that
    /// redirects (a signed store URL) is followed; the key is not sent to another host.
    /// Returns the bytes written.
    pub async fn download(&self, id: &str, out: &Path) -> Result<u64, ClientError> {
        self.download_route(id, "artifact", out).await
    }

    /// `GET /v1/jobs/{id}/captions` (the film's WebVTT) into `out`, as [`Client::download`]
    /// writes the film.
    pub async fn download_captions(&self, id: &str, out: &Path) -> Result<u64, ClientError> {
        self.download_route(id, "captions", out).await
    }

    async fn download_route(&self, id: &str, route: &str, out: &Path) -> Result<u64, ClientError> {
        let request = self.http.get(self.job_url(id, &[route])?);
        let response = self.send(request).await?;
        if response.status() == reqwest::StatusCode::CONFLICT {
            return Err(match self.refusal(response).await {
                ClientError::Refused { message, .. } => ClientError::NotReady {
                    id: id.to_owned(),
                    message,
                },
                other => other,
            });
        }
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        let expected = response.content_length();
        let mut part = PartFile::create(out).await?;
        let mut body = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(&e))?;
            part.write(&chunk).await?;
            written += chunk.len() as u64;
        }
        if let Some(expected) = expected.filter(|&n| n != written) {
            return Err(ClientError::Transport {
                base: self.base.clone(),
                reason: format!("the download ended after {written} of {expected} bytes"),
            });
        }
        part.persist().await?;
        Ok(written)
    }

    /// Follows `GET /v1/jobs/{id}/events` until the `done` event; calls `on_event` with each
    /// job view. Returns the final view.
    ///
    /// The stream is parsed as server-sent events (fields split across lines and network
    /// chunks, multi-byte characters split across chunks, comments, `\r\n`). `done` carries
    /// the job's terminal state; its `stage` may be present or absent.
    pub async fn follow(
        &self,
        id: &str,
        mut on_event: impl FnMut(&JobView),
    ) -> Result<JobView, ClientError> {
        let request = self
            .http
            .get(self.job_url(id, &["events"])?)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => self.transport(&e),
                other => ClientError::Unexpected(format!("event stream: {other}")),
            })?;
            match event.event.as_str() {
                "progress" | "message" => {
                    let view: JobView = serde_json::from_str(&event.data)
                        .map_err(|e| ClientError::Unexpected(format!("progress event: {e}")))?;
                    on_event(&view);
                }
                "done" => {
                    let view = self.done_view(id, &event.data).await?;
                    on_event(&view);
                    return Ok(view);
                }
                _ => {} // an event kind this client does not know: skipped
            }
        }
        Err(ClientError::StreamEnded)
    }

    /// The job at its `done` event: the event's own view, or — if the event carries less than
    /// a whole job — the job as the API shows it now, with the event's terminal status.
    async fn done_view(&self, id: &str, data: &str) -> Result<JobView, ClientError> {
        let value: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| ClientError::Unexpected(format!("done event: {e}")))?;
        if let Ok(view) = serde_json::from_value::<JobView>(value.clone()) {
            return Ok(view);
        }
        let status = value["status"].as_str().ok_or_else(|| {
            ClientError::Unexpected(format!("done event without a status: {data}"))
        })?;
        let mut view = self.status(id).await?;
        status.clone_into(&mut view.status);
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_or_a_bad_url_is_refused_before_any_call() {
        assert!(matches!(
            ApiClient::configured("http://127.0.0.1:8081", None),
            Err(ClientError::MissingKey)
        ));
        assert!(matches!(
            ApiClient::configured("http://127.0.0.1:8081", Some(&SecretString::from("  "))),
            Err(ClientError::MissingKey)
        ));
        for bad in ["127.0.0.1:8081", "ftp://host/", "http://"] {
            assert!(
                matches!(
                    ApiClient::configured(bad, Some(&SecretString::from("k"))),
                    Err(ClientError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(
            ApiClient::configured("https://api.example/", Some(&SecretString::from("k"))).is_ok()
        );
        let client = ApiClient::new("http://api.example", "secret-api-key-123");
        assert!(!format!("{client:?}").contains("secret-api-key-123"));
    }
}
