//! `video-worker`: one binary, one subcommand per process kind.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use worker_http::config::{PipelineKind, Settings};
use worker_http::{AppParts, Application, Readiness, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "video-worker",
    version,
    about = "Runs video-generation jobs pushed by a task queue"
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
    },
    /// The push worker for production: Postgres required, settings from the environment
    /// (see README, "Settings").
    Serve,
    /// Apply the database migrations to DATABASE_URL and exit.
    Migrate,
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { storyboard, out } => {
            // Warnings only: the progress bar is the demo's output.
            if std::env::var_os("RUST_LOG").is_none() {
                tracing_subscriber::fmt()
                    .with_env_filter("warn")
                    .with_writer(std::io::stderr)
                    .init();
            } else {
                telemetry::init(false);
            }
            worker_http::demo::run(worker_http::demo::DemoOptions { storyboard, out }).await?;
            Ok(())
        }
        Command::Serve => serve().await,
        Command::Migrate => migrate().await,
    }
}

async fn migrate() -> anyhow::Result<()> {
    telemetry::init(false);
    let url = env("DATABASE_URL")
        .filter(|u| !u.trim().is_empty())
        .context("DATABASE_URL: required, e.g. postgres://user@host:5432/db")?;
    let pool = repo_pg::connect_lazy(&url, &repo_pg::PoolConfig::default())
        .context("DATABASE_URL: not a valid Postgres URL")?;
    repo_pg::migrate(&pool)
        .await
        .context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env(&env).context("configuration")?;
    telemetry::init(settings.json_logs);
    let pool = repo_pg::connect_lazy(&settings.database_url, &repo_pg::PoolConfig::default())
        .context("DATABASE_URL: not a valid Postgres URL")?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let auth = push_auth::Authenticator::new(
        push_auth::AuthConfig {
            shared_token: settings.auth_token.clone(),
            oidc: settings.oidc.clone(),
        },
        http,
    )
    .context("auth configuration")?;
    let pipeline = match settings.pipeline {
        PipelineKind::Video => worker_http::media::video_pipeline(
            &settings.media,
            std::sync::Arc::new(pipeline::video::PipelineStats::default()),
        )?,
        PipelineKind::Noop => pipeline::noop::noop_pipeline(),
    };
    let parts = AppParts {
        repo: Arc::new(repo_pg::PgRepository::new(pool.clone())),
        pipeline,
        auth,
        runner: settings.runner_config(),
        readiness: Readiness::Postgres(pool),
        max_body_bytes: settings.max_body_bytes,
        listen_for_cancels: true,
    };
    let app = Application::build(
        parts,
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port)),
    )
    .await?;
    tracing::info!(
        port = app.port(),
        instance.id = %settings.instance_id,
        lease_ttl_s = settings.lease_ttl.as_secs(),
        "video-worker serving"
    );
    let token = app.shutdown_token();
    tokio::spawn(async move {
        worker_http::app::shutdown_signal().await;
        token.cancel();
    });
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
