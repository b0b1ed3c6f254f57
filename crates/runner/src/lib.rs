//! Runs one job under a lease.
//!
//! [`Runner::run`] acquires the job, runs the pipeline on its own task, and beside it — in one
//! `select!` loop — heartbeats the lease (the answer carries the cancel flag), watches the
//! job's cancel notifications ([`CancelHub`]), turns progress events into fenced, monotonic,
//! coalesced progress writes, and enforces the execution limit and shutdown. Cancel, lease
//! loss, the deadline and shutdown all cancel the pipeline's token; the pipeline stops at its
//! next checkpoint and its child processes are killed with it. The attempt then ends in
//! exactly one write — finalize or release — or, after a lost lease, in none at all.

mod cancel_hub;
mod config;
mod outcome;
mod progress_writer;
mod run;
pub mod scratch;

pub use cancel_hub::{CancelHub, CancelWatch};
pub use config::RunnerConfig;
pub use outcome::RunOutcome;
pub use run::Runner;
