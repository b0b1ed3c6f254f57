//! A download's file while it arrives: written beside its target and renamed into place only
//! when complete, so the target is never a partial film.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use super::CliError;

/// A download in progress: `.NAME.part-RANDOM` beside the target, removed unless persisted.
pub(super) struct PartFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<tokio::fs::File>,
}

impl PartFile {
    pub(super) async fn create(target: &Path) -> Result<Self, CliError> {
        let name = target
            .file_name()
            .ok_or_else(|| CliError::File {
                path: target.into(),
                cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            })?
            .to_string_lossy();
        let path = target.with_file_name(format!(".{name}.part-{:08x}", fastrand::u32(..)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|cause| CliError::File {
                path: path.clone(),
                cause,
            })?;
        Ok(Self {
            path,
            target: target.into(),
            file: Some(file),
        })
    }

    fn error(&self, cause: std::io::Error) -> CliError {
        CliError::File {
            path: self.target.clone(),
            cause,
        }
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| CliError::Unexpected("the download's file is already closed".into()))?;
        let result = file.write_all(bytes).await;
        result.map_err(|e| self.error(e))
    }

    /// Flushes to disk and renames into place.
    pub(super) async fn persist(mut self) -> Result<(), CliError> {
        if let Some(file) = self.file.take() {
            file.sync_all().await.map_err(|e| self.error(e))?;
        }
        tokio::fs::rename(&self.path, &self.target)
            .await
            .map_err(|e| self.error(e))?;
        self.path = PathBuf::new(); // renamed: nothing left to remove
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
