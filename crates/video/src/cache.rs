//! Finished parts of a film (speech per sentence, video clips per picture) cached by
//! content, shared by every job and attempt of a process, so a retried job resumes instead
//! of redoing finished work — within a byte budget.
//!
//! The key hashes everything that shapes the bytes (text, voice, engine version, slide,
//! frame count, the picture a clip fades from, encoder arguments, ffmpeg version, font). An
//! entry is added by hard-linking a finished, fsynced file under a temp name and renaming it
//! into place (then the directory is fsynced), so a crash mid-write leaves no half file
//! under a real key. A hit is linked into the attempt's own scratch directory: evicting the
//! entry while an attempt still reads it only drops the name, never the bytes under the
//! attempt.
//!
//! On Cloud Run the work dir is memory, so the cache is bounded ([`SegmentCache::enforce`]):
//! least recently used entries go first, of whichever job. Recency is the file's mtime, set
//! on insert and on every hit (from a process-wide strictly increasing clock, so the order
//! survives a coarse filesystem clock and a restart of the process).
//!
//! Every hit is checked before reuse ([`looks_whole`]: the WAV or MP4 structure accounts for
//! exactly the file's length): a truncated or garbled entry — a host crash on a persistent
//! work dir — is evicted and redone, never turned into an error that burns attempts.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A temp file older than this is a crashed insert's leftover.
const STALE_TEMP: Duration = Duration::from_secs(600);

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

/// A directory of finished segment files, at most `max_bytes` of them once enforced.
#[derive(Debug, Clone)]
pub struct SegmentCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// What [`SegmentCache::enforce`] left and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the entries kept.
    pub bytes: u64,
    /// Entries kept.
    pub entries: usize,
    /// Entries evicted by this pass.
    pub evicted: usize,
}

impl SegmentCache {
    /// The cache in `dir` (created on first write), bounded by `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the entry for `key` lives.
    pub fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    /// Puts the entry for `key` at `dest` (a hard link, or a copy where links are refused)
    /// and marks it recently used. `None` when there is none — or it was not whole, in which
    /// case it is evicted.
    pub async fn get(&self, key: &str, ext: &str, dest: &Path) -> Option<PathBuf> {
        let path = self.path(key, ext);
        let ext = ext.to_owned();
        let dest = dest.to_owned();
        blocking(move || {
            if !path.is_file() {
                return Ok(None);
            }
            if !looks_whole(&path, &ext) {
                tracing::warn!(path = %path.display(), "cache entry is damaged; evicting it");
                remove_if_exists(&path)?;
                return Ok(None);
            }
            touch(&path);
            remove_if_exists(&dest)?;
            link_or_copy(&path, &dest)?;
            Ok(Some(dest))
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cache read failed; treating it as a miss");
            None
        })
    }

    /// Adds the finished `file` under `key` (the file stays where it is). The file is
    /// fsynced before it gets its real name, and the directory after.
    pub async fn insert(&self, file: &Path, key: &str, ext: &str) -> std::io::Result<()> {
        let dir = self.dir.clone();
        let path = self.path(key, ext);
        let file = file.to_owned();
        let temp = dir.join(format!(".{key}.{:x}.tmp", stamp_nanos()));
        blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::File::open(&file)?.sync_all()?;
            if let Err(e) = link_or_copy(&file, &temp) {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
            touch(&temp);
            std::fs::rename(&temp, &path)?;
            sync_dir(&dir)
        })
        .await
    }

    /// Evicts least recently used entries until the rest fit the budget; also removes temp
    /// files left by a crashed insert.
    pub async fn enforce(&self) -> std::io::Result<Usage> {
        let dir = self.dir.clone();
        let max = self.max_bytes;
        let usage = blocking(move || enforce_sync(&dir, max)).await?;
        metrics::gauge!("video_worker_segment_cache_bytes").set(usage.bytes as f64);
        if usage.evicted > 0 {
            tracing::info!(
                evicted = usage.evicted,
                kept_bytes = usage.bytes,
                max_bytes = max,
                "segment cache trimmed to its budget"
            );
        }
        Ok(usage)
    }

    /// [`SegmentCache::enforce`] on the calling thread, for process start.
    pub fn enforce_blocking(&self) -> std::io::Result<Usage> {
        enforce_sync(&self.dir, self.max_bytes)
    }
}

/// The runner holds the cache to its budget after every attempt through the stage contract.
#[async_trait::async_trait]
impl pipeline::ScratchBudget for SegmentCache {
    async fn enforce(&self) -> std::io::Result<()> {
        SegmentCache::enforce(self).await.map(|_| ())
    }
}

fn enforce_sync(dir: &Path, max: u64) -> std::io::Result<Usage> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Usage::default()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        if entry.file_name().to_string_lossy().starts_with('.') {
            if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                remove_if_exists(&entry.path())?;
            }
            continue;
        }
        files.push((modified, meta.len(), entry.path()));
    }
    files.sort();
    let mut usage = Usage {
        bytes: files.iter().map(|(_, len, _)| len).sum(),
        entries: files.len(),
        evicted: 0,
    };
    for (_, len, path) in &files {
        if usage.bytes <= max {
            break;
        }
        remove_if_exists(path)?;
        usage.bytes -= len;
        usage.entries -= 1;
        usage.evicted += 1;
    }
    Ok(usage)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Nanoseconds since the epoch, strictly increasing within the process: two uses in the
/// same tick of a coarse clock still order.
fn stamp_nanos() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Marks `path` used now. Best effort: a file that cannot be touched is only older.
fn touch(path: &Path) {
    let at = UNIX_EPOCH + Duration::from_nanos(stamp_nanos());
    let touched = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(at));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "cache entry not touched");
    }
}

/// Whether the file's structure accounts for exactly its length: a WAV's RIFF chunks (with
/// a mono 16-bit `fmt ` and a `data` chunk), an MP4's top-level boxes (with `ftyp` and
/// `moov`), a video clip's trailer (`h264`: [`crate::render::annexb::is_sealed`]). A
/// truncated, padded or garbled file fails; other extensions need only be non-empty.
pub fn looks_whole(path: &Path, ext: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    match ext {
        "wav" => wav_whole(&mut file, len).unwrap_or(false),
        "mp4" | "m4a" => mp4_whole(&mut file, len).unwrap_or(false),
        "h264" => crate::render::annexb::is_sealed(path),
        _ => len > 0,
    }
}

fn read_at<const N: usize>(file: &mut std::fs::File, at: u64) -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn wav_whole(file: &mut std::fs::File, len: u64) -> std::io::Result<bool> {
    let head: [u8; 12] = read_at(file, 0)?;
    if &head[..4] != b"RIFF" || &head[8..] != b"WAVE" {
        return Ok(false);
    }
    let riff = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    if riff + 8 != len {
        return Ok(false);
    }
    let (mut fmt_ok, mut data_ok) = (false, false);
    let mut at = 12u64;
    while at + 8 <= len {
        let chunk: [u8; 8] = read_at(file, at)?;
        let size = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        let end = at + 8 + size;
        if end > len {
            return Ok(false);
        }
        match &chunk[..4] {
            b"fmt " if size >= 16 => {
                let fmt: [u8; 16] = read_at(file, at + 8)?;
                let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
                let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
                fmt_ok = channels == 1 && bits == 16;
            }
            b"data" => data_ok = true,
            _ => {}
        }
        at = end + (size & 1);
    }
    Ok(fmt_ok && data_ok && (at == len || at == len + 1))
}

fn mp4_whole(file: &mut std::fs::File, len: u64) -> std::io::Result<bool> {
    let (mut ftyp, mut moov) = (false, false);
    let mut at = 0u64;
    while at < len {
        if at + 8 > len {
            return Ok(false);
        }
        let head: [u8; 8] = read_at(file, at)?;
        let size = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => len - at, // to the end of the file
            1 => u64::from_be_bytes(read_at(file, at + 8)?),
            n => u64::from(n),
        };
        if size < 8 || at + size > len {
            return Ok(false);
        }
        match &head[4..] {
            b"ftyp" => ftyp = at == 0,
            b"moov" => moov = true,
            _ => {}
        }
        at += size;
    }
    Ok(ftyp && moov && at == len)
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

    fn wav(samples: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let data = samples * 2;
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&22_050u32.to_le_bytes());
        out.extend_from_slice(&44_100u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data.to_le_bytes());
        out.resize(out.len() + data as usize, 7);
        out
    }

    fn mp4() -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, body) in [(b"ftyp", 12usize), (b"moov", 40), (b"mdat", 100)] {
            out.extend_from_slice(&u32::try_from(8 + body).unwrap().to_be_bytes());
            out.extend_from_slice(kind);
            out.resize(out.len() + body, 1);
        }
        out
    }

    #[test]
    fn whole_files_pass_and_truncated_padded_or_garbled_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, bytes: &[u8], ext: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            looks_whole(&path, ext)
        };
        let good_wav = wav(1000);
        let good_mp4 = mp4();
        assert!(check("a.wav", &good_wav, "wav"));
        assert!(check("a.mp4", &good_mp4, "mp4"));
        assert!(!check("b.wav", &good_wav[..good_wav.len() - 10], "wav"));
        assert!(!check("b.mp4", &good_mp4[..good_mp4.len() - 10], "mp4"));
        let mut padded = good_mp4.clone();
        padded.extend_from_slice(&[0; 5]);
        assert!(!check("c.mp4", &padded, "mp4"));
        assert!(!check("d.wav", b"garbage that is not a wav at all", "wav"));
        assert!(!check("d.mp4", b"garbage that is not an mp4 at all", "mp4"));
        assert!(!check("e.wav", &[], "wav"));
        let mut no_moov = good_mp4.clone();
        no_moov[24..28].copy_from_slice(b"free");
        assert!(!check("f.mp4", &no_moov, "mp4"));
    }

    async fn entry(cache: &SegmentCache, scratch: &Path, name: &str, bytes: usize) {
        let file = scratch.join(name);
        std::fs::write(&file, vec![1u8; bytes]).unwrap();
        cache.insert(&file, name, "bin").await.unwrap();
    }

    fn kept(cache: &SegmentCache) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn eviction_takes_the_least_recently_used_first_and_a_hit_refreshes_recency() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let cache = SegmentCache::new(dir.path().join("cache"), 3000);
        for name in ["a", "b", "c", "d"] {
            entry(&cache, &scratch, name, 1000).await;
        }
        // "a" is the oldest insert, but used since: "b" is now the least recently used.
        let hit = cache.get("a", "bin", &scratch.join("a-again")).await;
        assert!(hit.is_some());
        let usage = cache.enforce().await.unwrap();
        assert_eq!(
            usage,
            Usage {
                bytes: 3000,
                entries: 3,
                evicted: 1
            }
        );
        assert_eq!(kept(&cache), ["a.bin", "c.bin", "d.bin"]);

        // A new entry pushes out the next least recently used, "c".
        entry(&cache, &scratch, "e", 1000).await;
        cache.enforce().await.unwrap();
        assert_eq!(kept(&cache), ["a.bin", "d.bin", "e.bin"]);

        // An evicted entry is a miss; what an attempt linked earlier is still readable.
        assert!(cache.get("b", "bin", &scratch.join("b2")).await.is_none());
        assert_eq!(std::fs::read(scratch.join("b")).unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn a_damaged_entry_is_evicted_on_lookup_and_reads_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SegmentCache::new(dir.path().join("cache"), 1 << 20);
        let good = dir.path().join("good.wav");
        std::fs::write(&good, wav(500)).unwrap();
        cache.insert(&good, "k", "wav").await.unwrap();
        let dest = dir.path().join("out.wav");
        assert!(cache.get("k", "wav", &dest).await.is_some());

        // A host crash on a persistent disk: the entry under the real key is cut short.
        let cut = wav(500);
        std::fs::write(cache.path("k", "wav"), &cut[..100]).unwrap();
        assert!(cache.get("k", "wav", &dest).await.is_none());
        assert!(!cache.path("k", "wav").exists(), "the bad entry is gone");
    }
}
