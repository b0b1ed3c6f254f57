//! One cancel subscription per process, fanned out to the jobs it runs.
//!
//! The hub `LISTEN`s once (through [`JobRepository::cancel_notifications`]) and cancels the
//! token of every [`CancelWatch`] registered for the job. A runner registers its watch
//! *before* it acquires the job, so a cancel that lands between acquire and the first
//! heartbeat is not lost; one that lands before the hub is listening is reported by the next
//! heartbeat.
//!
//! The subscription's connection is also this process's liveness handle: the hub keeps its
//! current session ([`CancelHub::sessions`]), which a runner records on every lease it
//! takes and re-registers when the connection comes back under a new session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::{CancelEvent, HolderSession, JobId, JobRepository};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

type Watchers = HashMap<JobId, Vec<(u64, CancellationToken)>>;

/// Cancel notifications, by job, and the session of the connection they arrive on.
#[derive(Debug, Clone)]
pub struct CancelHub {
    /// Tokens per job. Locked only to add, remove or fire, never across an `.await`.
    watchers: Arc<Mutex<Watchers>>,
    next_key: Arc<AtomicU64>,
    /// The subscription's current session; `None` before the first one.
    session: Arc<watch::Sender<Option<HolderSession>>>,
}

impl Default for CancelHub {
    fn default() -> Self {
        Self {
            watchers: Arc::default(),
            next_key: Arc::default(),
            session: Arc::new(watch::Sender::new(None)),
        }
    }
}

/// A registration for one job's cancel; deregisters when dropped.
#[derive(Debug)]
pub struct CancelWatch {
    hub: CancelHub,
    job_id: JobId,
    key: u64,
    token: CancellationToken,
}

impl CancelWatch {
    /// Resolves when a cancel notification for the job arrives.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        let mut watchers = self.hub.lock();
        if let Some(list) = watchers.get_mut(&self.job_id) {
            list.retain(|(key, _)| *key != self.key);
            if list.is_empty() {
                watchers.remove(&self.job_id);
            }
        }
    }
}

impl CancelHub {
    /// A hub with no feed yet: watches fire only through [`CancelHub::notify`].
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers interest in `job_id`'s cancel.
    pub fn watch(&self, job_id: JobId) -> CancelWatch {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock()
            .entry(job_id)
            .or_default()
            .push((key, token.clone()));
        CancelWatch {
            hub: self.clone(),
            job_id,
            key,
            token,
        }
    }

    /// Fires every watch of `job_id`.
    pub fn notify(&self, job_id: JobId) {
        if let Some(list) = self.lock().get(&job_id) {
            for (_, token) in list {
                token.cancel();
            }
        }
    }

    /// The current session of the cancel subscription, and every change of it: what a
    /// runner records on a lease it takes and re-registers when it changes.
    pub fn sessions(&self) -> watch::Receiver<Option<HolderSession>> {
        self.session.subscribe()
    }

    /// Records the subscription's session: a new subscription or a reconnect, or `None`
    /// when its connection was lost (leases taken meanwhile record no session).
    pub fn set_session(&self, session: Option<HolderSession>) {
        self.session.send_if_modified(|current| {
            let changed = *current != session;
            if changed {
                *current = session;
            }
            changed
        });
    }

    /// Subscribes to `repo`'s cancel notifications and forwards them until `shutdown`,
    /// resubscribing with backoff when the subscription fails or ends. The first
    /// subscription is made before this returns (if the database answers), so jobs started
    /// afterwards are covered from their first instant.
    pub async fn listen(
        &self,
        repo: Arc<dyn JobRepository>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let first = repo.cancel_notifications().await;
        match &first {
            Ok(subscription) => self.set_session(subscription.session),
            Err(error) => {
                tracing::warn!(%error, "cancel notifications unavailable; heartbeats will report cancels");
            }
        }
        let hub = self.clone();
        tokio::spawn(async move {
            let mut stream = first.ok().map(|s| s.events);
            let mut backoff = Duration::from_millis(500);
            loop {
                if let Some(mut notes) = stream.take() {
                    backoff = Duration::from_millis(500);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = notes.next() => match next {
                                Some(CancelEvent::Cancel(job_id)) => hub.notify(job_id),
                                Some(CancelEvent::Session(session)) => {
                                    hub.set_session(Some(session));
                                }
                                Some(CancelEvent::SessionLost) => hub.set_session(None),
                                None => break,
                            },
                        }
                    }
                    tracing::warn!("cancel notification stream ended; resubscribing");
                    hub.set_session(None);
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                match repo.cancel_notifications().await {
                    Ok(subscription) => {
                        hub.set_session(subscription.session);
                        stream = Some(subscription.events);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "resubscribing to cancel notifications failed")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_fires_only_the_jobs_watches_and_drop_deregisters() {
        let hub = CancelHub::new();
        let (a, b) = (JobId::new(), JobId::new());
        let wa = hub.watch(a);
        let wb = hub.watch(b);
        hub.notify(a);
        assert!(wa.token.is_cancelled());
        assert!(!wb.token.is_cancelled());
        drop(wa);
        assert!(!hub.lock().contains_key(&a));
        drop(wb);
        assert!(hub.lock().is_empty());
    }
}
