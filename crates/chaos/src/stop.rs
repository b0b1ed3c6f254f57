//! A stop signal every loop of the harness checks, so that none outlives the run.

use std::time::Duration;
use tokio::sync::watch;

/// Cloneable; [`Stop::stop`] wakes every waiter.
#[derive(Debug, Clone)]
pub struct Stop(std::sync::Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Self(std::sync::Arc::new(watch::Sender::new(false)))
    }
}

impl Stop {
    /// Stops: every waiter wakes, every later check sees it.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
    /// Whether [`Self::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
    /// Resolves once stopped.
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
    /// Sleeps `d`, or less if stopped meanwhile.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.stopped() => {}
        }
    }
}
