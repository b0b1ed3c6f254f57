//! The repository conformance suite on `repo-mem`, with a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::sync::Arc;

use domain::ManualClock;
use repo_conformance::Harness;
use repo_mem::MemRepository;

fn harness() -> Harness {
    let clock = Arc::new(ManualClock::default());
    Harness {
        repo: Arc::new(MemRepository::with_clock(clock.clone())),
        time: clock,
        guard: None,
    }
}

repo_conformance::conformance_suite!(async { harness() });

#[test]
fn state_machine_matches_the_reference_model() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    repo_conformance::model::run_property(&runtime, &harness(), 2000, 60);
}
