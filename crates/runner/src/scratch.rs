//! The attempt's scratch directory, removed when the attempt ends however it ends.
//!
//! Layout under the work root: `attempts/{job}-{epoch}/` per attempt (this module) and
//! `cache/` for the pipeline's segment cache. On Cloud Run the work root is memory, so
//! nothing an attempt leaves may outlive it: the normal end removes the directory, and a
//! [`Drop`] guard removes it when the attempt's future is dropped or aborted instead.

use std::path::{Path, PathBuf};

use domain::{JobId, LeaseEpoch};

/// Where attempt directories live under `work_root`.
pub fn attempts_dir(work_root: &Path) -> PathBuf {
    work_root.join("attempts")
}

/// Removes every attempt directory under `work_root`: at start, what a crashed process left.
/// Only for a work root that no other running process uses.
pub fn clear_attempt_dirs(work_root: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(attempts_dir(work_root)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One attempt's directory; removed on [`AttemptDir::remove`] or, failing that, on drop.
#[derive(Debug)]
pub(crate) struct AttemptDir {
    path: Option<PathBuf>,
}

impl AttemptDir {
    /// Creates `attempts/{job}-{epoch}` under `work_root` (epochs are never reused, so the
    /// name is this attempt's alone).
    pub(crate) async fn create(
        work_root: &Path,
        job: JobId,
        epoch: LeaseEpoch,
    ) -> std::io::Result<Self> {
        let path = attempts_dir(work_root).join(format!("{job}-{}", epoch.get()));
        tokio::fs::create_dir_all(&path).await?;
        Ok(Self { path: Some(path) })
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes it without blocking the runtime.
    pub(crate) async fn remove(mut self) {
        if let Some(path) = self.path.take() {
            remove_logged(tokio::fs::remove_dir_all(&path).await, &path);
        }
    }
}

impl Drop for AttemptDir {
    /// The drop path (the attempt's future dropped or aborted): no await is possible here,
    /// so the removal blocks; scratch is small and usually in memory.
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_logged(std::fs::remove_dir_all(&path), &path);
        }
    }
}

fn remove_logged(result: std::io::Result<()>, path: &Path) {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "attempt scratch not removed");
        }
        _ => {}
    }
}
