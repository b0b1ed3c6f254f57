//! Building and running the service: the thing `main` and the tests both call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::JobRepository;
use pipeline::Pipeline;
use push_auth::Authenticator;
use runner::{CancelHub, Runner, RunnerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::routes;

/// How `/ready` decides the instance can work.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// Always ready (in-memory repository).
    Always,
    /// Ready while this pool answers `SELECT 1`.
    Postgres(sqlx::PgPool),
}

impl Readiness {
    /// Whether the store answers within a second.
    pub async fn check(&self) -> bool {
        match self {
            Self::Always => true,
            Self::Postgres(pool) => {
                let ping = sqlx::query("SELECT 1").execute(pool);
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), ping).await,
                    Ok(Ok(_))
                )
            }
        }
    }
}

/// What the application is built from.
#[derive(Debug, Clone)]
pub struct AppParts {
    /// Where jobs live.
    pub repo: Arc<dyn JobRepository>,
    /// What a job runs.
    pub pipeline: Pipeline,
    /// Who may push.
    pub auth: Authenticator,
    /// The runner's settings.
    pub runner: RunnerConfig,
    /// The readiness probe.
    pub readiness: Readiness,
    /// Largest accepted push body.
    pub max_body_bytes: usize,
    /// Whether to subscribe to cancel notifications (off: heartbeats only).
    pub listen_for_cancels: bool,
}

/// What `POST /sweep` runs with: the queue to re-enqueue on (none: it still requeues and
/// fails stuck jobs, and reports queued ones as deferred) and the sweep settings.
#[derive(Debug, Clone)]
pub struct SweepParts {
    /// Where re-enqueues go, and whom to ask whether a task still exists (`VIDEO_QUEUE`).
    pub queue: Option<Arc<dyn queue::Enqueuer>>,
    /// `VIDEO_SWEEP_*` (the interval is the in-process loop's; the endpoint ignores it).
    pub settings: queue::SweepSettings,
}

/// Shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) runner: Runner,
    pub(crate) auth: Authenticator,
    pub(crate) readiness: Readiness,
    /// Cancelled on SIGTERM: no new job starts, running ones stop at their next checkpoint.
    pub(crate) shutdown: CancellationToken,
    /// Every job task, so shutdown waits for jobs whose caller already hung up.
    pub(crate) jobs: TaskTracker,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// `POST /sweep`.
    pub(crate) sweep: Arc<queue::Sweeper>,
}

/// A built, bound, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Duration,
    jobs: TaskTracker,
    listener_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Binds `addr` (port 0 picks a free one) and wires the parts. `POST /sweep` runs with
    /// the default sweep settings and no queue; see [`Application::build_with_sweep`].
    pub async fn build(parts: AppParts, addr: SocketAddr) -> anyhow::Result<Self> {
        let sweep = SweepParts {
            queue: None,
            settings: queue::SweepSettings::default(),
        };
        Self::build_with_sweep(parts, sweep, addr).await
    }

    /// [`Application::build`], with what `POST /sweep` needs to re-enqueue (what `serve`
    /// uses).
    pub async fn build_with_sweep(
        parts: AppParts,
        sweep: SweepParts,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let sweep = Arc::new(queue::Sweeper {
            repo: parts.repo.clone(),
            queue: sweep.queue,
            policy: sweep.settings.policy(parts.runner.max_attempts),
        });
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let shutdown = CancellationToken::new();
        let hub = CancelHub::new();
        let listener_task = if parts.listen_for_cancels {
            hub.listen(parts.repo.clone(), shutdown.child_token()).await
        } else {
            tokio::spawn(async {})
        };
        let grace = parts.runner.drain_grace;
        let runner = Runner::new(parts.repo, parts.pipeline, hub, parts.runner);
        let jobs = TaskTracker::new();
        let state = AppState {
            runner,
            auth: parts.auth,
            readiness: parts.readiness,
            shutdown: shutdown.clone(),
            jobs: jobs.clone(),
            metrics: crate::metrics_export::handle(),
            sweep,
        };
        let router = routes::router(state, parts.max_body_bytes);
        Ok(Self {
            listener,
            router,
            shutdown,
            grace,
            jobs,
            listener_task,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: no new connections, every
    /// running job — also one whose caller hung up — stops at its next checkpoint and gives
    /// its lease back (its push, if still connected, gets 503). The runner fits that in the
    /// grace period; past it plus a margin the server stops regardless.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => result.context("serving")?,
            () = self.shutdown.cancelled() => {
                let deadline = tokio::time::Instant::now() + self.grace + Duration::from_millis(500);
                self.jobs.close();
                let drained = async {
                    self.jobs.wait().await;
                    (&mut server).await
                };
                match tokio::time::timeout_at(deadline, drained).await {
                    Ok(result) => result.context("serving")?,
                    Err(_) => tracing::warn!(grace_ms = self.grace.as_millis(), "drain deadline reached; stopping"),
                }
            }
        }
        self.listener_task.abort();
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}
