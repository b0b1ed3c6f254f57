//! Building and running the jobs API: the thing `video-worker api` and the tests both call.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use domain::JobRepository;
use object_store::ObjectStore;
use queue::Enqueuer;
use tokio::net::TcpListener;

use crate::{ApiKeys, ApiState, UpdateFeed, routes};

/// How the API is configured: plain values, read from wherever the caller reads them
/// (`video-worker api`: the environment).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// The API keys callers may present (`VIDEO_API_KEYS`).
    pub api_keys: Vec<SecretString>,
}

/// What the API is built from: the services it calls.
#[derive(Debug, Clone)]
pub struct ApiParts {
    /// Where jobs live; also the source of the live updates event streams follow.
    pub repo: Arc<dyn JobRepository>,
    /// Where a created job's delivery is enqueued.
    pub queue: Arc<dyn Enqueuer>,
    /// Where finished films are read from.
    pub artifacts: Arc<dyn ObjectStore>,
}

/// A built, bound, not yet running jobs API.
#[derive(Debug)]
pub struct ApiApplication {
    listener: TcpListener,
    router: Router,
}

impl ApiApplication {
    /// Subscribes to job updates (before any event stream can open, so none misses one),
    /// binds `settings.addr` and wires the router.
    pub async fn build(settings: ApiSettings, parts: ApiParts) -> anyhow::Result<Self> {
        let state = ApiState {
            feed: UpdateFeed::start(parts.repo.clone()).await,
            repo: parts.repo,
            queue: parts.queue,
            keys: ApiKeys::new(&settings.api_keys),
            artifacts: parts.artifacts,
        };
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("binding {}", settings.addr))?;
        Ok(Self {
            listener,
            router: routes::router(state),
        })
    }

    /// The same API with `wrap` applied to its router — how the binary adds its request
    /// tracing, which lives with its telemetry rather than here.
    #[must_use]
    pub fn map_router(mut self, wrap: impl FnOnce(Router) -> Router) -> Self {
        self.router = wrap(self.router);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serves until `shutdown` resolves, then stops taking connections and lets the requests
    /// in flight finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")
    }
}
