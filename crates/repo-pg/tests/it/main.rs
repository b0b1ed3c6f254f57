//! The integration tests of `repo-pg`, in one binary so the crate links its test
//! dependencies once (each `tests/*.rs` file would be a binary of its own). Each test takes
//! a fresh database, so the modules do not see each other's rows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;
mod conformance;
mod connections;
mod liveness;
mod progress_race;
mod unavailable;
