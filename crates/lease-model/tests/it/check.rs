//! The exhaustive checks: the real protocol within the standard and wide bounds, and one
//! broken guard at a time, each of which the checker must catch with a counterexample.
//!
//! Run in release mode (`cargo test -p lease-model --release`): the wide world has millions
//! of states.

use lease_model::checker::{Report, check};
use lease_model::model::{Config, LeaseModel, Mutation};

const MAX_STATES: usize = 40_000_000;

fn run(config: Config) -> Report<LeaseModel> {
    let started = std::time::Instant::now();
    let report = check(&LeaseModel::new(config), MAX_STATES).expect("within the state bound");
    println!(
        "lease-model {config:?}: {} states, {} transitions, depth {}, {:.1} s",
        report.states,
        report.transitions,
        report.depth,
        started.elapsed().as_secs_f64()
    );
    report
}

fn assert_holds(config: Config) {
    let report = run(config);
    if let Some(cex) = &report.counterexample {
        for (i, (action, state)) in cex.trace.iter().enumerate() {
            println!("{i:3} {action:?}\n    {state:?}");
        }
        panic!("{} is broken; the run above breaks it", cex.property);
    }
}

fn assert_caught(mutation: Mutation, property: &str) {
    let report = run(Config::standard().with(mutation));
    let cex = report
        .counterexample
        .unwrap_or_else(|| panic!("{mutation:?} went unnoticed"));
    println!(
        "{mutation:?} breaks \"{}\" in {} steps:",
        cex.property,
        cex.trace.len() - 1
    );
    for (action, _) in &cex.trace[1..] {
        println!("    {action:?}");
    }
    assert_eq!(cex.property, property, "{mutation:?}");
}

#[test]
fn the_protocol_keeps_every_property_with_two_workers() {
    assert_holds(Config::standard());
}

#[test]
fn the_protocol_keeps_every_property_with_three_workers_and_any_single_fault() {
    assert_holds(Config::wide());
}

#[test]
fn progress_fenced_by_job_id_alone_accepts_a_stale_write() {
    assert_caught(
        Mutation::ProgressIgnoresEpoch,
        "no write accepted from a stale epoch",
    );
}

#[test]
fn finalize_blind_to_cancel_loses_the_cancel() {
    assert_caught(
        Mutation::FinalizeIgnoresCancel,
        "a cancel requested before the terminal write ends canceled",
    );
}

#[test]
fn acquire_over_a_live_lease_makes_two_holders() {
    assert_caught(
        Mutation::AcquireIgnoresLiveLease,
        "at most one live holder, and no worker whose session lives trusts a lease it lost",
    );
}

#[test]
fn trusting_a_lease_from_the_heartbeat_reply_outlives_it() {
    assert_caught(
        Mutation::TrustFromReply,
        "at most one live holder, and no worker whose session lives trusts a lease it lost",
    );
}

#[test]
fn a_sweeper_that_never_enqueues_strands_a_job_whose_task_was_lost() {
    assert_caught(
        Mutation::SweeperNeverEnqueues,
        "liveness: every job reaches a terminal state",
    );
}

#[test]
fn superseded_without_looking_strands_a_job_the_sweeper_requeued() {
    assert_caught(
        Mutation::SupersededWithoutLooking,
        "a 2xx never leaves a queued job without a task",
    );
}

#[test]
fn counting_a_hidden_session_as_gone_takes_over_a_live_holder() {
    assert_caught(
        Mutation::HiddenSessionCountsAsGone,
        "at most one live holder, and no worker whose session lives trusts a lease it lost",
    );
}
