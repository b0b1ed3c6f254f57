//! `video-worker`: one binary, one subcommand per process kind.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jobs_api::client::{ApiClient, ClientError};
use worker_http::cli;
use worker_http::config::{ApiSettings, PipelineKind, Settings};
use worker_http::telemetry::{self, Telemetry, TelemetrySettings};
use worker_http::{AppParts, Application, Readiness};

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

/// Where the jobs API is and who calls it.
#[derive(Debug, Args)]
struct ApiArgs {
    /// The jobs API's base URL.
    #[arg(long = "api-url", value_name = "URL", env = "VIDEO_API_URL", default_value = cli::DEFAULT_API_URL)]
    url: String,
    /// A key the API accepts (one of its VIDEO_API_KEYS). Required.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "VIDEO_API_KEY",
        hide_env_values = true
    )]
    key: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient, ClientError> {
        ApiClient::configured(&self.url, self.key.as_deref())
    }
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

/// The commands people run against the jobs API.
#[derive(Debug, Subcommand)]
enum Operator {
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

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
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
        Command::Serve => serve().await,
        Command::Migrate => migrate().await,
        Command::Api => api().await,
        Command::Operator(command) => operator(command).await,
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

/// The commands people run against the jobs API.
async fn operator(command: Operator) -> anyhow::Result<()> {
    match command {
        Operator::Submit { file, follow, api } => {
            let client = api.client()?;
            let job = client.submit(cli::read_storyboard(&file)?).await?;
            if follow {
                eprintln!("submitted {}", job.id);
                finish(cli::follow_with_bar(&client, &job.id).await?)
            } else {
                cli::print_job(&job);
                Ok(())
            }
        }
        Operator::Status { id, follow, api } => {
            let client = api.client()?;
            if follow {
                finish(cli::follow_with_bar(&client, &id).await?)
            } else {
                cli::print_job(&client.status(&id).await?);
                Ok(())
            }
        }
        Operator::Cancel { id, api } => {
            let answer = api.client()?.cancel(&id).await?;
            println!("{}", answer.outcome);
            cli::print_job(&answer.job);
            Ok(())
        }
        Operator::List {
            status,
            limit,
            cursor,
            all,
            api,
        } => {
            let client = api.client()?;
            if all {
                client
                    .list_all(status.as_deref(), limit, cursor.as_deref(), |jobs| {
                        jobs.iter().for_each(cli::print_list_line);
                    })
                    .await?;
            } else {
                let page = client
                    .page(status.as_deref(), limit, cursor.as_deref())
                    .await?;
                page.jobs.iter().for_each(cli::print_list_line);
                if let Some(next) = page.next_cursor {
                    eprintln!("more: --cursor {next} (or --all)");
                }
            }
            Ok(())
        }
        Operator::Download {
            id,
            output,
            captions,
            api,
        } => {
            let client = api.client()?;
            let ext = if captions { "vtt" } else { "mp4" };
            let output = output.unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
            let bytes = if captions {
                client.download_captions(&id, &output).await?
            } else {
                client.download(&id, &output).await?
            };
            eprintln!("{} ({bytes} bytes)", output.display());
            Ok(())
        }
    }
}

/// Prints the final state; a job that did not succeed is a non-zero exit.
fn finish(job: jobs_api::JobView) -> anyhow::Result<()> {
    cli::print_job(&job);
    if job.status == "succeeded" {
        Ok(())
    } else {
        anyhow::bail!("the job ended {}", job.status)
    }
}

/// Logs and traces for a server command.
fn server_telemetry(json: bool, service: &str) -> anyhow::Result<Telemetry> {
    let settings = TelemetrySettings::from_env(&env, json, service).context("configuration")?;
    let telemetry = telemetry::init(&settings)?;
    if let Some(endpoint) = settings
        .otlp_endpoint
        .as_deref()
        .filter(|_| telemetry.exporting())
    {
        tracing::info!(endpoint, service.name = %settings.service_name, "exporting spans over OTLP");
    }
    Ok(telemetry)
}

async fn api() -> anyhow::Result<()> {
    let settings = ApiSettings::from_env(&env).context("configuration")?;
    let _telemetry = server_telemetry(settings.json_logs, "video-worker-api")?;
    let pool = repo_pg::connect_lazy(&settings.database_url, &repo_pg::PoolConfig::default())
        .context("DATABASE_URL: not a valid Postgres URL")?;
    let parts = jobs_api::ApiParts {
        repo: Arc::new(repo_pg::PgRepository::new(pool)),
        artifacts: video::publish::store_from_url(&settings.artifact_store_url)
            .map_err(|e| anyhow::anyhow!("VIDEO_ARTIFACT_STORE_URL: {e}"))?,
        queue: settings.queue.enqueuer().context("queue configuration")?,
    };
    let api_settings = jobs_api::ApiSettings {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port)),
        api_keys: settings.api_keys,
    };
    // Every request in a span joined to the caller's trace (see telemetry).
    let app = jobs_api::ApiApplication::build(api_settings, parts)
        .await?
        .map_router(|router| router.layer(axum::middleware::from_fn(telemetry::trace_request)));
    tracing::info!(port = app.port(), "jobs API serving");
    app.run_until(worker_http::app::shutdown_signal()).await
}

async fn migrate() -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&TelemetrySettings::text())?;
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
    let _telemetry = server_telemetry(settings.json_logs, "video-worker")?;
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
            std::sync::Arc::new(video::video::PipelineStats::default()),
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
    let sweeper = queue::Sweeper {
        repo,
        queue,
        policy: settings.sweep.policy(settings.max_attempts),
    }
    .spawn(settings.sweep.interval, token.child_token());
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
