//! The jobs API for the product side (`video-worker api`), on a listener of its own — never
//! the worker's.
//!
//! `POST /v1/jobs` validates the storyboard, stores the job and enqueues its delivery;
//! `GET /v1/jobs/{id}`, `GET /v1/jobs` (paged), `POST /v1/jobs/{id}/cancel`,
//! `GET /v1/jobs/{id}/events` (server-sent events fed by `NOTIFY`, ending with the terminal
//! state) and `GET /v1/jobs/{id}/artifact` (the MP4). Bearer API keys, compared in constant
//! time. `GET /openapi.json` describes it all. Every error is JSON `{error, message, fields}`
//! — axum's own refusals too (an unreadable path id, a bad query, a body over the limit, a
//! wrong method): each is mapped here rather than left to axum's plain-text answers — and a
//! body that does not fit names the field (`frame.width`, `segments[2].slide`; the `decode`
//! module).
//!
//! A create may carry an `Idempotency-Key`: a client that lost the reply retries with the
//! same key and gets the same job (200) instead of a second film. Keys are scoped to the API
//! key that sent them and remembered for [`IDEMPOTENCY_KEY_RETENTION`]; the request they stand
//! for is compared by [`request_fingerprint`].
//!
//! [`ApiApplication::build`] binds the API's listener and wires it from [`ApiSettings`] and
//! [`ApiParts`]; `video-worker api` calls it, and so do the tests, with port 0. The operator
//! CLI's HTTP client, [`client::ApiClient`], lives here too, beside what it calls.

mod app;
mod artifact;
pub mod client;
mod create;
mod decode;
mod error;
mod events;
mod job;
mod keys;
mod list;
mod openapi;
mod routes;
mod views;

#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use domain::JobRepository;
use object_store::ObjectStore;
use queue::Enqueuer;

pub use app::{ApiApplication, ApiParts, ApiSettings};
pub use create::idempotency::{IDEMPOTENCY_KEY_RETENTION, request_fingerprint};
pub use error::{ApiErrorBody, FieldErrorView};
pub use events::UpdateFeed;
pub use keys::ApiKeys;
pub use openapi::openapi_document;
pub use views::{CancelView, CreateJob, JobList, JobView};

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    /// Jobs.
    pub(crate) repo: Arc<dyn JobRepository>,
    /// Where deliveries are enqueued.
    pub(crate) queue: Arc<dyn Enqueuer>,
    /// Who may call.
    pub(crate) keys: ApiKeys,
    /// Where finished films are.
    pub(crate) artifacts: Arc<dyn ObjectStore>,
    /// Live updates for event streams.
    pub(crate) feed: UpdateFeed,
}
