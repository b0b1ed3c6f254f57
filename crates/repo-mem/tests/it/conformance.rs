//! The repository conformance suite on `repo-mem`, with a manual clock.

use std::sync::Arc;

use domain::{HolderSession, ManualClock};
use repo_conformance::{Harness, SessionControl};
use repo_mem::MemRepository;

/// Sessions of the in-memory store: ending a cancel subscription's session makes it
/// reconnect, as sqlx's listener does.
struct MemSessions(Arc<MemRepository>);

#[async_trait::async_trait]
impl SessionControl for MemSessions {
    async fn open(&self) -> HolderSession {
        self.0.open_session()
    }
    async fn end(&self, session: HolderSession) {
        let listener = self.0.listener_sessions().contains(&session);
        self.0.end_session(session);
        if listener {
            self.0.reconnect_listeners();
        }
    }
}

fn harness() -> Harness {
    let clock = Arc::new(ManualClock::default());
    let repo = Arc::new(MemRepository::with_clock(clock.clone()));
    Harness {
        repo: repo.clone(),
        time: clock,
        sessions: Arc::new(MemSessions(repo)),
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
