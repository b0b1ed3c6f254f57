//! Operator commands against the jobs API: `submit`, `status`, `cancel`, `list`, `download`.
//! `VIDEO_API_URL` (default [`DEFAULT_API_URL`]) and `VIDEO_API_KEY` say where and who.
//!
//! Every failure is a [`CliError`] whose message is one line a person can act on; an API that
//! cannot be reached reads `cannot reach the jobs API at URL: connection refused`, whatever
//! the command.

mod client;
mod part_file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::api::JobView;

pub use client::ApiClient;

/// Where the API is when `VIDEO_API_URL` is not set: `video-worker api` on this machine.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8081";

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No key to call with.
    #[error(
        "VIDEO_API_KEY is not set: the jobs API needs one of its VIDEO_API_KEYS (or pass --api-key)"
    )]
    MissingKey,
    /// `VIDEO_API_URL` is not a URL.
    #[error("VIDEO_API_URL: {url:?} is not an http(s) URL")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// Nothing answered at the API's address.
    #[error("cannot reach the jobs API at {base}: {reason}")]
    Unreachable {
        /// The API's base URL.
        base: String,
        /// The transport's reason, e.g. `connection refused`.
        reason: String,
    },
    /// The connection broke while an answer was being read.
    #[error("the connection to the jobs API at {base} failed: {reason}")]
    Transport {
        /// The API's base URL.
        base: String,
        /// The transport's reason.
        reason: String,
    },
    /// The API refused the request.
    #[error("the jobs API answered {status}: {message}{}", fields_text(.fields))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error code (`not_found`, `invalid_storyboard`, …).
        error: String,
        /// The API's message.
        message: String,
        /// Field-level problems: (field, reason).
        fields: Vec<(String, String)>,
    },
    /// `download` of a job that has no film (yet).
    #[error("job {id} has no film to download: {message}")]
    NotReady {
        /// The job.
        id: String,
        /// The API's explanation (the job's status).
        message: String,
    },
    /// An answer this client does not understand.
    #[error("unexpected answer from the jobs API: {0}")]
    Unexpected(String),
    /// The event stream closed before the `done` event.
    #[error("the event stream ended before the job did")]
    StreamEnded,
    /// A local file could not be read or written.
    #[error("{}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The error (not a `source`: the message already says it, once).
        cause: std::io::Error,
    },
    /// A storyboard file that is not JSON.
    #[error("{} is not JSON: {cause}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The error.
        cause: serde_json::Error,
    },
}

fn fields_text(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(field, reason)| format!("\n  {field}: {reason}"))
        .collect()
}
/// Whether a job status is final.
fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

/// Prints a job in a few lines. A finished job shows its terminal state, not the stage it
/// last reported.
pub fn print_job(job: &JobView) {
    println!("job       {}", job.id);
    println!("status    {}", job.status);
    // Where it is, or where a failed or canceled job stopped; a succeeded job's status says
    // it all (the API sends no stage once it succeeded).
    if let Some(stage) = &job.stage {
        let segment = match (job.segment_index, job.segment_total) {
            (Some(i), Some(n)) => format!(" (segment {} of {n})", i + 1),
            _ => String::new(),
        };
        let label = if is_terminal(&job.status) {
            "stopped "
        } else {
            "progress"
        };
        println!("{label}  {}% {stage}{segment}", job.percent);
    }
    if let Some(url) = &job.artifact_url {
        println!("artifact  {url}");
    }
    if let (Some(code), Some(message)) = (&job.error_code, &job.error_message) {
        println!("error     {code}: {message}");
    }
}

/// One line of `list`.
pub fn print_list_line(job: &JobView) {
    println!(
        "{}  {:<9}  {:>3}%  {}",
        job.id, job.status, job.percent, job.created_at
    );
}

/// The progress bar's message for a job: its stage while it runs, its state once it ended.
pub fn progress_message(job: &JobView) -> String {
    let what = match &job.stage {
        Some(stage) if !is_terminal(&job.status) => stage.as_str(),
        _ => job.status.as_str(),
    };
    match &job.message {
        Some(m) if !is_terminal(&job.status) => format!("{what} {m}"),
        _ => what.to_owned(),
    }
}

/// Follows a job with a progress bar until it ends.
pub async fn follow_with_bar(client: &ApiClient, id: &str) -> Result<JobView, CliError> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("[{bar:40.green/white}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let last = client
        .follow(id, |job| {
            bar.set_position(u64::from(job.percent));
            bar.set_message(progress_message(job));
        })
        .await;
    bar.finish_and_clear();
    last
}

/// Reads a storyboard file.
pub fn read_storyboard(path: &Path) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|cause| CliError::File {
        path: path.into(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|cause| CliError::NotJson {
        path: path.into(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, stage: Option<&str>) -> JobView {
        JobView {
            id: "j".into(),
            status: status.into(),
            stage: stage.map(str::to_owned),
            percent: 100,
            segment_index: None,
            segment_total: None,
            message: Some("muxing".into()),
            cancel_requested: false,
            attempts: 1,
            artifact_key: None,
            artifact_url: None,
            error_code: None,
            error_message: None,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_finished_job_shows_its_state_not_its_last_stage() {
        assert_eq!(
            progress_message(&job("succeeded", Some("compose"))),
            "succeeded"
        );
        assert_eq!(progress_message(&job("failed", None)), "failed");
        assert_eq!(
            progress_message(&job("running", Some("compose"))),
            "compose muxing"
        );
    }

    #[test]
    fn a_missing_key_or_a_bad_url_is_refused_before_any_call() {
        assert!(matches!(
            ApiClient::configured(DEFAULT_API_URL, None),
            Err(CliError::MissingKey)
        ));
        assert!(matches!(
            ApiClient::configured(DEFAULT_API_URL, Some("  ")),
            Err(CliError::MissingKey)
        ));
        for bad in ["127.0.0.1:8081", "ftp://host/", "http://"] {
            assert!(
                matches!(
                    ApiClient::configured(bad, Some("k")),
                    Err(CliError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(ApiClient::configured("https://api.example/", Some("k")).is_ok());
        let client = ApiClient::new("http://api.example", "secret-api-key-123");
        assert!(!format!("{client:?}").contains("secret-api-key-123"));
    }
}
