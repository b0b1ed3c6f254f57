//! The server subcommands: `serve` (the push worker), `api` (the jobs API) and `migrate`,
//! each wired from the environment's settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::config::{ApiSettings, PipelineKind, Settings};
use crate::telemetry::{self, Telemetry, TelemetrySettings};
use crate::{AppParts, Application, Readiness};

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
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

/// `video-worker api`.
pub async fn api() -> anyhow::Result<()> {
    let settings = ApiSettings::from_env(&env).context("configuration")?;
    let _telemetry = server_telemetry(settings.json_logs, "video-worker-api")?;
    let pool = repo_pg::connect_lazy(
        settings.database_url.expose_secret(),
        &repo_pg::PoolConfig::default(),
    )
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
    app.run_until(crate::app::shutdown_signal()).await
}

/// `video-worker migrate`.
pub async fn migrate() -> anyhow::Result<()> {
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

/// `video-worker serve`.
pub async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env(&env).context("configuration")?;
    let _telemetry = server_telemetry(settings.json_logs, "video-worker")?;
    let pool = repo_pg::connect_lazy(
        settings.database_url.expose_secret(),
        &repo_pg::PoolConfig::default(),
    )
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
        PipelineKind::Video => crate::media::video_pipeline(
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
    let sweep = crate::SweepParts {
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
        crate::app::shutdown_signal().await;
        token.cancel();
    });
    app.run_until_stopped().await?;
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
