//! A download's file while it arrives: written beside its target and renamed into place only
//! when complete, so the target is never a partial film.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use super::ClientError;

/// A download in progress: `.NAME.part-RANDOM` beside the target, removed unless persisted.
pub(crate) struct PartFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<tokio::fs::File>,
}

impl PartFile {
    pub(crate) async fn create(target: &Path) -> Result<Self, ClientError> {
        let name = target
            .file_name()
            .ok_or_else(|| ClientError::File {
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
            .map_err(|cause| ClientError::File {
                path: path.clone(),
                cause,
            })?;
        Ok(Self {
            path,
            target: target.into(),
            file: Some(file),
        })
    }

    fn error(&self, cause: std::io::Error) -> ClientError {
        ClientError::File {
            path: self.target.clone(),
            cause,
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let file = self.file.as_mut().ok_or_else(|| {
            ClientError::Unexpected("the download's file is already closed".into())
        })?;
        let result = file.write_all(bytes).await;
        result.map_err(|e| self.error(e))
    }

    /// Flushes to disk and renames into place.
    pub(crate) async fn persist(mut self) -> Result<(), ClientError> {
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
