//! Per-segment outputs cached by content, so a retried job resumes instead of redoing
//! finished segments.
//!
//! The key hashes everything that shapes the bytes (text, voice, engine version, slide,
//! frame count, encoder arguments, ffmpeg version, font). A file is written under a temp
//! name and renamed into place, so a crash mid-write leaves no half file under a real key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A SHA-256 over `parts`, each length-prefixed so `("ab","c")` and `("a","bc")` differ.
pub fn key(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A directory of finished segment files.
#[derive(Debug, Clone)]
pub struct SegmentCache {
    dir: PathBuf,
}

impl SegmentCache {
    /// The cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the file for `key` lives.
    pub fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    /// The file for `key`, if a finished one exists.
    pub async fn get(&self, key: &str, ext: &str) -> Option<PathBuf> {
        let path = self.path(key, ext);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() && m.len() > 0 => Some(path),
            _ => None,
        }
    }

    /// A fresh temp path beside the final one (same directory: rename is atomic).
    pub async fn temp(&self, key: &str, ext: &str) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let nonce: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(self.dir.join(format!(".{key}.{nonce:x}.tmp.{ext}")))
    }

    /// Moves a finished temp file into place.
    pub async fn commit(&self, temp: &Path, key: &str, ext: &str) -> std::io::Result<PathBuf> {
        let path = self.path(key, ext);
        tokio::fs::rename(temp, &path).await?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]), key(&[b"x"]));
        assert_eq!(key(&[b"x"]).len(), 64);
    }
}
