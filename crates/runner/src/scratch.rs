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

/// This process's claim on a work root: an exclusive lock on `{work_root}/.lock`, held
/// until the claim is dropped (or the process ends, however it ends — the kernel releases
/// the lock). Proof that no other running process uses the root, so leftovers in it are a
/// dead process's and may be removed.
#[derive(Debug)]
pub struct WorkDirClaim {
    root: PathBuf,
    _lock: std::fs::File,
}

/// Why a work root could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another running process holds it.
    #[error(
        "{root} is in use by another running process{holder}; give each process its own work directory"
    )]
    InUse {
        /// The root.
        root: String,
        /// `" (pid N)"` when the holder wrote its pid.
        holder: String,
    },
    /// The root or its lock file could not be created or locked.
    #[error("{root}: {source}")]
    Io {
        /// The root.
        root: String,
        /// What failed.
        source: std::io::Error,
    },
}

impl WorkDirClaim {
    /// Claims `work_root` (created if missing) for this process.
    pub fn acquire(work_root: &Path) -> Result<Self, ClaimError> {
        use std::io::Write;
        let root = work_root.display().to_string();
        let io = |source| ClaimError::Io {
            root: root.clone(),
            source,
        };
        std::fs::create_dir_all(work_root).map_err(io)?;
        let path = work_root.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                return Err(ClaimError::InUse {
                    root: root.clone(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the next process's error message; the lock is what counts.
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            root: work_root.to_path_buf(),
            _lock: file,
        })
    }

    /// The claimed root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes every attempt directory under the root: what a crashed process left. Safe
    /// because the claim proves no other running process uses the root.
    pub fn clear_attempt_dirs(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(attempts_dir(&self.root)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion
    use super::*;

    #[test]
    fn a_claimed_work_root_cannot_be_claimed_again_until_released() {
        let work = tempfile::tempdir().unwrap();
        let claim = WorkDirClaim::acquire(work.path()).unwrap();
        let refused = WorkDirClaim::acquire(work.path()).unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, ClaimError::InUse { .. }), "{message}");
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        drop(claim);
        let again = WorkDirClaim::acquire(work.path()).unwrap();
        assert_eq!(again.root(), work.path());
    }

    #[test]
    fn clearing_removes_only_attempt_dirs() {
        let work = tempfile::tempdir().unwrap();
        let claim = WorkDirClaim::acquire(work.path()).unwrap();
        std::fs::create_dir_all(work.path().join("attempts/job-3")).unwrap();
        std::fs::create_dir_all(work.path().join("cache")).unwrap();
        claim.clear_attempt_dirs().unwrap();
        assert!(!work.path().join("attempts").exists());
        assert!(work.path().join("cache").exists());
        claim.clear_attempt_dirs().unwrap();
    }
}
