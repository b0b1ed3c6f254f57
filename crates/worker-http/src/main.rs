//! `video-worker`: one binary, one subcommand per process kind.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use worker_http::cli::{self, Operator};
use worker_http::commands;
use worker_http::telemetry::{self, TelemetrySettings};

/// Shown under every `--help` of the top level.
const ENVIRONMENT: &str = "\
Operator commands (submit, status, cancel, list, download) call the jobs API:
  VIDEO_API_URL   the API's base URL [default: http://127.0.0.1:8081]
  VIDEO_API_KEY   one of the API's VIDEO_API_KEYS [required]
serve, api and migrate read their settings from the environment (README, \"Settings\").";

#[derive(Debug, Parser)]
#[command(
    name = "video-worker",
    version,
    about = "Runs video-generation jobs pushed by a task queue, and the jobs API in front of them",
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render a storyboard end to end on this machine: no database, no configuration.
    /// Prints the path of the MP4.
    Demo {
        /// A storyboard JSON file (default: the built-in English example).
        #[arg(long, value_name = "FILE")]
        storyboard: Option<PathBuf>,
        /// Where the MP4 is written.
        #[arg(long, value_name = "DIR", default_value = "artifacts")]
        out: PathBuf,
        /// The voice (default: piper when `scripts/setup --voices` installed it, else
        /// espeak-ng). Piper speaks English; other languages are spoken by espeak-ng.
        #[arg(long, value_enum)]
        voice: Option<worker_http::demo::DemoVoice>,
    },
    /// The push worker for production: Postgres required, settings from the environment
    /// (see README, "Settings").
    Serve,
    /// Apply the database migrations to DATABASE_URL and exit.
    Migrate,
    /// The jobs API for the product side, on its own listener (settings from the
    /// environment; see README, "Settings").
    Api,
    #[command(flatten)]
    Operator(Operator),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            storyboard,
            out,
            voice,
        } => demo(storyboard, out, voice).await,
        Command::Serve => commands::serve().await,
        Command::Migrate => commands::migrate().await,
        Command::Api => commands::api().await,
        Command::Operator(command) => cli::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line (causes joined by ": "), not a backtrace-style chain.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(
    storyboard: Option<PathBuf>,
    out: PathBuf,
    voice: Option<worker_http::demo::DemoVoice>,
) -> anyhow::Result<()> {
    // Warnings only: the progress bar is the demo's output.
    let _telemetry = if std::env::var_os("RUST_LOG").is_none() {
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_writer(std::io::stderr)
            .init();
        None
    } else {
        Some(telemetry::init(&TelemetrySettings::text())?)
    };
    worker_http::demo::run(worker_http::demo::DemoOptions {
        storyboard,
        out,
        voice,
    })
    .await?;
    Ok(())
}
