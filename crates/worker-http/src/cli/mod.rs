//! Operator commands against the jobs API: `submit`, `status`, `cancel`, `list`, `download`.
//! `VIDEO_API_URL` (default [`DEFAULT_API_URL`]) and `VIDEO_API_KEY` say where and who.
//!
//! Every failure is a [`ClientError`] whose message is one line a person can act on; an API that
//! cannot be reached reads `cannot reach the jobs API at URL: connection refused`, whatever
//! the command.

mod args;
mod run;

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use jobs_api::JobView;
use jobs_api::client::{ApiClient, ClientError};

pub use args::{ApiArgs, Operator};
pub use run::run;

/// Where the API is when `VIDEO_API_URL` is not set: `video-worker api` on this machine.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8081";

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
pub async fn follow_with_bar(client: &ApiClient, id: &str) -> Result<JobView, ClientError> {
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
pub fn read_storyboard(path: &Path) -> Result<serde_json::Value, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ClientError::File {
        path: path.into(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|cause| ClientError::NotJson {
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
}
