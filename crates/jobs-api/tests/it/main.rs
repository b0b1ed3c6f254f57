//! The jobs API's integration tests, one binary: each starts the API with
//! [`jobs_api::testing::TestApi`] on a loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod contract;
