//! An exhaustive model check of the lease protocol.
//!
//! The examples in the conformance suite find the bugs someone thought of; this crate
//! explores *every* interleaving of a small world — workers, the queue, the sweeper, the
//! API's cancel and the clock, with crashes, lost replies, delayed writes and paused workers
//! — and checks the protocol's promises in each reachable state. Every change to the job
//! row goes through the **real** transition functions of `domain` ([`domain::Job::acquire`],
//! [`domain::Job::heartbeat`], …); the model only abstracts the row to the fields those
//! functions decide on, so the state space stays finite.
//!
//! - [`checker`]: a breadth-first explicit-state checker — invariants on every reachable
//!   state with a shortest counterexample, and liveness as "from every reachable state the
//!   goal is still reachable", which under fair scheduling means every run reaches it.
//! - [`model`]: the world and its properties; [`model::Mutation`] breaks one guard at a time
//!   so a test can show the checker catches it.

pub mod checker;
pub mod model;
