//! The worker's integration tests, one test binary (one link of the whole dependency tree,
//! not one per file): the push contract through the real router (`http_contract`,
//! `oidc_push`, `push_fence`), the worker on Postgres (`postgres_worker`, `sweep`), real
//! `video-worker` processes (`liveness`, `logs`, `cli`, `demo`), the jobs API with a worker
//! behind it (`api`), and the deployment files (`deploy`). Shared setup — the application
//! on port 0, a `serve` child process, a fresh database, scripted stages — is in `common`.
//!
//! Run one area with a filter: `cargo test -p worker-http --test it sweep::`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod common;

mod api;
mod cli;
mod demo;
mod deploy;
mod http_contract;
mod liveness;
mod logs;
mod oidc_push;
mod postgres_worker;
mod push_fence;
mod sweep;
