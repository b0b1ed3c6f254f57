//! `video-worker`: one binary, one subcommand per process kind.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use worker_http::cli::{self, ApiClient};
use worker_http::config::{ApiSettings, PipelineKind, Settings};
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
    /// The jobs API for the product side, on its own listener (settings from the
    /// environment; see README, "Settings").
    Api,
    /// Create a job from a storyboard file through the API.
    Submit {
        /// The storyboard JSON file.
        file: PathBuf,
        /// Follow its progress until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Show a job.
    Status {
        /// The job id.
        id: String,
        /// Follow its progress until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs with this status (queued, running, succeeded, failed, canceled).
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
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
        Command::Api => api().await,
        Command::Submit { file, follow } => {
            let client = ApiClient::from_env()?;
            let job = client.submit(cli::read_storyboard(&file)?).await?;
            if follow {
                eprintln!("submitted {}", job.id);
                finish(cli::follow_with_bar(&client, &job.id).await?)
            } else {
                cli::print_job(&job);
                Ok(())
            }
        }
        Command::Status { id, follow } => {
            let client = ApiClient::from_env()?;
            if follow {
                finish(cli::follow_with_bar(&client, &id).await?)
            } else {
                cli::print_job(&client.status(&id).await?);
                Ok(())
            }
        }
        Command::Cancel { id } => {
            let answer = ApiClient::from_env()?.cancel(&id).await?;
            println!("{}", answer.outcome);
            cli::print_job(&answer.job);
            Ok(())
        }
        Command::List { status, limit } => {
            let page = ApiClient::from_env()?
                .list(status.as_deref(), limit)
                .await?;
            for job in &page.jobs {
                println!(
                    "{}  {:<9}  {:>3}%  {}",
                    job.id, job.status, job.percent, job.created_at
                );
            }
            if page.next_cursor.is_some() {
                eprintln!("(more: raise --limit)");
            }
            Ok(())
        }
    }
}

/// Prints the final state; a job that did not succeed is a non-zero exit.
fn finish(job: worker_http::api::JobView) -> anyhow::Result<()> {
    cli::print_job(&job);
    if job.status == "succeeded" {
        Ok(())
    } else {
        anyhow::bail!("the job ended {}", job.status)
    }
}

async fn api() -> anyhow::Result<()> {
    let settings = ApiSettings::from_env(&env).context("configuration")?;
    telemetry::init(settings.json_logs);
    let pool = repo_pg::connect_lazy(&settings.database_url, &repo_pg::PoolConfig::default())
        .context("DATABASE_URL: not a valid Postgres URL")?;
    let repo: Arc<dyn domain::JobRepository> = Arc::new(repo_pg::PgRepository::new(pool));
    let artifacts = pipeline::publish::store_from_url(&settings.artifact_store_url)
        .map_err(|e| anyhow::anyhow!("VIDEO_ARTIFACT_STORE_URL: {e}"))?;
    let state = worker_http::api::ApiState {
        feed: worker_http::api::UpdateFeed::start(repo.clone()).await,
        repo,
        queue: settings.queue.enqueuer().context("queue configuration")?,
        keys: worker_http::api::ApiKeys::new(&settings.api_keys),
        artifacts,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port)))
            .await
            .with_context(|| format!("binding port {}", settings.port))?;
    tracing::info!(port = settings.port, "jobs API serving");
    axum::serve(listener, worker_http::api::router(state))
        .with_graceful_shutdown(worker_http::app::shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
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
    // Held until `serve` returns: a second process on the same work dir would delete this
    // one's attempt directories at its start.
    let work = runner::scratch::WorkDirClaim::acquire(&settings.work_dir)
        .context("VIDEO_WORKER_WORK_DIR")?;
    let pipeline = match settings.pipeline {
        PipelineKind::Video => worker_http::media::video_pipeline(
            &settings.media,
            &work,
            settings.scratch_max_bytes,
            std::sync::Arc::new(pipeline::video::PipelineStats::default()),
        )?,
        PipelineKind::Noop => pipeline::noop::noop_pipeline(),
    };
    let repo: Arc<dyn domain::JobRepository> = Arc::new(repo_pg::PgRepository::new(pool.clone()));
    let queue = match &settings.queue {
        Some(q) => Some(q.enqueuer().context("queue configuration")?),
        None => None,
    };
    let parts = AppParts {
        repo: repo.clone(),
        pipeline,
        auth,
        runner: settings.runner_config(),
        readiness: Readiness::Postgres(pool),
        max_body_bytes: settings.max_body_bytes,
        listen_for_cancels: true,
    };
    if queue.is_none() {
        tracing::warn!(
            "VIDEO_QUEUE is not set: the sweeper requeues and fails stuck jobs but cannot re-enqueue lost deliveries"
        );
    }
    let sweep = worker_http::SweepParts {
        queue: queue.clone(),
        settings: settings.sweep.clone(),
    };
    let app = Application::build_with_sweep(
        parts,
        sweep,
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
    let sweeper = worker_http::sweeper::spawn(
        repo,
        queue,
        settings.sweep.clone(),
        settings.max_attempts,
        token.child_token(),
    );
    tokio::spawn(async move {
        worker_http::app::shutdown_signal().await;
        token.cancel();
    });
    app.run_until_stopped().await?;
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
