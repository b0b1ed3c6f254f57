//! The video-worker service: the thin edge around the runner.
//!
//! [`Application::build`] wires a repository, a pipeline and an authenticator into the axum
//! router ([`routes`]) on a listener of its own — the push endpoint never shares a listener
//! with a public API. `main.rs` only parses the command line and the environment
//! ([`config`]) and calls it; tests call it too, with port 0.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod media;
pub mod metrics_export;
pub mod routes;
pub mod sweep_route;
pub mod telemetry;

pub use app::{AppParts, Application, Readiness, SweepParts};
