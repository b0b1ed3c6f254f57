//! The operator commands' arguments, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use jobs_api::client::{ApiClient, ClientError};
use secrecy::SecretString;

/// Where the jobs API is and who calls it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The jobs API's base URL.
    #[arg(long = "api-url", value_name = "URL", env = "VIDEO_API_URL", default_value = super::DEFAULT_API_URL)]
    pub url: String,
    /// A key the API accepts (one of its VIDEO_API_KEYS). Required.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "VIDEO_API_KEY",
        hide_env_values = true,
        value_parser = secret
    )]
    pub key: Option<SecretString>,
}

/// Reads a secret argument: held so that no `{:?}` of the command line prints it.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl ApiArgs {
    /// A client for the API these arguments name.
    pub fn client(&self) -> Result<ApiClient, ClientError> {
        ApiClient::configured(&self.url, self.key.as_ref())
    }
}

/// The commands people run against the jobs API.
#[derive(Debug, Subcommand)]
pub enum Operator {
    /// Create a job from a storyboard file through the API.
    Submit {
        /// The storyboard JSON file.
        file: PathBuf,
        /// Follow its progress until it ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a job.
    Status {
        /// The job id.
        id: String,
        /// Follow its progress until it ends (exits non-zero unless it succeeded).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List jobs, newest first, a page at a time.
    List {
        /// Only jobs with this status (queued, running, succeeded, failed, canceled).
        #[arg(long)]
        status: Option<String>,
        /// Jobs per page (1–500).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Start after this point: the cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Every page to the end, not just one.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Download a succeeded job's film (MP4) or, with --captions, its captions (WebVTT).
    Download {
        /// The job id.
        id: String,
        /// Where to write it (default: ID.mp4, or ID.vtt with --captions). Written whole or
        /// not at all.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Download the film's captions (WebVTT) instead of the film.
        #[arg(long)]
        captions: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}
