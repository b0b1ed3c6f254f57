//! One cancel subscription per process, fanned out to the jobs it runs.
//!
//! The hub `LISTEN`s once (through [`JobRepository::cancel_notifications`]) and cancels the
//! token of every [`CancelWatch`] registered for the job. A runner registers its watch
//! *before* it acquires the job, so a cancel that lands between acquire and the first
//! heartbeat is not lost; one that lands before the hub is listening is reported by the next
//! heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::{JobId, JobRepository};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

type Watchers = HashMap<JobId, Vec<(u64, CancellationToken)>>;

/// Cancel notifications, by job.
#[derive(Debug, Clone, Default)]
pub struct CancelHub {
    /// Tokens per job. Locked only to add, remove or fire, never across an `.await`.
    watchers: Arc<Mutex<Watchers>>,
    next_key: Arc<AtomicU64>,
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
        if let Err(error) = &first {
            tracing::warn!(%error, "cancel notifications unavailable; heartbeats will report cancels");
        }
        let hub = self.clone();
        tokio::spawn(async move {
            let mut stream = first.ok();
            let mut backoff = Duration::from_millis(500);
            loop {
                if let Some(mut notes) = stream.take() {
                    backoff = Duration::from_millis(500);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = notes.next() => match next {
                                Some(job_id) => hub.notify(job_id),
                                None => break,
                            },
                        }
                    }
                    tracing::warn!("cancel notification stream ended; resubscribing");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                match repo.cancel_notifications().await {
                    Ok(notes) => stream = Some(notes),
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
