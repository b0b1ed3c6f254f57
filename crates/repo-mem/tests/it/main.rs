//! The integration tests of `repo-mem`, in one binary so the crate links its test
//! dependencies once (each `tests/*.rs` file would be a binary of its own).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod conformance;
