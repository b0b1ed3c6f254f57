//! The jobs API keeps the promises its README and `/openapi.json` make, through the real
//! router, started with [`jobs_api::testing::TestApi`] on a loopback port: the document
//! validates as OpenAPI 3.1; every refusal is JSON `{error, message, fields}` with the status
//! the README gives and the path of the field at fault, and stores nothing; the event stream
//! ends with the terminal state and never repeats itself; list paging, enqueue failures and
//! idempotent creates (`jobs`). Request checks run on the in-memory repository, the event
//! stream and `jobs` on Postgres. One test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod bodies;
mod captions;
mod events;
mod helpers;
mod jobs;
mod openapi;
mod routes;
